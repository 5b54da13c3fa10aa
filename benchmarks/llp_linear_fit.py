r"""How the fit decides linear DLLP at large bags: L-BFGS against Adam and SGD.

On one cell of results/llp_adult.md (Adult, random bags, seed 0) the linear
model p = softmax(W x + c) is fitted to the same DLLP objective on the same
bags four ways, each from zero, full batch (every bag in every step):
L-BFGS (experiments/llp_reference.py, L2 λ = 1e-4), Adam for 1000 and 5000
steps, Adam with the same L2 term, and SGD with momentum. Printed per fit:
the bag loss on the training bags (without the L2 term) and the test AUC.
The table's minibatch DLLP runs are a fifth way (1 bag of 512 per step).

  LABELJAX_RAW_DATA_DIR=../shared/data python benchmarks/llp_linear_fit.py --bag_size=512
"""

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments import llp_reference
from experiments.configs import llp
from labeljax import metrics
from labeljax.llp import llp_bp
from labeljax.llp import training as llp_training
from labeljax.train import trainer

_BAG_SIZE = flags.DEFINE_integer("bag_size", 512, "Random bag size.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the split and the bags.")


def main(argv):
  del argv
  config = llp.get_config(f"dataset=adult,bag_size={_BAG_SIZE.value},seed={_SEED.value}")
  data = trainer.load_data(config)
  pool, bags = llp_training.make_bags(config, data)
  x = llp_bp.flat_inputs(data.dataset.train.take(pool))
  x_test, labels = llp_bp.flat_inputs(data.dataset.test), data.dataset.test.labels
  membership = llp_reference.bag_means_matrix(bags.bag_ids, bags.num_bags)

  def report(name, weights):
    weights = np.asarray(weights, np.float64)
    loss, _ = llp_reference.dllp_objective(weights.ravel(), x, membership,
                                           bags.proportions, 0.0)
    scores = x_test @ weights[:-1] + weights[-1]
    auc = metrics.roc_auc(scores[:, 1] - scores[:, 0], labels)
    print(f"{name:<42} bag loss {loss:.5f}  test AUC {auc:.4f}", flush=True)

  report("L-BFGS, L2 1e-4", llp_reference.fit_linear_dllp(x, bags.bag_ids,
                                                          bags.proportions, 1e-4))
  xj, ids = jnp.asarray(x), jnp.asarray(bags.bag_ids)
  proportions = jnp.asarray(bags.proportions, jnp.float32)
  sizes = jnp.asarray(bags.sizes, jnp.float32)[:, None]

  def bag_loss(weights, l2):
    probs = jax.nn.softmax(xj @ weights[:-1] + weights[-1])
    mean = jax.ops.segment_sum(probs, ids, bags.num_bags) / sizes
    loss = -(proportions * jnp.log(jnp.clip(mean, 1e-12))).sum(1).mean()
    return loss + 0.5 * l2 * (weights[:-1] ** 2).sum()

  def fit(tx, steps, l2=0.0):
    weights = jnp.zeros((x.shape[1] + 1, bags.label_counts.shape[1]))

    def step(carry, _):  # scanned: one compilation per fit
      weights, state = carry
      grads = jax.grad(bag_loss)(weights, l2)
      updates, state = tx.update(grads, state, weights)
      return (optax.apply_updates(weights, updates), state), None

    (weights, _), _ = jax.lax.scan(step, (weights, tx.init(weights)), None, length=steps)
    return weights

  for steps in (1000, 5000):
    report(f"Adam, lr 0.01 cosine, {steps} steps",
           fit(optax.adam(optax.cosine_decay_schedule(0.01, steps)), steps))
  report("Adam, lr 0.01 cosine, 1000 steps, L2 1e-4",
         fit(optax.adam(optax.cosine_decay_schedule(0.01, 1000)), 1000, l2=1e-4))
  report("SGD momentum 0.9, lr 1 cosine, 1000 steps",
         fit(optax.sgd(optax.cosine_decay_schedule(1.0, 1000), momentum=0.9), 1000))


if __name__ == "__main__":
  app.run(main)
