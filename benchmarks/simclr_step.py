r"""Speed of one SimCLR pretraining step, as experiments/configs/simclr.py runs it.

Times the jitted, state-donating train step (two SimCLR views drawn on device,
the encoder and projection head on both, NT-Xent, LARS) on real batches from
the loader, after a warm-up, and prints ms per step, images (views) per
second, and the minutes the config's steps would take at that rate on an
otherwise idle machine (data loading, compilation and monitor evaluations
not included). The same step is timed twice, alternating, with the models'
2x2 pooling as a reshape and max (`models.max_pool`, what the models use) and
as `nn.max_pool`, so the ratio of the two comes from one run.

  LABELJAX_RAW_DATA_DIR=../shared/data python benchmarks/simclr_step.py \
      --config_args=dataset=fashion_mnist --steps=20
"""

import argparse
import os
import statistics
import sys
import time

import flax.linen as nn
import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from experiments.configs import simclr  # pylint: disable=g-import-not-at-top
from labeljax import models
from labeljax import parallel
from labeljax.selfsup import training
from labeljax.train import optim
from labeljax.train import trainer
from labeljax.train.state import create_train_state
from labeljax.train.step import make_train_step


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config_args", default="dataset=fashion_mnist",
                      help="simclr.py arguments, e.g. dataset=mnist,batch_size=128")
  parser.add_argument("--steps", type=int, default=20, help="timed steps")
  args = parser.parse_args()
  config = simclr.get_config(args.config_args)
  data = trainer.load_data(config)
  mesh = parallel.make_mesh()
  setup = training.simclr_setup(config, data, mesh)
  tx = optim.make_optimizer(config.optimizer, config.num_steps)
  sample = np.zeros((1, *data.dataset.info.input_shape), np.float32)
  pools = {"reshape max": models.max_pool,
           "nn.max_pool": lambda x, w: nn.max_pool(x, (w, w), strides=(w, w))}
  steps, states = {}, {}
  for name, pool in pools.items():
    models.max_pool = pool  # read by the models when the step is traced
    states[name] = jax.jit(lambda rng: create_train_state(setup.model, tx, sample, rng),
                           out_shardings=parallel.replicated(mesh))(jax.random.key(0))
    steps[name] = jax.jit(make_train_step(setup.loss_fn(setup.model), tx),
                          donate_argnums=0)
    batches = setup.loader.batches(0)
    for _ in range(3):  # compile and warm up
      states[name], _ = steps[name](states[name], next(batches), jax.random.key(1))
    jax.block_until_ready(states[name])
  models.max_pool = pools["reshape max"]
  times = {name: [] for name in pools}
  for _ in range(args.steps):
    batch = next(batches)
    for name in pools:  # alternate, so load changes hit both alike
      start = time.perf_counter()
      states[name], _ = steps[name](states[name], batch, jax.random.key(1))
      jax.block_until_ready(states[name])
      times[name].append(time.perf_counter() - start)
  print(f"{jax.device_count()} {jax.default_backend()} device(s), {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.2f}; simclr.py:{args.config_args}")
  for name, measured in times.items():
    seconds = statistics.median(measured)
    print(f"SimCLR step, pooling by {name}: {1000 * seconds:.0f} ms (median of "
          f"{args.steps}), {2 * config.batch_size / seconds:.0f} images/s, "
          f"{config.num_steps} steps = {config.num_steps * seconds / 60:.1f} min")
  ratio = statistics.median(times["nn.max_pool"]) / statistics.median(times["reshape max"])
  print(f"nn.max_pool step / reshape-max step: {ratio:.2f}")

if __name__ == "__main__":
  main()
