"""LLP methods end to end through the trainer: DLLP, EasyLLP, OT, LLP-BP rounds."""

import json
import pathlib

import jax
import ml_collections
import numpy as np
import pytest
from scipy import stats

from conftest import requires_raw_data
from experiments.configs import llp
from labeljax import data as data_lib
from labeljax import metrics, models, parallel
from labeljax.data import random_bags
from labeljax.llp import llp_bp
from labeljax.llp import training as llp_training
from labeljax.train import checkpoint
from labeljax.train import evaluate as evaluate_lib
from labeljax.train import trainer
from labeljax.methods import train_and_evaluate


def _config(method, **overrides):
  config = llp.get_config(f"dataset=adult,method={method},bag_size=16,num_steps=60")
  config.log_every = config.eval_every = config.checkpoint_every = 30
  for key, value in overrides.items():
    config[key] = value
  return config


@pytest.mark.parametrize("method, prior_output_bias",
                         [("dllp", False), ("easyllp", False), ("ot", False), ("dllp", True)])
def test_bag_loss_baselines_learn_from_proportions(method, prior_output_bias, tmp_path):
  config = _config(method, prior_output_bias=prior_output_bias)
  results = train_and_evaluate(config, str(tmp_path))
  assert results["step"] == 60 and results["test"]["auc"] > 0.75


def test_bag_proportion_floor_scores_test_rows_by_their_training_bag(tmp_path):
  config = _config("bag_proportion")
  assert train_and_evaluate(config, str(tmp_path / "random"))["test"]["auc"] == 0.5
  config.bagging = "feature"  # education x marital-status, groups of 50..2500
  floor = train_and_evaluate(config, str(tmp_path / "feature"))["test"]["auc"]
  # By hand: the positive share of the pool rows sharing a test row's values.
  data = trainer.load_data(config)
  pool = np.sort(np.concatenate([data.split.labeled, data.split.unlabeled]))
  names = list(data.dataset.info.schema.categorical)
  columns = [names.index("education"), names.index("marital-status")]
  train_keys = data.dataset.train.categorical[pool][:, columns]
  train_labels = data.dataset.train.labels[pool]
  _, group, sizes = np.unique(train_keys, axis=0, return_inverse=True, return_counts=True)
  prior = train_labels[(50 <= sizes[group.ravel()]) & (sizes[group.ravel()] <= 2500)].mean()
  scores = []  # a row whose group made no bag: the positive share of all bags
  for key in data.dataset.test.categorical[:, columns]:
    members = (train_keys == key).all(1)
    scores.append(train_labels[members].mean() if 50 <= members.sum() <= 2500 else prior)
  assert floor == pytest.approx(metrics.roc_auc(np.array(scores), data.dataset.test.labels))
  assert 0.7 < floor < 0.85  # measured 0.779


def test_ot_rejects_bad_sinkhorn_settings(tmp_path):
  with pytest.raises(ValueError, match="ot_epsilon must be > 0, got 0.0"):
    train_and_evaluate(_config("ot", ot_epsilon=0.0), str(tmp_path))
  with pytest.raises(ValueError, match=r"ot_iters must be >= 1 \(an integer\), got 0"):
    train_and_evaluate(_config("ot", ot_iters=0), str(tmp_path))


def test_prior_output_bias_starts_predictions_at_the_bag_prior():
  config = _config("dllp", prior_output_bias=True)
  data = trainer.load_data(config)
  mesh = parallel.make_mesh()
  setup = llp_training.dllp(config, data, mesh)
  bags = setup.loader.bags
  prior = bags.label_counts.sum(0) / bags.sizes.sum()  # Adult: 24% positives
  params = setup.model.init(jax.random.key(0), data.dataset.train.inputs[:1])
  output_layer = max((k for k in params["params"] if k.startswith("Dense_")),
                     key=lambda k: int(k.split("_")[1]))
  np.testing.assert_allclose(params["params"][output_layer]["bias"], np.log(prior), rtol=1e-6)
  probs = jax.nn.softmax(setup.model.apply(params, data.dataset.train.inputs[:2000]).logits)
  assert abs(float(probs[:, 1].mean()) - prior[1]) < 0.05
  with pytest.raises(ValueError, match=r"output_bias needs 2 values, got shape \(3,\)"):
    models.MLP(2, output_bias=(0.1, 0.2, 0.3)).init(jax.random.key(0), np.zeros((1, 4)))


