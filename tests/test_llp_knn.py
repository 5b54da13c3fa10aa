"""kNN graphs (exact, IVF and NN-descent), undirected edges and kernels against brute force."""

import sys

import jax.numpy as jnp
import numpy as np
import pytest

from labeljax.llp import knn


def brute_force(x, k, metric):
  x = x.astype(np.float64)
  if metric == "cosine":
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    dist = 1.0 - u @ u.T
  else:
    dist = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
  np.fill_diagonal(dist, np.inf)
  ids = np.argsort(dist, axis=1)[:, :k]
  return ids, np.take_along_axis(dist, ids, axis=1)


@pytest.mark.parametrize("metric", knn.METRICS)
@pytest.mark.parametrize("n,k,chunks", [
    (300, 5, dict(query_chunk=64, db_chunk=48, group=8)),  # no chunk divides N
    (1000, 10, {}),                                          # defaults
    (40, 7, dict(query_chunk=7, db_chunk=9, group=32)),     # group shrinks to fit k + 1
])
def test_knn_matches_brute_force(metric, n, k, chunks):
  x = np.random.default_rng(n).normal(size=(n, 8)).astype(np.float32)
  edges = knn.knn_graph(x, k, metric, **chunks)
  ids, dist = brute_force(x, k, metric)
  np.testing.assert_array_equal(np.asarray(edges.senders), np.repeat(np.arange(n), k))
  np.testing.assert_array_equal(np.asarray(edges.receivers).reshape(n, k), ids)
  np.testing.assert_allclose(np.asarray(edges.distances).reshape(n, k), dist, atol=1e-5)


def test_knn_keeps_duplicates_but_not_self():
  x = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
  x[7] = x[3]
  edges = knn.knn_graph(x, 1)
  nearest = np.asarray(edges.receivers)
  assert nearest[3] == 7 and nearest[7] == 3
  assert (nearest != np.arange(50)).all()
  assert float(edges.distances[3]) == pytest.approx(0.0, abs=1e-6)


def test_undirected_deduplicates_symmetric_pairs():
  edges = knn.Edges(jnp.array([0, 1, 2, 2, 3, 1]), jnp.array([1, 0, 0, 3, 2, 1]),
                    jnp.array([0.5, 0.5, 1.0, 2.0, 2.0, 0.0]))
  out = knn.undirected(edges)
  np.testing.assert_array_equal(np.asarray(out.senders), [0, 0, 2])
  np.testing.assert_array_equal(np.asarray(out.receivers), [1, 2, 3])
  np.testing.assert_allclose(np.asarray(out.distances), [0.5, 1.0, 2.0])


def test_kernel_weights():
  d = jnp.array([0.0, 1.0, 2.0])
  np.testing.assert_allclose(knn.kernel_weights(d), np.exp(-np.array([0.0, 1.0, 2.0])), rtol=1e-6)
  np.testing.assert_allclose(knn.kernel_weights(d, "rbf", 2.0),
                             np.exp(-np.array([0.0, 1.0, 4.0]) / 8), rtol=1e-6)
  np.testing.assert_allclose(knn.kernel_weights(d, "constant"), 1.0)
  with pytest.raises(ValueError, match="Unknown kernel 'laplace'; choose one of"):
    knn.kernel_weights(d, "laplace")
  with pytest.raises(ValueError, match="length_scale"):
    knn.kernel_weights(d, "rbf", 0.0)


def test_knn_rejects_bad_inputs():
  x = np.zeros((10, 2), np.float32)
  with pytest.raises(ValueError, match="k < N = 10"):
    knn.knn_graph(x, 10)
  with pytest.raises(ValueError, match="Unknown metric"):
    knn.knn_graph(x, 2, "manhattan")
  x[4, 1] = np.nan
  with pytest.raises(ValueError, match="NaN or inf"):
    knn.knn_graph(x, 2)
  with pytest.raises(ValueError, match=r"\[N, d\]"):
    knn.knn_graph(np.zeros(10), 2)


# ------------------------------------------------------------------------ IVF


