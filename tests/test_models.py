"""The models' fast paths compute what the standard ops compute."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from labeljax import models


def test_max_pool_matches_nn_max_pool_in_values_and_gradients():
  # Continuous random inputs: no window holds two equal maxima.
  x = jax.random.normal(jax.random.key(0), (3, 8, 6, 5))
  reference = lambda x: nn.max_pool(x, (2, 2), strides=(2, 2))
  np.testing.assert_array_equal(models.max_pool(x, 2), reference(x))
  cotangent = jax.random.normal(jax.random.key(1), (3, 4, 3, 5))
  grads = [jax.vjp(f, x)[1](cotangent)[0] for f in (lambda x: models.max_pool(x, 2), reference)]
  np.testing.assert_array_equal(*grads)
  # Windows that do not tile the image: nn.max_pool itself (VALID).
  odd = x[:, :7]
  np.testing.assert_array_equal(models.max_pool(odd, 2), reference(odd))


@pytest.mark.parametrize("name, shape, width", [("small_cnn", (2, 28, 28, 1), 32),
                                                ("wrn28_2", (2, 32, 32, 3), 16)])
def test_models_keep_their_parameter_names_and_shapes(name, shape, width):
  # Checkpoints and pretrained encoders load by name.
  model = models.get_model(name, 10)
  variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros(shape))
  assert variables["params"]["Conv_0"]["kernel"].shape == (3, 3, shape[-1], width)