def _permuted_within_bags(labels, bag_ids, seed=0):
  """`labels` shuffled inside each bag: the same bag counts, other instance labels."""
  labels = np.array(labels)
  rng = np.random.default_rng(seed)
  for bag in np.unique(bag_ids[bag_ids >= 0]):
    members = np.flatnonzero(bag_ids == bag)
    labels[members] = labels[rng.permutation(members)]
  return labels


def test_tuning_on_validation_bags_never_reads_instance_labels(tmp_path, monkeypatch):
  """Two learning rates, tuned on the loss on validation bags (as
  experiments/sweep.py --select does, by the lowest): with the instance labels of the
  training pool and of the validation examples shuffled inside their bags,
  the oracle metrics change and the losses and the selection do not."""
  def tune(name):
    runs = []
    for tune_setting, learning_rate in (("slow", 1e-3), ("fast", 3e-2)):
      config = _config("dllp", bag_size=64, validation_fraction=0.2)
      config.optimizer.learning_rate = learning_rate
      results = train_and_evaluate(config, str(tmp_path / f"{name}_{tune_setting}"))
      runs.append({**results, "tune": tune_setting})
    return [r["monitor"] for r in runs], min(
        runs, key=lambda r: r["monitor"]["validation_bag_loss"])

  monitors, selected = tune("true")
  load_data = trainer.load_data

  def shuffled_within_bags(config):
    data = load_data(config)
    pool = np.sort(np.concatenate([data.split.labeled, data.split.unlabeled]))
    train = data.dataset.train
    pool_bags = llp_training.make_bags(config, data)[1]
    validation_bags = llp_training.validation_bags(config, data, len(pool))
    labels = np.array(train.labels)
    labels[pool] = _permuted_within_bags(labels[pool], pool_bags.bag_ids)
    # (Examples' __len__ counts rows, which NamedTuple._replace trips over.)
    validation = type(train)(data.validation.inputs, _permuted_within_bags(
        data.validation.labels, validation_bags.bag_ids), data.validation.categorical)
    dataset = data.dataset._replace(train=type(train)(train.inputs, labels,
                                                      train.categorical))
    return data._replace(dataset=dataset, validation=validation)

  monkeypatch.setattr(trainer, "load_data", shuffled_within_bags)
  shuffled_monitors, shuffled_selected = tune("shuffled")
  assert ([m["validation_bag_loss"] for m in shuffled_monitors]
          == [m["validation_bag_loss"] for m in monitors])
  # The per-bag losses (what sweep.py --select_paired tests on) neither.
  assert ([m["validation_bag_losses"] for m in shuffled_monitors]
          == [m["validation_bag_losses"] for m in monitors])
  for m in monitors:
    assert len(m["validation_bag_losses"]) > 1
    assert np.mean(m["validation_bag_losses"]) == pytest.approx(m["validation_bag_loss"])
  assert shuffled_selected["tune"] == selected["tune"]
  assert all(abs(s["oracle_validation_auc"] - m["oracle_validation_auc"]) > 0.01
             for s, m in zip(shuffled_monitors, monitors))


def _rows(workdir, split):
  lines = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  return [l for l in lines if l["split"] == split]