def test_ivf_finds_known_neighbours_of_separated_clusters():
  # 30 far-apart clusters of k + 1 = 6 points: each point's 5 neighbours are
  # exactly its cluster mates. k-means on 10 cells may still split a cluster
  # (two initial centroids in it); 4 probes cover it whole.
  rng = np.random.default_rng(0)
  k, clusters = 5, 30
  centres = rng.uniform(-100, 100, size=(clusters, 4))
  x = (centres.repeat(k + 1, 0) + rng.normal(scale=0.1, size=(clusters * (k + 1), 4)))
  edges = knn.knn_graph(x.astype(np.float32), k, method="ivf", num_cells=10, num_probes=4)
  found = np.sort(np.asarray(edges.receivers).reshape(-1, k), axis=1)
  cluster = np.arange(len(x)) // (k + 1)
  mates = np.array([np.flatnonzero((cluster == cluster[i]) & (np.arange(len(x)) != i))
                    for i in range(len(x))])
  np.testing.assert_array_equal(found, mates)
  ids, _ = knn.exact_neighbors(x, np.arange(len(x)), k)
  assert knn.recall(edges, np.arange(len(x)), ids) == 1.0


@pytest.mark.parametrize("metric", knn.METRICS)
def test_ivf_recall_on_random_points(metric):
  x = np.random.default_rng(1).normal(size=(2000, 6)).astype(np.float32)
  queries = np.arange(0, 2000, 7)
  exact_ids, exact_dist = knn.exact_neighbors(x, queries, 10, metric)
  approx = knn.knn_graph(x, 10, metric, method="ivf")  # 45 cells, 8 probes
  assert knn.recall(approx, queries, exact_ids) >= 0.9
  # Probing every cell is the exact search, distances and all.
  full = knn.knn_graph(x, 10, metric, method="ivf", num_cells=20, num_probes=20)
  ids, dist = brute_force(x, 10, metric)
  np.testing.assert_array_equal(np.asarray(full.receivers).reshape(-1, 10), ids)
  np.testing.assert_allclose(np.asarray(full.distances).reshape(-1, 10), dist, atol=1e-5)
  np.testing.assert_array_equal(np.asarray(exact_ids), ids[queries])


def test_ivf_batches_that_do_not_divide_n(monkeypatch):
  # Batches of 900 queries: the last holds 100 points and pads with 800 more
  # (counted as pairs too); it must still get every pair of its own.
  x = np.random.default_rng(4).normal(size=(1000, 4)).astype(np.float32)
  whole = knn.knn_graph(x, 5, method="ivf", num_cells=20, num_probes=3)
  monkeypatch.setattr(knn, "QUERY_PAIRS", 3 * 900)
  batched = knn.knn_graph(x, 5, method="ivf", num_cells=20, num_probes=3)
  np.testing.assert_array_equal(np.asarray(batched.receivers), np.asarray(whole.receivers))


def test_ivf_recall_grows_with_probes():
  x = np.random.default_rng(2).normal(size=(3000, 8)).astype(np.float32)
  queries = np.arange(0, 3000, 5)
  exact_ids, _ = knn.exact_neighbors(x, queries, 10)
  recalls = [knn.recall(knn.knn_graph(x, 10, method="ivf", num_cells=50, num_probes=p),
                        queries, exact_ids) for p in (1, 5, 50)]
  assert recalls[0] < recalls[1] < recalls[2] == 1.0


def test_llp_graph_with_ivf_knn():
  from labeljax.llp import bp, multiclass_bp  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(3)
  x = rng.normal(size=(400, 5)).astype(np.float32)
  bag_ids = np.arange(400) // 20
  labels = rng.integers(0, 3, 400)
  counts = np.stack([np.bincount(bag_ids, labels == c) for c in range(3)], 1)
  exact = bp.build_llp_graph(x, bag_ids, counts[:, 1])
  ivf = bp.build_llp_graph(x, bag_ids, counts[:, 1], knn_method="ivf", knn_cells=16,
                           knn_probes=16)
  for a, b in zip(exact[1:4], ivf[1:4]):  # senders, receivers, weights
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
  approx = multiclass_bp.build_multiclass_graph(x, bag_ids, counts, knn_method="ivf",
                                                knn_cells=16, knn_probes=4)
  assert 0 < len(approx.senders) <= 400 * 10
  with pytest.raises(ValueError, match="Unknown kNN method 'hnsw'"):
    multiclass_bp.build_multiclass_graph(x, bag_ids, counts, knn_method="hnsw")


