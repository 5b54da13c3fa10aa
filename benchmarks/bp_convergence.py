r"""Why LLP-BP's loopy BP does not converge, and what its marginals teach a network.

Round 0's graph exactly as `llp_bp.graph_marginals` builds it for
`experiments/configs/llp.py:dataset=DATASET,method=llp_bp` (`--dataset`:
adult or llp_bp_bank; flattened inputs of the training pool, cosine 5-NN,
Matérn-1/2, λ_s = λ_b = 1, exact cardinality bag factors, no prior field),
for feature bags (Adult only: education × marital-status, sizes in [50,
2500]) and random bags of 128 and 512 (seed 0). On each graph `bp.run_bp`
runs:

* the library's damping 0.5 and heavier damping (`--dampings`);
* weaker similarity (λ_s scaled, `--lambda_sims`) and weaker bags
  (λ_b, `--lambda_bags`), at damping 0.5;
* each factor family alone: the bag factors without edges, and the
  similarity edges without bags but with the bags' beliefs (the bag-only
  fixed point, log-odds) as a frozen prior field, so the edges see the
  evidence the bags give;

and reports the sweeps to a largest message change ≤ `--tol` (log-odds; up to
`--max_sweeps`), the largest change at sweeps 50 / 100 / 200 / 500 (a change
that stays flat is an oscillation, one that keeps falling slow convergence),
the wall time of the `--tol` run (compiled, on the shared CPU) and the ROC AUC
of the marginals against the hidden labels after 100 sweeps (what LLP-BP
uses) and at the end (oracle: analysis only, LLP never sees them).

What a learner gets from the 100-sweep marginals: "std@100", their standard
deviation over the pool (the bag proportions alone vary by about
sqrt(p(1−p)/B)); "r(degree)", their correlation with each node's weighted
degree Σ_j w_ij (the log-odds a node pays to differ from all its
neighbours); and "fit AUC", the test AUC of a linear least-squares fit of the
marginals on the pool's inputs (ridge 1e-2), a stand-in for the network a
round trains on them: the ranking their linear trend generalises to. A first
row per graph, "bag proportions", scores each row's own bag proportion (no
BP) the same way.

Beside each λ_s it prints ρ, the spectral radius of the similarity edges'
Mooij-Kappen matrix (tanh|J_ij| on non-backtracking pairs of directed edges,
J_ij = w_ij / 2 the spin coupling of exp(−w_ij [y_i ≠ y_j])). ρ < 1 makes
BP on the edges alone converge for any field (Mooij and Kappen, IEEE Trans.
Inf. Theory 2007); ρ > 1 puts the attractive edges, at zero field, past
BP's ferromagnetic transition.

  LABELJAX_RAW_DATA_DIR=../shared/data python benchmarks/bp_convergence.py
  python benchmarks/bp_convergence.py --dataset=llp_bp_bank --graphs=random128,random512 \
      --dampings=0.5 --lambda_sims=0.3,0.1,0.03 --lambda_bags=
  # Damping alone (an empty list skips a family of settings):
  python benchmarks/bp_convergence.py --graphs=random128 --lambda_sims= --lambda_bags=
"""

import os
import time
from typing import NamedTuple

from absl import app
from absl import flags
import jax
import numpy as np

from experiments.configs import llp as llp_config
from labeljax import metrics
from labeljax.llp import bp
from labeljax.llp import llp_bp
from labeljax.llp import training
from labeljax.train import trainer

BAG_FACTOR = "cardinality"  # llp.py's default, the exact bag factor
GRAPHS = {  # name -> llp.py arguments of its bags
    "feature": "bagging=feature",
    "random128": "bagging=random,bag_size=128",
    "random512": "bagging=random,bag_size=512",
}

_DATASET = flags.DEFINE_enum("dataset", "adult", ["adult", "llp_bp_bank"],
                             "Data set of the graphs (feature bags: Adult only).")
_GRAPHS = flags.DEFINE_list("graphs", list(GRAPHS), f"Bags, of {list(GRAPHS)}.")
_DAMPINGS = flags.DEFINE_list("dampings", ["0.5", "0.7", "0.9", "0.95"],
                              "Damping α at λ_s = λ_b = 1.")
_LAMBDA_SIMS = flags.DEFINE_list("lambda_sims", ["0.3", "0.1"],
                                 "λ_s values tried at damping 0.5 (λ_b = 1).")
_LAMBDA_BAGS = flags.DEFINE_list("lambda_bags", ["0.3", "0.1"],
                                 "λ_b values tried at damping 0.5 (λ_s = 1).")
