"""The distillation pipeline: frozen teacher inside the student's pure step."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import distill
from labeljax import methods, models, parallel
from labeljax.distill import common, get_method
from labeljax.distill import training as distill_training
from labeljax.train import evaluate as evaluate_lib
from labeljax.train import trainer


def _config(method="kd", **overrides):
  config = distill.get_config(f"dataset=adult,method={method},num_labels=200,"
                              "num_steps=30,teacher_steps=30,budget=500")
  config.log_every = config.eval_every = config.checkpoint_every = 30
  for key, value in overrides.items():
    config[key] = value
  return config


def test_teacher_is_frozen_and_identical_after_student_training(tmp_path):
  config = _config()
  data = trainer.load_data(config)
  mesh = parallel.make_mesh()
  info = data.dataset.info
  teacher_model = models.get_model("mlp", 2)
  teacher = trainer.fit(config, str(tmp_path / "teacher"),
                        trainer.supervised_setup(config, data, mesh), teacher_model, info, mesh)
  before = jax.tree.map(np.array, teacher.params)
  setup = distill_training.distillation_setup(
      config, data, mesh, get_method("kd"),
      distill_training.Frozen(teacher_model, teacher), None, data.split.unlabeled)
  student = trainer.fit(config, str(tmp_path / "student"), setup,
                        models.get_model("mlp", 2), info, mesh)
  after = student.algo_state["teacher"]["params"]
  for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)):
    np.testing.assert_array_equal(a, np.asarray(b))
  # Not optimised: AdamW's two moments cover the student's parameters only.
  opt_size = sum(x.size for x in jax.tree.leaves(student.opt_state))
  assert opt_size <= 2 * sum(x.size for x in jax.tree.leaves(student.params)) + 10


def _record_student_setups(monkeypatch) -> list[dict]:
  """Each student's method, pool, and the frozen networks that label it."""
  calls = []
  original = distill_training.distillation_setup

  def recording(config, data, mesh, method, teacher, fitted, pool_indices,
                reference=None):
    calls.append({"data": data, "mesh": mesh, "method": method, "teacher": teacher,
                  "pool": pool_indices, "logits": teacher.pool_logits,
                  "reference": reference})
    return original(config, data, mesh, method, teacher, fitted, pool_indices, reference)

  monkeypatch.setattr(distill_training, "distillation_setup", recording)
  return calls


def _pool_logits(call, net) -> np.ndarray:
  """`net`'s logits on the call's pool, computed afresh."""
  predict = evaluate_lib.make_predict_fn(net.model)
  examples = call["data"].dataset.train.take(call["pool"])
  return evaluate_lib.predict_split(predict, net.state.params, net.state.model_state,
                                    examples, 1024, call["mesh"])[0]


def _teacher_logits(call) -> np.ndarray:
  return _pool_logits(call, call["teacher"])


def test_precomputed_teacher_labels_match_consistent_ones_without_augmentation(
    tmp_path, monkeypatch):
  # Tabular rows have no weak view, so a teacher that labels every step's view
  # and one that labelled each example once give the same targets: the two
  # students must match, which they only do if each batch row finds its logits.
  calls = _record_student_setups(monkeypatch)
  consistent = methods.train_and_evaluate(_config(), str(tmp_path / "consistent"))
  precomputed = methods.train_and_evaluate(_config(teacher_labels="precomputed"),
                                           str(tmp_path / "precomputed"))
  assert calls[0]["logits"] is None
  np.testing.assert_allclose(calls[1]["logits"], _teacher_logits(calls[1]), atol=1e-5)
  assert consistent["teacher_test"] == precomputed["teacher_test"]
  for key in ("loss", "auc"):
    np.testing.assert_allclose(precomputed["test"][key], consistent["test"][key],
                               rtol=1e-4)


@pytest.mark.parametrize("method", ["kd", "slam", "weighted", "noisy_student", "rad"])
def test_pipeline_runs_every_stage(method, tmp_path):
  results = methods.train_and_evaluate(_config(method), str(tmp_path))
  assert {"teacher_test", "student_0_test", "test"} <= set(results)
  assert results["test"]["auc"] > 0.6
  if method == "rad":
    assert "student_labels_only_test" in results


