"""Self-supervised pretraining (SimCLR), init_from, and the SimCLRv2 pipeline."""

import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

import kill_points
from conftest import requires_raw_data
from experiments.configs import llp, simclr, simclrv2, ssl
from labeljax import augment, methods, models, parallel
from labeljax import data as data_lib
from labeljax.selfsup import nt_xent_loss, probes
from labeljax.train import optim, trainer
from labeljax.train import pretrained as pretrained_lib
from labeljax.methods import train_and_evaluate

# ---------------------------------------------------------------------------
# NT-Xent.
# ---------------------------------------------------------------------------


def _nt_xent_by_hand(z1, z2, temperature):
  """The loss and accuracy of eq. 1, one view at a time, in numpy."""
  z = np.concatenate([z1, z2]).astype(np.float64)
  z /= np.linalg.norm(z, axis=1, keepdims=True)
  n, losses, right = len(z1), [], []
  for i in range(2 * n):
    positive = (i + n) % (2 * n)
    others = [k for k in range(2 * n) if k != i]
    s = {k: z[i] @ z[k] / temperature for k in others}
    losses.append(-np.log(np.exp(s[positive]) / sum(np.exp(s[k]) for k in others)))
    right.append(max(others, key=s.get) == positive)
  return np.mean(losses), np.mean(right)


def test_nt_xent_matches_a_hand_computed_value():
  z1 = np.array([[1.0, 0.0], [0.0, 2.0]], np.float32)
  z2 = np.array([[1.0, 1.0], [-1.0, 1.0]], np.float32)
  loss, accuracy = nt_xent_loss(jnp.asarray(z1), jnp.asarray(z2), 0.5)
  # By hand, with unit z and s = z·z'/τ (τ = 1/2): views (1, 0), (0, 1),
  # (1, 1)/√2, (−1, 1)/√2. View 0: to 1: 0, to its positive 2: √2, to 3: −√2.
  # View 1: to 0: 0, to 2: √2, to its positive 3: √2. View 2: to 0: √2
  # (positive), to 1: √2, to 3: 0. View 3: to 0: −√2, to 1 (positive): √2, to 2: 0.
  r = np.sqrt(2)
  ell = lambda positive, *others: -positive + np.log(np.exp([positive, *others]).sum())
  expected = np.mean([ell(r, 0, -r), ell(r, 0, r), ell(r, r, 0), ell(r, -r, 0)])
  np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
  np.testing.assert_allclose(float(loss), _nt_xent_by_hand(z1, z2, 0.5)[0], rtol=1e-5)
  z1, z2 = np.random.default_rng(0).normal(size=(2, 6, 3)).astype(np.float32)
  loss, accuracy = nt_xent_loss(jnp.asarray(z1), jnp.asarray(z2), 0.2)
  expected, expected_accuracy = _nt_xent_by_hand(z1, z2, 0.2)
  np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
  assert float(accuracy) == pytest.approx(expected_accuracy)


def test_nt_xent_negatives_span_the_global_batch_on_any_device_count():
  z1, z2 = jax.random.normal(jax.random.key(0), (2, 16, 8))
  by_hand, _ = _nt_xent_by_hand(np.asarray(z1), np.asarray(z2), 0.1)
  values = []
  for mesh in (parallel.make_mesh(jax.devices()[:1]), parallel.make_mesh()):
    sharded = jax.device_put((z1, z2), parallel.batch_sharding(mesh))
    assert len(sharded[0].sharding.device_set) == mesh.size
    loss, _ = jax.jit(nt_xent_loss, static_argnums=2)(*sharded, 0.1)
    values.append(float(loss))
  assert mesh.size == 4
  np.testing.assert_allclose(values[0], values[1], rtol=1e-6)
  # Each device's 4 rows alone would give another loss: the negatives are global.
  np.testing.assert_allclose(values[1], by_hand, rtol=1e-5)
  local, _ = nt_xent_loss(z1[:4], z2[:4], 0.1)
  assert abs(float(local) - values[1]) > 0.1


