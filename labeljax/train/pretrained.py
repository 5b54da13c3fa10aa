"""Starting a run from a pretrained encoder: `config.init_from = WORKDIR`.

A pretraining run (SimCLR, `labeljax.selfsup`) leaves in its workdir the orbax
checkpoints of its train state and `pretrained.json`, which names the data
set and the architecture: the encoder (`model`, `model_kwargs`) and the
projection head (`head_widths`) of a `models.SimCLRNet`. `load` reads both.
Other runs then build their network from it, `Pretrained.finetune_model`
(SimCLRv2: the encoder and the first layer of the head, then a new linear
classifier), and `initialize` copies every pretrained variable whose name the
new network shares into its fresh train state (the classifier keeps its
initialisation). Names shared with a different shape are an error that names
both shapes.
"""

import json
import os
from typing import Any, NamedTuple

from absl import logging
import jax
import numpy as np
import orbax.checkpoint as ocp

from labeljax import models
from labeljax.data import datasets
from labeljax.train import evaluate as evaluate_lib

SPEC_FILE = "pretrained.json"


class Pretrained(NamedTuple):
  """A pretrained `SimCLRNet`: its description and variables (host arrays)."""
  spec: dict[str, Any]  # dataset, model, model_kwargs, head_widths, step
  params: Any
  model_state: Any

  def pretraining_model(self) -> models.SimCLRNet:
    """The network as pretrained: its `embedding` is the representation h."""
    return models.SimCLRNet(
        models.get_model(self.spec["model"], 0, **self.spec["model_kwargs"]),
        head_widths=tuple(self.spec["head_widths"]))

  def embed(self, examples, batch_size: int, mesh) -> np.ndarray:
    """The representation h of every example, in order ([N, embedding_dim])."""
    return evaluate_lib.embed(self.pretraining_model(), self.params, self.model_state,
                              examples, batch_size, mesh)

  def nested(self, scope: str) -> "Pretrained":
    """The same variables under `scope`, for `initialize` (and `trainer.fit`) of
    a model that holds the fine-tuning network as its submodule `scope` (e.g.
    LLP-BP's `BagHeadModel`); its `embed` needs the unnested original."""
    return self._replace(params={scope: self.params}, model_state={
        collection: {scope: tree} for collection, tree in self.model_state.items()})

  def finetune_model(self, num_classes: int, head_layers: int = 1,
                     frozen: bool = False) -> models.SimCLRNet:
    """The encoder, the first `head_layers` layers of the head, a new classifier;
    with `frozen` only the classifier learns (a probe: `models.SimCLRNet`)."""
    widths = tuple(self.spec["head_widths"])
    if not 0 <= head_layers <= len(widths):
      raise ValueError(f"head_layers must be in [0, {len(widths)}] (the pretrained "
                       f"head has {len(widths)} layers), got {head_layers}.")
    return models.SimCLRNet(
        models.get_model(self.spec["model"], 0, **self.spec["model_kwargs"]),
        head_widths=widths[:head_layers], num_classes=num_classes, frozen=frozen)


def warn_if_model_differs(pretrained: Pretrained, model: str,
                          model_kwargs: dict[str, Any]) -> None:
  """Logs that `init_from` decides the architecture when the config names another."""
  same_kwargs = {k: tuple(v) if isinstance(v, (list, tuple)) else v
                 for k, v in dict(model_kwargs).items()} == {
                     k: tuple(v) if isinstance(v, (list, tuple)) else v
                     for k, v in pretrained.spec["model_kwargs"].items()}
  if model != pretrained.spec["model"] or not same_kwargs:
    logging.warning("init_from: the model is the pretrained %s %s with its first head "
                    "layer and a new classifier; the config's model %s %s is not used.",
                    pretrained.spec["model"], pretrained.spec["model_kwargs"], model,
                    dict(model_kwargs))


def write_spec(workdir: str, spec: dict[str, Any]) -> None:
  if jax.process_index() == 0:
    with open(os.path.join(workdir, SPEC_FILE), "w") as f:
      json.dump(spec, f, indent=2)


def load(workdir: str, dataset: str | None = None, key: str = "init_from") -> Pretrained:
  """The pretrained network saved in `workdir`, checked against `dataset`;
  errors name the config `key` that pointed at it."""
  spec_path = os.path.join(workdir, SPEC_FILE)
  if not os.path.isdir(workdir):
    raise FileNotFoundError(f"{key}={workdir!r} is not a directory; point it at "
                            "the workdir of a finished pretraining run.")
  if not os.path.exists(spec_path):
    raise FileNotFoundError(f"{key}={workdir!r} has no {SPEC_FILE}: it is not the "
                            "workdir of a finished pretraining run (experiments/configs/"
                            "simclr.py writes one when it ends).")
  with open(spec_path) as f:
    spec = json.load(f)
  if dataset is not None and spec["dataset"] != dataset:
    raise ValueError(f"{key}={workdir!r} was pretrained on {spec['dataset']!r}, "
                     f"but this run trains on {dataset!r}.")
  state = restore_on_host(os.path.join(workdir, "checkpoints"))
  if state is None:
    raise FileNotFoundError(f"{key}={workdir!r} has no checkpoint.")
  return Pretrained(spec, state["params"], state["model_state"])


