"""Multi-class loopy belief propagation for LLP-BP: class counts plus a similarity graph.

The multi-class form of `bp`'s model. Labels y_i in {0, ..., C−1}, bags b
with known class counts k_{b,c} (Σ_c k_{b,c} = |b|) and a similarity graph E:

  log p(y) = −λ_b Σ_b Σ_c (n_{b,c}(y) − k_{b,c})² − Σ_{(i,j)∈E} w_ij [y_i ≠ y_j]
             + Σ_i f_i(y_i) + const,

with n_{b,c}(y) = Σ_{i∈b} [y_i = c], Potts weights w_ij = λ_s K_ij ≥ 0 and an
optional prior field f_i (log-probabilities up to a constant, e.g. a
classifier's logits; 0 = no evidence). BP returns approximate marginals
P(y_i = c), [N, C].

The bag term is separable over classes,

  exp(−λ_b Σ_c (n_{b,c} − k_{b,c})²) = Π_c ψ_{b,c}(n_{b,c}),
  ψ_{b,c}(n) = exp(−λ_b (n − k_{b,c})²),

and n_{b,c} counts the binary indicators [y_i = c]. So a bag is exactly C
binary cardinality factors, one per class ("one-vs-rest"), and the message of
ψ_{b,c} to a member i only tells y_i = c from y_i ≠ c: it is the vector
L_{b,c,i} [y_i = c] (up to a constant), with the log-odds

  L_{b,c,i} = log Σ_n P_{−i}(n) ψ_{b,c}(n + 1) − log Σ_n P_{−i}(n) ψ_{b,c}(n),

P_{−i} the Poisson-binomial law of Σ_{j∈b, j≠i} [y_j = c] under the members'
cavity probabilities P_cav(y_j = c). That is `bp`'s binary bag message, and it
is computed by the same code (`bp.count_factor_messages`) on the num_bags · C
rows (bag, class) at once, in one of three forms (`bag_factor`):

* "cardinality": exact, by `bp`'s forward / backward sums over the members
  with exponential tilting and count windows; O(B W) per row and sweep,
  W = `bp.count_window(B, λ_b)` ≈ 7 sqrt(B/4 + 1/2λ_b).
* "saddlepoint": the tilt θ of the exact computation, the per-(bag, class)
  dual field with Σ_j σ(t_j + θ) = k − θ / 2λ_b (a Sinkhorn-style field that
  makes the tilted expected count the peak of the tilted potential), plus the
  Gaussian message of the tilted law:
    L_i ≈ θ − λ_b (1 − 2 p_i) / (1 + 2 λ_b v_{−i}),
    p_i = σ(t_i + θ), v_{−i} = Σ_{j≠i} p_j (1 − p_j).
  The correction is O(1/v), so this is close to exact for large bags; O(B)
  per row (a few Newton steps for θ).
* "gaussian": `bp`'s moment match of the untilted cavity law, O(B). When the
  cavities disagree with k it is evaluated in the law's tail.

Every "cardinality" message is exact given its cavity; only loopy BP is
approximate.

Messages and beliefs are in log space. A node's belief is

  h_i(c) = f_i(c) + Σ_{j~i} m_{j→i}(c) + Σ_{c'} L_{b(i),c',i} [c = c'],

and P(y_i = c) = softmax(h_i)(c). The cavity of i for factor ψ_{b,c} only
lowers h_i(c) by L_{b,c,i}, so its one-vs-rest log-odds are

  t_{i,c} = h_i(c) − L_{b,c,i} − log Σ_{c'≠c} e^{h_i(c')}.

Potts edge messages, with q_i = softmax of i's cavity h_i − m_{j→i},

  m_{i→j}(y_j) = log Σ_{y_i} q_i(y_i) e^{−w_ij [y_i ≠ y_j]}
               = log(e^{−w_ij} + (1 − e^{−w_ij}) q_i(y_j))  ∈ [−w_ij, 0],

normalised by Σ q_i = 1. For C = 2 their difference m(1) − m(0) is `bp`'s
binary edge message, and damping in log space is linear, so with no bags the
two BPs give the same beliefs. Updates are synchronous (flooding) with damping
m ← α m_old + (1 − α) m_new, as in `bp.run_bp`.

What is exact. A tree of edges with unary factors (priors, bags of one) is a
tree, and BP on it is exact. A bag of two or more members is not: its C
factors all touch the same members, which closes loops y_i − ψ_{b,c} − y_j −
ψ_{b,c'} − y_i even for a lone bag (measured: max |ΔP| 0.012 on a bag of 8,
C = 3). At a hard constraint with identical members (zero field, λ_b → ∞) a
symmetric fixed point has the exact marginals k_{b,c} / |b|: the belief in
y_i = c is then factor c's own exact conditional.

C = 2. The two factors of a bag are the same function ((n_0 − k_0)² =
(n_1 − k_1)²), so the model with λ_b is the binary one with 2 λ_b, but BP
counts that factor twice around a loop. On N = 2000 points (16-d, two
classes), bags of 64, the 10-NN graph, λ_b = λ_s = 1, ℓ = 1, the marginals
P(y_i = 1) of this BP and of `bp.run_bp` with 2 λ_b differ by at most 0.0024
(mean 0.0005; tests/test_llp_multiclass_bp.py). With stronger edges (ℓ = 4)
neither BP converges within 300 sweeps and the two differ by up to 0.3.

Cost per sweep: O(E C) for the edges, O(N C W) for "cardinality" and O(N C)
for the other forms; memory O(E C + N C) plus O(W sqrt(B)) per (bag, class)
row of the exact sums, processed in cache-sized chunks. Measured with
benchmarks/multiclass_bp.py (N = 60k, C = 10, a 16-d Gaussian mixture, 10-NN,
λ_b = λ_s = 1, ℓ = 4, on a 2-core CPU shared with other jobs at load 3-5;
XLA:CPU runs the loop mostly on one thread), seconds for 100 sweeps and the
largest |ΔP| from the exact marginals:

  bag size                16      64     256    1024
  cardinality           13.3    20.7    21.6    24.1 s
  saddlepoint            8.7    10.1     8.7     9.9 s
  gaussian               8.5     9.3     8.8     9.3 s
  saddlepoint |ΔP|      0.11    0.11   0.035   0.003
  gaussian |ΔP|         0.18    0.13   0.083   0.023

About 8 s of each row is the edges; peak memory is 0.6 GB. So the exact form
misses the 10 s target for C = 10 at N = 60k at every bag size, and
"saddlepoint" is the form for large bags: it meets the target and is the
closest approximation at every size. The dual field θ alone as the message
(no correction) was measured too, at the cost of "saddlepoint": max |ΔP| 0.32,
0.27 and 0.023 at bags of 16, 64 and 1024. For small bags (v of a few counts)
no approximation is accurate, and the exact form costs 1.5-2 times as much.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from labeljax.llp import bp

BAG_FACTORS = ("cardinality", "saddlepoint", "gaussian")
# Largest Potts weight: float32 e^{±w} stays finite and normal (e^{−80} ≈ 2e-35);
# at this weight an edge is a hard constraint for any float32 probability.
MAX_WEIGHT = 80.0


class MulticlassGraph(NamedTuple):
  field: jax.Array      # [N, C] prior logits f_i(c) (0: no evidence)
  senders: jax.Array    # [E] int32; undirected edges, each pair once
  receivers: jax.Array  # [E] int32
  weights: jax.Array    # [E] Potts weights λ_s K(x_i, x_j) >= 0
  bags: tuple[bp.BagBlock, ...]  # counts [num_bags, C]
  lambda_bag: float

  @property
  def num_nodes(self) -> int:
    return self.field.shape[0]

  @property
  def num_classes(self) -> int:
    return self.field.shape[1]


class MulticlassBPResult(NamedTuple):
  marginals: jax.Array   # [N, C] P(y_i = c)
  logits: jax.Array      # [N, C] beliefs h_i; marginals = softmax(logits)
  delta: jax.Array       # largest message change in the last sweep
  num_sweeps: jax.Array  # sweeps run (fewer than asked when `tol` was met)


# ---------------------------------------------------------------- construction


def validate_class_counts(bag_ids, bag_counts, num_nodes: int,
                          allow_unbagged: bool = False) -> tuple[np.ndarray, np.ndarray]:
  """Checks bags and their class counts; returns (int32 ids, float32 counts [num_bags, C]).

  `bag_ids` as in `bp.validate_bags`. `bag_counts[b, c]` >= 0 is the number of
  members of bag b in class c; a bag's counts must sum to its size (they need
  not be integers, e.g. proportions times the size).
  """
  counts = np.asarray(bag_counts, np.float64)
  if counts.ndim != 2:
    raise ValueError(f"bag_counts must be [num_bags, C] class counts, got shape {counts.shape}.")
  if counts.shape[1] < 2:
    raise ValueError(f"Need C >= 2 classes, got bag_counts of shape {counts.shape}.")
  if not np.isfinite(counts).all():
    raise ValueError("bag_counts contain NaN or inf.")
  bad = np.flatnonzero((counts < 0).any(1))
  if bad.size:
    raise ValueError(f"class counts must be >= 0; bags {bad[:5].tolist()} have counts "
                     f"{counts[bad[:5]].tolist()}.")
  # bp's id checks; all-zero totals are valid for any sizes.
  bag_ids, _ = bp.validate_bags(bag_ids, np.zeros(len(counts)), num_nodes, allow_unbagged)
  sizes = np.bincount(bag_ids[bag_ids >= 0], minlength=len(counts))
  totals = counts.sum(1)
  bad = np.flatnonzero(~np.isclose(totals, sizes, rtol=1e-5, atol=1e-3))
  if bad.size:
    raise ValueError(f"the class counts of a bag must sum to its size; bags {bad[:5].tolist()} "
                     f"sum to {totals[bad[:5]].tolist()} and have sizes {sizes[bad[:5]].tolist()}.")
  return bag_ids, counts.astype(np.float32)


def build_multiclass_graph(features_or_edges, bag_ids, bag_counts, *,
                           lambda_bag: float = 1.0, lambda_sim: float = 1.0,
                           num_neighbors: int = 10, metric: str = "euclidean",
                           kernel: str = "matern12", length_scale: float = 1.0,
                           prior_logits=None, allow_unbagged: bool = False,
                           min_bags_per_block: int = 16, knn_method: str = "exact",
                           knn_cells: int | None = None,
                           knn_probes: int | None = None) -> MulticlassGraph:
  """The multi-class LLP-BP graph from features (or edges), bags and class counts.

  Args:
    features_or_edges: [N, d] features for the `num_neighbors`-NN graph,
      or `knn.Edges`, as in `bp.build_llp_graph`.
    bag_ids: [N] bag of each instance, in [0, num_bags); -1 for none if
      `allow_unbagged`.
    bag_counts: [num_bags, C] class counts per bag, >= 0, each row summing to
      the bag's size; C >= 2 is the number of classes.
    lambda_bag: λ_b > 0, strength of the bag term.
    lambda_sim: λ_s > 0, strength of the similarity (Potts) term.
    num_neighbors: k of the kNN graph, 1 <= k < N.
    metric: kNN metric, one of `knn.METRICS`.
    kernel: edge kernel K of the distance, one of `knn.KERNELS`.
    length_scale: kernel length scale ℓ.
    prior_logits: optional [N, C] prior field f_i(c) (log-probabilities up to
      a constant per instance, e.g. a classifier's logits).
    allow_unbagged: allow bag id -1 (the instance then has no bag factor).
    min_bags_per_block: see `bp.bag_blocks`.
    knn_method, knn_cells, knn_probes: the kNN search, as in `bp.build_llp_graph`.

  Returns:
    A `MulticlassGraph` for `run_multiclass_bp`.
  """
  num_nodes = len(bag_ids)
  lambda_bag = bp.check_lambda("lambda_bag", lambda_bag)
  bag_ids, counts = validate_class_counts(bag_ids, bag_counts, num_nodes, allow_unbagged)
  num_classes = counts.shape[1]
  field = jnp.zeros((num_nodes, num_classes), jnp.float32)
  if prior_logits is not None:
    field = jnp.asarray(prior_logits, jnp.float32)
    if field.shape != (num_nodes, num_classes):
      raise ValueError(f"prior_logits must have shape (N, C) = ({num_nodes}, {num_classes}), "
                       f"got {field.shape}.")
    if not bool(jnp.isfinite(field).all()):
      raise ValueError("prior_logits contain NaN or inf.")
  senders, receivers, weights = bp.similarity_edges(
      features_or_edges, num_nodes, lambda_sim=lambda_sim, num_neighbors=num_neighbors,
      metric=metric, kernel=kernel, length_scale=length_scale, knn_method=knn_method,
      knn_cells=knn_cells, knn_probes=knn_probes)
  if weights.size and float(weights.max()) > MAX_WEIGHT:
    raise ValueError(f"Potts weights λ_s K_ij must be <= {MAX_WEIGHT}, got up to "
                     f"{float(weights.max())}; lower lambda_sim.")
  return MulticlassGraph(field, senders, receivers, weights,
                         bp.bag_blocks(bag_ids, counts, min_bags_per_block), lambda_bag)


# ------------------------------------------------------------------- messages


def _potts_messages(cavity: jax.Array, decay: jax.Array) -> jax.Array:
  """Messages [E, C] through exp(−w [y_i ≠ y_j]) given the sender's cavity logits.

  `decay` = e^{−w}, [E, 1]. The cavity is the sender's belief shifted by its
  maximum, minus a message in [−w, 0]: its largest entry lies in [0, w], so
  the softmax needs no per-edge maximum (w <= `MAX_WEIGHT` keeps e^w finite).
  """
  e = jnp.exp(cavity)
  return jnp.log(decay + (1 - decay) / e.sum(-1, keepdims=True) * e)


def _one_vs_rest(h: jax.Array) -> jax.Array:
  """log P(y = c) − log P(y ≠ c) under softmax(h), for every c; [..., C].

  The rest-sums Σ_{c'≠c} e^{h(c') − max h} are formed without the cancellation
  of (Σ − own term): each one but the argmax's holds the argmax's 1, so an
  error of the subtraction is relative to a sum >= 1; the argmax's own rest is
  summed directly. A rest that underflows is floored at the smallest normal
  float, so the log-odds stay finite (<= ~87 above the rest).
  """
  top = h.max(-1, keepdims=True)
  e = jnp.exp(h - top)
  is_top = jnp.arange(h.shape[-1]) == jnp.argmax(h, -1)[..., None]
  rest_of_top = jnp.where(is_top, 0.0, e).sum(-1, keepdims=True)
  rest = jnp.where(is_top, rest_of_top, 1 + rest_of_top - e)
  return h - top - jnp.log(jnp.maximum(rest, jnp.finfo(h.dtype).tiny))


def _bag_update(block: bp.BagBlock, h, old, lam, bag_factor: str, window: int,
                num_nodes: int):
  """New messages L [nb, B, C] of one block's per-class count factors given beliefs h."""
  valid = block.members < num_nodes
  h_members = h.at[block.members].get(mode="fill", fill_value=0.0)
  cavity = _one_vs_rest(h_members) - old
  num_bags, capacity, num_classes = cavity.shape

  def rows(x):  # [nb, B, C] -> [nb · C, B], one binary count factor per row
    return jnp.swapaxes(x, 1, 2).reshape(num_bags * num_classes, capacity)

  new = bp.count_factor_messages(rows(cavity), jnp.repeat(valid, num_classes, axis=0),
                                 block.counts.reshape(-1), rows(old), lam, bag_factor, window)
  return jnp.swapaxes(new.reshape(num_bags, num_classes, capacity), 1, 2)


