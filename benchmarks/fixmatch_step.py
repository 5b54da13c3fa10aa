r"""FixMatch train-step throughput: labeljax (JAX) against USB's step in PyTorch.

One step is FixMatch as USB (microsoft/Semi-supervised-learning) runs it: 64
labeled + 7×64 unlabeled images, the labeled batch, the weak and the strong
views in one concatenated forward pass; cross-entropy on the labeled logits
plus the masked cross-entropy of the strong logits against hard pseudo-labels
from the weak logits (threshold 0.95); SGD (momentum 0.9, Nesterov, weight
decay 5e-4 on kernels), the cosine learning-rate schedule and the EMA (0.999)
of the parameters.

The JAX step is the library's: `models.get_model`, `create_train_state`,
`make_optimizer`, `make_train_step` with a FixMatch loss composed as in
`labeljax/ssl/training.py`, jitted with the state donated on a mesh of
`--devices` CPU devices (default one; with more, each takes a slice of the
batch, as `trainer.fit` splits it over all devices). USB needs torchvision,
which has no CPU build here, so the PyTorch side re-implements its WRN-28-2
(semilearn/nets/wrn/wrn.py) and FixMatch step. `small_cnn` is labeljax's
SmallCNN (widths 16, 32, 64, as in experiments/configs/ssl.py) on 28×28×1
inputs against the same CNN in PyTorch.

  pip install torch==2.13.0    # CPU build; the benchmark's only extra dependency
  python benchmarks/fixmatch_step.py --model=both --steps=8 --warmup=1
  python benchmarks/fixmatch_step.py --model=small_cnn --cores=1   # pinned to one core
  python benchmarks/fixmatch_step.py --model=wrn28_2 --devices=2   # batch over 2 CPU devices

Both steps take already augmented float32 views (the model step alone); the
JAX on-device augmentation of a step's views (labeled weak, unlabeled weak
and strong) is timed on its own. JAX and torch steps alternate, so load on the
machine hits both. Medians over `--steps` steps after `--warmup` untimed ones;
JAX compile time (tracing, lowering, XLA) is reported separately. Both get
the same thread budget: torch one thread per core of the affinity mask, XLA
its pools sized from the same mask (`--cores=N` sets it).
"""

import argparse
import math
import os
import statistics
import sys
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from labeljax import augment
from labeljax import models
from labeljax import parallel
from labeljax.ssl import common
from labeljax.ssl import get_algorithm
from labeljax.train import optim
from labeljax.train.state import create_train_state
from labeljax.train.step import (LossAux, apply_model, cross_entropy, make_train_step,
                                 model_inputs)

try:
  import torch  # pylint: disable=g-import-not-at-top
  import torch.nn.functional as F  # pylint: disable=g-import-not-at-top
except ImportError:
  sys.exit("This benchmark compares against PyTorch, which labeljax does not "
           "depend on: pip install torch==2.13.0")

NUM_CLASSES = 10
BATCH_SIZE = 64        # labeled images per step
UNLABELED_RATIO = 7    # μ: unlabeled images per labeled one
THRESHOLD = 0.95
LEARNING_RATE = 0.03
WEIGHT_DECAY = 5e-4
EMA_DECAY = 0.999
RANDAUGMENT_OPS = 2    # experiments/configs/ssl.py (USB uses 3)
NUM_STEPS = 2 ** 20    # length of the learning-rate schedule, as in USB


class Workload(NamedTuple):
  model: str           # labeljax registry name
  model_kwargs: dict
  image_shape: tuple   # H, W, C
  flip: bool           # weak view flips (not for digits)


WORKLOADS = {
    "wrn28_2": Workload("wrn28_2", {}, (32, 32, 3), flip=True),
    "small_cnn": Workload("small_cnn", dict(widths=(16, 32, 64), embedding_dim=128),
                          (28, 28, 1), flip=False),
}


# The JAX step, from the library.