def test_ivf_rejects_bad_settings_before_compiling(monkeypatch):
  def compiled(*args, **kwargs):
    raise AssertionError("reached the jitted search")
  monkeypatch.setattr(knn, "_ivf_cells", compiled)
  x = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
  with pytest.raises(ValueError, match="num_cells <= N = 50 points, got num_cells=51"):
    knn.knn_graph(x, 3, method="ivf", num_cells=51)
  with pytest.raises(ValueError, match="1 <= num_probes <= num_cells = 10, got num_probes=0"):
    knn.knn_graph(x, 3, method="ivf", num_cells=10, num_probes=0)
  with pytest.raises(ValueError, match="1 <= num_probes <= num_cells = 10, got num_probes=11"):
    knn.knn_graph(x, 3, method="ivf", num_cells=10, num_probes=11)
  with pytest.raises(ValueError, match="Unknown kNN method 'annoy'; choose one of"):
    knn.knn_graph(x, 3, method="annoy")
  with pytest.raises(ValueError, match="k < N = 50"):
    knn.knn_graph(x, 50, method="ivf")


def test_ivf_rejects_probes_too_few_for_k():
  x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
  with pytest.raises(ValueError, match="fewer than k \\+ 1 = 6; raise num_probes"):
    knn.knn_graph(x, 5, method="ivf", num_cells=40, num_probes=1)


@pytest.mark.parametrize("metric", knn.METRICS)
def test_nndescent_recall_and_distances_on_random_points(metric):
  x = np.random.default_rng(2).normal(size=(3000, 6)).astype(np.float32)
  x[11] = x[5]  # a duplicate: each is the other's nearest, never itself
  edges = knn.knn_graph(x, 10, metric, method="nndescent")
  ids = np.asarray(edges.receivers).reshape(-1, 10)
  dist = np.asarray(edges.distances).reshape(-1, 10)
  np.testing.assert_array_equal(np.asarray(edges.senders), np.repeat(np.arange(3000), 10))
  assert (ids != np.arange(3000)[:, None]).all() and ids[5, 0] == 11 and ids[11, 0] == 5
  assert (np.diff(dist, axis=1) >= 0).all()  # nearest first
  queries = np.arange(0, 3000, 7)
  exact_ids, _ = knn.exact_neighbors(x, queries, 10, metric)
  assert knn.recall(edges, queries, exact_ids) >= 0.95
  # The distances are the pairs' own.
  x64 = x.astype(np.float64)
  pair = x64[queries][:, None] - x64[ids[queries]]
  if metric == "euclidean":
    expected = np.sqrt((pair ** 2).sum(-1))
  else:
    u = x64 / np.linalg.norm(x64, axis=1, keepdims=True)
    expected = 1.0 - np.einsum("qd,qkd->qk", u[queries], u[ids[queries]])
  np.testing.assert_allclose(dist[queries], expected, atol=1e-5)


def test_nndescent_errors_name_the_problem(monkeypatch):
  x = np.random.default_rng(0).normal(size=(100, 4)).astype(np.float32)
  with pytest.raises(ValueError, match="num_cells and num_probes set the IVF search; kNN "
                                       "method 'nndescent' has no cells"):
    knn.knn_graph(x, 5, method="nndescent", num_cells=10)
  monkeypatch.setitem(sys.modules, "pynndescent", None)  # not installed
  with pytest.raises(ImportError, match=r"needs the pynndescent package: pip install "
                                        r"'labeljax\[knn\]'"):
    knn.knn_graph(x, 5, method="nndescent")


def test_nndescent_drops_self_or_the_farthest_and_rejects_unfilled_rows(monkeypatch):
  """labeljax's side of method 'nndescent' on a stand-in for pynndescent: a
  row that lists itself loses that entry, one that does not (duplicates can
  crowd it out) loses its farthest; a row left with -1 ids is an error."""
  x = np.random.default_rng(3).normal(size=(200, 5)).astype(np.float32)
  listed, _ = brute_force(x, knn.NNDESCENT_NEIGHBORS, "euclidean")
  graph = np.concatenate([np.arange(200)[:, None], listed[:, :-1]], axis=1)
  graph[7] = listed[7]  # row 7 does not list itself
  graph[9] = graph[9][::-1]  # pynndescent's order is not relied on

  class StandIn:
    def __init__(self, data, metric, n_neighbors, random_state):
      assert n_neighbors == graph.shape[1] and metric == "euclidean"
      self.neighbor_graph = (graph, None)

  monkeypatch.setitem(sys.modules, "pynndescent", type(sys)("pynndescent"))
  sys.modules["pynndescent"].NNDescent = StandIn
  edges = knn.knn_graph(x, 4, method="nndescent")
  np.testing.assert_array_equal(np.asarray(edges.receivers).reshape(-1, 4), listed[:, :4])
  graph[3, 5:] = -1
  with pytest.raises(RuntimeError, match="NN-descent left 1 of 200 points with fewer than 30"):
    knn.knn_graph(x, 4, method="nndescent")