# ------------------------------------------------------------------------- BP


@functools.partial(jax.jit, static_argnames=("bag_factor", "windows"))
def _run_multiclass_bp(graph: MulticlassGraph, num_sweeps, damping, tol, *, bag_factor: str,
                       windows: tuple[int, ...]) -> MulticlassBPResult:
  n, lam = graph.num_nodes, graph.lambda_bag
  field, senders, receivers, weights = bp.pad_graph(graph.field, graph.senders,
                                                    graph.receivers, graph.weights)
  decay = jnp.exp(-weights)[:, None]

  def update(msgs):
    sim_fwd, sim_bwd, bag_msgs = msgs
    h = bp.beliefs(senders, receivers, graph.bags, field, msgs, bag_factor)
    shifted = h - h.max(-1, keepdims=True)
    return (_potts_messages(shifted[senders] - sim_bwd, decay),
            _potts_messages(shifted[receivers] - sim_fwd, decay),
            tuple(_bag_update(block, h, m, lam, bag_factor, w, n)
                  for block, m, w in zip(graph.bags, bag_msgs, windows)))

  edge_zeros = jnp.zeros((weights.shape[0], graph.num_classes))
  msgs = (edge_zeros, edge_zeros,
          tuple(jnp.zeros(b.members.shape + (graph.num_classes,)) for b in graph.bags))
  msgs, delta, i = bp.damped_sweeps(update, msgs, num_sweeps, damping, tol)
  h = bp.beliefs(senders, receivers, graph.bags, field, msgs, bag_factor)[:n]
  return MulticlassBPResult(jax.nn.softmax(h, axis=-1), h, delta, i)


