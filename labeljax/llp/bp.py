"""Loopy belief propagation for LLP-BP: bag constraints plus a similarity graph.

Havaldar et al., "Learning from Label Proportions: Bootstrapping Supervised
Learners via Belief Propagation", ICLR 2024. Binary labels y_i, bags b with k_b
positives and a similarity graph E (kNN on covariates or embeddings):

  log p(y) = −λ_b Σ_b (Σ_{i∈b} y_i − k_b)² − λ_s Σ_{(i,j)∈E} K_ij (y_i − y_j)²
             + Σ_i f_i y_i + const,

with an optional prior field f (log-odds, e.g. a classifier's). BP returns the
approximate marginals P(y_i = 1) that LLP-BP turns into pseudo-labels.

Messages are log-odds: a message m into node i is log μ(y_i=1) − log μ(y_i=0),
so a node's belief is its field plus the sum of incoming messages, and a
cavity (belief without one incoming message) is a subtraction. Updates are
synchronous (flooding) with damping m ← α m_old + (1 − α) m_new.

Similarity edge factors are kept in the symmetric form exp(−w_ij [y_i ≠ y_j]),
w_ij = λ_s K_ij: the same distribution as the paper's expansion (unary −w_ij
per endpoint, pairwise +2 w_ij y_i y_j), with messages bounded by w_ij:

  m_{i→j} = log(e^{h} + e^{−w}) − log(e^{h−w} + 1),   h = cavity of i.

The bag term has three forms (`bag_factor`):

* "pairwise": the paper's expansion, using y² = y,
    −λ_b (Σ y_i − k_b)² = Σ_i −λ_b (1 − 2 k_b) y_i + Σ_{i<j} −2 λ_b y_i y_j + c,
  i.e. unary log-odds −λ_b (1 − 2 k_b) and a dense pairwise factor
  exp(−2 λ_b y_i y_j) inside every bag. Memory O(Σ_b B_b²); many short,
  frustrated loops, so BP on it is approximate even for a lone bag and tends
  to oscillate on large ones.
* "cardinality": one factor ψ(c) = exp(−λ_b (c − k_b)²) on the bag count c.
  Its message to member i is exact:
    m_i = log Σ_c P_{−i}(c) ψ(c + 1) − log Σ_c P_{−i}(c) ψ(c),
  with P_{−i} the Poisson-binomial law of the other members' count under their
  cavity beliefs. Computed as forward/backward sums over the members (below),
  O(B · W) per bag and sweep, W ≈ 7 sqrt(B/4 + 1/2λ_b) ≤ B + 1.
* "gaussian": the cardinality factor with P_{−i} replaced by a Gaussian of the
  same mean μ_{−i} and variance v_{−i}; the Gaussian integral gives
    m_i = −λ_b (2 (μ_{−i} − k_b) + 1) / (1 + 2 λ_b v_{−i}),
  O(B) per bag. An approximation for very large bags.

Exact cardinality messages. Let A_j be the count of members before j and
S_j that of members j, j+1, .... Forward: F_j = law of A_j, by
F_{j+1}(c) = (1 − p_j) F_j(c) + p_j F_j(c − 1). Backward: R_j(a) = E ψ(a + S_j),
by R_j(a) = (1 − p_j) R_{j+1}(a) + p_j R_{j+1}(a + 1), R_B = ψ. Then
Σ_c P_{−j}(c) ψ(c + y) = Σ_a F_j(a) R_{j+1}(a + y), two dot products per member.
Two devices make this fast and stable in float32 at B in the thousands:

* Exponential tilting. ψ spans e^{−λ B²}, so in plain probabilities the two
  sums underflow to 0/0 whenever the cavity mean is far from k_b. Multiplying
  each cavity odds by e^θ and ψ(c) by e^{−θc} leaves every message unchanged
  up to + θ; θ is chosen (safeguarded Newton) so that the tilted mean count
  equals the peak k_b − θ / 2λ_b of the tilted potential. Then F and R overlap
  in their bulk and need no logarithms.
* Windows. A_j is sub-Gaussian with variance proxy B/4 (Hoeffding), R_j is a
  Gaussian-smoothed law with proxy B/4 + 1/2λ_b, and tilting centres both on
  E A_j. So F_j and R_{j+1} are kept on a window of W counts around E A_j that
  slides by 0 or 1 per member; what falls outside is below e^{−24} of the
  peak (exact in float32). When W ≥ B + 1 nothing is truncated.

Only every G-th prefix law (G ≈ sqrt(B)) is stored; the backward pass
recomputes the laws of a group from its start, so a sweep costs three passes
of O(B W) per bag and holds O(W sqrt(B)) floats per bag. Bags are processed in
chunks small enough to stay in cache.

This chain of partial counts is the standard exact treatment of cardinality
potentials (Gupta, Diwan and Sarawagi, "Efficient inference with
cardinality-based clique potentials", ICML 2007; Tarlow, Swersky, Zemel, Adams
and Frey, "Fast exact inference for recursive cardinality models", UAI 2012).
"""

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
import numpy as np

