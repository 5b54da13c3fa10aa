r"""Multi-class LLP-BP: BP time, peak memory and convergence per bag factor.

Synthetic data: N points in 16-d from a C-component Gaussian mixture (labels
uniform over C classes, class means drawn from N(0, s² I), s =
`--class_scale`), random bags of a fixed size, class counts from the labels,
exact kNN graph with k = 10 and the Matérn-1/2 kernel. Every configuration
runs in a fresh subprocess, so its peak RSS (ru_maxrss, the whole process:
Python, JAX, data, graph and BP) is its own. The kNN graph is computed once,
timed, and cached.

  python benchmarks/multiclass_bp.py                    # N = 60k, C = 10, bags 16..1024
  python benchmarks/multiclass_bp.py --bag_sizes=1024 --forms=saddlepoint

For each (bag size, form): compile time, wall and CPU time of `--sweeps`
sweeps of the compiled call (no `tol`), then a second run with `--tol` up to
`--max_sweeps` for the sweeps to convergence, the accuracy of the argmax
marginals and, for the approximate forms, the largest and mean |ΔP| from the
exact ("cardinality") marginals of the same settings (cached by this or an
earlier invocation).
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

DIM = 16


def synthetic(n: int, num_classes: int, bag_size: int, class_scale: float, seed: int = 0):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, num_classes, n)
  means = class_scale * rng.normal(size=(num_classes, DIM))
  features = (rng.normal(size=(n, DIM)) + means[labels]).astype(np.float32)
  bag_ids = rng.permutation(n) // bag_size
  counts = np.zeros((bag_ids.max() + 1, num_classes))
  np.add.at(counts, (bag_ids, labels), 1)
  return features, labels, bag_ids, counts


def peak_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def cpu_s() -> float:
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def _data_key(args) -> str:
  return f"n{args.n}_c{args.num_classes}_s{args.class_scale}_k{args.num_neighbors}"


def _marginals_path(args, bag: int, form: str) -> str:
  """Where a run's converged marginals go, keyed by everything they depend on."""
  key = (f"{_data_key(args)}_b{bag}_lb{args.lambda_bag}_ls{args.lambda_sim}_l{args.length_scale}"
         f"_d{args.damping}_t{args.tol}_m{args.max_sweeps}")
  return os.path.join(args.cache_dir, f"marginals_{key}_{form}.npy")


def knn_worker(args):
  import jax  # pylint: disable=g-import-not-at-top
  from labeljax.llp import knn  # pylint: disable=g-import-not-at-top
  features, *_ = synthetic(args.n, args.num_classes, 1, args.class_scale)
  start = time.perf_counter()
  edges = jax.block_until_ready(knn.knn_graph(features, args.num_neighbors))
  seconds = time.perf_counter() - start
  np.savez(os.path.join(args.cache_dir, f"edges_{_data_key(args)}.npz"),
           **{k: np.asarray(v) for k, v in edges._asdict().items()})
  return {"knn_s": seconds, "peak_rss_mb": peak_rss_mb()}


def bp_worker(args):
  import jax  # pylint: disable=g-import-not-at-top
  from labeljax.llp import knn  # pylint: disable=g-import-not-at-top
  from labeljax.llp import multiclass_bp as mbp  # pylint: disable=g-import-not-at-top
  _, labels, bag_ids, counts = synthetic(args.n, args.num_classes, args.bag, args.class_scale)
  with np.load(os.path.join(args.cache_dir, f"edges_{_data_key(args)}.npz")) as f:
    edges = knn.Edges(**{k: jax.numpy.asarray(f[k]) for k in f.files})
  graph = mbp.build_multiclass_graph(edges, bag_ids, counts, lambda_bag=args.lambda_bag,
                                     lambda_sim=args.lambda_sim, length_scale=args.length_scale)
  jax.block_until_ready(graph)
  rss_graph = peak_rss_mb()

  compile_s = []
  jax.monitoring.register_event_duration_secs_listener(
      lambda event, seconds, **_: compile_s.append(seconds) if event.startswith(
          "/jax/core/compile/") else None)

  def run(sweeps, tol=None):
    start, cpu = time.perf_counter(), cpu_s()
    result = jax.block_until_ready(mbp.run_multiclass_bp(graph, sweeps, args.damping, tol,
                                                         bag_factor=args.form))
    return time.perf_counter() - start, cpu_s() - cpu, result

  run(1)  # compiles; sweeps and tol are traced, so this executable is reused
  bp_s, bp_cpu_s, result = run(args.sweeps)
  _, _, converged = run(args.max_sweeps, args.tol)
  marginals = np.asarray(converged.marginals)
  np.save(_marginals_path(args, args.bag, args.form), marginals)
  return {"compile_s": sum(compile_s), "bp_s": bp_s, "bp_cpu_s": bp_cpu_s,
          "delta": float(result.delta), "sweeps_to_tol": int(converged.num_sweeps),
          "delta_at_stop": float(converged.delta),
          "accuracy": float((marginals.argmax(1) == labels).mean()),
          "rss_before_bp_mb": rss_graph, "peak_rss_mb": peak_rss_mb()}