def test_nt_xent_rejects_bad_inputs():
  z = jnp.ones((4, 3))
  with pytest.raises(ValueError, match="temperature must be > 0, got 0.0"):
    nt_xent_loss(z, z, 0.0)
  with pytest.raises(ValueError, match="at least 2 examples"):
    nt_xent_loss(z[:1], z[:1], 0.1)
  with pytest.raises(ValueError, match="must both be"):
    nt_xent_loss(z, z[:2], 0.1)


# ---------------------------------------------------------------------------
# LARS.
# ---------------------------------------------------------------------------


def test_lars_excludes_biases_and_norm_parameters():
  params = {"Dense_0": {"kernel": jnp.full((3, 2), 2.0), "bias": jnp.full((2,), 2.0)},
            "BatchNorm_0": {"scale": jnp.full((2,), 2.0), "bias": jnp.full((2,), 2.0)}}
  grads = jax.tree.map(lambda p: jnp.full(p.shape, 0.5), params)
  config = ml_collections.ConfigDict(dict(name="lars", learning_rate=0.1,
                                          weight_decay=0.1, schedule="constant"))
  tx = optim.make_optimizer(config, 10)
  updates, _ = tx.update(grads, tx.init(params), params)
  # Excluded: plain momentum SGD, no weight decay, no trust ratio.
  for leaf in (updates["Dense_0"]["bias"], updates["BatchNorm_0"]["scale"],
               updates["BatchNorm_0"]["bias"]):
    np.testing.assert_allclose(leaf, -0.1 * 0.5, rtol=1e-6)
  # Kernels: g + λw scaled by the trust ratio η‖w‖ / ‖g + λw‖ (η = 0.001).
  w, g = params["Dense_0"]["kernel"], grads["Dense_0"]["kernel"]
  decayed = g + 0.1 * w
  trust = 0.001 * jnp.linalg.norm(w) / jnp.linalg.norm(decayed)
  np.testing.assert_allclose(updates["Dense_0"]["kernel"], -0.1 * trust * decayed,
                             rtol=1e-5)


# ---------------------------------------------------------------------------
# SimCLR views.
# ---------------------------------------------------------------------------

GRAY = jax.random.uniform(jax.random.key(1), (8, 28, 28, 1))
SAME = jnp.broadcast_to(GRAY[:1], GRAY.shape)


@pytest.mark.parametrize("images", [GRAY, jax.random.uniform(jax.random.key(2),
                                                             (4, 16, 16, 3))],
                         ids=["gray", "rgb"])
def test_simclr_views_keep_shape_and_range(images):
  first, second = augment.simclr_views(jax.random.key(3), images)
  for view in (first, second):
    assert view.shape == images.shape and view.dtype == images.dtype
    assert float(view.min()) >= 0.0 and float(view.max()) <= 1.0
  assert not np.array_equal(first, second)


def test_simclr_views_differ_per_example_and_key_and_repeat_per_key():
  out = augment.simclr_augment(jax.random.key(4), SAME)
  assert len({np.asarray(x).tobytes() for x in out}) == len(out)
  np.testing.assert_array_equal(out, augment.simclr_augment(jax.random.key(4), SAME))
  assert not np.array_equal(out, augment.simclr_augment(jax.random.key(5), SAME))