def test_llp_bp_rounds_select_on_validation_bags_only(tmp_path):
  # 2000 validation instances, as when the figures below were recorded.
  results = train_and_evaluate(_config("llp_bp", num_rounds=2, bp_sweeps=30,
                                       validation_fraction=0.0, num_validation=2000),
                               str(tmp_path))
  rounds = _rows(tmp_path, "round")
  assert len(rounds) == 2 and len(_rows(tmp_path, "bp")) == 2
  losses = [r["validation_bag_loss"] for r in rounds]
  assert results["selected_round"] == int(np.argmin(losses))
  assert results["test"]["auc"] == rounds[results["selected_round"]]["test_auc"]
  # Binary LLP-BP is unchanged by the multi-class pipeline (a bag head around
  # any model, [N, C] marginals): the values of the binary-only pipeline of
  # commit 0b4fcf1, which the new one reproduces to the last bit on the CPU
  # that recorded them (4 devices); the tolerance is for other CPUs' rounding.
  assert results["selected_round"] == 1
  assert results["monitor"]["validation_bag_loss"] == pytest.approx(0.5464206111259265,
                                                                    abs=1e-5)
  assert results["test"]["auc"] == pytest.approx(0.8876154024850178, abs=2e-4)
  # Killed in each round and resumed: test_faults.py.


def _warm_start_config(**overrides):
  return _config("llp_bp", **{"warm_start": True, "num_rounds": 1, "bp_sweeps": 10,
                               **overrides})


def test_warm_started_llp_bp_starts_bp_from_the_dllp_network(tmp_path, monkeypatch):
  """Round 0's kNN graph is built on the DLLP network's embedding and BP's prior
  field is its logits, at warm_start_lambda_sim; round 1 does the same with
  round 0's network. The DLLP network is a selection candidate (round -1)."""
  warm_starts, graph_calls, pool_predictions = [], [], []
  make_warm_start, graph_marginals = llp_bp.warm_start_network, llp_bp.graph_marginals
  predict_split = evaluate_lib.predict_split

  def spy_warm_start(*args):
    warm_starts.append(make_warm_start(*args))
    return warm_starts[-1]

  def spy_graph(representation, bags, config, prior_logits=None):
    graph_calls.append((representation, prior_logits, config.lambda_sim))
    return graph_marginals(representation, bags, config, prior_logits)

  def spy_predict_split(predict_fn, params, model_state, examples, *args):
    outputs = predict_split(predict_fn, params, model_state, examples, *args)
    if len(examples) == len(data.split.labeled) + len(data.split.unlabeled):
      pool_predictions.append(outputs)  # The pool's: graph inputs of the next round.
    return outputs

  monkeypatch.setattr(llp_bp, "warm_start_network", spy_warm_start)
  monkeypatch.setattr(llp_bp, "graph_marginals", spy_graph)
  monkeypatch.setattr(evaluate_lib, "predict_split", spy_predict_split)
  config = _warm_start_config(num_rounds=2, warm_start_lambda_sim=0.25)
  data = trainer.load_data(config)
  results = train_and_evaluate(config, str(tmp_path))
  assert len(warm_starts) == 1 and len(graph_calls) == 2 and len(pool_predictions) == 3
  # Each round's graph: the embedding and logits of the network before it.
  for (representation, prior_logits, lambda_sim), (logits, embedding, _) in zip(
      graph_calls, pool_predictions):
    np.testing.assert_array_equal(representation, embedding)
    np.testing.assert_array_equal(prior_logits, logits)
    assert lambda_sim == 0.25
  (warm,), (representation, prior_logits, _) = warm_starts, graph_calls[0]
  # The DLLP network: the plain MLP, no bag head.
  assert sorted(warm.state.params) == ["Dense_0", "Dense_1", "Dense_2"]
  data = trainer.load_data(config)
  pool = np.sort(np.concatenate([data.split.labeled, data.split.unlabeled]))
  logits, embedding, _ = evaluate_lib.predict_split(
      warm.predict, warm.state.params, warm.state.model_state,
      data.dataset.train.take(pool), config.eval_batch_size, parallel.make_mesh())
  assert embedding.shape == (len(pool), 128)  # the MLP (256, 128)'s penultimate layer
  np.testing.assert_array_equal(representation, embedding)
  np.testing.assert_array_equal(prior_logits, logits)
  assert (tmp_path / "dllp" / "metrics.jsonl").exists()
  rounds = _rows(tmp_path, "round")
  assert [r["round"] for r in rounds] == [-1, 0, 1]
  assert [r["sweeps"] for r in _rows(tmp_path, "bp")] == [10, 10]
  # The best round replaces its DLLP start only with a lower loss on the
  # validation bags that a paired test finds significant.
  losses = [r["validation_bag_loss"] for r in rounds]
  best = int(np.argmin(losses[1:]))
  better = losses[best + 1] < losses[0] and results["round_vs_start_p_value"] < 0.05
  selected = best if better else -1
  assert results["selected_round"] == selected
  assert results["test"]["auc"] == rounds[selected + 1]["test_auc"]
  assert set(results) >= {"monitor", "selected_round", "test"}