_MAX_SWEEPS = flags.DEFINE_integer("max_sweeps", 500, "Sweeps of the --tol run at most.")
_TOL = flags.DEFINE_float("tol", 1e-5, "Convergence: largest message change (log-odds).")
_CHECKPOINTS = flags.DEFINE_list("checkpoints", ["50", "100", "200", "500"],
                                 "Sweeps at which the largest message change is reported.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the split and the random bags.")


class Round0(NamedTuple):
  graph: bp.LLPGraph
  labels: np.ndarray      # the pool's hidden labels (oracle)
  inputs: np.ndarray      # [N, d] the pool's flattened inputs, what kNN sees
  proportions: np.ndarray # [N] each pool row's bag proportion (0 if unbagged)
  test: tuple[np.ndarray, np.ndarray]  # flattened test inputs, labels
  config: object


def round0_graph(name: str) -> Round0:
  """Round 0's `LLPGraph` of LLP-BP on --dataset with bags `name`, and its data."""
  if name == "feature" and _DATASET.value != "adult":
    raise ValueError("The feature-bag graph groups Adult's columns: use --dataset=adult.")
  config = llp_config.get_config(f"dataset={_DATASET.value},method=llp_bp,"
                                 f"seed={_SEED.value}," + GRAPHS[name])
  data = trainer.load_data(config)
  pool, bags = training.make_bags(config, data)
  examples = data.dataset.train.take(pool)
  inputs = llp_bp.flat_inputs(examples)
  # The arguments of `llp_bp.graph_marginals` for C = 2 without a prior.
  graph = bp.build_llp_graph(
      inputs, bags.bag_ids, bags.positive_counts,
      lambda_bag=config.lambda_bag, lambda_sim=config.lambda_sim,
      num_neighbors=config.num_neighbors, metric=config.knn_metric, kernel=config.kernel,
      knn_method=config.knn_method, knn_cells=config.knn_cells or None,
      knn_probes=config.knn_probes or None,
      allow_unbagged=bool((bags.bag_ids < 0).any()))
  proportions = np.where(bags.bag_ids >= 0, bags.proportions[bags.bag_ids, 1], 0.0)
  return Round0(graph, examples.labels, inputs, proportions,
                (llp_bp.flat_inputs(data.dataset.test), data.dataset.test.labels), config)


def linear_fit_auc(round0: Round0, targets: np.ndarray, ridge: float = 1e-2) -> float:
  """Test AUC of the least-squares linear fit of `targets` [N] on the pool inputs."""
  with_bias = lambda x: np.c_[x, np.ones(len(x))].astype(np.float64)  # noqa: E731
  x = with_bias(round0.inputs)
  weights = np.linalg.solve(x.T @ x + ridge * np.eye(x.shape[1]), x.T @ targets)
  test_inputs, test_labels = round0.test
  return metrics.roc_auc(with_bias(test_inputs) @ weights, test_labels)


def mooij_kappen_radius(graph, iterations: int = 200) -> float:
  """Spectral radius of the edges' Mooij-Kappen matrix, by power iteration.

  On directed edges i→j: (A x)_{i→j} = tanh(w_ij / 2) Σ_{k∈N(i)∖j} x_{k→i}.
  A is non-negative, so the norm ratio of the iterates tends to ρ(A).
  """
  s, r = np.asarray(graph.senders), np.asarray(graph.receivers)
  src, dst = np.concatenate([s, r]), np.concatenate([r, s])
  coupling = np.tanh(np.tile(np.asarray(graph.weights, np.float64), 2) / 2)
  reverse = np.concatenate([np.arange(len(s)) + len(s), np.arange(len(s))])
  x = np.ones(len(src))
  ratio = 0.0
  for _ in range(iterations):
    into = np.bincount(dst, weights=x, minlength=graph.num_nodes)
    new = coupling * (into[src] - x[reverse])
    ratio = np.linalg.norm(new) / np.linalg.norm(x)
    x = new / np.linalg.norm(new)
  return float(ratio)