def fixmatch_loss(model, algorithm):
  """training.py's loss with the views given, so augmentation is not timed."""

  def loss_fn(params, state, batch, rng):
    labeled, unlabeled = batch["labeled"], batch["unlabeled"]
    n_l, n_u = labeled["inputs"].shape[0], unlabeled["weak"].shape[0]
    inputs = jnp.concatenate([labeled["inputs"], unlabeled["weak"], unlabeled["strong"]])
    out, model_state = apply_model(model, params, state.model_state, inputs,
                                   train=True, rng=rng)
    logits_l, weak_logits, strong_logits = jnp.split(out.logits, [n_l, n_l + n_u])
    labels, algo_state, algo_metrics = algorithm.pseudo_label(
        state.algo_state, jax.lax.stop_gradient(weak_logits), unlabeled["index"])
    loss_l = cross_entropy(logits_l, labeled["labels"]).mean()
    loss_u, u_metrics = common.unlabeled_objective(
        algorithm, strong_logits, labels, algo_state, state.step, NUM_STEPS)
    metrics = {"labeled_loss": loss_l, **u_metrics, **algo_metrics}
    return loss_l + loss_u, LossAux(model_state, algo_state, metrics)

  return loss_fn


def jax_setup(workload: Workload, views: dict, num_devices: int):
  """(state, compiled `step(state)`, compile seconds, parameter count)."""
  mesh = parallel.make_mesh(jax.devices()[:num_devices])
  model = models.get_model(workload.model, NUM_CLASSES, **workload.model_kwargs)
  algorithm = get_algorithm("fixmatch", threshold=THRESHOLD)
  tx = optim.make_optimizer(ml_collections.ConfigDict(dict(
      name="sgd", learning_rate=LEARNING_RATE, momentum=0.9, nesterov=True,
      weight_decay=WEIGHT_DECAY, schedule="fixmatch_cosine")), NUM_STEPS)
  init_rng, train_rng = jax.random.split(jax.random.key(0))
  sample = np.zeros((1, *workload.image_shape), np.float32)
  state = jax.jit(
      lambda rng: create_train_state(model, tx, sample, rng,
                                     algorithm.init(NUM_CLASSES, len(views["weak"]))),
      out_shardings=parallel.replicated(mesh))(init_rng)
  batch = jax.device_put(
      {"labeled": {"inputs": views["labeled"], "labels": views["labels"]},
       "unlabeled": {"weak": views["weak"], "strong": views["strong"],
                     "index": np.arange(len(views["weak"]), dtype=np.int32)}},
      parallel.batch_sharding(mesh))
  train_step = jax.jit(
      make_train_step(fixmatch_loss(model, algorithm), tx, EMA_DECAY),
      donate_argnums=0,
      out_shardings=(parallel.replicated(mesh), parallel.replicated(mesh)))
  start = time.perf_counter()
  compiled = train_step.lower(state, batch, train_rng).compile()
  compile_s = time.perf_counter() - start
  num_params = sum(x.size for x in jax.tree.leaves(state.params))
  step = lambda state: compiled(state, batch, train_rng)
  return state, step, compile_s, num_params


def jax_augment_setup(workload: Workload, images: np.ndarray):
  """The step's views as training.py draws them, from uint8 images."""
  weak, strong = augment.make_views("image", ml_collections.ConfigDict(dict(
      flip=workload.flip, randaugment_ops=RANDAUGMENT_OPS)))

  def draw_views(rng, labeled, unlabeled):
    aug_l, aug_w, aug_s = jax.random.split(rng, 3)
    labeled, unlabeled = model_inputs(labeled), model_inputs(unlabeled)
    return weak(aug_l, labeled), weak(aug_w, unlabeled), strong(aug_s, unlabeled)

  labeled, unlabeled = jax.device_put((images[:BATCH_SIZE], images[BATCH_SIZE:]))
  rng = jax.random.key(1)
  start = time.perf_counter()
  compiled = jax.jit(draw_views).lower(rng, labeled, unlabeled).compile()
  compile_s = time.perf_counter() - start
  return lambda i: compiled(jax.random.fold_in(rng, i), labeled, unlabeled), compile_s


