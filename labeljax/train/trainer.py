"""The one trainer behind every method: `fit` (the loop) and `train_single_stage`.

Sections: data -> method setup -> model and state -> resume -> train step ->
loop (log, evaluate, checkpoint, preemption) -> final evaluation. A method's
setup function supplies the loader that builds batches and the loss;
everything else is shared. The core knows no algorithm family:
`labeljax.methods.train_and_evaluate` maps a config to its method or pipeline.
"""

import functools
import json
import os
from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import ml_collections
import numpy as np
from absl import logging

from labeljax import augment
from labeljax import models
from labeljax import parallel
from labeljax.data import budgets
from labeljax.data import datasets
from labeljax.data.pipeline import Stream, TrainLoader
from labeljax.train import checkpoint
from labeljax.train import config_checks
from labeljax.train import evaluate as evaluate_lib
from labeljax.train import optim
from labeljax.train import pretrained as pretrained_lib
from labeljax.train.metric_writer import MetricWriter, Progress
from labeljax.train.state import TrainState, create_train_state
from labeljax.train.step import LossFn, make_train_step, supervised_loss


class Setup(NamedTuple):
  """What a method hands the trainer.

  Attributes:
    loader: has `batches(start_step)`, an iterator of global batches whose
      batch of step t depends only on (seed, t).
    loss_fn: model -> the `LossFn` of `make_train_step`.
    algo_state: the initial `TrainState.algo_state` (fixed-shape pytree).
    model: the model to train; None builds `config.model`.
    monitor: `(state, predict) -> metrics`, logged as split "monitor" every
      `config.eval_every` steps (e.g. SimCLR's kNN accuracy); None for none.
  """
  loader: Any
  loss_fn: Callable[[nn.Module], LossFn]
  algo_state: Any = None
  model: nn.Module | None = None
  monitor: Callable[[TrainState, Callable], dict[str, float]] | None = None


class Data(NamedTuple):
  dataset: datasets.Dataset
  split: budgets.LabelSplit
  validation: datasets.Examples


def load_data(config: ml_collections.ConfigDict) -> Data:
  """The data set, its label budget, and the validation examples; with
  `config.features_from` (a pretraining workdir) every input replaced by that
  encoder's representation h (`pretrained.embedded_dataset`)."""
  encoder = (pretrained_lib.load(config.features_from, config.dataset, key="features_from")
             if config.get("features_from") else None)
  dataset = datasets.load_dataset(config.dataset, data_dir=config.get("data_dir"),
                                  raw_data_dir=config.get("raw_data_dir"))
  if encoder is not None:
    dataset = pretrained_lib.embedded_dataset(dataset, encoder, config.eval_batch_size,
                                              parallel.make_mesh())
  # A shipped validation split is kept as is. `validation_fraction`, where
  # set, holds out that share of the training split instead of a count.
  fraction = config.get("validation_fraction")
  num_validation = (round(fraction * len(dataset.train)) if fraction
                    else config.num_validation)
  if dataset.validation is not None:
    num_validation = 0
  per_class = config.get("num_labels_per_class")
  split = budgets.split_labels(
      dataset.train.labels, dataset.info.num_classes,
      num_labels_per_class=per_class,
      num_labels=None if per_class is not None else config.num_labels,
      num_validation=num_validation, num_unlabeled=config.get("num_unlabeled"),
      seed=config.seed)
  validation = (dataset.validation if dataset.validation is not None
                else dataset.train.take(split.validation))
  return Data(dataset, split, validation)


def supervised_setup(config: ml_collections.ConfigDict, data: Data, mesh) -> Setup:
  """The `supervised` method: cross-entropy on the labeled examples only, seen
  through the weak augmentation if `config.augment_labeled`."""
  labeled = data.dataset.train.take(data.split.labeled)
  loader = TrainLoader({"labeled": Stream(labeled, config.batch_size)}, mesh,
                       seed=config.seed, num_shards=config.get("num_data_shards"))
  if not config.get("augment_labeled"):
    return Setup(loader, supervised_loss)
  weak, _ = augment.make_views(data.dataset.info.kind, config)
  return Setup(loader, functools.partial(supervised_loss, view=weak))