def test_resized_crop_is_a_zoom_into_the_image():
  # On a ramp image, value = row index, bilinear resampling is exact: a crop of
  # half the side maps output row u to top + (u + 1/2)/2 − 1/2, so each output
  # column rises by exactly 1/2 per row and stays inside the image.
  ramp = jnp.broadcast_to(jnp.arange(28.0)[None, :, None, None] / 27.0, (8, 28, 28, 1))
  out = np.asarray(augment.simclr_augment(
      jax.random.key(7), ramp, crop_scale=(0.25, 0.25), crop_ratio=(1.0, 1.0), flip=False,
      jitter_prob=0.0, blur_prob=0.0)) * 27.0
  np.testing.assert_allclose(np.diff(out, axis=1), 0.5, atol=1e-4)
  np.testing.assert_allclose(out - out[:, :, :1], 0.0, atol=1e-4)  # constant along rows
  tops = out[:, 0, 0, 0] + 0.5 - 0.25
  assert (tops >= -1e-4).all() and (tops <= 14 + 1e-4).all() and len(set(tops.round(3))) > 1


def test_full_crop_without_colour_or_blur_is_the_identity():
  out = augment.simclr_augment(jax.random.key(6), GRAY, crop_scale=(1.0, 1.0),
                               crop_ratio=(1.0, 1.0), flip=False, jitter_prob=0.0,
                               blur_prob=0.0)
  np.testing.assert_allclose(out, GRAY, atol=1e-5)


def test_simclr_views_reject_bad_inputs():
  with pytest.raises(ValueError, match="rank 4"):
    augment.simclr_augment(jax.random.key(0), jnp.ones((8, 5)))  # tabular rows
  with pytest.raises(ValueError, match="crop_scale"):
    augment.simclr_augment(jax.random.key(0), GRAY, crop_scale=(0.0, 1.0))
  with pytest.raises(ValueError, match="blur_prob"):
    augment.simclr_augment(jax.random.key(0), GRAY, blur_prob=1.5)


# ---------------------------------------------------------------------------
# Probes.
# ---------------------------------------------------------------------------


def test_probes_classify_separable_clusters_and_check_shapes():
  rng = np.random.default_rng(0)
  centers = 4.0 * rng.normal(size=(3, 5))
  y, yq = rng.integers(0, 3, 300), rng.integers(0, 3, 100)
  x, xq = centers[y] + rng.normal(size=(300, 5)), centers[yq] + rng.normal(size=(100, 5))
  assert np.mean(probes.knn_predict(x, y, xq, 3, k=5) == yq) > 0.95
  assert np.mean(probes.linear_probe(x, y, xq, 3).argmax(1) == yq) > 0.95
  # Shuffled labels: no better than chance, so the probes read the labels.
  shuffled = rng.permutation(y)
  assert np.mean(probes.knn_predict(x, shuffled, xq, 3, k=5) == yq) < 0.6
  with pytest.raises(ValueError, match=r"\[N, D\] and \[Q, D\]"):
    probes.knn_predict(x, y, xq[:, :2], 3)


# ---------------------------------------------------------------------------
# Pretraining, init_from and SimCLRv2, end to end on MNIST.
# ---------------------------------------------------------------------------

TINY_ENCODER = dict(widths=(4, 8, 8), embedding_dim=16)


def _simclr_config(**overrides):
  config = simclr.get_config("dataset=mnist,num_steps=20,batch_size=32")
  config.model_kwargs = TINY_ENCODER
  config.head_widths = (16, 16, 8)
  config.num_validation = 100
  config.monitor_bank = 200
  config.log_every = config.eval_every = 10
  config.checkpoint_every = 5
  for key, value in overrides.items():
    config[key] = value
  return config


@pytest.fixture(scope="module")
def pretrained_dir(tmp_path_factory):
  """A finished tiny pretraining run (shared by the tests below)."""
  workdir = str(tmp_path_factory.mktemp("simclr"))
  train_and_evaluate(_simclr_config(), workdir)
  return workdir