def test_warm_start_without_prior_bias_is_the_dllp_run_with_the_same_settings(
    tmp_path, monkeypatch):
  """warm_start_prior_bias=False: the DLLP stage trains the very network that
  method=dllp trains with the same settings; by default its output bias starts
  at the log label prior instead, and it ends elsewhere."""
  trained = []
  original_fit = trainer.fit

  def spy_fit(config, workdir, *args, **kwargs):
    state = original_fit(config, workdir, *args, **kwargs)
    trained.append((pathlib.Path(workdir).name, state.params))
    return state

  monkeypatch.setattr(trainer, "fit", spy_fit)
  mlp = dict(hidden_sizes=(64,), dropout_rate=0.0)
  train_and_evaluate(_config("dllp", model_kwargs=mlp), str(tmp_path / "dllp_run"))
  for prior_bias in (False, True):
    train_and_evaluate(_warm_start_config(model_kwargs=mlp, warm_start_prior_bias=prior_bias),
                       str(tmp_path / f"warm_{prior_bias}"))
  assert [name for name, _ in trained] == ["dllp_run", "dllp", "round_0", "dllp", "round_0"]
  dllp_run, as_dllp, with_prior = trained[0][1], trained[1][1], trained[3][1]
  jax.tree.map(np.testing.assert_array_equal, as_dllp, dllp_run)
  assert not np.allclose(with_prior["Dense_1"]["bias"], dllp_run["Dense_1"]["bias"])
  with pytest.raises(ValueError, match="warm_start_prior_bias sets the output bias of the "
                                       "warm start's DLLP network: it needs warm_start=True"):
    llp.get_config("method=llp_bp,warm_start_prior_bias=False")


def test_warm_started_llp_bp_keeps_its_dllp_start_unless_a_round_is_significantly_better(
    tmp_path, monkeypatch):
  """The best round replaces the DLLP start only when the paired test over the
  validation bags' losses (the same bags for both) gives p below the level, on
  at least `training.MIN_TEST_BAGS` bags."""
  config = _warm_start_config()
  tests = []

  def p_value(incumbent, candidate, value):
    tests.append((incumbent, candidate))
    return value

  selected = {}
  for value in (0.01, 0.2):
    monkeypatch.setattr(llp_training, "paired_improvement_p_value",
                        lambda a, b, value=value: p_value(a, b, value))
    # The second run reuses every stage of the first (no training).
    selected[value] = train_and_evaluate(config, str(tmp_path))["selected_round"]
  assert selected == {0.01: 0, 0.2: -1}
  rounds = _rows(tmp_path, "round")
  for incumbent, candidate in tests:
    assert incumbent.ndim == 1 and incumbent.shape == candidate.shape and len(incumbent) > 1
    # The start's per-bag losses, then round 0's: their means are the logged losses.
    assert incumbent.mean() == pytest.approx(rounds[0]["validation_bag_loss"], rel=1e-6)
    assert candidate.mean() == pytest.approx(rounds[1]["validation_bag_loss"], rel=1e-6)
  # Two validation bags (32 examples, bags of 16) cannot show a round better,
  # whatever the test says.
  monkeypatch.setattr(llp_training, "paired_improvement_p_value", lambda a, b: 0.0)
  few_bags = train_and_evaluate(_warm_start_config(num_validation=32, validation_fraction=None),
                                str(tmp_path / "few_bags"))
  assert few_bags["selected_round"] == -1 and few_bags["round_vs_start_p_value"] == 0.0
  with pytest.raises(ValueError, match=r"warm_start_test_level=0.0 is the level of the test"):
    train_and_evaluate(_warm_start_config(warm_start_test_level=0), str(tmp_path / "bad"))


