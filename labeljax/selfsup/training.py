"""SimCLR pretraining as a pipeline on the train core.

`pretrain(config, workdir)` (`method=simclr`): a `SimCLRNet` (the encoder
`config.model` and a projection head `config.head_widths`) trained with
NT-Xent on two SimCLR views of every training image, labels unused. It
pretrains on the training split less the validation examples, whose labels
(with those of a bank of `config.monitor_bank` pretraining images) serve
only the monitor: every `eval_every` steps the weighted-kNN accuracy of the
embedding on the validation examples is logged (split "monitor"), beside the
contrastive accuracy of every logged train step. At the end it writes
`pretrained.json`, which makes the workdir a valid `init_from`, and reports the
kNN and linear-probe test accuracies with every training label.

The SimCLRv2 recipe built on it (pretrain -> fine-tune -> distill) composes
this family with distillation: `labeljax.recipes.simclrv2`.
"""

import json
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from labeljax import augment
from labeljax import models
from labeljax import parallel
from labeljax.data.pipeline import Stream, TrainLoader
from labeljax.selfsup import probes
from labeljax.selfsup.simclr import nt_xent_loss
from labeljax.train import checkpoint
from labeljax.train import evaluate as evaluate_lib
from labeljax.train import pretrained as pretrained_lib
from labeljax.train import trainer
from labeljax.train.metric_writer import MetricWriter
from labeljax.train.step import LossAux, apply_model, model_inputs


def _views_kwargs(config) -> dict:
  return dict(crop_scale=tuple(config.crop_scale), flip=config.flip,
              jitter_strength=config.jitter_strength, blur_prob=config.blur_prob)


def pretraining_pool(data: trainer.Data) -> np.ndarray:
  """Training indices SimCLR learns from: all but the validation examples."""
  return np.sort(np.concatenate([data.split.labeled, data.split.unlabeled]))


def simclr_setup(config: ml_collections.ConfigDict, data: trainer.Data,
                 mesh) -> trainer.Setup:
  """NT-Xent on two SimCLR views of each pool image; kNN accuracy as monitor."""
  info = data.dataset.info
  if info.kind != "image":
    raise ValueError(f"SimCLR draws image views (crops, colour jitter, blur); "
                     f"{info.name} is {info.kind} data.")
  if config.batch_size < 2:
    raise ValueError(f"SimCLR needs batch_size >= 2 (the other examples are the "
                     f"negatives), got {config.batch_size}.")
  if not config.temperature > 0:
    raise ValueError(f"temperature must be > 0, got {config.temperature}.")
  train = data.dataset.train
  pool = pretraining_pool(data)
  loader = TrainLoader({"images": Stream(train.take(pool), config.batch_size)}, mesh,
                       seed=config.seed, num_shards=config.get("num_data_shards"))
  model = models.SimCLRNet(
      models.get_model(config.model, 0, **config.get("model_kwargs", {})),
      head_widths=tuple(config.head_widths))
  views = _views_kwargs(config)

  def loss_fn(model):
    def fn(params, state, batch, rng):
      view_key, dropout = jax.random.split(rng)
      first, second = augment.simclr_views(view_key, model_inputs(batch["images"]["inputs"]),
                                           **views)
      out, model_state = apply_model(model, params, state.model_state,
                                     jnp.concatenate([first, second]), train=True,
                                     rng=dropout)
      z1, z2 = jnp.split(out.logits, 2)
      loss, accuracy = nt_xent_loss(z1, z2, config.temperature)
      return loss, LossAux(model_state, state.algo_state,
                           {"contrastive_accuracy": accuracy})
    return fn

  # The monitor's labeled bank: a fixed random subset of the pool.
  bank_size = min(config.monitor_bank, len(pool))
  bank = train.take(np.random.default_rng(config.seed).choice(pool, bank_size,
                                                              replace=False))

  def monitor(state, predict=None):
    del predict  # The kNN accuracy reads the encoder's embedding, not the logits.
    if not len(data.validation):
      return {}
    embed = lambda examples: evaluate_lib.embed(model, state.params, state.model_state,
                                                examples, config.eval_batch_size, mesh)
    predicted = probes.knn_predict(embed(bank), bank.labels, embed(data.validation),
                                   info.num_classes)
    return {"knn_accuracy": float(np.mean(predicted == data.validation.labels))}

  return trainer.Setup(loader, loss_fn, model=model, monitor=monitor)


def pretrain(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """SimCLR pretraining; the workdir then serves as `init_from`."""
  data = trainer.load_data(config)
  info = data.dataset.info
  mesh = parallel.make_mesh()
  setup = simclr_setup(config, data, mesh)
  first_step = checkpoint.latest_step(workdir)
  start = time.perf_counter()
  state = trainer.fit(config, workdir, setup, setup.model, info, mesh)
  if state is None:
    return {"preempted": True}
  minutes = (time.perf_counter() - start) / 60.0
  trained_here = config.num_steps - first_step
  pretrained_lib.write_spec(workdir, {
      "dataset": info.name, "model": config.model,
      "model_kwargs": dict(config.get("model_kwargs", {})),
      "head_widths": list(config.head_widths), "step": int(state.step)})
  # Embedding quality with every training label (the labels' only use).
  train, test = data.dataset.train, data.dataset.test
  embed = lambda examples: evaluate_lib.embed(setup.model, state.params, state.model_state,
                                              examples, config.eval_batch_size, mesh)
  train_embedding, test_embedding = embed(train), embed(test)
  knn = probes.knn_predict(train_embedding, train.labels, test_embedding, info.num_classes)
  linear = probes.linear_probe(train_embedding, train.labels, test_embedding,
                               info.num_classes).argmax(1)
  results = {"step": int(state.step),
             # The monitor's last value: what a user would select settings on.
             "validation": setup.monitor(state),
             "test": {"knn_accuracy": float(np.mean(knn == test.labels)),
                      "linear_accuracy": float(np.mean(linear == test.labels))}}
  speed_keys = ("train_minutes", "steps_trained", "images_per_second")
  if trained_here:
    # This process's share (a resumed run counts from where it resumed): wall
    # time of the train loop, monitor evaluations included.
    results.update(train_minutes=minutes, steps_trained=trained_here,
                   images_per_second=2 * config.batch_size * trained_here / (60 * minutes))
  elif os.path.exists(os.path.join(workdir, "results.json")):
    with open(os.path.join(workdir, "results.json")) as f:  # a finished run, reopened
      previous = json.load(f)
    results.update({key: previous[key] for key in speed_keys if key in previous})
  MetricWriter(workdir).write(results["step"], "test", results["test"])
  trainer.write_results(workdir, results)
  parallel.barrier("simclr_pretrained")  # others may load the encoder next
  return results
