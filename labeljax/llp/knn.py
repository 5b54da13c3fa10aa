"""k-nearest-neighbour graphs without an N x N matrix: exact or IVF in JAX, or
NN-descent on the CPU.

Exact (`method="exact"`, the default). `knn_graph` scores query rows in chunks
against the whole data set. For each chunk it streams over data blocks and
keeps only the maximum score of every group of `group` consecutive points, then
re-scores the points of the k + 1 best groups exactly and takes their top k.
The search is exact: each of the k best points lies in a group whose maximum is
at least the k-th best score, and at most k groups (k + 1 counting the query's
own group) have one. Memory is O(N k + query_chunk N / group); time is
O(N^2 d) (super-linear, as any exact search). `lax.top_k` then only ever runs
on N / group or (k + 1) group entries, which is what makes exact search at
N = 1e6 feasible on a CPU.

Approximate (`method="ivf"`, an inverted file). A few Lloyd iterations of
k-means on a sample give `num_cells` centroids; every point goes to the cell of
its nearest centroid, and the points are sorted by cell so that each cell is
one contiguous range. Each query is searched exactly against the points of the
`num_probes` cells whose centroids are nearest to it (its own cell first), by
the same two-pass group maximum as the exact search over the union of those
cells. To make that dense work, the (query, cell) pairs of a batch of queries
are sorted by cell and scored in slots of `query_chunk` queries against one
cell ([query_chunk, capacity] blocks, capacity = the largest cell); only the
group maxima are kept per pair. Per-query probing matters in 16-d: at N = 1e6
and 1000 cells, the 32 cells nearest each query hold 93% of its 10 nearest
neighbours, the 32 nearest its cell's centroid only 49%. Time is
O(N · num_probes · capacity · d) for the search plus O(N · num_cells · d) for
the probe lists; memory O(N (k + d + num_probes)) plus a batch's 2^21 pairs ×
capacity / group maxima. `num_probes == num_cells` is the exact search.

NN-descent (`method="nndescent"`, the optional `pynndescent` package:
`pip install 'labeljax[knn]'`). A graph method for CPUs: random-projection
trees give each point candidate neighbours, then each point repeatedly tries
its neighbours' neighbours (Dong, Charikar and Li, "Efficient k-nearest
neighbor graph construction for generic similarity measures", WWW 2011).
On a CPU it reaches higher recall per second than IVF on data without
cluster structure, where any partition of space needs many probes
(benchmarks/README.md, "Approximate kNN"); IVF is the method that runs on
an accelerator. labeljax recomputes the distances of the edges it returns
(float32, in JAX), so all three methods give the same distance for a pair.

Scores avoid the N x N distance matrix too: for Euclidean distance
‖q − x‖² = ‖q‖² − (2 q·x − ‖x‖²), so ranking uses 2 q·x − ‖x‖²; for cosine
distance 1 − q̂·x̂ it uses q̂·x̂ on unit-normalised rows. Centroids are scored
the same way (spherical k-means for cosine).
"""

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
import numpy as np

METRICS = ("euclidean", "cosine")
METHODS = ("exact", "ivf", "nndescent")


class Edges(NamedTuple):
  senders: jax.Array    # [E] int32
  receivers: jax.Array  # [E] int32
  distances: jax.Array  # [E] float32


