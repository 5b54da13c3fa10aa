"""The train core: data parallelism, compile-once, guards, evaluation, trainer."""

import json
import pathlib
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import optax
import pytest
from tensorboard.backend.event_processing import event_accumulator

from experiments.configs import common, supervised
from labeljax import data as data_lib
from labeljax import methods, models, parallel
from labeljax.data import Examples, Stream, TrainLoader
from labeljax.train import config_checks, evaluate, optim, trainer
from labeljax.train.state import create_train_state
from labeljax.train.step import LossAux, apply_model, make_train_step, supervised_loss


def _images(n, seed=0):
  rng = np.random.default_rng(seed)
  return Examples(rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8),
                  rng.integers(0, 10, n).astype(np.int32))


def _train(mesh, num_steps=4, loss_fn=None, model_name="small_cnn"):
  model = models.get_model(model_name, 10)
  tx = optax.sgd(0.1, momentum=0.9)
  state = jax.device_put(
      create_train_state(model, tx, np.zeros((1, 28, 28, 1), np.float32),
                         jax.random.key(0)), parallel.replicated(mesh))
  step = jax.jit(make_train_step(loss_fn or supervised_loss(model), tx, 0.9),
                 donate_argnums=0)
  loader = TrainLoader({"labeled": Stream(_images(96), 16)}, mesh, seed=0)
  for t in range(num_steps):
    state, metrics = step(state, parallel.host_to_global(loader.local_batch(t), mesh),
                          jax.random.key(1))
  return state, metrics


def test_one_device_and_four_devices_give_the_same_parameters():
  assert jax.device_count() == 4
  one, _ = _train(parallel.make_mesh(jax.devices()[:1]))
  four, _ = _train(parallel.make_mesh())
  assert len(four.params["Dense_0"]["kernel"].sharding.device_set) == 4
  for a, b in zip(jax.tree.leaves((one.params, one.model_state, one.ema_params)),
                  jax.tree.leaves((four.params, four.model_state, four.ema_params))):
    # Float rounding differs with the device count; where it flips a near-tie
    # in a max-pool window, the gradient goes to the other element (seen: one
    # kernel entry of 18432 off by 2.4e-5). Per-device BatchNorm statistics or
    # gradients would be off everywhere, by far more.
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-4, atol=5e-5)


def test_train_step_compiles_once():
  traces = []
  model = models.get_model("small_cnn", 10)
  base = supervised_loss(model)

  def counting_loss(*args):
    traces.append(1)
    return base(*args)

  state, _ = _train(parallel.make_mesh(), num_steps=5, loss_fn=counting_loss)
  assert int(state.step) == 5 and len(traces) == 1


