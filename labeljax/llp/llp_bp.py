"""LLP-BP: bootstrapping a supervised learner via belief propagation.

Havaldar, Sharma, Sareen, Shanmugam and Raghuveer, "Learning from Label
Proportions: Bootstrapping Supervised Learners via Belief Propagation", ICLR
2024. Each of R rounds:

1. build the kNN graph on the current representation (the raw features in
   round 0, the previous round's penultimate embeddings after);
2. run BP on the Gibbs model of `bp` (similarity + bag-count terms) to get
   instance marginals P(y_i = 1);
3. turn them into pseudo-labels (soft, or hard at a threshold);
4. train a fresh MLP on bag batches with the aggregate-embedding loss

       L = mean_i H(ỹ_i, f(x_i)) + λ · mean_b H(α_b, g(mean_{i∈b} h(x_i))),

   h the penultimate embedding and g a small bag head (one hidden layer);
5. its embeddings become the next round's representation.

Model selection uses only what an LLP user has: the DLLP loss of each round's
model on held-out *validation bags* (their label proportions). Instance-level
validation metrics are logged as `oracle_*` for analysis and never select.
"""

import os
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

from labeljax import metrics as metrics_lib
from labeljax import parallel
from labeljax.data import bags as bags_lib
from labeljax.llp import bp as bp_lib
from labeljax.llp import losses
from labeljax.llp import training as llp_training
from labeljax.models import MLP, ModelOutput
from labeljax.train import evaluate as evaluate_lib
from labeljax.train import trainer
from labeljax.train.metric_writer import MetricWriter
from labeljax.train.step import LossAux, apply_model, model_inputs


class BagHeadMLP(nn.Module):
  """An MLP classifier plus a bag head on mean-pooled penultimate embeddings."""
  num_classes: int
  hidden_sizes: Sequence[int] = (256, 128)
  bag_hidden: int = 64
  output_bias: tuple[float, ...] | None = None

  def setup(self):
    self.instance_model = MLP(self.num_classes, tuple(self.hidden_sizes),
                              output_bias=self.output_bias)
    self.bag_hidden_layer = nn.Dense(self.bag_hidden)
    self.bag_output = nn.Dense(self.num_classes)

  def __call__(self, x, train: bool = False) -> ModelOutput:
    out = self.instance_model(x, train)
    if self.is_initializing():  # Create the bag head's parameters too.
      self.bag_logits(out.embedding[:1])
    return out

  def bag_logits(self, pooled: jax.Array) -> jax.Array:
    return self.bag_output(nn.relu(self.bag_hidden_layer(pooled)))

  def with_bags(self, x, train: bool, bag: jax.Array, mask: jax.Array,
                num_bags: int) -> tuple[ModelOutput, jax.Array]:
    out = self(x, train)
    pooled = losses.bag_means(out.embedding, bag, mask, num_bags)
    return out, self.bag_logits(pooled)


def aggregate_embedding_loss(model: BagHeadMLP, pseudo_targets: jax.Array,
                             bag_weight: float):
  """The round's `LossFn`: pseudo-label cross-entropy + λ · bag-head loss."""

  def loss_fn(params, state, batch, rng):
    num_bags = batch["bag_counts"].shape[0]
    (out, bag_logits), model_state = apply_model(
        model, params, state.model_state, model_inputs(batch["inputs"]), train=True,
        rng=rng, method=BagHeadMLP.with_bags, bag=batch["bag"], mask=batch["mask"],
        num_bags=num_bags)
    instance = losses.instance_cross_entropy(out.logits, pseudo_targets[batch["index"]],
                                             batch["mask"])
    per_bag = optax.softmax_cross_entropy(bag_logits, losses.bag_proportions(batch))
    bag = jnp.sum(per_bag * batch["bag_mask"]) / jnp.maximum(batch["bag_mask"].sum(), 1.0)
    return instance + bag_weight * bag, LossAux(
        model_state, state.algo_state, {"instance_loss": instance, "bag_loss": bag})

  return loss_fn


def pseudo_label_targets(marginals: np.ndarray, config) -> np.ndarray:
  """[N, 2] targets from BP marginals: soft, or hard at `config.pseudo_threshold`."""
  if config.pseudo_labels == "soft":
    positive = marginals
  elif config.pseudo_labels == "hard":
    positive = (marginals >= config.pseudo_threshold).astype(np.float32)
  else:
    raise ValueError(f"Unknown pseudo_labels {config.pseudo_labels!r}; "
                     "choose 'soft' or 'hard'.")
  return np.stack([1.0 - positive, positive], axis=1).astype(np.float32)


