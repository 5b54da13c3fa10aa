"""Models (Flax Linen). Each returns `ModelOutput(logits, embedding)`.

`embedding` is the penultimate representation: LLP-BP builds its kNN graph on
it, distillation and analysis read it. Built with `num_classes=0` a model is
its trunk alone (`logits` None): the encoder of `SimCLRNet`. Models take float
inputs (images in [0, 1], NHWC). BatchNorm normalises over the global batch: under `jax.jit`
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
  logits: jax.Array | None  # [batch, num_classes]; None for a trunk (num_classes=0)
  embedding: jax.Array      # [batch, embedding_dim]


def classify(x: jax.Array, num_classes: int,
             output_bias: Sequence[float] | None = None, **kwargs) -> ModelOutput:
  """`ModelOutput` of the output layer on the embedding `x` (no layer if
  `num_classes` is 0), its bias starting at `output_bias` when given.

  With the log class prior as `output_bias` the model's predictions start at
  that distribution instead of uniform. Call inside a compact module.
  """
  if not num_classes:
    return ModelOutput(None, x)
  if output_bias is not None:
    bias = np.asarray(output_bias, np.float32)
    if bias.shape != (num_classes,):
      raise ValueError(f"output_bias needs {num_classes} values, got shape {bias.shape}.")
    kwargs["bias_init"] = nn.initializers.constant(bias)
  return ModelOutput(nn.Dense(num_classes, **kwargs)(x), x)


def max_pool(x: jax.Array, window: int) -> jax.Array:
  """Max over non-overlapping `window` x `window` patches (NHWC), stride = window.

  Where the windows tile the image this is a reshape and a max, whose gradient
  XLA's CPU backend computes 2-3x faster than `nn.max_pool`'s select-and-scatter
  (benchmarks/README.md). Values are identical; gradients too, except where a
  window holds several equal maxima (the reshape form splits the gradient
  between them). Otherwise it falls back to `nn.max_pool` (VALID padding).
  """
  n, height, width, channels = x.shape
  if height % window or width % window:
    return nn.max_pool(x, (window, window), strides=(window, window))
  x = x.reshape(n, height // window, window, width // window, window, channels)
  return x.max(axis=(2, 4))


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
    return classify(x, self.num_classes, self.output_bias)


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
        x = max_pool(x, 2)
    x = jnp.mean(x, axis=(1, 2))
    x = nn.relu(nn.Dense(self.embedding_dim)(x))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return classify(x, self.num_classes, self.output_bias)


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
    return classify(x, self.num_classes, self.output_bias,
                    kernel_init=nn.initializers.glorot_normal())


class SimCLRNet(nn.Module):
  """An encoder with SimCLRv2's projection head (Chen et al., 2020b, sec. 2).

  The encoder's embedding h goes through `len(head_widths)` layers, each a
  Dense (no bias) and BatchNorm, with a ReLU after all but the last. With
  `num_classes=0` (pretraining) the output's `embedding` is h, the
  representation evaluated by kNN and linear probes, and `logits` holds the
  projections z that the contrastive loss compares. With `num_classes=C`
  (fine-tuning) every kept head layer has its ReLU, and a linear classifier
  reads the last one: SimCLRv2 fine-tunes from the first layer of the 3-layer
  head, i.e. `head_widths=(pretrained_widths[0],)`; the classifier's input is
  then `embedding`. Layer names (`encoder`, `head_i`, `head_norm_i`) match
  between the two, so pretrained variables transfer by name.
  With `frozen` (a probe) the encoder and head run in inference mode (their
  BatchNorm on its running averages) and pass no gradient: only the
  classifier learns, and the backward pass skips the encoder.
  """
  encoder: nn.Module  # built with num_classes=0
  head_widths: Sequence[int] = (256, 256, 64)
  num_classes: int = 0
  frozen: bool = False

  @nn.compact
  def __call__(self, x, train: bool = False) -> ModelOutput:
    train_trunk = train and not self.frozen
    h = self.encoder(x, train=train_trunk).embedding
    z = h
    for i, width in enumerate(self.head_widths):
      last = i == len(self.head_widths) - 1 and not self.num_classes
      z = nn.Dense(width, use_bias=False, name=f"head_{i}")(z)
      # As SimCLRv2: the output layer's BatchNorm has no bias (centring is
      # free under the cosine similarity that follows).
      z = nn.BatchNorm(use_running_average=not train_trunk, momentum=0.9,
                       use_bias=not last, name=f"head_norm_{i}")(z)
      z = z if last else nn.relu(z)
    if not self.num_classes:
      return ModelOutput(z, h)
    return classify(jax.lax.stop_gradient(z) if self.frozen else z, self.num_classes)


MODELS: dict[str, Callable[..., nn.Module]] = {
    "mlp": MLP,
    "small_cnn": SmallCNN,
    "wrn28_2": functools.partial(WideResNet, depth=28, widen_factor=2),
}


IMAGE_MODELS = ("small_cnn", "wrn28_2")


def get_model(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
  """Builds a registered model (its trunk alone with `num_classes=0`); unknown
  names list the choices."""
  if name not in MODELS:
    raise ValueError(f"Unknown model {name!r}; choose one of {sorted(MODELS)}.")
  if num_classes == 1 or num_classes < 0:
    raise ValueError(f"num_classes must be >= 2 (or 0 for the trunk alone), got "
                     f"{num_classes}.")
  # Flax modules are hashed: lists (from JSON or the command line) become tuples.
  kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
  return MODELS[name](num_classes=num_classes, **kwargs)
