"""Models (Flax Linen). Each returns `ModelOutput(logits, embedding)`.

`embedding` is the penultimate representation: LLP-BP builds its kNN graph on
it, distillation and analysis read it. Models take float inputs (images in
[0, 1], NHWC). BatchNorm normalises over the global batch: under `jax.jit`
with the batch sharded over devices, XLA computes the batch moments with a
cross-device reduction, so statistics are identical on 1 or N devices.
"""

import functools
from typing import Any, Callable, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


class ModelOutput(NamedTuple):
  logits: jax.Array     # [batch, num_classes]
  embedding: jax.Array  # [batch, embedding_dim]


def classifier(num_classes: int, output_bias: Sequence[float] | None = None,
               **kwargs) -> nn.Dense:
  """The output layer, its bias starting at `output_bias` when given.

  With the log class prior as `output_bias` the model's predictions start at
  that distribution instead of uniform.
  """
  if output_bias is not None:
    bias = np.asarray(output_bias, np.float32)
    if bias.shape != (num_classes,):
      raise ValueError(f"output_bias needs {num_classes} values, got shape {bias.shape}.")
    kwargs["bias_init"] = nn.initializers.constant(bias)
  return nn.Dense(num_classes, **kwargs)


class MLP(nn.Module):
  """Fully connected ReLU network for tabular data."""
  num_classes: int
  hidden_sizes: Sequence[int] = (256, 256)
  dropout_rate: float = 0.0
  output_bias: tuple[float, ...] | None = None

  @nn.compact
  def __call__(self, x, train: bool = False) -> ModelOutput:
    x = x.reshape(x.shape[0], -1)
    for size in self.hidden_sizes:
      x = nn.relu(nn.Dense(size)(x))
      x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return ModelOutput(classifier(self.num_classes, self.output_bias)(x), x)


class SmallCNN(nn.Module):
  """Small CNN for 28x28 images: 3 conv blocks with BatchNorm, then a dense layer."""
  num_classes: int
  widths: Sequence[int] = (32, 64, 128)
  embedding_dim: int = 128
  dropout_rate: float = 0.0
  output_bias: tuple[float, ...] | None = None

  @nn.compact
  def __call__(self, x, train: bool = False) -> ModelOutput:
    norm = functools.partial(nn.BatchNorm, use_running_average=not train,
                             momentum=0.9)
    for i, width in enumerate(self.widths):
      x = nn.relu(norm()(nn.Conv(width, (3, 3), use_bias=False)(x)))
      if i < len(self.widths) - 1:
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = jnp.mean(x, axis=(1, 2))
    x = nn.relu(nn.Dense(self.embedding_dim)(x))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return ModelOutput(classifier(self.num_classes, self.output_bias)(x), x)


_CONV_INIT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")  # Kaiming, fan-out


class _WideBlock(nn.Module):
  """Pre-activation residual block of USB's WideResNet."""
  width: int
  stride: int
  norm: Callable[..., nn.Module]

  @nn.compact
  def __call__(self, x):
    act = lambda y: nn.leaky_relu(y, 0.1)
    conv = lambda width, size, stride: nn.Conv(width, (size, size), stride,
                                               padding=size // 2, kernel_init=_CONV_INIT)
    if x.shape[-1] == self.width:
      y, shortcut = act(self.norm()(x)), x
    else:
      # Width changes: the first conv and the 1x1 shortcut share the
      # pre-activated input.
      x = act(self.norm()(x))
      y, shortcut = x, conv(self.width, 1, self.stride)(x)
    y = act(self.norm()(conv(self.width, 3, self.stride)(y)))
    return shortcut + conv(self.width, 3, 1)(y)


class WideResNet(nn.Module):
  """WideResNet-depth-widen (Zagoruyko & Komodakis 2016) as USB builds it.

  WRN-28-2 is the standard semi-supervised backbone: BatchNorm momentum 0.001
  (flax: 0.999), epsilon 1e-3, leaky ReLU 0.1, convolutions with biases and
  Kaiming (fan-out) init, a Glorot-normal classifier.
  """
  num_classes: int
  depth: int = 28
  widen_factor: int = 2
  output_bias: tuple[float, ...] | None = None

  @nn.compact
  def __call__(self, x, train: bool = False) -> ModelOutput:
    if (self.depth - 4) % 6:
      raise ValueError(f"WideResNet depth must be 6n+4, got {self.depth}.")
    blocks_per_stage = (self.depth - 4) // 6
    norm = functools.partial(nn.BatchNorm, use_running_average=not train,
                             momentum=0.999, epsilon=1e-3)
    x = nn.Conv(16, (3, 3), padding=1, kernel_init=_CONV_INIT)(x)
    for stage, width in enumerate((16, 32, 64)):
      for block in range(blocks_per_stage):
        x = _WideBlock(width * self.widen_factor,
                       stride=2 if stage > 0 and block == 0 else 1, norm=norm)(x)
    x = nn.leaky_relu(norm()(x), 0.1)
    x = jnp.mean(x, axis=(1, 2))
    logits = classifier(self.num_classes, self.output_bias,
                        kernel_init=nn.initializers.glorot_normal())(x)
    return ModelOutput(logits, x)


MODELS: dict[str, Callable[..., nn.Module]] = {
    "mlp": MLP,
    "small_cnn": SmallCNN,
    "wrn28_2": functools.partial(WideResNet, depth=28, widen_factor=2),
}


IMAGE_MODELS = ("small_cnn", "wrn28_2")


def get_model(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
  """Builds a registered model; unknown names list the choices."""
  if name not in MODELS:
    raise ValueError(f"Unknown model {name!r}; choose one of {sorted(MODELS)}.")
  if num_classes < 2:
    raise ValueError(f"num_classes must be >= 2, got {num_classes}.")
  return MODELS[name](num_classes=num_classes, **kwargs)
