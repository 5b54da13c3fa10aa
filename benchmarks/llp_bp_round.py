r"""One LLP-BP round at scale, end to end: time per stage and peak memory.

Data: the N x 16 points of `bp_benchmark.py` (two Gaussian classes, prior
0.3), plus N / 10 test points, registered as an in-memory data set
(`data.register_dataset`) and trained by the library's own pipeline:
experiments/configs/llp.py with method=llp_bp, one round, random bags of
`--bag_size`, the MLP (256, 128) on minibatches of 512 for `--num_steps`
steps, 10% of the points held out as validation bags, the kNN graph on the
inputs with `--knn_method`. Stage times come from timers around the library
functions the round calls:

  kNN       knn.knn_graph
  BP        bp.build_llp_graph (without its kNN) and bp.run_bp (`--sweeps`)
  training  trainer.fit (compile included)
  other     the rest: data and bags, predicting every point, validation and
            test metrics

  python benchmarks/llp_bp_round.py --num_points=1000000 --knn_method=nndescent

Peak memory is the process's peak RSS (everything: Python, JAX, data, graph,
BP, training). CPU seconds (all the process's threads) are printed beside wall
seconds, with the load average, as a shared machine stretches the latter.
"""

import argparse
import contextlib
import os
import resource
import tempfile
import time

import jax
import numpy as np

from bp_benchmark import synthetic  # pylint: disable=g-bad-import-order
from experiments.configs import llp
from labeljax import data, methods
from labeljax.llp import bp, knn
from labeljax.train import trainer


def clock() -> np.ndarray:
  return np.array([time.perf_counter(), time.process_time()])


def timed(totals: dict, name: str, fn):
  """`fn`, adding its [wall, CPU] seconds (outputs ready) to totals[name]."""

  def wrapper(*args, **kwargs):
    start = clock()
    out = jax.block_until_ready(fn(*args, **kwargs))
    totals[name] = totals.get(name, 0.0) + clock() - start
    return out

  return wrapper


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--num_points", type=int, default=1_000_000)
  parser.add_argument("--bag_size", type=int, default=1024)
  parser.add_argument("--knn_method", default="nndescent", choices=knn.METHODS)
  parser.add_argument("--num_steps", type=int, default=1000)
  parser.add_argument("--sweeps", type=int, default=100)
  parser.add_argument("--workdir", default=None, help="default: a fresh temporary folder")
  args = parser.parse_args()

  n = args.num_points
  x, labels, _, _ = synthetic(n + n // 10, 1)
  data.register_dataset("synthetic_llp", data.from_arrays(
      "synthetic_llp", train=(x[:n], labels[:n].astype(int)),
      test=(x[n:], labels[n:].astype(int))))
  config = llp.get_config(f"dataset=synthetic_llp,method=llp_bp,model=mlp,rounds=1,"
                          f"bag_size={args.bag_size},num_steps={args.num_steps}")
  config.knn_method = args.knn_method
  config.bp_sweeps = args.sweeps

  totals = {}
  # Inner first: build_llp_graph's time includes its kNN, subtracted below.
  patches = [(knn, "knn_graph"), (bp, "build_llp_graph"), (bp, "run_bp"),
             (trainer, "fit")]
  originals = {(m, a): getattr(m, a) for m, a in patches}
  for module, attribute in patches:
    setattr(module, attribute, timed(totals, attribute, getattr(module, attribute)))
  with contextlib.ExitStack() as stack:
    workdir = args.workdir or stack.enter_context(tempfile.TemporaryDirectory())
    start = clock()
    results = methods.train_and_evaluate(config, workdir)
    total = clock() - start
  for (module, attribute), original in originals.items():
    setattr(module, attribute, original)

  stages = {"kNN": totals["knn_graph"],
            "BP": totals["build_llp_graph"] - totals["knn_graph"] + totals["run_bp"],
            "training": totals["fit"]}
  stages["other"] = total - sum(stages.values())
  print(f"jax {jax.__version__}, {os.cpu_count()} cores, load average "
        f"{' / '.join(f'{v:.2f}' for v in os.getloadavg())} (1 / 5 / 15 min)")
  print(f"N = {n} x 16, bags of {args.bag_size}, kNN {args.knn_method} (k = "
        f"{config.num_neighbors}), {args.sweeps} BP sweeps, {args.num_steps} training steps; "
        f"test AUC {results['test']['auc']:.4f}\n")
  print("| stage | wall (s) | CPU (s) |\n|---|---|---|")
  for name, (wall, cpu) in stages.items():
    print(f"| {name} | {wall:.1f} | {cpu:.1f} |")
  print(f"| **round** | **{total[0]:.1f}** | **{total[1]:.1f}** |")
  print(f"\npeak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GB")


if __name__ == "__main__":
  main()