def spawn(args, **worker_args) -> dict:
  """Runs one worker in a fresh process; returns its JSON result or the error."""
  cmd = [sys.executable, os.path.abspath(__file__)] + [
      f"--{k}={v}" for k, v in vars(args).items() if k not in worker_args and v is not None] + [
          f"--{k}={v}" for k, v in worker_args.items()]
  proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
  if proc.returncode != 0:
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
    return {"error": f"exit {proc.returncode}: {tail[0][:120]}"}
  return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ints = lambda s: [int(float(x)) for x in s.split(",")]  # noqa: E731
  parser.add_argument("--n", type=int, default=60000)
  parser.add_argument("--num_classes", type=int, default=10)
  parser.add_argument("--bag_sizes", type=ints, default=[16, 64, 256, 1024])
  parser.add_argument("--forms", type=lambda s: s.split(","),
                      default=["cardinality", "saddlepoint", "gaussian"])
  parser.add_argument("--sweeps", type=int, default=100)
  parser.add_argument("--tol", type=float, default=1e-4,
                      help="largest message change that counts as converged")
  parser.add_argument("--max_sweeps", type=int, default=300)
  parser.add_argument("--damping", type=float, default=0.5)
  parser.add_argument("--lambda_bag", type=float, default=1.0)
  parser.add_argument("--lambda_sim", type=float, default=1.0)
  parser.add_argument("--length_scale", type=float, default=4.0,
                      help="kernel length scale; kNN distances here are ~3-4")
  parser.add_argument("--class_scale", type=float, default=1.0)
  parser.add_argument("--num_neighbors", type=int, default=10)
  parser.add_argument("--cache_dir", default=os.path.join(tempfile.gettempdir(),
                                                          "labeljax_multiclass_bp_benchmark"))
  parser.add_argument("--reuse_graph", action="store_true",
                      help="use the cached kNN graph instead of recomputing (no kNN timing)")
  parser.add_argument("--worker", choices=["knn", "bp"], help=argparse.SUPPRESS)
  parser.add_argument("--bag", type=int, help=argparse.SUPPRESS)
  parser.add_argument("--form", help=argparse.SUPPRESS)
  args = parser.parse_args()

  if args.worker:
    print(json.dumps((knn_worker if args.worker == "knn" else bp_worker)(args)))
    return

  os.makedirs(args.cache_dir, exist_ok=True)
  ns = argparse.Namespace(**{k: v for k, v in vars(args).items() if k not in (
      "worker", "bag", "form", "bag_sizes", "forms", "reuse_graph")})
  print(f"N={args.n}, C={args.num_classes}, {DIM}-d, kNN k={args.num_neighbors}, "
        f"{args.sweeps} sweeps, damping {args.damping}, lambda_bag {args.lambda_bag}, "
        f"lambda_sim {args.lambda_sim}, length_scale {args.length_scale}, tol {args.tol}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}\n")
  if args.reuse_graph and os.path.exists(os.path.join(args.cache_dir,
                                                      f"edges_{_data_key(args)}.npz")):
    print("kNN graph: cached")
  else:
    r = spawn(ns, worker="knn")
    print("kNN graph: " + (r["error"] if "error" in r else
                           f"{r['knn_s']:.1f} s, peak {r['peak_rss_mb']:.0f} MB"), flush=True)

  print(f"\n{'bag':>5} {'form':>11} {'compile s':>9} {'BP s':>7} {'CPU s':>7} {'peak MB':>8} "
        f"{'pre-BP MB':>9} {'delta':>8} {'sweeps':>6} {'acc':>6} {'max|dP|':>8} {'mean|dP|':>8}")
  for bag in args.bag_sizes:
    for form in args.forms:
      r = spawn(ns, worker="bp", bag=bag, form=form)
      head = f"{bag:>5} {form:>11} "
      if "error" in r:
        print(head + r["error"], flush=True)
        continue
      sweeps = (str(r["sweeps_to_tol"]) if r["delta_at_stop"] <= args.tol
                else f">{args.max_sweeps}")
      exact = _marginals_path(args, bag, "cardinality")
      vs_exact = f"{'':>8} {'':>8}"
      if form != "cardinality" and os.path.exists(exact):
        diff = np.abs(np.load(exact) - np.load(_marginals_path(args, bag, form)))
        vs_exact = f"{diff.max():8.4f} {diff.mean():8.5f}"
      print(head + f"{r['compile_s']:9.1f} {r['bp_s']:7.2f} {r['bp_cpu_s']:7.2f} "
            f"{r['peak_rss_mb']:8.0f} {r['rss_before_bp_mb']:9.0f} {r['delta']:8.1e} "
            f"{sweeps:>6} {r['accuracy']:6.3f} {vs_exact}", flush=True)


if __name__ == "__main__":
  main()