@requires_raw_data
def test_pretraining_logs_monitors_and_writes_a_loadable_encoder(pretrained_dir):
  results = json.load(open(os.path.join(pretrained_dir, "results.json")))
  assert results["step"] == 20
  assert 0.0 <= results["test"]["knn_accuracy"] <= 1.0
  lines = [json.loads(l) for l in open(os.path.join(pretrained_dir, "metrics.jsonl"))]
  assert all("contrastive_accuracy" in l for l in lines if l["split"] == "train")
  assert [l["step"] for l in lines if l["split"] == "monitor"] == [10]
  pretrained = pretrained_lib.load(pretrained_dir, dataset="mnist")
  assert pretrained.spec["head_widths"] == [16, 16, 8]
  assert set(pretrained.params) == {"encoder", *(f"head_{i}" for i in range(3)),
                                    *(f"head_norm_{i}" for i in range(3))}


@requires_raw_data
def test_finetune_model_starts_from_the_pretrained_encoder(pretrained_dir):
  pretrained = pretrained_lib.load(pretrained_dir)
  model = pretrained.finetune_model(10)
  mesh = parallel.make_mesh()
  tx = optim.make_optimizer(ml_collections.ConfigDict(dict(name="adam", learning_rate=1e-3)), 1)
  from labeljax.train.state import create_train_state
  state = create_train_state(model, tx, jnp.zeros((1, 28, 28, 1)), jax.random.key(0))
  state = pretrained_lib.initialize(state, pretrained, parallel.replicated(mesh))
  flat = lambda tree: {jax.tree_util.keystr(p): v for p, v in
                       jax.tree_util.tree_leaves_with_path(tree)}
  new, old = flat(state.params), flat(pretrained.params)
  shared = set(new) & set(old)
  assert {k for k in new if k not in shared} == {"['Dense_0']['kernel']", "['Dense_0']['bias']"}
  assert any(k.startswith("['encoder']") for k in shared)
  assert "['head_0']['kernel']" in shared and "['head_1']['kernel']" not in new
  for key in shared:
    np.testing.assert_array_equal(np.asarray(new[key]), old[key])
  np.testing.assert_array_equal(np.asarray(state.ema_params["head_0"]["kernel"]),
                                old["['head_0']['kernel']"])


@requires_raw_data
def test_fixmatch_starts_from_a_simclr_initialisation(pretrained_dir, tmp_path):
  config = ssl.get_config(f"dataset=mnist,num_labels=40,num_steps=10,batch_size=8,"
                          f"uratio=2,init_from={pretrained_dir}")
  config.num_validation = 100
  config.log_every = config.eval_every = config.checkpoint_every = 10
  results = train_and_evaluate(config, str(tmp_path))
  assert results["step"] == 10 and results["test"]["num_examples"] == 10000
  params = pretrained_lib.restore_on_host(str(tmp_path / "checkpoints"), 10)["params"]
  assert "encoder" in params and "head_0" in params and "head_1" not in params


@requires_raw_data
def test_llp_baselines_fine_tune_a_simclr_encoder(pretrained_dir, tmp_path):
  config = llp.get_config(f"dataset=mnist,method=dllp,bag_size=64,num_steps=10,"
                          f"init_from={pretrained_dir}")
  config.batch_size, config.validation_fraction = 128, 0.05
  config.log_every = config.eval_every = config.checkpoint_every = 10
  results = train_and_evaluate(config, str(tmp_path / "dllp"))
  assert results["step"] == 10 and "validation_bag_loss" in results["monitor"]
  params = pretrained_lib.restore_on_host(str(tmp_path / "dllp" / "checkpoints"), 10)["params"]
  assert "encoder" in params and "head_0" in params and "head_1" not in params
  config.prior_output_bias = True  # a bias on a network that is not built here
  with pytest.raises(ValueError, match="prior_output_bias sets the output bias of a "
                                       "network built from scratch"):
    train_and_evaluate(config, str(tmp_path / "bias"))


