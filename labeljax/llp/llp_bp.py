"""LLP-BP: bootstrapping a supervised learner via belief propagation.

Havaldar, Sharma, Sareen, Shanmugam and Raghuveer, "Learning from Label
Proportions: Bootstrapping Supervised Learners via Belief Propagation", ICLR
2024. Labels y_i in {0, ..., C−1}, C >= 2; each bag b has known class counts
k_{b,c}. Each of R rounds:

1. build the kNN graph on the current representation: in round 0 the raw
   inputs, flattened (images in [0, 1], as the models see them), or with
   `graph_representation="pretrained"` the embedding h of the SimCLR encoder
   in `init_from`; after that the previous round's penultimate embeddings;
2. run BP on the Gibbs model of similarity and bag-count terms to get the
   instance marginals P(y_i = c), [N, C]: for C = 2 the binary model of `bp`
   on the positive counts k_{b,1}, for C > 2 the model of `multiclass_bp`
   with one count term λ_b (n_{b,c} − k_{b,c})² per (bag, class). (At C = 2
   the multi-class model would be the binary one with 2 λ_b, as both classes'
   terms are equal there);
3. turn them into pseudo-label distributions ỹ_i (soft, or hard at a
   threshold: `pseudo_label_targets`);
4. train a fresh network f = `config.model` (any `models` network: the MLP
   for tabular data, the small CNN for images; or the pretrained encoder,
   below) on bag batches with the aggregate-embedding loss

       L = mean_i H(ỹ_i, f(x_i)) + λ · mean_b H(α_b, g(mean_{i∈b} h(x_i))),

   h the network's penultimate embedding, α_b the bag's class proportions and
   g a small bag head (one hidden layer, `BagHeadModel`);
5. its embeddings h become the next round's representation.

Model selection uses only what an LLP user has: the DLLP loss of each round's
model on held-out *validation bags* (their label proportions). Instance-level
metrics (of the BP marginals and of the validation predictions) are logged as
`oracle_*` for analysis and never select.

`init_from`, a SimCLR pretraining workdir, can feed round 0's graph
(`graph_representation="pretrained"`) and every round's network
(`finetune_encoder`: f starts from the encoder and its first head layer, as
the LLP baselines' `init_from` fine-tuning, instead of from scratch); a
pretrained encoder that neither uses is an error, never silently ignored.

Warm start (`config.warm_start`). Before round 0 a network f⁰ = `config.model`
trains with DLLP on the same bag loader (`training.dllp`; with
`finetune_encoder`, the encoder fine-tuned), in the workdir's `dllp/` so it
checkpoints and resumes like the rounds. Its output bias starts at the log
label prior (`warm_start_prior_bias`, default), or with
`warm_start_prior_bias=False` as `prior_output_bias` says: then f⁰ is the
network `method=dllp` trains with the same settings, and the fallback below
means LLP-BP ends no worse than that DLLP run on its validation bags. (Adult,
bags of 512, seed 2, MLP (100), L-BFGS: the prior bias moved the start's
test AUC from the DLLP run's 0.821 to 0.661.) Round 0
then builds its kNN graph on f⁰'s penultimate embedding instead of the
inputs, and BP gets f⁰'s logits as the prior field of
the Gibbs model: for C = 2 the unary term Σ_i f_i y_i with f_i = f⁰(x_i)_1 −
f⁰(x_i)_0 (its log-odds; `bp.build_llp_graph`'s `prior_log_odds`), for C > 2
Σ_i f⁰(x_i)_{y_i} (`multiclass_bp`'s `prior_logits`). The bag-count factors
then refine beliefs that start where DLLP ends; round 0's similarity term
has its own strength `warm_start_lambda_sim` (λ_s = 1 on the DLLP embedding
over-smooths: on Adult, bags of 128, BP lowered the pool AUC of the prior
from 0.870 to 0.831 and did not converge in 100 sweeps; at λ_s = 0.1 it
converged, message change 2e-7, and reached 0.871). Every later round does
the same with the previous round's network: kNN on its embedding, its logits as
the prior field, at `warm_start_lambda_sim`. Without that prior field a later
round forgets what the start knew: for a linear network the embedding is the
input, so round 1 was the paper-faithful round on the inputs' graph at λ_s = 1
(llp_bp_bank, bags of 512, seed 0: it replaced its start at test AUC 0.353
against the start's 0.706, p = 0.003 on 18 validation bags). With
`warm_start_candidate` the DLLP network is also a candidate of the
validation-bag selection (round −1 in the "round" rows and in
`selected_round`), and the pipeline falls back to it unless BP clearly helps:
the round with the lowest validation-bag loss replaces it only if a paired
one-sided t-test over the validation bags finds that round's per-bag losses
lower at level `warm_start_test_level` (`training.paired_improvement_p_value`;
results.json `round_vs_start_p_value`). A lower mean alone is not enough:
with bags of 2048 an LLP user holds out one or two validation bags, and a
round whose loss on them was 9e-5 below the start's had test AUC 0.43
against the start's 0.75 (Adult, seed 0, linear model; p = 0.23). Nor is a
test on two bags: with d_1, d_2 the two bags' loss differences,
t = (d_1 + d_2) / |d_1 − d_2| only asks whether both moved alike, which any
shift of the output bias does. A round that passed it (p = 0.021) was then
picked among 5 settings for its lower loss, at test AUC 0.721 against the
start's 0.739 (Adult, bags of 2048, seed 1). So with fewer than
`training.MIN_TEST_BAGS` validation bags the start is kept
(`training.clearly_lower`, which experiments/sweep.py's `--select_paired`
also uses to choose among settings).
"""