# The PyTorch step, as USB runs it.


class TorchWideBlock(torch.nn.Module):
  """USB's pre-activation BasicBlock (BatchNorm momentum 0.001, eps 1e-3)."""

  def __init__(self, in_width: int, width: int, stride: int):
    super().__init__()
    self.bn1 = torch.nn.BatchNorm2d(in_width, momentum=0.001, eps=1e-3)
    self.conv1 = torch.nn.Conv2d(in_width, width, 3, stride, padding=1)
    self.bn2 = torch.nn.BatchNorm2d(width, momentum=0.001, eps=1e-3)
    self.conv2 = torch.nn.Conv2d(width, width, 3, 1, padding=1)
    self.shortcut = (torch.nn.Conv2d(in_width, width, 1, stride)
                     if in_width != width else None)

  def forward(self, x):
    y = F.leaky_relu(self.bn1(x), 0.1)
    if self.shortcut is not None:
      x = self.shortcut(y)  # width changes: the shortcut takes the activated input
    y = self.conv1(y)
    return x + self.conv2(F.leaky_relu(self.bn2(y), 0.1))


def torch_wrn28_2() -> torch.nn.Module:
  layers, in_width = [torch.nn.Conv2d(3, 16, 3, padding=1)], 16
  for stage, width in enumerate((32, 64, 128)):
    for block in range(4):
      layers.append(TorchWideBlock(in_width, width, 2 if stage and not block else 1))
      in_width = width
  layers += [torch.nn.BatchNorm2d(128, momentum=0.001, eps=1e-3),
             torch.nn.LeakyReLU(0.1), torch.nn.AdaptiveAvgPool2d(1),
             torch.nn.Flatten(), torch.nn.Linear(128, NUM_CLASSES)]
  net = torch.nn.Sequential(*layers)
  for m in net.modules():  # USB's initialisation
    if isinstance(m, torch.nn.Conv2d):
      torch.nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="leaky_relu")
    elif isinstance(m, torch.nn.Linear):
      torch.nn.init.xavier_normal_(m.weight)
      torch.nn.init.zeros_(m.bias)
  return net


def torch_small_cnn(widths=(16, 32, 64), embedding_dim=128) -> torch.nn.Module:
  """labeljax's SmallCNN (flax BatchNorm momentum 0.9 is torch's 0.1)."""
  layers, in_width = [], 1
  for i, width in enumerate(widths):
    layers += [torch.nn.Conv2d(in_width, width, 3, padding=1, bias=False),
               torch.nn.BatchNorm2d(width, momentum=0.1), torch.nn.ReLU()]
    if i < len(widths) - 1:
      layers.append(torch.nn.MaxPool2d(2))
    in_width = width
  layers += [torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
             torch.nn.Linear(widths[-1], embedding_dim), torch.nn.ReLU(),
             torch.nn.Linear(embedding_dim, NUM_CLASSES)]
  return torch.nn.Sequential(*layers)