from labeljax.llp import knn

BAG_FACTORS = ("cardinality", "pairwise", "gaussian")

# Bags x window counts updated per member step: chunks of bags this small stay
# in cache and run two to three times faster than all bags at once.
_STEP_ELEMENTS = 1 << 15
_TILT_ITERATIONS = 12
# XLA's CPU loops run several times faster on lengths with large power-of-two
# factors, so edge and node arrays are padded to these multiples.
_EDGE_MULTIPLE = 1024
_NODE_MULTIPLE = 128


class BagBlock(NamedTuple):
  """Bags of similar size, padded to one capacity."""
  members: jax.Array  # [num_bags, capacity] int32 instance ids; padding = num_nodes
  counts: jax.Array   # [num_bags] float32 positives k_b ([num_bags, C] class counts
                      # in multiclass_bp)


class LLPGraph(NamedTuple):
  field: jax.Array      # [N] prior log-odds f_i (0: no evidence)
  senders: jax.Array    # [E] int32; undirected edges, each pair once
  receivers: jax.Array  # [E] int32
  weights: jax.Array    # [E] λ_s K(x_i, x_j) >= 0
  bags: tuple[BagBlock, ...]
  lambda_bag: float

  @property
  def num_nodes(self) -> int:
    return self.field.shape[0]


class BPResult(NamedTuple):
  marginals: jax.Array   # [N] P(y_i = 1)
  log_odds: jax.Array    # [N] beliefs as log-odds
  delta: jax.Array       # largest message change in the last sweep
  num_sweeps: jax.Array  # sweeps run (fewer than asked when `tol` was met)


# ---------------------------------------------------------------- construction


def check_lambda(name: str, value) -> float:
  value = float(value)
  if not (math.isfinite(value) and value > 0):
    raise ValueError(f"{name} must be a finite number > 0, got {value}.")
  return value


def validate_bags(bag_ids, bag_counts, num_nodes: int,
                  allow_unbagged: bool = False) -> tuple[np.ndarray, np.ndarray]:
  """Checks bags given as segment ids; returns them as (int32 ids, float32 counts).

  `bag_ids[i]` in [0, num_bags) with num_bags = len(bag_counts), or -1 for an
  instance in no bag (only with `allow_unbagged`). Counts must lie in
  [0, bag size]. Empty bags are allowed when their count is 0.
  """
  bag_ids = np.asarray(bag_ids)
  counts = np.asarray(bag_counts, np.float64)
  if bag_ids.shape != (num_nodes,):
    raise ValueError(f"bag_ids must have shape ({num_nodes},), got {bag_ids.shape}.")
  if not np.issubdtype(bag_ids.dtype, np.integer):
    raise ValueError(f"bag_ids must be integers, got dtype {bag_ids.dtype}.")
  if counts.ndim != 1:
    raise ValueError(f"bag_counts must be 1-D, got shape {counts.shape}.")
  num_bags = len(counts)
  low = -1 if allow_unbagged else 0
  bad = np.flatnonzero((bag_ids < low) | (bag_ids >= num_bags))
  if bad.size:
    hint = "" if allow_unbagged or (bag_ids[bad] != -1).any() else (
        " (-1 marks an instance in no bag; pass allow_unbagged=True to allow it)")
    raise ValueError(f"bag ids out of range [{low}, {num_bags}) at instances "
                     f"{bad[:5].tolist()}: {bag_ids[bad[:5]].tolist()}{hint}.")
  sizes = np.bincount(bag_ids[bag_ids >= 0], minlength=num_bags)
  if not np.isfinite(counts).all():
    raise ValueError("bag_counts contain NaN or inf.")
  bad = np.flatnonzero((counts < 0) | (counts > sizes))
  if bad.size:
    raise ValueError(f"bag counts must lie in [0, bag size]; bags {bad[:5].tolist()} have "
                     f"counts {counts[bad[:5]].tolist()} and sizes {sizes[bad[:5]].tolist()}.")
  return bag_ids.astype(np.int32), counts.astype(np.float32)