def test_reference_logits_come_from_the_same_pool_rows_as_the_teacher_ones(tmp_path):
  # Precomputed logits made so that row i of the teacher's is (i, 0) and of the
  # reference's (0, −i): a loss that sees the two batch rows paired up sees
  # teacher[:, 0] + reference[:, 1] = 0 on every row.
  config = _config(teacher_labels="precomputed", num_steps=3)
  config.log_every = 1
  data = trainer.load_data(config)
  mesh = parallel.make_mesh()
  pool = data.split.unlabeled
  rows = np.arange(len(pool), dtype=np.float32)
  zeros = np.zeros_like(rows)
  teacher = distill_training.Frozen(None, None, np.stack([rows, zeros], 1))
  reference = distill_training.Frozen(None, None, np.stack([zeros, -rows], 1))

  def loss(fitted, student_logits, teacher_logits, reference_logits):
    del fitted
    mismatch = jnp.abs(teacher_logits[:, 0] + reference_logits[:, 1]).max()
    return 0.0 * student_logits.sum(), {"mismatch": mismatch,
                                        "max_row": teacher_logits[:, 0].max()}

  probe = common.Method(name="probe", loss=loss, uses_reference=True)
  setup = distill_training.distillation_setup(config, data, mesh, probe, teacher, None,
                                              pool, reference)
  trainer.fit(config, str(tmp_path), setup, models.get_model("mlp", 2),
              data.dataset.info, mesh)
  logged = [r for r in map(json.loads, open(tmp_path / "metrics.jsonl"))
            if "mismatch" in r]
  assert len(logged) == 3 and all(r["mismatch"] == 0 for r in logged)
  assert max(r["max_row"] for r in logged) > 100  # Rows from all over the pool.
  with pytest.raises(ValueError, match="probe needs a reference student"):
    distill_training.distillation_setup(config, data, mesh, probe, teacher, None, pool)
  with pytest.raises(ValueError, match="both label each step's view or both"):
    distill_training.distillation_setup(config, data, mesh, probe, teacher, None, pool,
                                        reference._replace(pool_logits=None))


@pytest.mark.parametrize("teacher_labels", ["consistent", "precomputed"])
def test_weighted_agreement_trains_and_reads_a_reference_student(teacher_labels,
                                                                 tmp_path, monkeypatch):
  calls = _record_student_setups(monkeypatch)
  config = _config("weighted", teacher_labels=teacher_labels)
  config.method_kwargs.score = "agreement"
  results = methods.train_and_evaluate(config, str(tmp_path))
  # First the reference, distilled from the teacher without weights, then the
  # weighted student, whose loss reads the frozen reference too.
  assert [c["method"].name for c in calls] == ["kd", "weighted"]
  assert calls[0]["reference"] is None and (tmp_path / "reference_0").is_dir()
  reference = calls[1]["reference"]
  if teacher_labels == "precomputed":
    np.testing.assert_allclose(reference.pool_logits, _pool_logits(calls[1], reference),
                               atol=1e-5)
  else:
    assert reference.pool_logits is None
  # The weighted student read the reference, not the teacher: its weights
  # differ from the ones the teacher's confidence alone gives.
  confidence = _config("weighted", teacher_labels=teacher_labels)
  methods.train_and_evaluate(confidence, str(tmp_path / "confidence"))
  weights = {run: [r["mean_weight"] for r in map(json.loads, open(
      tmp_path / run / "student_0" / "metrics.jsonl")) if "mean_weight" in r]
             for run in (".", "confidence")}
  assert weights["."] and all(0 < w <= 1 for w in weights["."])
  assert weights["."] != weights["confidence"]
  assert results["test"]["auc"] > 0.6


def test_bad_distillation_inputs(tmp_path):
  with pytest.raises(ValueError, match="Unknown distillation method 'kdd'"):
    methods.train_and_evaluate(_config("kdd"), str(tmp_path))
  with pytest.raises(ValueError, match="temperature must be > 0"):
    methods.train_and_evaluate(_config("kd", method_kwargs={"temperature": 0.0}),
                               str(tmp_path))
  with pytest.raises(ValueError, match="validation set"):
    methods.train_and_evaluate(_config("slam", num_validation=0), str(tmp_path))
  with pytest.raises(ValueError, match="teacher_labels must be one of"):
    methods.train_and_evaluate(_config("kd", teacher_labels="cached"), str(tmp_path))
  with pytest.raises(ValueError, match="score='agreement' is a setting of method=weighted"):
    distill.get_config("method=kd,score=agreement")
  with pytest.raises(ValueError, match="rad spends a budget of teacher queries"):
    methods.train_and_evaluate(_config("rad", teacher_labels="consistent"),
                               str(tmp_path / "rad"))


def test_active_query_rounds_spend_exactly_the_budget(tmp_path, monkeypatch):
  calls = _record_student_setups(monkeypatch)
  results = methods.train_and_evaluate(_config("margin", query_rounds=3), str(tmp_path))
  assert {"student_query_0_test", "student_query_2_test"} <= set(results)
  assert results["test"] == results["student_query_2_test"]
  records = [r for r in map(json.loads, open(tmp_path / "metrics.jsonl"))
             if r["split"] == "selection"]
  # Cumulative: 500 queries over 3 rounds.
  assert [r["num_selected"] for r in records] == [167, 333, 500]
  assert all(0 <= r["teacher_accuracy_on_queries"] <= 1 for r in records)
  # Each student learns from the teacher's answers to exactly the queries so
  # far, each answer on its own point.
  assert [len(c["pool"]) for c in calls] == [167, 333, 500]
  assert set(calls[0]["pool"]) < set(calls[1]["pool"]) < set(calls[2]["pool"])
  for call in calls:
    np.testing.assert_allclose(call["logits"], _teacher_logits(call), atol=1e-5)
  with pytest.raises(ValueError, match="query_rounds must be in"):
    methods.train_and_evaluate(_config("random", query_rounds=0), str(tmp_path / "bad"))