@requires_raw_data
def test_a_frozen_encoder_trains_only_the_classifier(pretrained_dir, tmp_path):
  config = llp.get_config(f"dataset=mnist,method=dllp,bag_size=64,num_steps=10,"
                          f"init_from={pretrained_dir},freeze_encoder=True")
  config.batch_size, config.validation_fraction = 128, 0.05
  config.log_every = config.eval_every = 10
  config.checkpoint_every = 5
  train_and_evaluate(config, str(tmp_path / "probe"))
  checkpoints = str(tmp_path / "probe" / "checkpoints")
  middle, state = (pretrained_lib.restore_on_host(checkpoints, step) for step in (5, 10))
  pretrained = pretrained_lib.load(pretrained_dir)
  for name in ("encoder", "head_0", "head_norm_0"):  # weights and BatchNorm statistics
    jax.tree.map(np.testing.assert_array_equal, state["params"][name],
                 pretrained.params[name])
    if name in pretrained.model_state["batch_stats"]:
      jax.tree.map(np.testing.assert_array_equal, state["model_state"]["batch_stats"][name],
                   pretrained.model_state["batch_stats"][name])
  # The classifier learns between the checkpoints.
  assert np.abs(state["params"]["Dense_0"]["kernel"]
                - middle["params"]["Dense_0"]["kernel"]).max() > 0
  config.init_from = None
  with pytest.raises(ValueError, match="freeze_encoder trains only the classifier on a "
                                       "pretrained encoder: set init_from"):
    train_and_evaluate(config, str(tmp_path / "no_encoder"))


@requires_raw_data
def test_features_from_trains_a_probe_on_the_encoders_representation(pretrained_dir,
                                                                      tmp_path):
  config = llp.get_config(f"dataset=mnist,method=dllp,bag_size=64,num_steps=10,"
                          f"features_from={pretrained_dir},hidden=linear,optimizer=lbfgs")
  config.validation_fraction = 0.05
  config.log_every = config.eval_every = config.checkpoint_every = 10
  data = trainer.load_data(config)
  pretrained = pretrained_lib.load(pretrained_dir)
  images = data_lib.load_dataset("mnist").test
  # The inputs are h of every image, in order; the data set is tabular now.
  assert data.dataset.info.kind == "tabular" and data.dataset.info.input_shape == (16,)
  np.testing.assert_allclose(
      data.dataset.test.inputs[:300],
      pretrained.embed(images.take(np.arange(300)), 100, parallel.make_mesh()), atol=1e-5)
  results = train_and_evaluate(config, str(tmp_path / "probe"))
  assert results["step"] == 10 and "validation_bag_loss" in results["monitor"]
  params = pretrained_lib.restore_on_host(str(tmp_path / "probe" / "checkpoints"), 10)["params"]
  assert params["Dense_0"]["kernel"].shape == (16, 10)  # one linear layer on h
  config.dataset = "fashion_mnist"
  with pytest.raises(ValueError, match="features_from=.* was pretrained on 'mnist', but "
                                       "this run trains on 'fashion_mnist'"):
    trainer.load_data(config)


def test_llp_config_rejects_encoder_options_it_would_ignore():
  for args, match in [
      ("method=dllp,finetune_encoder=True", "finetune_encoder is an option of method=llp_bp"),
      ("method=dllp,freeze_encoder=True", "freeze_encoder trains only a new classifier"),
      ("method=llp_bp,init_from=/x,freeze_encoder=True", "freeze_encoder trains only a new"),
      ("method=dllp,init_from=/x,hidden=100", "with init_from the network is the pretrained"),
      ("method=dllp,init_from=/x,features_from=/x", "features_from trains on a frozen"),
  ]:
    with pytest.raises(ValueError, match=match):
      llp.get_config(args)