def bag_blocks(bag_ids: np.ndarray, bag_counts: np.ndarray,
               min_bags_per_block: int = 16) -> tuple[BagBlock, ...]:
  """Groups bags by size into padded blocks; empty bags are dropped.

  Bags go to buckets by ceil(log2(size)), each padded to its largest size, so
  padding wastes at most half. A bucket with fewer than `min_bags_per_block`
  bags joins the next larger one: a few padded rows cost less than another
  sequential pass over members.
  """
  num_nodes, num_bags = len(bag_ids), len(bag_counts)
  bagged = np.flatnonzero(bag_ids >= 0)
  sizes = np.bincount(bag_ids[bagged], minlength=num_bags)
  bags = np.flatnonzero(sizes > 0)
  if bags.size == 0:
    return ()
  bucket_of = np.ceil(np.log2(sizes[bags])).astype(int)
  buckets = [bags[bucket_of == b] for b in np.unique(bucket_of)]
  merged = []
  for i in range(len(buckets) - 1):
    if len(buckets[i]) < min_bags_per_block:
      buckets[i + 1] = np.concatenate([buckets[i], buckets[i + 1]])
    else:
      merged.append(buckets[i])
  merged.append(buckets[-1])
  # Position of each instance within its bag.
  order = bagged[np.argsort(bag_ids[bagged], kind="stable")]
  starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
  position = np.empty(num_nodes, np.int64)
  position[order] = np.arange(len(order)) - starts[bag_ids[order]]
  blocks = []
  for block_bags in merged:
    row = np.full(num_bags, -1)
    row[block_bags] = np.arange(len(block_bags))
    members = np.full((len(block_bags), sizes[block_bags].max()), num_nodes, np.int32)
    inside = bagged[row[bag_ids[bagged]] >= 0]
    members[row[bag_ids[inside]], position[inside]] = inside
    blocks.append(BagBlock(jnp.asarray(members), jnp.asarray(bag_counts[block_bags], jnp.float32)))
  return tuple(blocks)


