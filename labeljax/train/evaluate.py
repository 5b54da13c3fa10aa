"""Evaluation over a full split: padded batches, every example counted once."""

import functools
from typing import Any

import flax.linen as nn
import jax
import numpy as np

from labeljax import metrics as metrics_lib
from labeljax import parallel
from labeljax.data.datasets import Examples
from labeljax.data.pipeline import eval_batches
from labeljax.train.step import apply_model, model_inputs


@functools.lru_cache(maxsize=8)  # One compiled function per model.
def make_predict_fn(model: nn.Module):
  """Jitted `(params, model_state, inputs) -> ModelOutput` in inference mode."""

  @jax.jit
  def predict(params, model_state, inputs):
    return apply_model(model, params, model_state, model_inputs(inputs), train=False)[0]

  return predict


def predict_split(predict_fn, params, model_state: Any, examples: Examples,
                  batch_size: int, mesh) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Logits, embeddings and labels of every example of `examples`, in order."""
  if not len(examples):
    raise ValueError("Cannot predict on an empty split.")
  logits, embeddings, labels = [], [], []
  for batch in eval_batches(examples, batch_size, mesh):
    out = predict_fn(params, model_state, batch["inputs"])
    host = parallel.global_to_host(
        {"logits": out.logits, "embedding": out.embedding,
         "labels": batch["labels"], "mask": batch["mask"]})
    keep = host["mask"] > 0
    logits.append(host["logits"][keep])
    embeddings.append(host["embedding"][keep])
    labels.append(host["labels"][keep])
  # Each process holds a contiguous part of every batch; gathering restores order.
  return np.concatenate(logits), np.concatenate(embeddings), np.concatenate(labels)


def embed(model: nn.Module, params, model_state: Any, examples: Examples,
          batch_size: int, mesh) -> np.ndarray:
  """`model`'s embedding of every example of `examples`, in order."""
  return predict_split(make_predict_fn(model), params, model_state, examples,
                       batch_size, mesh)[1]


def evaluate(predict_fn, params, model_state, examples: Examples, batch_size: int,
             mesh) -> dict[str, float]:
  logits, _, labels = predict_split(predict_fn, params, model_state, examples,
                                    batch_size, mesh)
  return metrics_lib.classification_metrics(logits, labels)