@requires_raw_data
def test_nested_pretrained_variables_fill_a_submodule(pretrained_dir):
  from labeljax.llp.llp_bp import BagHeadModel
  from labeljax.train.state import create_train_state
  pretrained = pretrained_lib.load(pretrained_dir)
  model = BagHeadModel(pretrained.finetune_model(10))
  state = create_train_state(model, optax.sgd(0.1), jnp.zeros((1, 28, 28, 1)),
                             jax.random.key(0))
  state = pretrained_lib.initialize(state, pretrained.nested("instance_model"),
                                    parallel.replicated(parallel.make_mesh()))
  for tree, source in [(state.params, pretrained.params),
                       (state.model_state["batch_stats"], pretrained.model_state["batch_stats"])]:
    for name in ("encoder", "head_norm_0"):
      jax.tree.map(np.testing.assert_array_equal, tree["instance_model"][name], source[name])
  assert "bag_output" in state.params and "Dense_0" in state.params["instance_model"]


@requires_raw_data
@pytest.mark.parametrize("warm_start", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_llp_bp_networks_start_from_the_simclr_encoder(pretrained_dir, tmp_path, warm_start):
  # With a vanishing learning rate the trained networks still hold their start.
  graph = "" if warm_start else ",graph_representation=pretrained"
  config = llp.get_config(f"dataset=mnist,method=llp_bp,bag_size=64,num_steps=4,rounds=1,"
                          f"learning_rate=1e-12,weight_decay=0,finetune_encoder=True,"
                          f"warm_start={warm_start},init_from={pretrained_dir}{graph}")
  config.batch_size, config.validation_fraction = 128, 0.05
  config.num_labels, config.num_validation = 1000, 0
  config.log_every = config.eval_every = config.checkpoint_every = 4
  results = train_and_evaluate(config, str(tmp_path))
  assert results["step"] == 4 and "validation_bag_loss" in results["monitor"]
  encoder = pretrained_lib.load(pretrained_dir).params
  stages = {"round_0": lambda params: params["instance_model"]}
  if warm_start:
    stages["dllp"] = lambda params: params
  for stage, network in stages.items():
    params = network(pretrained_lib.restore_on_host(str(tmp_path / stage / "checkpoints"),
                                                    4)["params"])
    assert set(params) == {"encoder", "head_0", "head_norm_0", "Dense_0"}, stage
    for name in ("encoder", "head_0", "head_norm_0"):
      jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6),
                   params[name], encoder[name])


@requires_raw_data
def test_init_from_errors_name_the_problem(pretrained_dir, tmp_path):
  config = ssl.get_config(f"dataset=mnist,num_steps=10,init_from={tmp_path / 'missing'}")
  with pytest.raises(FileNotFoundError, match="is not a directory"):
    train_and_evaluate(config, str(tmp_path / "run"))
  config.init_from = str(tmp_path)
  with pytest.raises(FileNotFoundError, match="has no pretrained.json"):
    train_and_evaluate(config, str(tmp_path / "run"))
  config = ssl.get_config(f"dataset=fashion_mnist,init_from={pretrained_dir}")
  with pytest.raises(ValueError, match="pretrained on 'mnist', but this run trains on "
                                       "'fashion_mnist'"):
    train_and_evaluate(config, str(tmp_path / "run"))
  # Another architecture: the spec of a wider encoder over the same checkpoint.
  pretrained = pretrained_lib.load(pretrained_dir)
  wider = pretrained._replace(spec={**pretrained.spec, "model_kwargs": dict(
      widths=(4, 8, 12), embedding_dim=16)})
  model = wider.finetune_model(10)
  from labeljax.train.state import create_train_state
  tx = optax.sgd(0.1)
  state = create_train_state(model, tx, jnp.zeros((1, 28, 28, 1)), jax.random.key(0))
  with pytest.raises(ValueError, match=r"params\['encoder'\]\['BatchNorm_2'\]\['bias'\] has "
                                       r"shape \(8,\) in the pretrained checkpoint but "
                                       r"\(12,\) in this model"):
    pretrained_lib.initialize(state, pretrained,
                              parallel.replicated(parallel.make_mesh()))