def build_llp_graph(features_or_edges, bag_ids, bag_counts, *,
                    lambda_bag: float = 1.0, lambda_sim: float = 1.0,
                    num_neighbors: int = 10, metric: str = "euclidean",
                    kernel: str = "matern12", length_scale: float = 1.0,
                    prior_log_odds=None, allow_unbagged: bool = False,
                    min_bags_per_block: int = 16, knn_method: str = "exact",
                    knn_cells: int | None = None, knn_probes: int | None = None) -> LLPGraph:
  """The LLP-BP graph from features (or precomputed edges), bags and counts.

  Args:
    features_or_edges: [N, d] covariates or embeddings, from which the
      `num_neighbors`-NN graph is built with `metric` and `knn_method`; or
      `knn.Edges` (e.g. a cached `knn.knn_graph`), used as given after
      symmetrisation.
    bag_ids: [N] bag of each instance, in [0, num_bags); -1 for none if
      `allow_unbagged`.
    bag_counts: [num_bags] positives per bag, in [0, bag size].
    lambda_bag: λ_b > 0, strength of the bag term.
    lambda_sim: λ_s > 0, strength of the similarity term.
    num_neighbors: k of the kNN graph, 1 <= k < N.
    metric: kNN metric, one of `knn.METRICS`.
    kernel: edge kernel K of the distance, one of `knn.KERNELS`.
    length_scale: kernel length scale ℓ.
    prior_log_odds: optional [N] unary log-odds f_i (e.g. a classifier's).
    allow_unbagged: allow bag id -1 (the instance then has no bag factor).
    min_bags_per_block: see `bag_blocks`.
    knn_method: "exact", "ivf" (approximate, for N in the millions) or
      "nndescent" (approximate, on the CPU; needs pynndescent); see
      `knn.knn_graph`, which also defines the IVF `knn_cells` (num_cells) and
      `knn_probes` (num_probes) and their defaults.

  Returns:
    An `LLPGraph` for `run_bp`.
  """
  num_nodes = len(bag_ids)
  lambda_bag = check_lambda("lambda_bag", lambda_bag)
  bag_ids, counts = validate_bags(bag_ids, bag_counts, num_nodes, allow_unbagged)
  field = jnp.zeros(num_nodes, jnp.float32)
  if prior_log_odds is not None:
    field = jnp.asarray(prior_log_odds, jnp.float32)
    if field.shape != (num_nodes,) or not bool(jnp.isfinite(field).all()):
      raise ValueError(f"prior_log_odds must be finite with shape ({num_nodes},).")
  senders, receivers, weights = similarity_edges(
      features_or_edges, num_nodes, lambda_sim=lambda_sim, num_neighbors=num_neighbors,
      metric=metric, kernel=kernel, length_scale=length_scale, knn_method=knn_method,
      knn_cells=knn_cells, knn_probes=knn_probes)
  return LLPGraph(field, senders, receivers, weights,
                  bag_blocks(bag_ids, counts, min_bags_per_block), lambda_bag)


def similarity_edges(features_or_edges, num_nodes: int, *, lambda_sim: float,
                     num_neighbors: int, metric: str, kernel: str, length_scale: float,
                     knn_method: str = "exact", knn_cells: int | None = None,
                     knn_probes: int | None = None):
  """Checked undirected edges (senders, receivers, weights λ_s K_ij) for N nodes.

  See `build_llp_graph` for the arguments.
  """
  lambda_sim = check_lambda("lambda_sim", lambda_sim)
  knn.check_kernel(kernel, length_scale)
  if isinstance(features_or_edges, knn.Edges):
    edges = features_or_edges
    for name, ids in (("senders", edges.senders), ("receivers", edges.receivers)):
      ids = np.asarray(ids)
      if ids.size and (ids.min() < 0 or ids.max() >= num_nodes):
        raise ValueError(f"Edge {name} out of range [0, {num_nodes}).")
    dist = np.asarray(edges.distances)
    if not (np.isfinite(dist).all() and (dist >= 0).all()):
      raise ValueError("Edge distances must be finite and >= 0.")
  else:
    features = np.asarray(features_or_edges)
    if features.ndim != 2 or len(features) != num_nodes:
      raise ValueError(f"features must be [N={num_nodes}, d] like bag_ids, got {features.shape}.")
    if not np.isfinite(features).all():
      raise ValueError("features contain NaN or inf.")
    if not 1 <= num_neighbors < num_nodes:
      raise ValueError(f"Need 1 <= num_neighbors < N = {num_nodes}, got {num_neighbors}.")
    edges = knn.knn_graph(features, num_neighbors, metric, method=knn_method,
                          num_cells=knn_cells, num_probes=knn_probes)
  edges = knn.undirected(edges)
  weights = lambda_sim * knn.kernel_weights(edges.distances, kernel, length_scale)
  return edges.senders.astype(jnp.int32), edges.receivers.astype(jnp.int32), weights


# ------------------------------------------------------------------- messages


def _edge_messages(cavity: jax.Array, weight: jax.Array) -> jax.Array:
  """Messages through exp(−w [y_i ≠ y_j]) given the sender's cavity log-odds."""
  return jnp.logaddexp(cavity, -weight) - jnp.logaddexp(cavity - weight, 0.0)


