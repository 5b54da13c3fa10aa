"""The models' fast paths compute what the standard ops compute."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

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


@pytest.mark.parametrize("channels", [1, 3, 8])
@pytest.mark.parametrize("padding", ["SAME", "VALID", ((2, 0), (1, 1))])
def test_patch_conv_matches_xla_convolution_in_values_and_gradients(channels, padding):
  x = jax.random.normal(jax.random.key(0), (4, 9, 7, channels))
  kernel = jax.random.normal(jax.random.key(1), (3, 3, channels, 5))
  numbers = lax.conv_dimension_numbers(x.shape, kernel.shape, ("NHWC", "HWIO", "NHWC"))

  def conv(fn):
    return lambda x, kernel: fn(x, kernel, (1, 1), padding, dimension_numbers=numbers)

  fast, reference = conv(models.patch_conv), conv(lax.conv_general_dilated)
  np.testing.assert_allclose(fast(x, kernel), reference(x, kernel), rtol=1e-5, atol=1e-5)
  out, fast_vjp = jax.vjp(fast, x, kernel)
  cotangent = jax.random.normal(jax.random.key(2), out.shape)
  for a, b in zip(fast_vjp(cotangent), jax.vjp(reference, x, kernel)[1](cotangent)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_patch_conv_leaves_strided_convolutions_to_xla():
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
  kernel = jax.random.normal(jax.random.key(1), (3, 3, 3, 4))
  numbers = lax.conv_dimension_numbers(x.shape, kernel.shape, ("NHWC", "HWIO", "NHWC"))
  args = (x, kernel, (2, 2), "SAME")
  np.testing.assert_array_equal(models.patch_conv(*args, dimension_numbers=numbers),
                                lax.conv_general_dilated(*args, dimension_numbers=numbers))


@pytest.mark.parametrize("name, shape, width", [("small_cnn", (2, 28, 28, 1), 32),
                                                ("wrn28_2", (2, 32, 32, 3), 16)])
def test_models_keep_their_parameter_names_and_shapes(name, shape, width):
  # Checkpoints and pretrained encoders load by name: the fast paths live
  # inside nn.Conv, so the first layer is still Conv_0 with a 3x3 kernel.
  model = models.get_model(name, 10)
  variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros(shape))
  assert variables["params"]["Conv_0"]["kernel"].shape == (3, 3, shape[-1], width)