def fit(config: ml_collections.ConfigDict, workdir: str, setup: Setup,
        model: nn.Module, info: datasets.DataInfo, mesh: jax.sharding.Mesh,
        validation: datasets.Examples | None = None,
        pretrained: pretrained_lib.Pretrained | None = None) -> TrainState | None:
  """Runs `config.num_steps` train steps with checkpoints in `workdir`.

  The state starts from `pretrained`'s variables where the model shares their
  names, and resumes from the latest checkpoint in `workdir`. Returns the
  final state, or None when a preemption (SIGTERM) stopped the run after saving.
  """
  config_checks.check_config(config)  # a stage's own settings, too
  # --------------------------------------------------------------------------
  # Model, optimizer and train state (replicated over the mesh).
  # --------------------------------------------------------------------------
  tx = optim.make_optimizer(config.optimizer, config.num_steps)
  if optim.uses_line_search(config.optimizer) and info.kind == "image":
    raise ValueError("optimizer lbfgs evaluates the loss on its whole batch several times a "
                     "step; on images that reruns the network over every image each time. "
                     "Fit on an encoder's features instead (features_from=WORKDIR).")
  if config.get("freeze_encoder"):  # A probe: only the new classifier learns.
    if optim.uses_line_search(config.optimizer):
      raise ValueError("freeze_encoder with optimizer lbfgs is not supported: the frozen "
                       "modules' optimizer partition hands the line search partial "
                       "parameters. Train on the encoder's features (features_from) or "
                       "use adamw.")
    if pretrained is None:
      raise ValueError("freeze_encoder trains only the classifier on a pretrained encoder: "
                       "set init_from to a SimCLR pretraining workdir.")
    tx = optim.freeze(tx, lambda params: pretrained_lib.frozen_labels(params, pretrained))
  init_rng, train_rng = jax.random.split(jax.random.key(config.seed))
  sample = np.zeros((1, *info.input_shape), np.float32)
  state = jax.jit(
      lambda rng: create_train_state(model, tx, sample, rng, setup.algo_state),
      out_shardings=parallel.replicated(mesh))(init_rng)
  if pretrained is not None:
    state = pretrained_lib.initialize(state, pretrained, parallel.replicated(mesh))

  # --------------------------------------------------------------------------
  # Resume from the latest checkpoint, if any.
  # --------------------------------------------------------------------------
  ckpt = checkpoint.Checkpointer(workdir, config.checkpoint_every)
  state = ckpt.restore_or(state)
  start_step = int(state.step)
  if start_step:
    logging.info("Resumed from step %d.", start_step)

  # --------------------------------------------------------------------------
  # The pure train step, jitted once; state buffers are donated.
  # --------------------------------------------------------------------------
  loss_fn = setup.loss_fn(model)
  line_search = optim.uses_line_search(config.optimizer)
  if line_search:  # L-BFGS: weight decay as a term of the objective it searches
    loss_fn = optim.with_l2_penalty(loss_fn, config.optimizer.get("weight_decay", 0.0))
  train_step = jax.jit(
      make_train_step(loss_fn, tx, config.ema_decay, line_search),
      donate_argnums=0,
      out_shardings=(parallel.replicated(mesh), parallel.replicated(mesh)))
  predict = evaluate_lib.make_predict_fn(model)

  # --------------------------------------------------------------------------
  # Train loop.
  # --------------------------------------------------------------------------
  writer = MetricWriter(workdir, resumed_step=start_step)
  progress = Progress(start_step, config.num_steps)
  # Multi-process runs learn of preemption from JAX's preemption service
  # (`reached_preemption`), which every process sees at the same step.
  sigterm = checkpoint.SigtermFlag() if jax.process_count() == 1 else None
  window = []
  step = start_step
  try:
    batches = setup.loader.batches(start_step)
    while step < config.num_steps:
      state, metrics = train_step(state, next(batches), train_rng)
      step += 1
      if step == start_step + 1:
        progress.started(step)  # the ETA leaves compilation out
      window.append(metrics)
      preempted = (sigterm is not None and sigterm.is_set()) or ckpt.reached_preemption(step)
      last = step == config.num_steps
      if step % config.log_every == 0 or last:
        summary = _summarize(window, step)
        window = []
        writer.write(step, "train", {**summary, **progress.update(step)})
      elif window and (preempted or step % config.checkpoint_every == 0):
        _summarize(window, step)  # Never checkpoint past a skipped update.
      if (validation is not None and len(validation)
          and step % config.eval_every == 0 and not last):
        writer.write(step, "validation", evaluate(config, predict, state,
                                                  validation, mesh))
      if setup.monitor is not None and step % config.eval_every == 0 and not last:
        writer.write(step, "monitor", setup.monitor(state, predict))
      ckpt.save(step, state, force=preempted or last)
      if preempted and not last:
        logging.warning("Preempted: saved step %d and stopping.", step)
        return None
    batches.close()
    return state
  finally:
    if sigterm is not None:
      sigterm.restore()
    ckpt.close()
    writer.close()