def torch_setup(workload: Workload, views: dict):
  """(step, parameter count): USB's FixMatch.train_step and ParamUpdateHook."""
  torch.manual_seed(0)
  net = torch_wrn28_2() if workload.model == "wrn28_2" else torch_small_cnn(
      **workload.model_kwargs)
  net.train()
  params = list(net.parameters())
  # USB skips decay on names with "bn" or "bias": exactly the 1-d tensors.
  optimizer = torch.optim.SGD(
      [{"params": [p for p in params if p.ndim > 1], "weight_decay": WEIGHT_DECAY},
       {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}],
      lr=LEARNING_RATE, momentum=0.9, nesterov=True)
  scheduler = torch.optim.lr_scheduler.LambdaLR(
      optimizer, lambda k: max(0.0, math.cos(7 * math.pi * k / (16 * NUM_STEPS))))
  ema = [p.detach().clone() for p in params]
  nchw = lambda x: torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
  x_l, x_w, x_s = (nchw(views[k]) for k in ("labeled", "weak", "strong"))
  y_l = torch.from_numpy(views["labels"].astype(np.int64))

  def step():
    logits = net(torch.cat((x_l, x_w, x_s)))
    logits_l = logits[:len(x_l)]
    logits_w, logits_s = logits[len(x_l):].chunk(2)
    sup_loss = F.cross_entropy(logits_l, y_l)
    max_probs, pseudo_labels = torch.softmax(logits_w.detach(), -1).max(-1)
    mask = max_probs.ge(THRESHOLD).float()
    unsup_loss = (F.cross_entropy(logits_s, pseudo_labels, reduction="none") * mask).mean()
    loss = sup_loss + unsup_loss
    loss.backward()
    optimizer.step()
    scheduler.step()
    net.zero_grad()
    with torch.no_grad():
      for average, p in zip(ema, params):
        average.lerp_(p, 1.0 - EMA_DECAY)
    # USB logs these each step (host syncs, as the JAX step's block_until_ready).
    return {"sup_loss": sup_loss.item(), "unsup_loss": unsup_loss.item(),
            "util_ratio": mask.mean().item()}

  return step, sum(p.numel() for p in params)


# Measurement.


def timed(fn) -> float:
  start = time.perf_counter()
  fn()
  return time.perf_counter() - start


def describe(name: str, seconds: list[float], images: int) -> str:
  median = statistics.median(seconds)
  return (f"  {name:<16} {median:8.3f} s/step [{min(seconds):.3f}, {max(seconds):.3f}]"
          f"  {1 / median:8.3f} steps/s  {images / median:9.1f} images/s")


def run(name: str, steps: int, warmup: int, num_devices: int):
  workload = WORKLOADS[name]
  num_unlabeled = BATCH_SIZE * UNLABELED_RATIO
  images_per_step = BATCH_SIZE + 2 * num_unlabeled
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (BATCH_SIZE + num_unlabeled, *workload.image_shape),
                        dtype=np.uint8)
  pixels = images.astype(np.float32) / 255.0
  # Random pixels stand in for the views: the step's cost does not depend on them.
  views = {"labeled": pixels[:BATCH_SIZE], "weak": pixels[BATCH_SIZE:],
           "strong": pixels[BATCH_SIZE:][::-1].copy(),
           "labels": rng.integers(0, NUM_CLASSES, BATCH_SIZE).astype(np.int32)}
  shape = "x".join(map(str, workload.image_shape))
  print(f"\n== {name}: {BATCH_SIZE} labeled + {num_unlabeled} weak + {num_unlabeled} "
        f"strong = {images_per_step} images of {shape} per step ==")

  state, jax_step, compile_s, jax_params = jax_setup(workload, views, num_devices)
  torch_step, torch_params = torch_setup(workload, views)
  draw_views, augment_compile_s = jax_augment_setup(workload, images)
  print(f"  parameters: labeljax {jax_params:,}, torch {torch_params:,}")
  print(f"  JAX compile: step {compile_s:.1f} s, augmentation {augment_compile_s:.1f} s")

  def jax_once():
    nonlocal state
    state, metrics = jax_step(state)
    jax.block_until_ready((state, metrics))

  first_jax = timed(jax_once)
  first_torch = timed(torch_step)
  first_augment = timed(lambda: jax.block_until_ready(draw_views(0)))
  print(f"  first step (untimed warm-up): JAX {first_jax:.3f} s, torch {first_torch:.3f} s, "
        f"JAX augmentation {first_augment:.3f} s")
  for _ in range(warmup - 1):
    jax_once()
    torch_step()
  jax_s, torch_s, augment_s = [], [], []
  for i in range(steps):
    # Alternate which framework goes first, so neither always follows the other.
    for side in (("jax", "torch") if i % 2 == 0 else ("torch", "jax")):
      if side == "jax":
        jax_s.append(timed(jax_once))
      else:
        torch_s.append(timed(torch_step))
    augment_s.append(timed(lambda: jax.block_until_ready(draw_views(i + 1))))

  print(f"  median over {steps} alternating steps [min, max]:")
  print(describe("labeljax (JAX)", jax_s, images_per_step))
  print(describe("USB-style torch", torch_s, images_per_step))
  ratio = statistics.median(torch_s) / statistics.median(jax_s)
  print(f"  throughput ratio JAX/torch: {ratio:.2f}")
  augment_median = statistics.median(augment_s)
  print(f"  JAX augmentation (weak {BATCH_SIZE} + weak {num_unlabeled} + strong "
        f"{num_unlabeled}, RandAugment {RANDAUGMENT_OPS} ops + Cutout): "
        f"{augment_median:.3f} s/step [{min(augment_s):.3f}, {max(augment_s):.3f}], "
        f"{augment_median / statistics.median(jax_s):.0%} of the JAX model step")