def converge(graph, round0: Round0, damping: float) -> dict:
  """Sweeps to --tol, the change at each checkpoint, wall time, AUCs and what a
  linear fit of the 100-sweep marginals ranks."""
  auc = lambda result: metrics.roc_auc(np.asarray(result.marginals), round0.labels)  # noqa: E731
  run = lambda sweeps, tol=None: bp.run_bp(graph, sweeps, damping, tol, BAG_FACTOR)  # noqa: E731
  jax.block_until_ready(run(1))  # compiles (sweeps are traced)
  start = time.perf_counter()
  final = jax.block_until_ready(run(_MAX_SWEEPS.value, _TOL.value))
  seconds = time.perf_counter() - start
  used = int(final.num_sweeps)
  changes, at_100 = {}, final if used <= 100 else run(100)
  for sweeps in map(int, _CHECKPOINTS.value):
    if sweeps >= used:  # the --tol run stopped before (or at) this checkpoint
      changes[sweeps] = float(final.delta) if sweeps == used else None
    else:
      changes[sweeps] = float((at_100 if sweeps == 100 else run(sweeps)).delta)
  marginals = np.asarray(at_100.marginals, np.float64)
  senders, receivers = np.asarray(graph.senders), np.asarray(graph.receivers)
  weights = np.asarray(graph.weights, np.float64)
  degree = (np.bincount(senders, weights, graph.num_nodes)
            + np.bincount(receivers, weights, graph.num_nodes))
  return {"sweeps": used, "converged": float(final.delta) <= _TOL.value, "changes": changes,
          "seconds": seconds, "auc_100": auc(at_100), "auc_end": auc(final),
          "std_100": marginals.std(),
          "degree_r": np.corrcoef(marginals, degree)[0, 1] if degree.std() else 0.0,
          "fit_auc": linear_fit_auc(round0, marginals)}


def row(graph_name: str, setting: str, rho: str, r: dict) -> str:
  sweeps = f"{r['sweeps']}" if r["converged"] else f">{r['sweeps']}"
  changes = " | ".join("-" if c is None else f"{c:.1e}" for c in r["changes"].values())
  return (f"| {graph_name} | {setting} | {rho} | {sweeps} | {changes} | {r['seconds']:.1f} | "
          f"{r['auc_100']:.3f} | {r['auc_end']:.3f} | {r['std_100']:.3f} | {r['degree_r']:+.2f} | "
          f"{r['fit_auc']:.3f} |")


def main(argv):
  del argv
  print(f"{os.cpu_count()} CPUs, 1-min load {os.getloadavg()[0]:.1f}; tol {_TOL.value:g}, "
        f"at most {_MAX_SWEEPS.value} sweeps\n")
  print(f"{_DATASET.value}, seed {_SEED.value}\n")
  print("| bags | setting | ρ (edges) | sweeps to tol | "
        + " | ".join(f"Δ@{c}" for c in _CHECKPOINTS.value)
        + " | s | AUC@100 | AUC end | std@100 | r(degree) | fit AUC |")
  print("|---|---|---|---|" + "---|" * len(_CHECKPOINTS.value) + "---|---|---|---|---|---|")
  for name in _GRAPHS.value:
    round0 = round0_graph(name)
    graph, labels, config = round0.graph, round0.labels, round0.config
    proportions = round0.proportions
    print(f"| {name} | bag proportions | - | - | " + "- | " * len(_CHECKPOINTS.value)
          + f"- | {metrics.roc_auc(proportions, labels):.3f} | - | {proportions.std():.3f} | - | "
          f"{linear_fit_auc(round0, proportions):.3f} |", flush=True)
    rho = mooij_kappen_radius(graph)
    for damping in map(float, _DAMPINGS.value):
      print(row(name, f"α={damping:g}", f"{rho:.2f}", converge(graph, round0, damping)),
            flush=True)
    for scale in map(float, _LAMBDA_SIMS.value):  # weights are λ_s K_ij
      weaker = graph._replace(weights=scale * graph.weights)
      print(row(name, f"λ_s={scale:g}", f"{mooij_kappen_radius(weaker):.2f}",
                converge(weaker, round0, config.bp_damping)), flush=True)
    for lambda_bag in map(float, _LAMBDA_BAGS.value):
      print(row(name, f"λ_b={lambda_bag:g}", f"{rho:.2f}",
                converge(graph._replace(lambda_bag=lambda_bag), round0, config.bp_damping)),
            flush=True)
    bags_only = graph._replace(weights=0 * graph.weights)
    result = converge(bags_only, round0, config.bp_damping)
    print(row(name, "bags alone", "0", result), flush=True)
    bag_field = bp.run_bp(bags_only, _MAX_SWEEPS.value, config.bp_damping, _TOL.value,
                           BAG_FACTOR).log_odds
    print(row(name, "edges + frozen bag field", f"{rho:.2f}",
              converge(graph._replace(field=bag_field, bags=()), round0, config.bp_damping)),
          flush=True)
  print(f"\n1-min load at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
  app.run(main)