def test_paired_improvement_p_value_is_the_one_sided_paired_t_test():
  rng = np.random.default_rng(0)
  for num_bags in (2, 6, 25):
    incumbent = rng.normal(1.0, 0.1, num_bags)
    candidate = incumbent - rng.normal(0.01, 0.05, num_bags)
    expected = stats.ttest_rel(incumbent, candidate, alternative="greater").pvalue
    assert llp_training.paired_improvement_p_value(incumbent, candidate) == pytest.approx(
        expected, rel=1e-4)
    # A worse candidate: the other tail.
    assert llp_training.paired_improvement_p_value(candidate, incumbent) == pytest.approx(
        1 - expected, rel=1e-4)
  # One bag is no evidence, however large the improvement.
  assert llp_training.paired_improvement_p_value([0.7], [0.1]) == 1.0
  with pytest.raises(ValueError, match="Per-bag losses of the same bags"):
    llp_training.paired_improvement_p_value(np.ones(3), np.ones(4))


def test_warm_started_llp_bp_rerun_reuses_every_stage(tmp_path, monkeypatch):
  """A rerun of a finished warm-started run trains no step (the DLLP stage and
  the rounds restore their last checkpoints) and returns the same results."""
  config = _warm_start_config()
  first = train_and_evaluate(config, str(tmp_path))
  assert {d: len(_rows(tmp_path / d, "train")) for d in ("dllp", "round_0")} == {
      "dllp": 2, "round_0": 2}  # log_every 30 of 60 steps, in each stage's own workdir
  fits, steps_saved = [], []
  original_fit, original_save = trainer.fit, checkpoint.Checkpointer.save

  def spy_fit(config, workdir, *args, **kwargs):
    fits.append(pathlib.Path(workdir).name)
    return original_fit(config, workdir, *args, **kwargs)

  def spy_save(self, step, *args, **kwargs):  # called after every train step
    steps_saved.append(step)
    return original_save(self, step, *args, **kwargs)

  monkeypatch.setattr(trainer, "fit", spy_fit)
  monkeypatch.setattr(checkpoint.Checkpointer, "save", spy_save)
  assert train_and_evaluate(config, str(tmp_path)) == first
  assert fits == ["dllp", "round_0"] and steps_saved == []


def test_warm_start_rejects_another_round_0_graph(tmp_path):
  with pytest.raises(ValueError, match="warm_start builds round 0's kNN graph on the DLLP "
                                       "network's embedding"):
    train_and_evaluate(_warm_start_config(graph_representation="pretrained",
                                          init_from="/tmp/simclr"), str(tmp_path))
  with pytest.raises(ValueError, match="warm_start is an option of method=llp_bp, not dllp"):
    llp.get_config("method=dllp,warm_start=True")


# Multi-class LLP-BP on a small MNIST problem: 1500 training images (300 of
# them validation bags), 1000 test images, a tiny CNN.
SMALL_MNIST = "mnist_llp_bp_small"


@pytest.fixture(scope="module")
def small_mnist():
  mnist = data_lib.load_dataset("mnist")
  data_lib.register_dataset(SMALL_MNIST, data_lib.from_arrays(
      SMALL_MNIST, train=(mnist.train.inputs[:1500], mnist.train.labels[:1500]),
      test=(mnist.test.inputs[:1000], mnist.test.labels[:1000])))
  return SMALL_MNIST


def _small_mnist_config(**overrides):
  config = llp.get_config(f"dataset={SMALL_MNIST},method=llp_bp,bag_size=16,num_steps=80")
  config.model_kwargs = dict(widths=(8, 16, 16), embedding_dim=32)
  config.optimizer.learning_rate = 0.01  # few steps
  config.validation_fraction, config.batch_size, config.bp_sweeps = 0.2, 128, 30
  config.log_every = config.eval_every = config.checkpoint_every = 80
  for key, value in overrides.items():
    config[key] = value
  return config