def _round_up(n: int, m: int) -> int:
  return -(-n // m) * m


def _prepare(x, metric):
  """(rows, scale, bias): rank points x for a query q by scale · q·x − bias(x)."""
  x = x.astype(jnp.float32)
  if metric == "cosine":
    x = x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
    return x, 1.0, jnp.zeros(x.shape[0])
  # Centring is free and keeps the ‖q‖² − score cancellation accurate.
  x = x - x.mean(0)
  return x, 2.0, jnp.sum(x * x, axis=-1)


def _top_k_among(q, q_ids, points, bias, ids, *, k, scale, block, group):
  """The k best of `points` [M, d] for each query of q [Q, d], itself excluded.

  Two passes: the maximum score of each group of `group` consecutive points,
  streamed over blocks of `block` points (M a multiple of block, block of
  group); then the points of the k + 1 best groups, re-scored exactly. `ids`
  [M] are the points' global ids (compared with `q_ids` to exclude the query);
  padding points have bias +inf. Returns (global ids [Q, k], scores [Q, k]).
  """
  num_q, d = q.shape

  def group_max(carry, blk):
    xb, bb = blk
    scores = scale * (q @ xb.T) - bb
    return carry, scores.reshape(num_q, block // group, group).max(-1)

  _, maxima = lax.scan(group_max, None, (points.reshape(-1, block, d), bias.reshape(-1, block)))
  maxima = jnp.moveaxis(maxima, 0, 1).reshape(num_q, -1)
  _, best_groups = lax.top_k(maxima, k + 1)
  cand = (best_groups[:, :, None] * group + jnp.arange(group)).reshape(num_q, -1)
  return _best_of(q, q_ids, cand, points, bias, ids, k=k, scale=scale)


def _best_of(q, q_ids, cand, points, bias, ids, *, k, scale):
  """The k best candidates cand [Q, M] (rows of `points`) of each query, itself
  excluded, as (global ids [Q, k], scores [Q, k]); see `_top_k_among`."""
  scores = scale * jnp.einsum("qd,qcd->qc", q, points[cand]) - bias[cand]
  cand = ids[cand]
  scores = jnp.where(cand == q_ids[:, None], -jnp.inf, scores)
  top, j = lax.top_k(scores, k)
  return jnp.take_along_axis(cand, j, axis=1), top


def _distances(top, q_bias, metric):
  """Distances from the top scores of queries with bias `q_bias` (see `_prepare`)."""
  if metric == "cosine":
    return jnp.clip(1.0 - top, 0.0, 2.0)
  return jnp.sqrt(jnp.maximum(q_bias[:, None] - top, 0.0))


def _edges(ids, dist):
  """Edges i -> ids[i, :] with distances dist[i, :], for all N senders."""
  n, k = ids.shape
  senders = jnp.repeat(jnp.arange(n, dtype=jnp.int32), k)
  return Edges(senders, ids.reshape(-1).astype(jnp.int32), dist.reshape(-1))


@functools.partial(jax.jit, static_argnames=("k", "metric", "query_chunk",
                                             "db_chunk", "group"))
def _exact(x, query_ids, *, k, metric, query_chunk, db_chunk, group):
  """Exact (ids [Q, k], distances [Q, k]) of the points `query_ids` among all."""
  n, d = x.shape
  num_q = len(query_ids)
  x, scale, bias = _prepare(x, metric)
  n_db, n_q = _round_up(n, db_chunk), _round_up(num_q, query_chunk)
  db = jnp.pad(x, ((0, n_db - n), (0, 0)))
  db_bias = jnp.pad(bias, (0, n_db - n), constant_values=jnp.inf)  # padding scores -inf
  db_ids = jnp.arange(n_db, dtype=jnp.int32)
  q_ids = jnp.pad(query_ids.astype(jnp.int32), (0, n_q - num_q)).reshape(-1, query_chunk)
  search = functools.partial(_top_k_among, points=db, bias=db_bias, ids=db_ids, k=k,
                             scale=scale, block=db_chunk, group=group)
  ids, top = lax.map(lambda q: search(x[q], q), q_ids)
  ids, top = ids.reshape(n_q, k)[:num_q], top.reshape(n_q, k)[:num_q]
  return ids, _distances(top, bias[query_ids], metric)


# ------------------------------------------------------------------------ IVF


def _nearest_centroids(x, centroids, scale, num, chunk):
  """[N, num]: the cells of the `num` best-scoring centroids of each row, best first."""
  n, d = x.shape
  c_bias = jnp.sum(centroids * centroids, -1) if scale == 2.0 else jnp.zeros(len(centroids))
  rows = jnp.pad(x, ((0, _round_up(n, chunk) - n), (0, 0))).reshape(-1, chunk, d)
  cells = lax.map(lambda r: lax.top_k(scale * (r @ centroids.T) - c_bias, num)[1], rows)
  return cells.reshape(-1, num)[:n].astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("metric", "num_cells", "num_probes",
                                             "sample_size", "iterations", "chunk"))
def _ivf_cells(x, key, *, metric, num_cells, num_probes, sample_size, iterations, chunk):
  """k-means (Lloyd) on a sample; every point's probed cells; the cell order.

  Centroids start at distinct sampled points; a cell that empties keeps its
  centroid. Returns (probes [N, num_probes]: the cells of each point's nearest
  centroids, its own cell first; order [N]: point ids sorted by cell; sizes
  [C]; starts [C]: first position of each cell in `order`).
  """
  x, scale, _ = _prepare(x, metric)
  sample = x[jax.random.choice(key, x.shape[0], (sample_size,), replace=False)]

  def lloyd(centroids, _):
    cells = _nearest_centroids(sample, centroids, scale, 1, chunk)[:, 0]
    sums = jax.ops.segment_sum(sample, cells, num_cells)
    counts = jax.ops.segment_sum(jnp.ones(sample_size), cells, num_cells)[:, None]
    means = jnp.where(counts > 0, sums / jnp.maximum(counts, 1.0), centroids)
    if metric == "cosine":
      means = means / jnp.maximum(jnp.linalg.norm(means, axis=-1, keepdims=True), 1e-12)
    return means, None

  centroids, _ = lax.scan(lloyd, sample[:num_cells], None, length=iterations)
  probes = _nearest_centroids(x, centroids, scale, num_probes, chunk)
  order = jnp.argsort(probes[:, 0], stable=True).astype(jnp.int32)
  sizes = jnp.bincount(probes[:, 0], length=num_cells).astype(jnp.int32)
  return probes, order, sizes, jnp.cumsum(sizes) - sizes


@functools.partial(jax.jit, static_argnames=("num_cells", "batch", "slot_size"))
def _slot_counts(probes, *, num_cells, batch, slot_size):
  """Slots needed by each query batch: Σ_cells ⌈pairs of the cell / slot_size⌉.

  The last batch is padded as `_ivf_search` pads it, with the first points.
  """
  n = probes.shape[0]
  batches = probes[jnp.arange(_round_up(n, batch)) % n]
  count = lambda p: -(-jnp.bincount(p.reshape(-1), length=num_cells) // slot_size)
  return lax.map(lambda p: count(p).sum(), batches.reshape(-1, batch, probes.shape[1]))


@functools.partial(jax.jit, static_argnames=("k", "metric", "batch", "slot_size", "num_slots",
                                             "capacity", "group"))
def _ivf_search(x, probes, order, sizes, starts, *, k, metric, batch, slot_size, num_slots,
                capacity, group):
  """Every query against the points of its probed cells: `_top_k_among` over
  the union of those cells, with the first pass done cell by cell.

  Queries go in batches. A batch's (query, cell) pairs are sorted by cell and
  cut into slots of `slot_size` pairs of one cell, so that each slot is one
  dense [slot_size, capacity] score block against one cell (a contiguous range
  of the cell-sorted points, padded to `capacity`), reduced to group maxima.
  Each query then re-scores the points of its k + 1 best groups among all its
  cells' groups: exact within the probed cells, and `lax.top_k` (slow on a
  CPU) runs on num_probes · capacity / group + (k + 1) group entries per query
  instead of num_probes · capacity.
  """
  n, _ = x.shape
  num_cells, num_probes = len(sizes), probes.shape[1]
  groups = capacity // group  # per cell
  x, scale, bias = _prepare(x, metric)
  # Cell-sorted points; `capacity` padding rows (bias +inf, id n) past the end.
  pad = lambda a, v: jnp.pad(a, [(0, capacity)] + [(0, 0)] * (a.ndim - 1), constant_values=v)
  sorted_x, sorted_bias, sorted_ids = pad(x[order], 0.0), pad(bias[order], jnp.inf), pad(order, n)
  offsets = jnp.arange(capacity)

  def one_batch(queries):
    queries = queries % n  # the last batch wraps round: its extra pairs spread over cells
    pair_cells = probes[queries].reshape(-1)
    by_cell = jnp.argsort(pair_cells, stable=True).astype(jnp.int32)
    counts = jnp.bincount(pair_cells, length=num_cells)
    slots = -(-counts // slot_size)
    slot_cells = jnp.repeat(jnp.arange(num_cells), slots, total_repeat_length=num_slots)
    slot_rank = jnp.arange(num_slots) - (jnp.cumsum(slots) - slots)[slot_cells]
    first = (jnp.cumsum(counts) - counts)[slot_cells] + slot_rank * slot_size
    end = jnp.where(jnp.arange(num_slots) < slots.sum(), jnp.cumsum(counts)[slot_cells], 0)

    def one_slot(args):
      cell, first, end = args
      pos = first + jnp.arange(slot_size)
      pairs = jnp.where(pos < end, by_cell[jnp.minimum(pos, len(by_cell) - 1)], len(by_cell))
      q = x[queries[jnp.minimum(pairs // num_probes, batch - 1)]]
      at = starts[cell] + offsets
      scores = scale * (q @ sorted_x[at].T) - jnp.where(offsets < sizes[cell], sorted_bias[at],
                                                         jnp.inf)
      return pairs, scores.reshape(slot_size, groups, group).max(-1)

    pairs, maxima = lax.map(one_slot, (slot_cells, first, end))
    maxima = jnp.full((batch * num_probes, groups), -jnp.inf).at[pairs.reshape(-1)].set(
        maxima.reshape(-1, groups), mode="drop").reshape(batch, num_probes * groups)
    # Group g of probe p of a query: its cell's points g · group + [0, group).
    _, best = lax.top_k(maxima, k + 1)
    cells = jnp.take_along_axis(probes[queries], best // groups, axis=1)
    offset = ((best % groups) * group)[:, :, None] + jnp.arange(group)
    cand = jnp.where(offset < sizes[cells][:, :, None], starts[cells][:, :, None] + offset, n)
    return _best_of(x[queries], queries, cand.reshape(batch, -1), sorted_x, sorted_bias,
                    sorted_ids, k=k, scale=scale)

  queries = jnp.arange(_round_up(n, batch), dtype=jnp.int32).reshape(-1, batch)
  ids, top = lax.map(one_batch, queries)
  ids, top = ids.reshape(-1, k)[:n], top.reshape(-1, k)[:n]
  return _edges(ids, _distances(top, bias, metric))


PROBE_MIN, PROBE_FRACTION = 8, 0.05
# NN-descent builds at least this many neighbours (pynndescent's default) and
# keeps the k nearest: a wider graph is what makes its search converge. On the
# 16-d data of benchmarks/knn.py at N = 20k, recall@10 was 0.898 / 0.990 /
# 0.999 with 11 / 20 / 30 neighbours built, for 0.7 / 1.6 / 1.9 CPU seconds.
NNDESCENT_NEIGHBORS = 30
KMEANS_SAMPLE = 64     # k-means sample points per cell
QUERY_PAIRS = 1 << 21  # (query, cell) pairs per IVF batch: 4 capacity / group bytes each


def default_num_cells(n: int) -> int:
  """IVF cells for N points when not given: about sqrt(N), at most N."""
  return max(1, min(n, round(n ** 0.5)))


def default_num_probes(num_cells: int) -> int:
  """Probed cells when not given: PROBE_FRACTION of the cells, at least PROBE_MIN.

  On the nearly isotropic 16-d data of benchmarks/knn.py at N = 1e6 and 1000
  cells, the nearest 32 / 64 / 128 cells of a query hold 93% / 98.5% / 99.9%
  of its 10 nearest neighbours (32 probes measured recall@10 0.926); clustered
  data needs fewer.
  """
  return min(num_cells, max(PROBE_MIN, round(PROBE_FRACTION * num_cells)))


def knn_graph(x, k: int, metric: str = "euclidean", *, method: str = "exact",
              num_cells: int | None = None, num_probes: int | None = None,
              kmeans_iterations: int = 10, seed: int = 0, query_chunk: int = 256,
              db_chunk: int = 4096, group: int = 32) -> Edges:
  """Directed kNN edges i -> (its k nearest other points), self excluded.

  Args:
    x: [N, d] points.
    k: neighbours per point, 1 <= k < N.
    metric: "euclidean" (‖x_i − x_j‖) or "cosine" (1 − cos(x_i, x_j)).
    method: "exact" (O(N² d), the default), "ivf" (approximate, see the
      module docstring; for N in the millions) or "nndescent" (approximate,
      on the CPU; needs `pynndescent`).
    num_cells: IVF cells, 1 <= num_cells <= N; default `default_num_cells(N)`.
    num_probes: cells searched per query (those of its nearest centroids),
      1 <= num_probes <= num_cells;
      default `default_num_probes(num_cells)`. More probes: higher recall,
      proportionally more time.
    kmeans_iterations: IVF Lloyd iterations on a sample of 64 points per cell.
    seed: IVF k-means sample and initialisation; NN-descent's trees.
    query_chunk: query rows scored at once (exact: memory ~ query_chunk · N /
      group; IVF: queries per slot against one cell).
    db_chunk: exact: data points per streamed block; rounded to a multiple of
      `group`.
    group: points per group in the first, coarse pass.

  Returns:
    `Edges` sorted by sender, k per sender, nearest first.
  """
  if method not in METHODS:
    raise ValueError(f"Unknown kNN method {method!r}; choose one of {METHODS}.")
  if metric not in METRICS:
    raise ValueError(f"Unknown metric {metric!r}; choose one of {METRICS}.")
  if np.ndim(x) != 2:
    raise ValueError(f"Points must be [N, d], got shape {np.shape(x)}.")
  n = np.shape(x)[0]
  if not 1 <= k < n:
    raise ValueError(f"Need 1 <= k < N = {n} (self-matches are excluded), got k={k}.")
  if min(query_chunk, db_chunk, group) < 1:
    raise ValueError("query_chunk, db_chunk and group must be positive.")
  if method != "ivf" and (num_cells, num_probes) != (None, None):
    raise ValueError(f"num_cells and num_probes set the IVF search; kNN method {method!r} "
                     "has no cells: drop them or use method 'ivf'.")
  if method == "ivf":
    num_cells = default_num_cells(n) if num_cells is None else num_cells
    if not 1 <= num_cells <= n:
      raise ValueError(f"IVF needs 1 <= num_cells <= N = {n} points, got num_cells={num_cells}.")
    num_probes = default_num_probes(num_cells) if num_probes is None else num_probes
    if not 1 <= num_probes <= num_cells:
      raise ValueError(f"IVF needs 1 <= num_probes <= num_cells = {num_cells}, "
                       f"got num_probes={num_probes}.")
    if kmeans_iterations < 0:
      raise ValueError(f"kmeans_iterations must be >= 0, got {kmeans_iterations}.")
  if not bool(jnp.isfinite(x).all()):
    raise ValueError("Points contain NaN or inf.")
  if method == "nndescent":
    return _nndescent_graph(np.asarray(x, np.float32), k, metric, seed)
  x = jnp.asarray(x)
  if method == "ivf":
    return _ivf_graph(x, k, metric, num_cells, num_probes, kmeans_iterations, seed,
                      query_chunk, group)
  return _edges(*_exact_search(x, jnp.arange(n), k, metric, query_chunk, db_chunk, group))


def exact_neighbors(x, query_ids, k: int, metric: str = "euclidean"):
  """Exact (ids [Q, k], distances [Q, k]) of the points `query_ids` [Q] among x.

  The ground truth for the recall of an approximate graph on a sample of
  queries: O(Q N d), where the whole graph costs O(N² d).
  """
  if metric not in METRICS:
    raise ValueError(f"Unknown metric {metric!r}; choose one of {METRICS}.")
  n = np.shape(x)[0]
  if not 1 <= k < n:
    raise ValueError(f"Need 1 <= k < N = {n} (self-matches are excluded), got k={k}.")
  return _exact_search(jnp.asarray(x), jnp.asarray(query_ids), k, metric, 256, 4096, 32)


def _exact_search(x, query_ids, k, metric, query_chunk, db_chunk, group):
  n = x.shape[0]
  
# The coarse pass needs k + 1 groups; shrink groups on tiny data sets.
  while group > 1 and n // group < k + 1:
    group //= 2
  return _exact(x, query_ids, k=k, metric=metric, query_chunk=min(query_chunk, len(query_ids)),
                db_chunk=_round_up(min(db_chunk, n), group), group=group)


def recall(edges: Edges, query_ids, exact_ids) -> float:
  """Recall@k of directed `edges` (k per sender, as `knn_graph` returns) at the
  queries `query_ids` [Q]: the fraction of their exact k nearest neighbours
  `exact_ids` [Q, k] (e.g. from `exact_neighbors`) that the edges list."""
  exact_ids = np.asarray(exact_ids)
  found = np.asarray(edges.receivers).reshape(-1, exact_ids.shape[1])[np.asarray(query_ids)]
  hits = (found[:, :, None] == exact_ids[:, None, :]).any(1)
  return float(hits.mean())


def _ivf_graph(x, k, metric, num_cells, num_probes, kmeans_iterations, seed, query_chunk,
               group) -> Edges:
  """`knn_graph(method="ivf")`: cells and probes, slot counts, then the search."""
  n = x.shape[0]
  probes, order, sizes, starts = _ivf_cells(
      x, jax.random.key(seed), metric=metric, num_cells=num_cells, num_probes=num_probes,
      sample_size=min(n, KMEANS_SAMPLE * num_cells), iterations=kmeans_iterations, chunk=1024)
  reach = int(jnp.min(sizes[probes].sum(1)))  # fewest points a query searches
  if reach < k + 1:
    raise ValueError(f"The {num_probes} probed cells of some point hold only {reach} points, "
                     f"fewer than k + 1 = {k + 1}; raise num_probes or lower num_cells.")
  max_size = int(sizes.max())
  slot_size = min(query_chunk, n * num_probes // num_cells + 1)
  batch = min(n, max(1, QUERY_PAIRS // num_probes))
  num_slots = int(_slot_counts(probes, num_cells=num_cells, batch=batch,
                               slot_size=slot_size).max())
  while group > 1 and max(max_size, k + 1) // group < k + 1:
    group //= 2
  return _ivf_search(x, probes, order, sizes, starts, k=k, metric=metric, batch=batch,
                     slot_size=slot_size, num_slots=num_slots,
                     capacity=_round_up(max(max_size, k + 1), group), group=group)


def drop_self_matches(ids: np.ndarray) -> np.ndarray:
  """Neighbour lists [N, m] of points 0..N−1 without each point itself: [N, m − 1].

  A row that does not list its point (duplicates can displace it) loses its
  last entry, the farthest, instead.
  """
  is_self = ids == np.arange(len(ids))[:, None]
  is_self[~is_self.any(1), -1] = True
  return ids[~is_self].reshape(len(ids), ids.shape[1] - 1)


def _nndescent_graph(x: np.ndarray, k: int, metric: str, seed: int) -> Edges:
  """`knn_graph(method="nndescent")`: pynndescent's graph of max(k + 1,
  NNDESCENT_NEIGHBORS) neighbours, each point's self-match dropped (or, where
  duplicates displaced it, its farthest), the k nearest kept by recomputed
  distances."""
  try:
    import pynndescent  # pylint: disable=g-import-not-at-top
  except ImportError as error:
    raise ImportError("knn method 'nndescent' needs the pynndescent package: "
                      "pip install 'labeljax[knn]' (or use method 'ivf').") from error
  n = len(x)
  num_neighbors = min(n, max(k + 1, NNDESCENT_NEIGHBORS))
  index = pynndescent.NNDescent(x, metric=metric, n_neighbors=num_neighbors,
                                random_state=seed)
  ids = np.asarray(index.neighbor_graph[0])
  if (ids < 0).any():
    raise RuntimeError(f"NN-descent left {int((ids < 0).any(1).sum())} of {n} points with "
                       f"fewer than {num_neighbors} neighbours; use method 'ivf' or 'exact'.")
  ids = drop_self_matches(ids)
  prepared, scale, bias = _prepare(jnp.asarray(x), metric)
  scores = scale * jnp.einsum("nd,nkd->nk", prepared, prepared[ids]) - bias[ids]
  scores, order = lax.top_k(scores, k)  # nearest first
  return _edges(jnp.take_along_axis(jnp.asarray(ids), order, axis=1),
                _distances(scores, bias, metric))


def undirected(edges: Edges) -> Edges:
  """Each unordered pair {i, j} once, as (min, max), sorted; self-loops dropped.

  Turns the directed kNN relation into the symmetric one (i ~ j when either
  lists the other) that an undirected MRF needs. Runs eagerly (output size is
  data dependent).
  """
  lo = jnp.minimum(edges.senders, edges.receivers)
  hi = jnp.maximum(edges.senders, edges.receivers)
  order = jnp.lexsort((hi, lo))
  lo, hi, dist = lo[order], hi[order], edges.distances[order]
  first = jnp.ones_like(lo, dtype=bool).at[1:].set((lo[1:] != lo[:-1]) | (hi[1:] != hi[:-1]))
  keep = np.flatnonzero(np.asarray(first & (lo != hi)))
  return Edges(lo[keep], hi[keep], dist[keep])


KERNELS: dict[str, Callable[[jax.Array, float], jax.Array]] = {
    # Matérn-1/2 (the paper's default): exp(−d / ℓ).
    "matern12": lambda d, ell: jnp.exp(-d / ell),
    # Gaussian / RBF: exp(−d² / 2ℓ²).
    "rbf": lambda d, ell: jnp.exp(-0.5 * jnp.square(d / ell)),
    # Unweighted graph.
    "constant": lambda d, ell: jnp.ones_like(d),
}


def check_kernel(kernel: str, length_scale: float) -> None:
  if kernel not in KERNELS:
    raise ValueError(f"Unknown kernel {kernel!r}; choose one of {tuple(KERNELS)}.")
  if not length_scale > 0:
    raise ValueError(f"length_scale must be > 0, got {length_scale}.")


def kernel_weights(distances: jax.Array, kernel: str = "matern12",
                   length_scale: float = 1.0) -> jax.Array:
  """K(x_i, x_j) as a function of the edge distance; see `KERNELS`."""
  check_kernel(kernel, length_scale)
  return KERNELS[kernel](jnp.asarray(distances, jnp.float32), length_scale)
