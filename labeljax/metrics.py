"""Evaluation metrics on host arrays (computed once over the full test set)."""

import numpy as np


def log_softmax(logits: np.ndarray) -> np.ndarray:
  shifted = logits - logits.max(axis=-1, keepdims=True)
  return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
  return float(-np.take_along_axis(log_softmax(logits), labels[:, None], -1).mean())


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
  return float((logits.argmax(-1) == labels).mean())


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
  """Area under the ROC curve: P(score of a positive > score of a negative).

  Mann-Whitney U with tied scores counted as one half.
  """
  scores = np.asarray(scores)
  if not np.isfinite(scores).all():
    raise ValueError(f"roc_auc: {int((~np.isfinite(scores)).sum())} scores are NaN "
                     "or inf; the model's outputs are not finite.")
  if scores.shape != np.shape(labels):
    raise ValueError(f"roc_auc: scores {scores.shape} and labels {np.shape(labels)} "
                     "differ in shape.")
  labels = np.asarray(labels).astype(bool)
  num_pos, num_neg = labels.sum(), (~labels).sum()
  if num_pos == 0 or num_neg == 0:
    return float("nan")
  _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
  # Average rank (1-based) of each distinct score.
  mean_rank = np.cumsum(counts) - (counts - 1) / 2.0
  ranks = mean_rank[inverse.reshape(-1)]
  u = ranks[labels].sum() - num_pos * (num_pos + 1) / 2.0
  return float(u / (num_pos * num_neg))


def classification_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
  """Loss and accuracy; AUC of the positive class for binary tasks."""
  out = {"loss": cross_entropy(logits, labels), "accuracy": accuracy(logits, labels),
         "num_examples": int(len(labels))}
  if logits.shape[-1] == 2:
    out["auc"] = roc_auc(logits[:, 1] - logits[:, 0], labels)
  return out
