"""labeljax: JAX building blocks for label-efficient learning.

Four algorithm families share one data pipeline, one set of models and one
pure, data-parallel train core (`labeljax.train`):

* pseudo-labeling for semi-supervised learning (`labeljax.ssl`),
* learning from label proportions, with LLP-BP as the flagship (`labeljax.llp`),
* semi-supervised distillation (`labeljax.distill`),
* self-supervised representations, SimCLR (`labeljax.selfsup`), and the
  SimCLRv2 recipe that combines it with distillation (`labeljax.recipes`).

Entry points: `labeljax.methods.train_and_evaluate(config, workdir)` runs any
config; `labeljax.data.register_dataset(name, labeljax.data.from_arrays(...))`
makes your own arrays a data set every method trains on.
"""

__version__ = "0.1.0"