def _cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      return next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
  except (OSError, StopIteration):
    return "unknown CPU"


def _pin_to(cores: int) -> None:
  """Restarts this script on the first `cores` cores of its affinity mask:
  XLA sizes its thread pools from the mask when JAX starts, so pinning an
  already started process would not change JAX's thread budget."""
  allowed = sorted(os.sched_getaffinity(0))
  if cores > len(allowed):
    sys.exit(f"--cores={cores}, but this process may use {len(allowed)} cores.")
  if cores < len(allowed):
    os.sched_setaffinity(0, allowed[:cores])
    os.execv(sys.executable, [sys.executable, *sys.argv])


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--model", default="both", choices=[*WORKLOADS, "both"])
  parser.add_argument("--steps", type=int, default=5, help="timed steps per framework")
  parser.add_argument("--warmup", type=int, default=1,
                      help="untimed steps per framework after compilation (>= 1)")
  parser.add_argument("--cores", type=int, default=None,
                      help="pin both frameworks to this many cores (default: all "
                           "the process may use); --cores=1 is the single-core mode")
  parser.add_argument("--devices", type=int, default=1,
                      help="CPU devices the JAX step's batch is split over (data "
                           "parallel, as trainer.fit runs on all devices); XLA's "
                           "thread pools stay sized to the cores")
  args = parser.parse_args()
  if args.steps < 1 or args.warmup < 1:
    parser.error("--steps and --warmup must be >= 1.")
  if args.cores is not None:
    if args.cores < 1:
      parser.error("--cores must be >= 1.")
    _pin_to(args.cores)
  if args.devices < 1 or BATCH_SIZE % args.devices:  # then it divides μ·B too
    parser.error(f"--devices must divide the labeled batch ({BATCH_SIZE}), "
                 f"got {args.devices}.")
  jax.config.update("jax_num_cpu_devices", args.devices)
  cores = sorted(os.sched_getaffinity(0))
  # The same thread budget on both sides: torch gets one thread per core of
  # the mask, and XLA sized its pools from the same mask.
  torch.set_num_threads(len(cores))
  load = os.getloadavg()[0]
  print(f"{_cpu_model()}, {os.cpu_count()} cores on the machine; this run uses "
        f"cores {cores} (1-min load average {load:.2f} at the start)")
  print(f"torch {torch.__version__} with {torch.get_num_threads()} threads; jax "
        f"{jax.__version__} on {args.devices} {jax.devices()[0].platform} device(s), its "
        f"pools sized to {len(cores)} cores")
  if load > os.cpu_count() - len(cores) + 0.5:
    # Other processes' load slows both sides, not necessarily alike.
    print(f"WARNING: the load ({load:.2f}) leaves less than {len(cores)} idle cores; "
          "the ratio below is unreliable.")
  for name in WORKLOADS if args.model == "both" else [args.model]:
    run(name, args.steps, args.warmup, args.devices)
  print(f"\n1-min load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
  main()