def count_window(capacity: int, lambda_bag: float) -> int:
  """Counts W kept per member for bags of `capacity`: 7 sub-Gaussian sds + slack."""
  half = math.ceil(3.5 * math.sqrt(capacity + 2.0 / lambda_bag)) + 2
  return min(capacity + 1, 2 * half + 1)


def _tilt(t, valid, counts, lam):
  """θ [nb] with Σ_j σ(t_j + θ) = k − θ / 2λ for each bag of t [nb, B].

  The left side minus the right is increasing in θ and changes sign on
  [2λ(k − size), 2λk]; Newton's method, safeguarded by bisection on that
  bracket. θ only sets the dynamic range, so a few iterations suffice.
  """
  size = valid.sum(-1)
  t = jnp.where(valid, t, 0.0)
  lo, hi = 2 * lam * (counts - size), 2 * lam * counts
  guess = jnp.log((counts + 0.5) / (size - counts + 0.5)) - t.sum(-1) / jnp.maximum(size, 1)

  def newton(_, state):
    lo, hi, theta = state
    q = jnp.where(valid, jax.nn.sigmoid(t + theta[:, None]), 0.0)
    excess = q.sum(-1) - counts + theta / (2 * lam)
    slope = (q * (1 - q)).sum(-1) + 1 / (2 * lam)
    lo, hi = jnp.where(excess < 0, theta, lo), jnp.where(excess > 0, theta, hi)
    theta = theta - excess / slope
    return lo, hi, jnp.where((theta >= lo) & (theta <= hi), theta, 0.5 * (lo + hi))

  return lax.fori_loop(0, _TILT_ITERATIONS, newton, (lo, hi, jnp.clip(guess, lo, hi)))[2]


def _shift(x: jax.Array, by: int) -> jax.Array:
  """y[..., c] = x[..., c − by] along the last axis, zero-filled; by = ±1."""
  if by > 0:
    return jnp.pad(x[..., :-1], [(0, 0)] * (x.ndim - 1) + [(1, 0)])
  return jnp.pad(x[..., 1:], [(0, 0)] * (x.ndim - 1) + [(0, 1)])