import os
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

from labeljax import parallel
from labeljax.data import bags as bags_lib
from labeljax.data.datasets import Examples
from labeljax.llp import bp as bp_lib
from labeljax.llp import losses
from labeljax.llp import multiclass_bp
from labeljax.llp import training as llp_training
from labeljax.models import ModelOutput
from labeljax.train import evaluate as evaluate_lib
from labeljax.train import pretrained as pretrained_lib
from labeljax.train import trainer
from labeljax.train.metric_writer import MetricWriter
from labeljax.train.step import LossAux, apply_model, model_inputs

# What round 0's kNN graph is built on (config.graph_representation).
GRAPH_REPRESENTATIONS = ("inputs", "pretrained")


class BagHeadModel(nn.Module):
  """`instance_model` plus a bag head on its mean-pooled penultimate embeddings.

  `instance_model` is any `models` network (its `ModelOutput` gives the
  instance logits and the embedding h); the head maps a bag's mean embedding
  to bag logits g(h̄_b) = W₂ relu(W₁ h̄_b + c₁) + c₂. Variables: the
  network's under `instance_model`, the head's under `bag_hidden_layer` and
  `bag_output`, whatever the network.
  """
  instance_model: nn.Module
  bag_hidden: int = 64

  def setup(self):
    self.bag_hidden_layer = nn.Dense(self.bag_hidden)
    self.bag_output = nn.Dense(self.instance_model.num_classes)

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


def aggregate_embedding_loss(model: BagHeadModel, pseudo_targets: jax.Array,
                             bag_weight: float):
  """The round's `LossFn`: pseudo-label cross-entropy + λ · bag-head loss."""

  def loss_fn(params, state, batch, rng):
    num_bags = batch["bag_counts"].shape[0]
    (out, bag_logits), model_state = apply_model(
        model, params, state.model_state, model_inputs(batch["inputs"]), train=True,
        rng=rng, method=BagHeadModel.with_bags, bag=batch["bag"], mask=batch["mask"],
        num_bags=num_bags)
    instance = losses.instance_cross_entropy(out.logits, pseudo_targets[batch["index"]],
                                             batch["mask"])
    per_bag = optax.softmax_cross_entropy(bag_logits, losses.bag_proportions(batch))
    bag = jnp.sum(per_bag * batch["bag_mask"]) / jnp.maximum(batch["bag_mask"].sum(), 1.0)
    return instance + bag_weight * bag, LossAux(
        model_state, state.algo_state, {"instance_loss": instance, "bag_loss": bag})

  return loss_fn


# ------------------------------------------------------------ graph inference