@pytest.mark.slow  # slow: keeps the default suite well under 20 minutes on 2 cores
@requires_raw_data
def test_multiclass_llp_bp_on_images_selects_without_instance_labels(small_mnist, tmp_path,
                                                                     monkeypatch):
  config = _small_mnist_config()
  assert config.model == "small_cnn" and config.bag_factor == "cardinality"
  results = train_and_evaluate(config, str(tmp_path / "true"))
  rounds, bp_rows = _rows(tmp_path / "true", "round"), _rows(tmp_path / "true", "bp")
  assert [r["round"] for r in rounds] == [r["round"] for r in bp_rows] == [0, 1]
  for row in bp_rows:  # 10 classes: accuracy, no AUC
    assert row["sweeps"] == 30 and np.isfinite(row["delta"])
    assert row["oracle_marginal_accuracy"] > 0.5 and "oracle_marginal_auc" not in row
  assert results["selected_round"] == int(np.argmin([r["validation_bag_loss"] for r in rounds]))
  assert results["test"]["accuracy"] > 0.4  # chance: 0.1; measured 0.61

  # The training pool's instance labels, replaced by noise after the bags
  # were made: the oracle rows change, the selection does not.
  make_loader = llp_training.bag_loader

  def loader_with_noise_labels(config, data, mesh):
    loader, bags = make_loader(config, data, mesh)
    inputs, labels, categorical = loader.examples
    noise = np.random.default_rng(0).permutation(labels)
    loader.examples = type(loader.examples)(inputs, noise, categorical)
    return loader, bags

  monkeypatch.setattr(llp_training, "bag_loader", loader_with_noise_labels)
  corrupted = train_and_evaluate(config, str(tmp_path / "noise"))
  noisy_rounds = _rows(tmp_path / "noise", "round")
  assert corrupted["selected_round"] == results["selected_round"]
  assert ([r["validation_bag_loss"] for r in noisy_rounds]
          == [r["validation_bag_loss"] for r in rounds])
  noisy_bp = _rows(tmp_path / "noise", "bp")
  assert all(r["oracle_marginal_accuracy"] < 0.2 for r in noisy_bp)


def test_pseudo_label_targets_for_c_classes():
  config = ml_collections.ConfigDict(dict(pseudo_labels="hard", pseudo_threshold=0.6))
  marginals = np.array([[0.7, 0.2, 0.1], [0.4, 0.5, 0.1]], np.float32)
  # Confident: one-hot of the argmax; below the threshold: the soft marginals.
  np.testing.assert_array_equal(llp_bp.pseudo_label_targets(marginals, config),
                                [[1, 0, 0], marginals[1]])
  # Binary: the threshold decides the positive class, every instance hard.
  binary = np.array([[0.45, 0.55], [0.3, 0.7]], np.float32)
  np.testing.assert_array_equal(llp_bp.pseudo_label_targets(binary, config), [[1, 0], [0, 1]])
  config.pseudo_labels = "soft"
  np.testing.assert_array_equal(llp_bp.pseudo_label_targets(marginals, config), marginals)


@pytest.mark.parametrize("num_classes", [2, 3])
def test_validation_bag_loss_is_dllp_on_bags(num_classes):
  labels = np.array([0, 1, 1, 0, num_classes - 1, 0])
  bags = random_bags(labels, num_classes, bag_size=3, seed=0)
  logits = np.random.default_rng(0).normal(size=(6, num_classes))
  probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
  expected = -np.mean([(bags.proportions[b] * np.log(probs[bags.bag_ids == b].mean(0))).sum()
                       for b in range(2)])
  assert llp_training.validation_bag_loss(logits, bags) == pytest.approx(expected)


