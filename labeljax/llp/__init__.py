"""Learning from label proportions: LLP-BP graph inference (kNN graph + binary
and multi-class BP)."""

from labeljax.llp.bp import (BAG_FACTORS, BagBlock, BPResult, LLPGraph, bag_blocks,
                             build_llp_graph, count_window, run_bp, validate_bags)
from labeljax.llp.knn import (Edges, KERNELS, METRICS, kernel_weights, knn_graph,
                              undirected)
from labeljax.llp.multiclass_bp import (MulticlassBPResult, MulticlassGraph,
                                        build_multiclass_graph, run_multiclass_bp,
                                        validate_class_counts)