def check_graph_options(config: ml_collections.ConfigDict) -> str:
  """Checks `graph_representation` and `finetune_encoder` against `init_from`
  and `warm_start` (before data loads); returns the representation."""
  representation = config.get("graph_representation", "inputs")
  init_from = config.get("init_from")
  finetune = config.get("finetune_encoder", False)
  if representation not in GRAPH_REPRESENTATIONS:
    raise ValueError(f"Unknown graph_representation {representation!r}; choose one of "
                     f"{GRAPH_REPRESENTATIONS}.")
  if config.get("warm_start") and representation != "inputs":
    raise ValueError(f"warm_start builds round 0's kNN graph on the DLLP network's "
                     f"embedding; graph_representation={representation!r} names another "
                     "one: drop one of them.")
  level = config.get("warm_start_test_level", 0.05)
  if not 0 < level <= 1:
    raise ValueError(f"warm_start_test_level={level!r} is the level of the test a round "
                     "must pass to replace the DLLP start: it must be in (0, 1].")
  if representation == "pretrained" and not init_from:
    raise ValueError("graph_representation='pretrained' builds round 0's kNN graph on a "
                     "pretrained encoder's embedding: set init_from to the workdir of a "
                     "SimCLR pretraining run (experiments/configs/simclr.py).")
  if finetune and not init_from:
    raise ValueError("finetune_encoder starts every round's network from a pretrained "
                     "encoder: set init_from to the workdir of a SimCLR pretraining run.")
  if finetune and config.get("prior_output_bias"):
    raise ValueError("prior_output_bias sets the output bias of a network built from "
                     "scratch; with finetune_encoder the networks are the pretrained "
                     "encoder and a new classifier: drop one of them.")
  if config.get("freeze_encoder"):
    raise ValueError("freeze_encoder is an option of the LLP baselines; LLP-BP fine-tunes "
                     "the encoder (finetune_encoder) or trains from scratch.")
  if representation == "inputs" and init_from and not finetune:
    raise ValueError(f"init_from={init_from!r} is unused: LLP-BP uses a pretrained encoder "
                     "for round 0's kNN graph (graph_representation='pretrained') or for "
                     "its networks (finetune_encoder=True); set one or drop init_from.")
  return representation


def flat_inputs(examples: Examples) -> np.ndarray:
  """[N, d] inputs as the models see them (images scaled to [0, 1]), flattened."""
  return np.asarray(model_inputs(jnp.asarray(examples.inputs))).reshape(len(examples), -1)


def bag_factors(num_classes: int) -> tuple[str, ...]:
  """The `bag_factor` forms of the BP that `graph_marginals` runs for C classes."""
  return bp_lib.BAG_FACTORS if num_classes == 2 else multiclass_bp.BAG_FACTORS


class GraphMarginals(NamedTuple):
  marginals: np.ndarray  # [N, C] P(y_i = c)
  num_sweeps: int
  delta: float           # largest message change in the last sweep


def graph_marginals(representation: np.ndarray, bags: bags_lib.Bags,
                    config: ml_collections.ConfigDict,
                    prior_logits: np.ndarray | None = None) -> GraphMarginals:
  """Step 1-2 of a round: the kNN graph on `representation` [N, d], then BP.

  C = 2 runs `bp` on the positive counts and returns [1 − P(y=1), P(y=1)];
  C > 2 runs `multiclass_bp` on the class counts [num_bags, C].
  `prior_logits` [N, C] (a network's logits; None: no evidence) is the prior
  field: its log-odds f_i = ℓ_i1 − ℓ_i0 for C = 2, the logits as given for C > 2.
  """
  graph_options = dict(
      lambda_bag=config.lambda_bag, lambda_sim=config.lambda_sim,
      num_neighbors=config.num_neighbors, metric=config.knn_metric, kernel=config.kernel,
      knn_method=config.knn_method, knn_cells=config.knn_cells or None,
      knn_probes=config.knn_probes or None,
      allow_unbagged=bool((bags.bag_ids < 0).any()))  # feature bags drop groups
  if bags.label_counts.shape[1] == 2:
    graph = bp_lib.build_llp_graph(
        representation, bags.bag_ids, bags.positive_counts, **graph_options,
        prior_log_odds=None if prior_logits is None else prior_logits[:, 1] - prior_logits[:, 0])
    result = bp_lib.run_bp(graph, config.bp_sweeps, config.bp_damping,
                           bag_factor=config.bag_factor)
    positive = np.asarray(result.marginals)
    marginals = np.stack([1.0 - positive, positive], axis=1)
  else:
    graph = multiclass_bp.build_multiclass_graph(representation, bags.bag_ids,
                                                 bags.label_counts, **graph_options,
                                                 prior_logits=prior_logits)
    result = multiclass_bp.run_multiclass_bp(graph, config.bp_sweeps, config.bp_damping,
                                             bag_factor=config.bag_factor)
    marginals = np.asarray(result.marginals)
  return GraphMarginals(marginals, int(result.num_sweeps), float(result.delta))