def _cardinality_messages(t, valid, counts, lam, window: int):
  """Exact messages of the factors exp(−λ (c − k_b)²) of a batch of bags.

  Forward and backward sums of the module docstring, each over the members
  with a carry [nb, W]. Only every G-th prefix law (G ≈ sqrt(B)) is stored;
  the backward pass recomputes the G laws of a group from its start, so
  memory is O(nb W sqrt(B)) instead of O(nb W B).

  Args:
    t: [nb, B] cavity log-odds of the members.
    valid: [nb, B] bool, real members (padding may be anywhere).
    counts: [nb] positives k_b.
    lam: λ_b.
    window: counts kept per member, `count_window(B, λ_b)`.

  Returns:
    [nb, B] log-odds messages to the members (arbitrary at padding).
  """
  num_bags, capacity = t.shape
  theta = _tilt(t, valid, counts, lam)
  p = jnp.where(valid, jax.nn.sigmoid(t + theta[:, None]), 0.0)  # padding never counts
  group = math.isqrt(capacity - 1) + 1
  num_groups = -(-capacity // group)
  p = jnp.pad(p, ((0, 0), (0, num_groups * group - capacity)))
  # Window j covers counts [offset_j, offset_j + W) around E A_j and moves by
  # step_j = offset_{j+1} − offset_j in {0, 1}.
  mean = jnp.cumsum(p, axis=1) - p
  target = jnp.clip(jnp.floor(mean - (window - 1) / 2 + 0.5), 0, capacity + 1 - window)
  step = jnp.clip(jnp.diff(target, axis=1, append=target[:, -1:]), 0, 1)
  last_offset = step[:, :-1].sum(1)
  step_prev = _shift(step, 1)

  def by_group(x):  # [nb, groups · G] -> [groups, G, nb], members leading for scan
    return x.T.reshape(num_groups, group, num_bags)

  p, step, step_prev = by_group(p), by_group(step), by_group(step_prev)

  def forward(f, x):  # F_j -> F_{j+1}
    p_j, s_j = x[0][:, None], x[1][:, None]
    return jnp.where(s_j > 0, (1 - p_j) * _shift(f, -1) + p_j * f,
                     (1 - p_j) * f + p_j * _shift(f, 1))

  def group_start(f, x):
    return lax.fori_loop(0, group, lambda j, f: forward(f, (x[0][j], x[1][j])), f), f

  f0 = jnp.zeros((num_bags, window)).at[:, 0].set(1.0)
  _, starts = lax.scan(group_start, f0, (p, step))

  ones = jnp.ones(window)

  def backward(r, x):  # R_{j+1} -> R_j, and the two sums of member j
    f, p_j, s_prev = x[0], x[1][:, None], x[2][:, None]
    num, den = (f * r[:, 1:]) @ ones, (f * r[:, :-1]) @ ones  # matvec beats reduce on CPU
    r = jnp.where(s_prev > 0, (1 - p_j) * _shift(r, 1) + p_j * r,
                  (1 - p_j) * r + p_j * _shift(r, -1))
    return r, (num, den)

  def group_backward(r, x):
    start, p_g, step_g, step_prev_g = x
    _, prefix = lax.scan(lambda f, y: (forward(f, y), f), start, (p_g, step_g))
    return lax.scan(backward, r, (prefix, p_g, step_prev_g), reverse=True)

  # R_B = ψ_θ(a) ∝ exp(−λ (a − peak)²), peak = k − θ / 2λ, on W + 1 counts.
  peak = counts - theta / (2 * lam)
  log_psi = -lam * jnp.square(last_offset[:, None] + jnp.arange(window + 1) - peak[:, None])
  r0 = jnp.exp(log_psi - log_psi.max(1, keepdims=True))
  _, (num, den) = lax.scan(group_backward, r0, (starts, p, step, step_prev), reverse=True)
  log_ratio = jnp.log(num) - jnp.log(den)
  return theta[:, None] + log_ratio.reshape(-1, num_bags)[:capacity].T


def _gaussian_messages(t, valid, counts, lam):
  """Cardinality messages with a moment-matched Gaussian P_{−i}; [nb, B]."""
  p = jnp.where(valid, jax.nn.sigmoid(t), 0.0)
  var = p * (1 - p)
  mean_rest = p.sum(-1, keepdims=True) - p
  var_rest = jnp.maximum(var.sum(-1, keepdims=True) - var, 0.0)
  return -lam * (2 * (mean_rest - counts[:, None]) + 1) / (1 + 2 * lam * var_rest)


def _pairwise_messages(h, valid, old, lam):
  """Messages M[b, i, j] (i -> j) through exp(−2λ y_i y_j); [nb, B, B]."""
  cavity = h[:, :, None] - jnp.swapaxes(old, 1, 2)
  new = jax.nn.softplus(cavity - 2 * lam) - jax.nn.softplus(cavity)
  capacity = h.shape[1]
  pair = valid[:, :, None] & valid[:, None, :] & ~jnp.eye(capacity, dtype=bool)
  return jnp.where(pair, new, 0.0)


def _in_chunks(fn, num_chunks: int, *args):
  """fn over the leading (bag) axis of `args` in `num_chunks` sequential chunks."""
  num_bags = args[0].shape[0]
  if num_chunks == 1:
    return fn(*args)
  per_chunk = -(-num_bags // num_chunks)
  pad = per_chunk * num_chunks - num_bags  # empty bags: no members, count 0
  chunked = [jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1)).reshape(
      (num_chunks, per_chunk) + a.shape[1:]) for a in args]
  out = lax.map(lambda xs: fn(*xs), chunked)
  return out.reshape((-1,) + out.shape[2:])[:num_bags]