def validation_bag_loss(logits: np.ndarray, bags: bags_lib.Bags) -> float:
  """DLLP loss on validation bags: what an LLP user can select models with."""
  probs = np.exp(metrics_lib.log_softmax(logits))
  sums = np.zeros((bags.num_bags, probs.shape[1]))
  bagged = bags.bag_ids >= 0
  np.add.at(sums, bags.bag_ids[bagged], probs[bagged])
  mean = np.clip(sums / bags.sizes[:, None], 1e-7, 1.0)
  return float(-(bags.proportions * np.log(mean)).sum(1).mean())


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs the R rounds; returns test metrics of the round chosen on validation bags."""
  data = trainer.load_data(config)
  info = data.dataset.info
  if info.num_classes != 2:
    raise ValueError(f"LLP-BP models binary labels; {info.name} has "
                     f"{info.num_classes} classes.")
  mesh = parallel.make_mesh()
  loader, bags = llp_training.bag_loader(config, data, mesh)
  pool_examples = loader.examples
  if not len(data.validation):
    raise ValueError("LLP-BP selects rounds on validation bags: set num_validation > 0.")
  val_bags = bags_lib.random_bags(data.validation.labels, 2,
                                  min(config.bag_size, len(data.validation)),
                                  seed=config.seed + 1)
  writer = MetricWriter(workdir)
  output_bias = llp_training.prior_output_bias(config, llp_training.label_prior(bags))
  model = BagHeadMLP(2, tuple(config.hidden_sizes), config.bag_hidden, output_bias)
  predict = evaluate_lib.make_predict_fn(model)

  def predictions(state, examples):
    return evaluate_lib.predict_split(predict, state.params, state.model_state,
                                      examples, config.eval_batch_size, mesh)

  representation = pool_examples.inputs
  best = None
  for round_index in range(config.num_rounds):
    # ---- Graph inference: kNN on the current representation, then BP.
    graph = bp_lib.build_llp_graph(
        representation, bags.bag_ids, bags.positive_counts,
        lambda_bag=config.lambda_bag, lambda_sim=config.lambda_sim,
        num_neighbors=config.num_neighbors, metric=config.knn_metric,
        kernel=config.kernel,
        allow_unbagged=bool((bags.bag_ids < 0).any()))  # feature bags drop groups
    result = bp_lib.run_bp(graph, config.bp_sweeps, config.bp_damping,
                           bag_factor=config.bag_factor)
    marginals = np.asarray(result.marginals)
    # Rows count the pipeline's training steps; each round trains num_steps.
    stage, steps_before = f"round_{round_index}", round_index * config.num_steps
    writer.write(steps_before, "bp", {
        "round": round_index,
        "oracle_marginal_auc": metrics_lib.roc_auc(marginals, pool_examples.labels),
        "sweeps": int(result.num_sweeps), "delta": float(result.delta)}, stage=stage)

    # ---- Train a fresh network on the pseudo-labels and bag proportions.
    targets = jnp.asarray(pseudo_label_targets(marginals, config))
    setup = trainer.Setup(loader, lambda m, t=targets: aggregate_embedding_loss(
        m, t, config.bag_loss_weight))
    round_dir = os.path.join(workdir, f"round_{round_index}")
    state = trainer.fit(config, round_dir, setup, model, info, mesh)
    if state is None:
      return {"preempted": True}

    # ---- Select on validation bags; the embeddings feed the next round.
    val_logits, _, val_labels = predictions(state, data.validation)
    selection = {"validation_bag_loss": validation_bag_loss(val_logits, val_bags),
                 "oracle_validation_auc": metrics_lib.roc_auc(
                     val_logits[:, 1] - val_logits[:, 0], val_labels)}
    test = trainer.evaluate(config, predict, state, data.dataset.test, mesh)
    writer.write(steps_before + config.num_steps, "round",
                 {"round": round_index, **selection,
                  **{f"test_{k}": v for k, v in test.items()}}, stage=stage)
    if best is None or selection["validation_bag_loss"] < best["validation_bag_loss"]:
      best = {"round": round_index, **selection, "test": test}
    _, representation, _ = predictions(state, pool_examples)

  results = {"step": config.num_steps, "selected_round": best["round"],
             "validation_bag_loss": best["validation_bag_loss"], "test": best["test"]}
  writer.write(config.num_rounds * config.num_steps, "test", best["test"],
               stage=f"round_{best['round']}")
  trainer.write_results(workdir, results)
  logging.info("LLP-BP selected round %d: %s", best["round"], best["test"])
  return results