def pseudo_label_targets(marginals: np.ndarray, config) -> np.ndarray:
  """[N, C] target distributions ỹ_i from BP marginals P(y_i = c) [N, C].

  "soft": ỹ_i = the marginals. "hard", with t = `config.pseudo_threshold`:
  * C = 2: one-hot of [P(y_i = 1) >= t], t the decision threshold on the
    positive class;
  * C > 2: one-hot of argmax_c P(y_i = c) where max_c P(y_i = c) >= t, t a
    confidence threshold; below it the instance keeps its soft marginals, so
    BP's doubt between a few classes stays in the target.
  Either way every instance keeps a target (none is dropped), and at t = 1/2
  the two rules agree for C = 2 up to ties at exactly 1/2 (max_c P >= 1/2
  always holds there).
  """
  marginals = np.asarray(marginals, np.float32)
  if marginals.ndim != 2 or marginals.shape[1] < 2:
    raise ValueError(f"marginals must be [N, C] with C >= 2, got shape {marginals.shape}.")
  num_classes = marginals.shape[1]
  if config.pseudo_labels == "soft":
    return marginals
  if config.pseudo_labels != "hard":
    raise ValueError(f"Unknown pseudo_labels {config.pseudo_labels!r}; "
                     "choose 'soft' or 'hard'.")
  one_hot = np.eye(num_classes, dtype=np.float32)
  if num_classes == 2:
    return one_hot[(marginals[:, 1] >= config.pseudo_threshold).astype(int)]
  confident = marginals.max(1, keepdims=True) >= config.pseudo_threshold
  return np.where(confident, one_hot[marginals.argmax(1)], marginals)


# ------------------------------------------------------------------- pipeline


class WarmStart(NamedTuple):
  state: trainer.TrainState
  predict: object  # `evaluate.make_predict_fn` of the DLLP network