def count_factor_messages(cavity, valid, counts, old, lam, bag_factor: str, window: int):
  """New messages of factors exp(−λ (c − k)²) on the counts of rows of members.

  Args:
    cavity: [nb, B] cavity log-odds of the members.
    valid: [nb, B] bool, real members.
    counts: [nb] k of each row.
    old: [nb, B] current messages, kept where the new one is not finite.
    lam: λ.
    bag_factor: "cardinality" (exact), "gaussian" or "saddlepoint": the
      Gaussian message of the tilted law, θ + the "gaussian" formula with
      cavities t + θ and count k − θ / 2λ (the tilted law's mean). Tilting
      moves the Gaussian from the law's tail to its bulk: the classical
      saddle-point approximation, close to exact for large bags.
    window: `count_window(B, λ)`; used by "cardinality" only.

  Returns:
    [nb, B] log-odds messages, 0 at padding.
  """
  if bag_factor == "gaussian":
    new = _gaussian_messages(cavity, valid, counts, lam)
  elif bag_factor == "saddlepoint":
    theta = _tilt(cavity, valid, counts, lam)
    new = theta[:, None] + _gaussian_messages(cavity + theta[:, None], valid,
                                              counts - theta / (2 * lam), lam)
  else:
    num_chunks = -(-valid.shape[0] * window // _STEP_ELEMENTS)
    new = _in_chunks(lambda *x: _cardinality_messages(*x, lam, window), num_chunks,
                     cavity, valid, counts)
    # The exact message lies in [min, max] of log ψ(c+1)/ψ(c) over c in
    # [0, size − 1]; off that (0/0 from an extreme, untiltable input) keep the old one.
    size = valid.sum(-1, keepdims=True)
    k = counts[:, None]
    new = jnp.where(jnp.isfinite(new),
                    jnp.clip(new, -lam * (2 * (size - 1 - k) + 1), lam * (2 * k - 1)), old)
  return jnp.where(valid, new, 0.0)


def _bag_update(block: BagBlock, h, old, lam, bag_factor: str, window: int,
                num_nodes: int):
  """New messages from one block's bag factors given beliefs h."""
  valid = block.members < num_nodes
  h_members = h.at[block.members].get(mode="fill", fill_value=0.0)
  if bag_factor == "pairwise":
    return _pairwise_messages(h_members, valid, old, lam)
  return count_factor_messages(h_members - old, valid, block.counts, old, lam, bag_factor,
                               window)


def _bag_incoming(msgs, bag_factor: str):
  """[nb, B] total message from each member's bag factor."""
  return msgs.sum(1) if bag_factor == "pairwise" else msgs


# ------------------------------------------------------------------------- BP


def _round_up(n: int, m: int) -> int:
  return -(-n // m) * m


def beliefs(senders, receivers, bags, field, msgs, bag_factor: str):
  """Field plus all incoming messages; rows of [N] or [N, C] (multiclass_bp)."""
  sim_fwd, sim_bwd, bag_msgs = msgs
  n = field.shape[0]
  h = (field + jax.ops.segment_sum(sim_fwd, receivers, n)
       + jax.ops.segment_sum(sim_bwd, senders, n))
  for block, m in zip(bags, bag_msgs):
    h = h.at[block.members].add(_bag_incoming(m, bag_factor), mode="drop")
  return h


def damped_sweeps(update, msgs, num_sweeps, damping, tol):
  """Flooding updates m ← α m + (1 − α) update(m) until `num_sweeps` or a change ≤ tol.

  Returns the messages, the largest change of the last sweep and the sweeps run.
  """
  def body(state):
    i, msgs, _ = state
    damped = jax.tree.map(lambda new, old: damping * old + (1 - damping) * new,
                          update(msgs), msgs)
    changes = [jnp.max(jnp.abs(d - o), initial=0.0)
               for d, o in zip(jax.tree.leaves(damped), jax.tree.leaves(msgs))]
    return i + 1, damped, jnp.max(jnp.stack(changes))

  def cond(state):
    i, _, delta = state
    return (i < num_sweeps) & (delta > tol)

  i, msgs, delta = lax.while_loop(cond, body, (jnp.int32(0), msgs, jnp.float32(jnp.inf)))
  return msgs, delta, i


def pad_graph(field, senders, receivers, weights):
  """Pads nodes (rows of `field`) and edges to the loop-friendly multiples.

  Extra nodes have no factors; extra edges are zero-weight self-loops on the
  last node (their messages are exactly 0).
  """
  n = field.shape[0]
  field = jnp.pad(field, [(0, _round_up(n, _NODE_MULTIPLE) - n)] + [(0, 0)] * (field.ndim - 1))
  num_edges = senders.shape[0]
  edge_pad = (0, _round_up(max(num_edges, 1), _EDGE_MULTIPLE) - num_edges)
  senders = jnp.pad(senders, edge_pad, constant_values=field.shape[0] - 1)
  receivers = jnp.pad(receivers, edge_pad, constant_values=field.shape[0] - 1)
  return field, senders, receivers, jnp.pad(weights, edge_pad)


@functools.partial(jax.jit, static_argnames=("bag_factor", "windows"))
def _run_bp(graph: LLPGraph, num_sweeps, damping, tol, *, bag_factor: str,
            windows: tuple[int, ...]) -> BPResult:
  n, lam = graph.num_nodes, graph.lambda_bag
  field, senders, receivers, weights = pad_graph(graph.field, graph.senders, graph.receivers,
                                                 graph.weights)
  if bag_factor == "pairwise":
    for block in graph.bags:
      unary = jnp.broadcast_to(-lam * (1 - 2 * block.counts[:, None]), block.members.shape)
      field = field.at[block.members].add(unary, mode="drop")

  def update(msgs):
    sim_fwd, sim_bwd, bag_msgs = msgs
    h = beliefs(senders, receivers, graph.bags, field, msgs, bag_factor)
    return (_edge_messages(h[senders] - sim_bwd, weights),
            _edge_messages(h[receivers] - sim_fwd, weights),
            tuple(_bag_update(block, h, m, lam, bag_factor, w, n)
                  for block, m, w in zip(graph.bags, bag_msgs, windows)))

  def bag_zeros(block):
    shape = block.members.shape
    return jnp.zeros(shape + shape[-1:] if bag_factor == "pairwise" else shape)

  msgs = (jnp.zeros_like(weights), jnp.zeros_like(weights), tuple(map(bag_zeros, graph.bags)))
  msgs, delta, i = damped_sweeps(update, msgs, num_sweeps, damping, tol)
  h = beliefs(senders, receivers, graph.bags, field, msgs, bag_factor)[:n]
  return BPResult(jax.nn.sigmoid(h), h, delta, i)


def run_bp(graph: LLPGraph, num_sweeps: int = 100, damping: float = 0.5,
           tol: float | None = None, bag_factor: str = "cardinality") -> BPResult:
  """Loopy BP on `graph`; returns the beliefs P(y_i = 1) and convergence info.

  Args:
    graph: from `build_llp_graph`.
    num_sweeps: maximum number of synchronous sweeps.
    damping: α in [0, 1), weight of the old message in each update.
    tol: stop once no message (log-odds) moved by more than `tol` in a
      sweep; None runs all `num_sweeps`.
    bag_factor: one of `BAG_FACTORS` (module docstring).

  One compilation per graph shape and `bag_factor`; sweeps, damping and tol
  are traced.
  """
  tol = check_run_options(num_sweeps, damping, tol, bag_factor, BAG_FACTORS)
  lam = check_lambda("graph.lambda_bag", graph.lambda_bag)
  windows = tuple(count_window(b.members.shape[1], lam) for b in graph.bags)
  return _run_bp(graph, num_sweeps, damping, tol, bag_factor=bag_factor, windows=windows)


def check_run_options(num_sweeps: int, damping: float, tol: float | None, bag_factor: str,
                      bag_factors: tuple[str, ...]) -> float:
  """Checks the options of `run_bp`; returns `tol` with None as −1 (never met)."""
  if bag_factor not in bag_factors:
    raise ValueError(f"Unknown bag_factor {bag_factor!r}; choose one of {bag_factors}.")
  if num_sweeps < 1:
    raise ValueError(f"num_sweeps must be >= 1, got {num_sweeps}.")
  if not 0 <= damping < 1:
    raise ValueError(f"damping must be in [0, 1), got {damping}.")
  if tol is not None and not tol >= 0:
    raise ValueError(f"tol must be >= 0 or None, got {tol}.")
  return -1.0 if tol is None else tol