def run_multiclass_bp(graph: MulticlassGraph, num_sweeps: int = 100, damping: float = 0.5,
                      tol: float | None = None,
                      bag_factor: str = "cardinality") -> MulticlassBPResult:
  """Loopy BP on `graph`; returns the beliefs P(y_i = c) and convergence info.

  Args:
    graph: from `build_multiclass_graph`.
    num_sweeps: maximum number of synchronous sweeps.
    damping: α in [0, 1), weight of the old message in each update.
    tol: stop once no message (log space) moved by more than `tol` in a
      sweep; None runs all `num_sweeps`.
    bag_factor: one of `BAG_FACTORS`: "cardinality" (exact messages),
      "saddlepoint" (close to exact for large bags, O(B) per bag and class;
      the fast choice for bags of hundreds) or "gaussian"; see the module
      docstring.

  One compilation per graph shape and `bag_factor`; sweeps, damping and tol
  are traced.
  """
  tol = bp.check_run_options(num_sweeps, damping, tol, bag_factor, BAG_FACTORS)
  lam = bp.check_lambda("graph.lambda_bag", graph.lambda_bag)
  windows = tuple(bp.count_window(b.members.shape[1], lam) for b in graph.bags)
  return _run_multiclass_bp(graph, num_sweeps, damping, tol, bag_factor=bag_factor,
                            windows=windows)