def embedded_dataset(dataset: datasets.Dataset, pretrained: Pretrained, batch_size: int,
                     mesh) -> datasets.Dataset:
  """`dataset` with every example's inputs replaced by the encoder's
  representation h: a tabular data set of float32 features, computed once
  (`config.features_from`). A model on h is a probe of the frozen encoder
  that trains like a tabular model: an MLP, or a linear one fitted with
  L-BFGS on every example at each step, which on the images themselves would
  rerun the encoder for every line-search evaluation."""
  def embed(examples):
    if examples is None:
      return None
    features = pretrained.embed(examples, batch_size, mesh).astype(np.float32)
    # Not `_replace`: Examples' own __len__ (its row count) breaks it.
    return datasets.Examples(features, examples.labels, examples.categorical)

  train = embed(dataset.train)
  info = dataset.info._replace(kind="tabular", input_shape=train.inputs.shape[1:],
                               schema=None)
  logging.info("%s as the %d-d representation of the %s encoder.", info.name,
               train.inputs.shape[1], pretrained.spec["model"])
  return datasets.Dataset(info, train, embed(dataset.test), embed(dataset.validation))


def restore_on_host(directory: str, step: int | None = None) -> dict | None:
  """A checkpointed train state as a dict of numpy arrays (the latest step by
  default; None if there is none), whatever devices it was saved from."""
  manager = ocp.CheckpointManager(os.path.abspath(directory),
                                  item_handlers=ocp.StandardCheckpointHandler())
  step = manager.latest_step() if step is None else step
  if step is None:
    return None
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  abstract = jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype,
                                                            sharding=device),
                          manager.item_metadata(step))
  state = jax.device_get(manager.restore(step, args=ocp.args.StandardRestore(abstract)))
  manager.close()
  return state


def transfer(target: Any, source: Any, what: str) -> tuple[Any, list[str]]:
  """`target` with every leaf that `source` has under the same name replaced.

  Returns the new tree and the names of the leaves kept from `target`.
  Raises ValueError if a shared name has another shape, naming both.
  """
  flat_source = {jax.tree_util.keystr(path): leaf
                 for path, leaf in jax.tree_util.tree_leaves_with_path(source)}
  kept = []

  def take(path, leaf):
    name = jax.tree_util.keystr(path)
    if name not in flat_source:
      kept.append(name)
      return leaf
    value = flat_source[name]
    if tuple(value.shape) != tuple(leaf.shape):
      raise ValueError(f"init_from: {what}{name} has shape {tuple(value.shape)} in the "
                       f"pretrained checkpoint but {tuple(leaf.shape)} in this model; "
                       "the architectures differ.")
    return np.asarray(value, leaf.dtype)

  return jax.tree_util.tree_map_with_path(take, target), kept


def frozen_labels(params, pretrained: Pretrained):
  """"frozen" for every top-level module the checkpoint provides (encoder and
  head layers), "train" for the rest: the labels of `optim.freeze`."""
  return {name: jax.tree.map(lambda _, n=name: "frozen" if n in pretrained.params else "train",
                             tree) for name, tree in params.items()}


def initialize(state, pretrained: Pretrained, sharding):
  """`state` (a fresh `TrainState`) with the pretrained variables copied in.

  Raises ValueError if the model shares no encoder variable with the checkpoint.
  """
  params, fresh = transfer(jax.device_get(state.params), pretrained.params, "params")
  model_state, _ = transfer(jax.device_get(state.model_state), pretrained.model_state,
                            "model_state")
  copied = [jax.tree_util.keystr(path) for path, _ in
            jax.tree_util.tree_leaves_with_path(params)
            if jax.tree_util.keystr(path) not in fresh]
  if not any("['encoder']" in name for name in copied):
    raise ValueError(f"init_from: this model shares no encoder variables with the "
                     f"checkpoint (model: {sorted(state.params)}, checkpoint: "
                     f"{sorted(pretrained.params)}).")
  logging.info("init_from: %d pretrained parameter arrays copied; %d start fresh: %s.",
               len(copied), len(fresh), ", ".join(fresh))
  put = lambda tree: jax.device_put(tree, sharding)
  return state.replace(params=put(params), ema_params=put(params),
                       model_state=put(model_state))
