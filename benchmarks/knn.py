r"""Approximate kNN at scale: labeljax IVF and NN-descent beside faiss.

Data: the N x 16 points of `bp_benchmark.py` (a two-component Gaussian
mixture, class means 1.5 apart along one axis, so nearly isotropic: the hard
case for any partition of space). Every method builds the directed k = 10
graph of all N points, self excluded, and is timed build + search (compile
included for JAX, index training included for faiss). Recall@10 is measured
on a seeded random sample of queries against their exact neighbours among all
N points (`knn.exact_neighbors`: O(sample · N d), where the exact graph at 1M
would take 9-18 min).

  python benchmarks/knn.py                                # 1M, all methods
  python benchmarks/knn.py --num_points=100000 --methods=ivf --ivf=256:16,256:32

`--ivf` lists num_cells:num_probes settings of labeljax's IVF (a bare `:P`
uses the default cells). labeljax's `method="nndescent"` needs pynndescent
(`pip install 'labeljax[knn]'`), faiss `pip install faiss-cpu`; a method
whose package is missing is reported as not installed.
Each method runs in this process one after another, on all cores; CPU
seconds (all threads) are printed beside wall seconds, as a machine shared
with other jobs stretches the latter.
"""

import argparse
import os
import platform
import resource
import time

import numpy as np

from bp_benchmark import synthetic  # pylint: disable=g-bad-import-order

K = 10


def machine() -> str:
  model = platform.processor()
  try:
    with open("/proc/cpuinfo") as f:
      model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
  except (OSError, StopIteration):
    pass
  return (f"CPU {model}, {os.cpu_count()} cores, load average "
          f"{' / '.join(f'{v:.2f}' for v in os.getloadavg())} (1 / 5 / 15 min)")


def labeljax_knn(x, method, **options):
  import jax  # pylint: disable=g-import-not-at-top
  from labeljax.llp import knn  # pylint: disable=g-import-not-at-top
  edges = jax.block_until_ready(knn.knn_graph(x, K, method=method, **options))
  return np.asarray(edges.receivers).reshape(-1, K)


def labeljax_ivf(x, num_cells, num_probes):
  return labeljax_knn(x, "ivf", num_cells=num_cells, num_probes=num_probes)


def faiss_ivf(x, num_cells, num_probes):
  import faiss  # pylint: disable=g-import-not-at-top
  from labeljax.llp import knn  # pylint: disable=g-import-not-at-top
  index = faiss.IndexIVFFlat(faiss.IndexFlatL2(x.shape[1]), x.shape[1], num_cells)
  index.train(x)
  index.add(x)
  index.nprobe = num_probes
  return knn.drop_self_matches(index.search(x, K + 1)[1])


def faiss_hnsw(x, m, ef_search):
  import faiss  # pylint: disable=g-import-not-at-top
  from labeljax.llp import knn  # pylint: disable=g-import-not-at-top
  index = faiss.IndexHNSWFlat(x.shape[1], m)
  index.hnsw.efConstruction = 40
  index.add(x)
  index.hnsw.efSearch = ef_search
  return knn.drop_self_matches(index.search(x, K + 1)[1])


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--num_points", type=int, default=1_000_000)
  parser.add_argument("--sample", type=int, default=2000, help="queries with exact ground truth")
  parser.add_argument("--methods", default="ivf,nndescent,faiss_ivf,faiss_hnsw")
  parser.add_argument("--ivf", default="1000:32,:",
                      help="labeljax IVF settings cells:probes (empty = default)")
  parser.add_argument("--faiss_ivf", default="1000:32,4000:64", help="faiss IVF cells:nprobe")
  parser.add_argument("--faiss_hnsw", default="16:64", help="faiss HNSW M:efSearch")
  args = parser.parse_args()

  import jax  # pylint: disable=g-import-not-at-top
  from labeljax.llp import knn  # pylint: disable=g-import-not-at-top
  print(machine())
  print(f"jax {jax.__version__}, N = {args.num_points}, d = 16, k = {K}, "
        f"recall on {args.sample} random queries")
  x, *_ = synthetic(args.num_points, 1)
  queries = np.random.default_rng(1).choice(len(x), args.sample, replace=False)
  start = time.perf_counter()
  exact_ids = np.asarray(knn.exact_neighbors(x, queries, K)[0])
  print(f"exact ground truth for the sample: {time.perf_counter() - start:.1f} s")

  def settings(text, cast=int):
    return [tuple(cast(v) if v else None for v in s.split(":")) for s in text.split(",") if s]

  runs = []
  for method in args.methods.split(","):
    if method == "ivf":
      runs += [(f"labeljax IVF cells={c or 'default'} probes={p or 'default'}",
                labeljax_ivf, (c, p)) for c, p in settings(args.ivf)]
    elif method == "faiss_ivf":
      runs += [(f"faiss IVFFlat cells={c} nprobe={p}", faiss_ivf, (c, p))
               for c, p in settings(args.faiss_ivf)]
    elif method == "faiss_hnsw":
      runs += [(f"faiss HNSWFlat M={m} efSearch={e}", faiss_hnsw, (m, e))
               for m, e in settings(args.faiss_hnsw)]
    elif method == "nndescent":
      name = f"labeljax NN-descent ({knn.NNDESCENT_NEIGHBORS} neighbours built)"
      runs.append((name, labeljax_knn, ("nndescent",)))
    else:
      raise ValueError(f"Unknown method {method!r}.")

  print(f"\n| method | build + search, wall (s) | CPU (s) | recall@{K} | load (1 min) |\n"
        "|---|---|---|---|---|")
  for name, fn, params in runs:
    try:
      start, cpu = time.perf_counter(), time.process_time()
      ids = fn(x, *params)
      seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    except ImportError as e:
      print(f"| {name} | not installed ({e.name}) | | | |", flush=True)
      continue
    found = ids[queries]
    recall = (found[:, :, None] == exact_ids[:, None, :]).any(1).mean()
    print(f"| {name} | {seconds:.1f} | {cpu:.1f} | {recall:.4f} | {os.getloadavg()[0]:.2f} |",
          flush=True)
  print(f"\npeak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GB")


if __name__ == "__main__":
  main()