def _summarize(window: list[dict], step: int) -> dict[str, float]:
  """Means of the window's metrics; stops the run if an update was skipped."""
  summary = {k: float(np.mean(v)) for k, v in jax.device_get(
      jax.tree.map(lambda *xs: np.stack(xs), *window)).items()}
  if summary["nonfinite"] > 0:
    raise FloatingPointError(
        f"Non-finite loss or gradients before step {step} (in "
        f"{summary['nonfinite']:.0%} of the last steps; those updates were "
        "skipped). Check the inputs, lower the learning rate, or restart "
        "from the last checkpoint.")
  return summary


def evaluate(config, predict, state: TrainState, examples: datasets.Examples,
             mesh) -> dict[str, float]:
  """Metrics on `examples`, with EMA parameters when `config.eval_with_ema`."""
  params = state.ema_params if config.eval_with_ema else state.params
  return evaluate_lib.evaluate(predict, params, state.model_state, examples,
                               config.eval_batch_size, mesh)


def train_single_stage(config: ml_collections.ConfigDict, workdir: str,
                       make_setup: Callable[..., Setup]) -> dict:
  """Trains `make_setup`'s method, evaluates and checkpoints; the final metrics.

  `make_setup(config, data, mesh) -> Setup` is a method's setup function (see
  `labeljax.methods`, which dispatches a config here). Rerunning with the same
  `workdir` resumes from the latest checkpoint and ends with exactly the
  metrics of an uninterrupted run.
  """
  # --------------------------------------------------------------------------
  # Data and the method's loader and loss.
  # --------------------------------------------------------------------------
  # Checked before the data loads: a wrong path fails at once.
  pretrained = (pretrained_lib.load(config.init_from, dataset=config.dataset)
                if config.get("init_from") else None)
  data = load_data(config)
  info = data.dataset.info
  mesh = parallel.make_mesh()
  parallel.check_global_batch(config.eval_batch_size, mesh, "eval batch")
  setup = make_setup(config, data, mesh)
  if pretrained is not None:
    if setup.model is not None:
      raise ValueError(f"{config.method} builds its own model; it cannot start from "
                       "init_from.")
    # The pretrained encoder with its first head layer and a new classifier.
    pretrained_lib.warn_if_model_differs(pretrained, config.model,
                                         config.get("model_kwargs", {}))
    model = pretrained.finetune_model(info.num_classes,
                                      frozen=bool(config.get("freeze_encoder")))
  else:
    if info.kind != "image" and config.model in models.IMAGE_MODELS:
      raise ValueError(f"{config.model} takes images; {info.name} is {info.kind} "
                       "data (use model=mlp).")
    model = setup.model or models.get_model(config.model, info.num_classes,
                                            **config.get("model_kwargs", {}))
  logging.info("%s with %s: %d labeled, %d unlabeled, %d validation, %d test; "
               "%d devices, %d processes.", info.name, config.method,
               len(data.split.labeled), len(data.split.unlabeled),
               len(data.validation), len(data.dataset.test), mesh.size,
               jax.process_count())

  # --------------------------------------------------------------------------
  # Train (or resume), then evaluate on the test set.
  # --------------------------------------------------------------------------
  state = fit(config, workdir, setup, model, info, mesh, data.validation, pretrained)
  if state is None:
    return {"preempted": True}
  predict = evaluate_lib.make_predict_fn(model)
  results = {"step": int(state.step),
             "test": evaluate(config, predict, state, data.dataset.test, mesh)}
  if len(data.validation):
    results["validation"] = evaluate(config, predict, state, data.validation, mesh)
  if setup.monitor is not None:  # e.g. LLP's loss on validation bags
    results["monitor"] = setup.monitor(state, predict)
  writer = MetricWriter(workdir)
  for split_name in ("validation", "monitor", "test"):
    if split_name in results:
      writer.write(results["step"], split_name, results[split_name])
  writer.close()
  write_results(workdir, results)
  return results


def write_results(workdir: str, results: dict) -> None:
  """results.json, the file a finished run leaves (written by process 0)."""
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "results.json"), "w") as f:
      json.dump(results, f, indent=2)
