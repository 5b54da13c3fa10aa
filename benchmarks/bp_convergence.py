r"""Why LLP-BP's loopy BP does not converge on Adult: damping, schedule or frustration.

Round 0's graph exactly as `llp_bp.graph_marginals` builds it for
`experiments/configs/llp.py:dataset=adult,method=llp_bp` (flattened inputs of
the training pool, cosine 5-NN, Matérn-1/2, λ_s = λ_b = 1, exact cardinality
bag factors, no prior field), for feature bags (education × marital-status,
sizes in [50, 2500]) and random bags of 128 and 512 (seed 0). On each graph
`bp.run_bp` runs:

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

Beside each λ_s it prints ρ, the spectral radius of the similarity edges'
Mooij-Kappen matrix (tanh|J_ij| on non-backtracking pairs of directed edges,
J_ij = w_ij / 2 the spin coupling of exp(−w_ij [y_i ≠ y_j])). ρ < 1 makes
BP on the edges alone converge for any field (Mooij and Kappen, IEEE Trans.
Inf. Theory 2007); ρ > 1 puts the attractive edges, at zero field, past
BP's ferromagnetic transition.

  LABELJAX_RAW_DATA_DIR=../shared/data python benchmarks/bp_convergence.py
  # Damping alone (an empty list skips a family of settings):
  python benchmarks/bp_convergence.py --graphs=random128 --lambda_sims= --lambda_bags=
"""

import os
import time

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


def round0_graph(name: str):
  """Round 0's `LLPGraph` of LLP-BP on Adult with bags `name`, and the pool labels."""
  config = llp_config.get_config(f"dataset=adult,method=llp_bp,seed={_SEED.value},"
                                 + GRAPHS[name])
  data = trainer.load_data(config)
  pool, bags = training.make_bags(config, data)
  examples = data.dataset.train.take(pool)
  # The arguments of `llp_bp.graph_marginals` for C = 2 without a prior.
  graph = bp.build_llp_graph(
      llp_bp.flat_inputs(examples), bags.bag_ids, bags.positive_counts,
      lambda_bag=config.lambda_bag, lambda_sim=config.lambda_sim,
      num_neighbors=config.num_neighbors, metric=config.knn_metric, kernel=config.kernel,
      knn_method=config.knn_method, knn_cells=config.knn_cells or None,
      knn_probes=config.knn_probes or None,
      allow_unbagged=bool((bags.bag_ids < 0).any()))
  return graph, examples.labels, config


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


def converge(graph, labels, damping: float) -> dict:
  """Sweeps to --tol, the change at each checkpoint, wall time and AUCs."""
  auc = lambda result: metrics.roc_auc(np.asarray(result.marginals), labels)  # noqa: E731
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
  return {"sweeps": used, "converged": float(final.delta) <= _TOL.value, "changes": changes,
          "seconds": seconds, "auc_100": auc(at_100), "auc_end": auc(final)}


def row(graph_name: str, setting: str, rho: str, r: dict) -> str:
  sweeps = f"{r['sweeps']}" if r["converged"] else f">{r['sweeps']}"
  changes = " | ".join("-" if c is None else f"{c:.1e}" for c in r["changes"].values())
  return (f"| {graph_name} | {setting} | {rho} | {sweeps} | {changes} | {r['seconds']:.1f} | "
          f"{r['auc_100']:.3f} | {r['auc_end']:.3f} |")


def main(argv):
  del argv
  print(f"{os.cpu_count()} CPUs, 1-min load {os.getloadavg()[0]:.1f}; tol {_TOL.value:g}, "
        f"at most {_MAX_SWEEPS.value} sweeps\n")
  print("| bags | setting | ρ (edges) | sweeps to tol | "
        + " | ".join(f"Δ@{c}" for c in _CHECKPOINTS.value) + " | s | AUC@100 | AUC end |")
  print("|---|---|---|---|" + "---|" * len(_CHECKPOINTS.value) + "---|---|---|")
  for name in _GRAPHS.value:
    graph, labels, config = round0_graph(name)
    rho = mooij_kappen_radius(graph)
    for damping in map(float, _DAMPINGS.value):
      print(row(name, f"α={damping:g}", f"{rho:.2f}", converge(graph, labels, damping)),
            flush=True)
    for scale in map(float, _LAMBDA_SIMS.value):  # weights are λ_s K_ij
      weaker = graph._replace(weights=scale * graph.weights)
      print(row(name, f"λ_s={scale:g}", f"{mooij_kappen_radius(weaker):.2f}",
                converge(weaker, labels, config.bp_damping)), flush=True)
    for lambda_bag in map(float, _LAMBDA_BAGS.value):
      print(row(name, f"λ_b={lambda_bag:g}", f"{rho:.2f}",
                converge(graph._replace(lambda_bag=lambda_bag), labels, config.bp_damping)),
            flush=True)
    bags_only = graph._replace(weights=0 * graph.weights)
    result = converge(bags_only, labels, config.bp_damping)
    print(row(name, "bags alone", "0", result), flush=True)
    bag_field = bp.run_bp(bags_only, _MAX_SWEEPS.value, config.bp_damping, _TOL.value,
                           BAG_FACTOR).log_odds
    print(row(name, "edges + frozen bag field", f"{rho:.2f}",
              converge(graph._replace(field=bag_field, bags=()), labels, config.bp_damping)),
          flush=True)
  print(f"\n1-min load at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
  app.run(main)