@requires_raw_data
def test_bad_pretraining_settings_fail_before_training(tmp_path):
  with pytest.raises(ValueError, match="batch_size >= 2"):
    train_and_evaluate(_simclr_config(batch_size=1), str(tmp_path))
  with pytest.raises(ValueError, match="temperature must be > 0, got -0.1"):
    train_and_evaluate(_simclr_config(temperature=-0.1), str(tmp_path))
  with pytest.raises(ValueError, match="SimCLR draws image views .* adult is tabular"):
    train_and_evaluate(_simclr_config(dataset="adult", model="mlp", model_kwargs={}),
                       str(tmp_path))
  assert not (tmp_path / "checkpoints").exists()


@pytest.mark.slow
@requires_raw_data
def test_a_killed_pretraining_resumes_to_the_uninterrupted_result(pretrained_dir, tmp_path):
  # The uninterrupted run is the fixture's: the same config on 4 devices.
  config = _simclr_config()
  log = tmp_path / "log.txt"
  # The loader reads ahead: its 20th batch is asked for mid-training.
  kill = kill_points.KillPoint("labeljax.data.pipeline:TrainLoader.local_batch", 20)
  assert kill_points.run(config, tmp_path, log, kill) == -9, log.read_text()
  steps = ocp.CheckpointManager(str(tmp_path / "checkpoints")).all_steps()
  assert 0 < max(steps) < 20, steps  # killed between two checkpoints
  assert kill_points.run(config, tmp_path, log) == 0, log.read_text()
  assert f"Resumed from step {max(steps)}" in log.read_text()
  results = [json.load(open(os.path.join(run, "results.json")))
             for run in (pretrained_dir, tmp_path)]
  assert results[0]["test"] == results[1]["test"]
  # One metrics row per (step, split): what the killed run logged past its
  # checkpoint was dropped and logged again.
  keys = [[(r["step"], r["split"]) for r in map(json.loads, open(os.path.join(run, "metrics.jsonl")))]
          for run in (pretrained_dir, tmp_path)]
  assert len(set(keys[1])) == len(keys[1]) and sorted(keys[0]) == sorted(keys[1])
  states = [pretrained_lib.restore_on_host(os.path.join(run, "checkpoints"), 20)
            for run in (pretrained_dir, tmp_path)]
  for a, b in zip(jax.tree.leaves(states[0]), jax.tree.leaves(states[1])):
    np.testing.assert_array_equal(a, b)


@requires_raw_data
def test_simclrv2_pipeline_runs_every_stage(pretrained_dir, tmp_path):
  config = simclrv2.get_config(f"dataset=mnist,num_labels=40,init_from={pretrained_dir},"
                               "finetune_steps=10,distill_steps=10")
  config.pretrain = _simclr_config()
  config.num_validation = 100
  config.student_model_kwargs = dict(widths=(2, 4, 4), embedding_dim=8)
  config.student_head_width = 8
  for stage in (config.finetune, config.distill):
    stage.log_every = stage.eval_every = stage.checkpoint_every = 10
  config.distill.batch_size = 8
  results = train_and_evaluate(config, str(tmp_path))
  assert {"linear_test", "knn_test", "finetune_test", "self_distill_test",
          "distill_small_test", "test"} <= set(results)
  assert results["test"] == results["self_distill_test"]
  sizes = results["parameters"]
  assert sizes["self_distill"] == sizes["teacher"] and 2 * sizes["distill_small"] < sizes["teacher"]
  for stage in ("finetune", "self_distill", "distill_small"):
    assert (tmp_path / stage / "checkpoints").is_dir()
  assert not (tmp_path / "pretrain").exists()  # init_from: no pretraining stage


def test_probes_reject_labels_out_of_range():
  x = np.zeros((4, 3))
  with pytest.raises(ValueError, match=r"Labels must be in \[0, 3\), got range \[0, 3\]"):
    probes.knn_predict(x, np.array([0, 1, 2, 3]), x, 3)
  with pytest.raises(ValueError, match=r"Labels must be in \[0, 2\)"):
    probes.linear_probe(x, np.array([0, 1, -1, 1]), x, 2)