@pytest.mark.parametrize("overrides, match", [
    (dict(graph_representation="pretrained"),
     "graph_representation='pretrained' builds round 0's kNN graph on a pretrained "
     "encoder's embedding: set init_from"),
    (dict(init_from="/tmp/simclr"), "init_from='/tmp/simclr' is unused: LLP-BP uses a "
                                    "pretrained encoder for round 0's kNN graph"),
    (dict(finetune_encoder=True), "finetune_encoder starts every round's network from a "
                                  "pretrained encoder: set init_from"),
    (dict(graph_representation="embedding"), "Unknown graph_representation 'embedding'"),
    (dict(bag_factor="saddlepoint"), r"bag_factor 'saddlepoint' is not a form of the binary "
                                     r"BP that adult \(2 classes\) uses"),
    (dict(model="small_cnn"), "small_cnn takes images; adult is tabular data"),
])
def test_llp_bp_rejects_invalid_combinations(overrides, match, tmp_path):
  with pytest.raises(ValueError, match=match):
    train_and_evaluate(_config("llp_bp", **overrides), str(tmp_path))


@requires_raw_data
def test_llp_bp_rejects_a_bag_factor_the_multiclass_bp_lacks(small_mnist, tmp_path):
  with pytest.raises(ValueError, match=r"bag_factor 'pairwise' is not a form of the "
                                       r"multi-class BP .* choose one of \('cardinality', "
                                       r"'saddlepoint', 'gaussian'\)"):
    train_and_evaluate(_small_mnist_config(bag_factor="pairwise"), str(tmp_path))


def test_bad_pseudo_label_mode_and_marginals_are_named():
  with pytest.raises(ValueError, match="Unknown pseudo_labels 'fuzzy'"):
    llp_bp.pseudo_label_targets(np.full((3, 2), 0.5), _config("llp_bp", pseudo_labels="fuzzy"))
  with pytest.raises(ValueError, match=r"marginals must be \[N, C\] with C >= 2, got shape \(3,\)"):
    llp_bp.pseudo_label_targets(np.zeros(3), _config("llp_bp"))


def test_llp_config_errors_name_the_problem():
  for args, match in [
      ("optimizer=sgd", "optimizer='sgd': choose 'adamw'"),
      ("method=ot,optimizer=lbfgs", "ot's has no minimum or moves with every step"),
      ("method=easyllp,optimizer=lbfgs", "easyllp's has no minimum"),
      ("method=dllp,optimizer=lbfgs,dropout=0.1", "no dropout"),
  ]:
    with pytest.raises(ValueError, match=match):
      llp.get_config(args)
  config = llp.get_config("method=llp_bp,optimizer=lbfgs,bag_columns=occupation.sex")
  assert config.full_batch and config.optimizer.name == "lbfgs"
  assert config.bag_columns == ("occupation", "sex")


@requires_raw_data
def test_feature_bag_errors_name_the_columns_and_the_sizes(tmp_path):
  config = llp.get_config("dataset=adult,bagging=feature,bag_columns=education.nope")
  with pytest.raises(ValueError, match=r"Unknown bag columns \['nope'\]; choose from"):
    train_and_evaluate(config, str(tmp_path / "unknown"))
  # Both sex groups hold over 2500 training rows: the size filter keeps no bag.
  config = llp.get_config("dataset=adult,bagging=feature,bag_columns=sex")
  with pytest.raises(ValueError, match=r"No group of columns \(6,\) has a size in \[50, 2500\]"):
    train_and_evaluate(config, str(tmp_path / "too_large"))


@requires_raw_data
def test_full_batch_puts_every_bag_in_every_batch():
  config = llp.get_config("dataset=adult,bag_size=512,optimizer=lbfgs")
  data = trainer.load_data(config)
  loader, bags = llp_training.bag_loader(config, data, parallel.make_mesh())
  batches = loader.batches(0)
  for _ in range(2):
    batch = next(batches)
    assert int(np.asarray(batch["mask"]).sum()) == bags.sizes.sum()
    assert int(np.asarray(batch["bag_mask"]).sum()) == bags.num_bags
  batches.close()


@requires_raw_data
def test_lbfgs_on_images_points_to_the_encoders_features(small_mnist, tmp_path):
  config = _small_mnist_config(method="dllp")
  config.optimizer.name = "lbfgs"
  with pytest.raises(ValueError, match=r"reruns the network over every image each time\. "
                                       r"Fit on an encoder's features instead"):
    train_and_evaluate(config, str(tmp_path))