def test_nonfinite_update_is_skipped_and_flagged():
  model = models.get_model("small_cnn", 10)
  base = supervised_loss(model)

  def nan_loss(params, state, batch, rng):
    loss, aux = base(params, state, batch, rng)
    return loss * np.nan, aux

  mesh = parallel.make_mesh()
  good, _ = _train(mesh, num_steps=1)
  bad, metrics = _train(mesh, num_steps=1, loss_fn=nan_loss)
  assert float(metrics["nonfinite"]) == 1.0 and int(bad.step) == 1
  fresh = create_train_state(model, optax.sgd(0.1, momentum=0.9),
                             np.zeros((1, 28, 28, 1), np.float32), jax.random.key(0))
  for a, b in zip(jax.tree.leaves(bad.params), jax.tree.leaves(fresh.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert not all(np.array_equal(a, b) for a, b in
                 zip(jax.tree.leaves(good.params), jax.tree.leaves(fresh.params)))


def test_global_batch_must_divide_over_devices():
  with pytest.raises(ValueError, match="not a positive multiple of the 4 devices"):
    TrainLoader({"labeled": Stream(_images(96), 30)}, parallel.make_mesh(), seed=0)


def test_loader_is_deterministic_per_step_and_shard_invariant():
  mesh = parallel.make_mesh()
  ex = _images(50)
  a = TrainLoader({"x": Stream(ex, 8)}, mesh, seed=0)
  b = TrainLoader({"x": Stream(ex, 8)}, mesh, seed=0)
  np.testing.assert_array_equal(a.local_batch(17)["x"]["index"], b.local_batch(17)["x"]["index"])
  # Every example is seen once per epoch of its shard.
  seen = np.concatenate([a.local_batch(t)["x"]["index"] for t in range(6)])
  assert sorted(seen[:48]) != list(range(48)) and len(set(seen[:48])) == 48
  # Two shards, as two processes would read them: rows come from their halves.
  two = TrainLoader({"x": Stream(ex, 8)}, mesh, seed=0, num_shards=2)
  idx = two.local_batch(3)["x"]["index"]
  assert (idx[:4] < 25).all() and (idx[4:] >= 25).all()
  np.testing.assert_array_equal(two.local_batch(3)["x"]["inputs"], ex.inputs[idx])


def test_evaluation_counts_every_example_exactly_once():
  mesh = parallel.make_mesh()
  model = models.get_model("small_cnn", 10)
  variables = model.init(jax.random.key(0), np.zeros((1, 28, 28, 1), np.float32))
  params, model_state = variables.pop("params"), variables
  ex = _images(1003, seed=2)
  predict = evaluate.make_predict_fn(model)
  logits, emb, labels = evaluate.predict_split(predict, params, model_state, ex, 64, mesh)
  assert logits.shape == (1003, 10) and emb.shape == (1003, 128)
  np.testing.assert_array_equal(labels, ex.labels)
  direct = predict(params, model_state, ex.inputs).logits
  np.testing.assert_allclose(logits, direct, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("module", ["labeljax.distill.training", "labeljax.llp.llp_bp",
                                    "labeljax.ssl.training", "labeljax.methods"])
def test_each_module_imports_first(module):
  # A fresh interpreter: an import cycle shows only when a module comes first.
  subprocess.run([sys.executable, "-c", f"import {module}"], check=True, timeout=120,
                 cwd=pathlib.Path(__file__).resolve().parents[1])


def test_unknown_names_list_the_choices():
  with pytest.raises(ValueError, match=r"Unknown model 'resnet9'; choose one of \['mlp'"):
    models.get_model("resnet9", 10)
  with pytest.raises(ValueError, match="Unknown method 'nope'"):
    methods.get_method("nope")
  with pytest.raises(ValueError, match="Unknown config argument 'num_label'"):
    supervised.get_config("num_label=3")


def _quick_config(**overrides):
  config = supervised.get_config("dataset=adult,num_steps=40,batch_size=128")
  config.log_every = 10
  config.eval_every = 20
  config.checkpoint_every = 20
  for k, v in overrides.items():
    config[k] = v
  return config


def test_train_and_evaluate_end_to_end_and_resume(tmp_path):
  results = methods.train_and_evaluate(_quick_config(), str(tmp_path))
  assert results["step"] == 40 and results["test"]["num_examples"] == 16281
  assert results["test"]["auc"] > 0.85
  lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  train_lines = [l for l in lines if l["split"] == "train"]
  assert [l["step"] for l in train_lines] == [10, 20, 30, 40]
  assert {"loss", "steps_per_sec", "eta_min", "train_accuracy"} <= set(train_lines[0])
  # TensorBoard reads the same curves from the event files beside metrics.jsonl.
  events = event_accumulator.EventAccumulator(str(tmp_path))
  events.Reload()
  assert [e.step for e in events.Scalars("train/loss")] == [10, 20, 30, 40]
  np.testing.assert_allclose([e.value for e in events.Scalars("train/loss")],
                             [l["loss"] for l in train_lines], rtol=1e-6)
  assert events.Scalars("test/auc")[-1].value == pytest.approx(results["test"]["auc"])
  # A finished workdir resumes at the end and reproduces the same metrics.
  again = methods.train_and_evaluate(_quick_config(), str(tmp_path))
  assert again == results
  # Reopening logged the final metrics again: they replaced the first rows.
  keys = [(r["step"], r["split"]) for r in
          map(json.loads, (tmp_path / "metrics.jsonl").read_text().splitlines())]
  assert len(keys) == len(set(keys)) == len(lines)


def test_nonfinite_loss_stops_training_with_a_message(tmp_path, monkeypatch):
  def inf_loss(model):
    base = supervised_loss(model)
    return lambda *a: (lambda l, aux: (l * np.inf, aux))(*base(*a))

  def inf_method(config, data, mesh):
    return trainer.supervised_setup(config, data, mesh)._replace(loss_fn=inf_loss)

  monkeypatch.setitem(methods.METHODS, "nan", inf_method)
  with pytest.raises(FloatingPointError, match="Non-finite loss or gradients before step 10"):
    methods.train_and_evaluate(_quick_config(method="nan"), str(tmp_path))


def test_config_docstrings_carry_commands():
  assert "python -m experiments.train" in supervised.__doc__
  config = common.parse_arg("a=1,b=mnist", a=0, b="")
  assert config.a == 1 and config.b == "mnist"


def test_nonfinite_features_are_rejected_before_training():
  ex = Examples(np.ones((8, 3), np.float32), np.zeros(8, np.int32))
  ex.inputs[5, 1] = np.nan
  with pytest.raises(ValueError, match=r"stream 'labeled': 1 examples have NaN/inf features \(first rows \[5\]\)"):
    TrainLoader({"labeled": Stream(ex, 4)}, parallel.make_mesh(), seed=0)


@pytest.mark.parametrize("key, value, message", [
    ("num_steps", 0, r"config.num_steps must be >= 1 \(an integer\), got 0"),
    ("batch_size", 0, r"config.batch_size must be >= 1 \(an integer\), got 0"),
    ("optimizer.learning_rate", -0.1, r"config.optimizer.learning_rate must be > 0, got -0.1"),
    ("ema_decay", 1.0, r"config.ema_decay must be in \[0, 1\), got 1.0"),
    ("num_labels", 0, r"config.num_labels must be -1 \(every label\) or >= 1"),
    ("pseudo_threshold", 1.5, r"config.pseudo_threshold must be in \[0, 1\], got 1.5"),
])
def test_bad_config_values_fail_before_any_data_loads(key, value, message, tmp_path):
  def never_loaded():
    raise AssertionError("the data loaded before the config was checked")

  data_lib.register_dataset("never_loaded", never_loaded)
  config = _quick_config(dataset="never_loaded")
  parent, _, leaf = key.rpartition(".")
  with config.unlocked():
    (config[parent] if parent else config)[leaf] = value
  with pytest.raises(ValueError, match=message):
    methods.train_and_evaluate(config, str(tmp_path))
  assert not any(tmp_path.iterdir())  # nothing written


def test_explicit_zero_steps_is_not_replaced_by_a_default():
  assert supervised.get_config("num_steps=0").num_steps == 0
  assert supervised.get_config().num_steps == 2000


def test_a_workdir_holding_another_configs_run_is_refused(tmp_path):
  methods.train_and_evaluate(_quick_config(num_steps=20), str(tmp_path))
  for key, value, message in (("seed", 1, r"seed: 0 -> 1"),
                              ("num_steps", 30, r"num_steps: 20 -> 30"),
                              ("optimizer.learning_rate", 0.01,
                               r"optimizer.learning_rate: 0.001 -> 0.01")):
    config = _quick_config(num_steps=20)
    config.update_from_flattened_dict({key: value})
    with pytest.raises(ValueError, match=f"holds a run of another config \\({message}\\)"):
      methods.train_and_evaluate(config, str(tmp_path))
  # Logging and evaluation cadence cannot change the result: it resumes.
  assert methods.train_and_evaluate(_quick_config(num_steps=20, log_every=5),
                                    str(tmp_path))["step"] == 20


def test_a_run_recorded_before_a_key_was_added_resumes_at_the_keys_listed_value(
    tmp_path, monkeypatch):
  methods.train_and_evaluate(_quick_config(num_steps=20), str(tmp_path))
  monkeypatch.setattr(config_checks, "ADDED_KEYS", {"seed": 0})  # as if seed were new
  recorded = tmp_path / "config.json"
  record = json.loads(recorded.read_text())
  del record["seed"]
  recorded.write_text(json.dumps(record))
  with pytest.raises(ValueError, match=r"holds a run of another config \(seed: '<unset>' -> 1\)"):
    methods.train_and_evaluate(_quick_config(num_steps=20, seed=1), str(tmp_path))
  assert methods.train_and_evaluate(_quick_config(num_steps=20), str(tmp_path))["step"] == 20


@pytest.mark.parametrize("num_shards", [None, 2, 4])
def test_global_batches_do_not_depend_on_the_process_count(num_shards, monkeypatch):
  """Two processes' rows, put together, are the one process's global batch."""
  from labeljax.data import pipeline  # pylint: disable=g-import-not-at-top
  mesh, ex = parallel.make_mesh(), _images(50)
  streams = {"a": Stream(ex, 8), "b": Stream(ex.take(np.arange(30)), 16)}
  single = TrainLoader(streams, mesh, seed=3, num_shards=num_shards).local_batch(5)
  monkeypatch.setattr(pipeline.jax, "process_count", lambda: 2)
  halves = []
  for process in (0, 1):
    monkeypatch.setattr(pipeline.jax, "process_index", lambda p=process: p)
    halves.append(TrainLoader(streams, mesh, seed=3, num_shards=num_shards).local_batch(5))
  for name in streams:
    for key in ("index", "labels", "inputs"):
      np.testing.assert_array_equal(
          np.concatenate([h[name][key] for h in halves]), single[name][key])


def test_lbfgs_step_with_l2_penalty_reaches_the_ridge_solution():
  """L-BFGS through `make_train_step(line_search=True)` on a linear model and a
  least-squares loss lands on the closed-form ridge solution (kernel penalised,
  bias not)."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(256, 6)).astype(np.float32) + 1.0
  y = (x @ rng.normal(size=(6, 2)) + 0.5 + rng.normal(size=(256, 2))).astype(np.float32)
  weight_decay = 0.3
  model = models.get_model("mlp", 2, hidden_sizes=())

  def squared_error(params, state, batch, rng):
    out, model_state = apply_model(model, params, state.model_state, batch["x"],
                                   train=True, rng=rng)
    loss = 0.5 * ((out.logits - batch["y"]) ** 2).sum(-1).mean()
    return loss, LossAux(model_state, state.algo_state, {})

  config = ml_collections.ConfigDict(dict(name="lbfgs", learning_rate=1.0,
                                          weight_decay=weight_decay))
  assert optim.uses_line_search(config)
  tx = optim.make_optimizer(config, num_steps=50)
  state = create_train_state(model, tx, x[:1], jax.random.key(0))
  step = jax.jit(make_train_step(optim.with_l2_penalty(squared_error, weight_decay), tx,
                                 line_search=True))
  for _ in range(50):
    state, metrics = step(state, {"x": x, "y": y}, jax.random.key(1))
  centred_x, centred_y = x - x.mean(0), y - y.mean(0)
  kernel = np.linalg.solve(centred_x.T @ centred_x / len(x) + weight_decay * np.eye(6),
                           centred_x.T @ centred_y / len(x))
  bias = y.mean(0) - x.mean(0) @ kernel
  (layer,) = state.params.values()
  np.testing.assert_allclose(layer["kernel"], kernel, atol=1e-4)
  np.testing.assert_allclose(layer["bias"], bias, atol=1e-4)
  assert float(metrics["l2_penalty"]) > 0