def warm_start_network(config: ml_collections.ConfigDict, data: trainer.Data, mesh,
                       workdir: str,
                       pretrained: pretrained_lib.Pretrained | None) -> WarmStart | None:
  """The warm start's DLLP network: `training.dllp` on the same bags, trained
  (or resumed) in `workdir`/dllp, from scratch (its output bias at the log
  label prior unless `warm_start_prior_bias` is False), or fine-tuning
  `pretrained`'s encoder when given.

  Returns None when a preemption stopped the training after saving.
  """
  stage_config = config.copy_and_resolve_references()
  if config.get("warm_start_prior_bias", True):
    stage_config.prior_output_bias = pretrained is None
  setup = llp_training.dllp(stage_config, data, mesh)
  model = setup.model or pretrained.finetune_model(data.dataset.info.num_classes)
  state = trainer.fit(stage_config, os.path.join(workdir, "dllp"), setup, model,
                      data.dataset.info, mesh, pretrained=pretrained)
  if state is None:
    return None
  return WarmStart(state, evaluate_lib.make_predict_fn(model))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs the R rounds; returns test metrics of the round chosen on validation bags."""
  # Checked before the data loads: a wrong option or path fails at once.
  representation_name = check_graph_options(config)
  pretrained = (pretrained_lib.load(config.init_from, dataset=config.dataset)
                if config.get("init_from") else None)
  finetune = bool(config.get("finetune_encoder", False))
  warm_start = bool(config.get("warm_start", False))
  data = trainer.load_data(config)
  info = data.dataset.info
  if config.bag_factor not in bag_factors(info.num_classes):
    raise ValueError(f"bag_factor {config.bag_factor!r} is not a form of the "
                     f"{'binary' if info.num_classes == 2 else 'multi-class'} BP that "
                     f"{info.name} ({info.num_classes} classes) uses; choose one of "
                     f"{bag_factors(info.num_classes)}.")
  if not len(data.validation):
    raise ValueError("LLP-BP selects rounds on validation bags: set num_validation > 0.")
  mesh = parallel.make_mesh()
  loader, bags = llp_training.bag_loader(config, data, mesh)
  pool_examples = loader.examples
  # The loss on validation bags (what selects), as for every LLP method.
  validation_bags = llp_training.validation_bags(config, data, len(pool_examples))
  validation_monitor = llp_training.validation_bag_monitor(config, data, validation_bags, mesh)
  writer = MetricWriter(workdir)
  if finetune:  # The pretrained encoder with its first head layer, a new classifier.
    pretrained_lib.warn_if_model_differs(pretrained, config.model,
                                         config.get("model_kwargs", {}))
    instance_model = pretrained.finetune_model(info.num_classes)
  else:
    instance_model = llp_training.build_model(config, info, llp_training.label_prior(bags))
  model = BagHeadModel(instance_model, config.bag_hidden)
  network_init = pretrained.nested("instance_model") if finetune else None
  predict = evaluate_lib.make_predict_fn(model)

  def predictions(state, examples, predict=predict):
    return evaluate_lib.predict_split(predict, state.params, state.model_state,
                                      examples, config.eval_batch_size, mesh)

  def score(state, predict):
    """Selection on validation bags (instance metrics as oracle_*) and test metrics."""
    return (validation_monitor(state, predict),
            trainer.evaluate(config, predict, state, data.dataset.test, mesh))

  def candidate(round_index, selection, test):
    return {"round": round_index, "monitor": selection, "test": test,
            "bag_losses": np.asarray(selection["validation_bag_losses"])}

  best, start, prior_logits, steps_offset = None, None, None, 0
  if warm_start:
    # ---- Round 0 starts where DLLP ends: its embedding and its logits.
    warm = warm_start_network(config, data, mesh, workdir, pretrained if finetune else None)
    if warm is None:
      return {"preempted": True}
    prior_logits, representation, _ = predictions(warm.state, pool_examples, warm.predict)
    selection, test = score(warm.state, warm.predict)
    steps_offset = config.num_steps
    writer.write(steps_offset, "round", {"round": -1, **selection,
                                         **{f"test_{k}": v for k, v in test.items()}},
                 stage="dllp")
    if config.get("warm_start_candidate", True):
      start = candidate(-1, selection, test)
  elif representation_name == "inputs":
    representation = flat_inputs(pool_examples)
  else:
    representation = pretrained.embed(pool_examples, config.eval_batch_size, mesh)
  for round_index in range(config.num_rounds):
    # ---- Graph inference: kNN on the current representation, then BP.
    graph_config = config
    if warm_start:
      graph_config = config.copy_and_resolve_references()
      graph_config.lambda_sim = config.get("warm_start_lambda_sim", config.lambda_sim)
    inferred = graph_marginals(representation, bags, graph_config, prior_logits)
    # Rows count the pipeline's training steps; each stage trains num_steps.
    stage = f"round_{round_index}"
    steps_before = steps_offset + round_index * config.num_steps
    writer.write(steps_before, "bp", {
        "round": round_index,
        **llp_training.oracle_metrics("marginal", inferred.marginals, pool_examples.labels,
                         inferred.marginals[:, 1]),
        "sweeps": inferred.num_sweeps, "delta": inferred.delta}, stage=stage)
    logging.info("LLP-BP round %d: BP ran %d sweeps, last message change %.3g.",
                 round_index, inferred.num_sweeps, inferred.delta)

    # ---- Train a fresh network on the pseudo-labels and bag proportions.
    targets = jnp.asarray(pseudo_label_targets(inferred.marginals, config))
    setup = trainer.Setup(loader, lambda m, t=targets: aggregate_embedding_loss(
        m, t, config.bag_loss_weight))
    round_dir = os.path.join(workdir, f"round_{round_index}")
    state = trainer.fit(config, round_dir, setup, model, info, mesh, pretrained=network_init)
    if state is None:
      return {"preempted": True}

    # ---- Select on validation bags; the embeddings feed the next round.
    selection, test = score(state, predict)
    writer.write(steps_before + config.num_steps, "round",
                 {"round": round_index, **selection,
                  **{f"test_{k}": v for k, v in test.items()}}, stage=stage)
    if (best is None or selection["validation_bag_loss"]
        < best["monitor"]["validation_bag_loss"]):
      best = candidate(round_index, selection, test)
    logits, representation, _ = predictions(state, pool_examples)
    if warm_start:  # The next round refines this network's beliefs.
      prior_logits = logits

  extra = {}
  if start is not None:  # The best round must clearly beat its DLLP start.
    better, p_value = llp_training.clearly_lower(
        start["bag_losses"], best["bag_losses"], config.get("warm_start_test_level", 0.05))
    num_bags = len(start["bag_losses"])
    logging.info("LLP-BP round %d against its DLLP start on %d validation bags: p = %.3g.",
                 best["round"], num_bags, p_value)
    if num_bags < llp_training.MIN_TEST_BAGS:
      logging.warning("%d validation bags cannot show a round better than the DLLP "
                      "start (at least %d are needed): the start is kept. More "
                      "validation_fraction gives more bags.", num_bags,
                      llp_training.MIN_TEST_BAGS)
    if not better:
      best = start
    extra = {"round_vs_start_p_value": p_value}
  # As a single-stage LLP method's: the selected model's "monitor" and "test".
  results = {"step": config.num_steps, "selected_round": best["round"], **extra,
             "monitor": best["monitor"], "test": best["test"]}
  writer.write(steps_offset + config.num_rounds * config.num_steps, "test", best["test"],
               stage="dllp" if best["round"] == -1 else f"round_{best['round']}")
  trainer.write_results(workdir, results)
  logging.info("LLP-BP selected round %d: %s", best["round"], best["test"])
  return results
