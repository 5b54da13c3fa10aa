"""Weighted distillation with unlabeled examples (Iliopoulos et al., NeurIPS 2022,
arXiv:2210.06711).

The teacher's labels are wrong on some unlabeled examples. Instead of fitting
them, the student's per-example loss is reweighted by the probability that the
teacher is right there, estimated on a small labeled validation set:

    L = (1/B) Σ_b w(x_b) · H(q_b, softmax(z^s_b / T)),
    w(x) = â(s(x)) ≈ P(argmax z^t(x) = y(x) | s(x)),

with q_b the teacher's soft (softmax(z^t/T)) or hard (one-hot) label.

Why this weight: for a teacher label ŷ, E_y[1[y = ŷ]·ℓ(f(x), ŷ) | x] =
P(y = ŷ | x)·ℓ(f(x), ŷ), so in expectation the weighted loss is the student's
loss on exactly those examples the teacher labels correctly: teacher mistakes
are removed on average ("debiasing" by importance reweighting) rather than
learned. Like the paper it adds no loss weight to tune (the number of bins
is a setting of the estimator).

How w is fitted (`fit_teacher_accuracy`): every validation example gets a trust
score s(x) and the indicator 1[teacher's top-1 = label]; the validation set is
sorted by s and cut into K equal-mass buckets, and â on a bucket is the
teacher's accuracy in it (optionally made non-decreasing in s by isotonic
regression). An unlabeled example gets the accuracy of its score's bucket.

The score. The paper's signal for teacher mistakes is the student: a student
distilled without weights tends not to reproduce the teacher's errors, so low
student–teacher agreement flags them. `score="agreement"` uses s(x) = 1 −
½‖p^t(x) − p^ref(x)‖₁ (one minus the total-variation distance; our choice of
dissimilarity) with p^ref a frozen first-round, unweighted student, whose
logits the caller passes to `fit` and `loss`. `score="confidence"` (default)
uses the teacher's confidence max_c p^t_c instead: one round and no reference
student. This is a proxy of ours, not the paper's signal. The distillation
pipeline (`labeljax/distill/training.py`) runs either; with "agreement" it
first trains the reference: this loss with every weight 1, on soft labels.
"""

import jax
import jax.numpy as jnp

from labeljax.distill import common

SCORES = ("confidence", "agreement")


def trust_scores(teacher_logits: jax.Array, reference_logits: jax.Array | None = None,
                 score: str = "confidence") -> jax.Array:
  """s(x): teacher confidence, or teacher–reference-student agreement, [N]."""
  common.check_choice("score", score, SCORES)
  teacher_probs = jax.nn.softmax(teacher_logits.astype(jnp.float32))
  if score == "confidence":
    return common.confidence(teacher_probs)
  if reference_logits is None:
    raise ValueError('score="agreement" needs the reference student\'s logits.')
  common.check_logit_pair(reference_logits, teacher_logits)
  reference_probs = jax.nn.softmax(reference_logits.astype(jnp.float32))
  return common.agreement(teacher_probs, reference_probs)


def fit_teacher_accuracy(teacher_val_logits: jax.Array, val_labels: jax.Array,
                         reference_val_logits: jax.Array | None = None,
                         score: str = "confidence", num_bins: int = 10,
                         isotonic: bool = False) -> common.Calibration:
  """â: the teacher's validation accuracy per equal-mass bucket of s(x)."""
  common.check_validation_set(teacher_val_logits, val_labels)
  scores = trust_scores(teacher_val_logits, reference_val_logits, score)
  correct = teacher_val_logits.argmax(-1) == val_labels
  return common.fit_calibration(scores, correct, num_bins, isotonic)


def example_weights(accuracy: common.Calibration, teacher_logits: jax.Array,
                    reference_logits: jax.Array | None = None,
                    score: str = "confidence") -> jax.Array:
  """w(x) = â(s(x)), [B]; a bin lookup, so no gradient flows through it."""
  scores = trust_scores(teacher_logits, reference_logits, score)
  return common.apply_calibration(accuracy, scores)


def weighted_loss(student_logits: jax.Array, teacher_logits: jax.Array,
                  weights: jax.Array, hard_label: bool = False,
                  temperature: float = 1.0) -> jax.Array:
  """(1/B) Σ_b w_b · H(q_b, softmax(z^s_b / T))."""
  common.check_logit_pair(student_logits, teacher_logits)
  common.check_positive("temperature", temperature)
  targets = common.teacher_targets(teacher_logits, hard_label, temperature)
  per_example = common.soft_cross_entropy(targets, student_logits, temperature)
  return common.weighted_mean(per_example, weights)


def weighted(score: str = "confidence", num_bins: int = 10, isotonic: bool = False,
             hard_label: bool = False, temperature: float = 1.0,
             labeled_weight: float = 0.0) -> common.Method:
  """Weighted distillation; `fit` returns â, `loss` weights each example by â(s(x))."""
  common.check_choice("score", score, SCORES)
  common.check_positive("num_bins", num_bins)
  common.check_positive("temperature", temperature)
  common.check_fraction("labeled_weight", labeled_weight)

  def fit(teacher_val_logits, val_labels, reference_val_logits):
    return fit_teacher_accuracy(teacher_val_logits, val_labels,
                                reference_val_logits, score, num_bins, isotonic)

  def loss(fitted, student_logits, teacher_logits, reference_logits):
    weights = example_weights(fitted, teacher_logits, reference_logits, score)
    value = weighted_loss(student_logits, teacher_logits, weights, hard_label,
                          temperature)
    metrics = common.teacher_agreement(student_logits, teacher_logits)
    return value, {**metrics, "mean_weight": weights.mean()}

  return common.Method(name="weighted", loss=loss, fit=fit,
                       labeled_weight=labeled_weight,
                       uses_reference=score == "agreement")
