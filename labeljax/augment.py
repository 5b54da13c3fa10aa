"""On-device data augmentation, random per example, jit-compiled.

Images are NHWC floating-point arrays with values in [0, 1] and 1 (grayscale)
or 3 (RGB) channels: apply after `model_inputs` turns uint8 into float32.
Rank, channels and dtype are checked before tracing (an integer dtype is the
cheap sign of unscaled pixels); the value range is not, as that would need a
device round trip. Outputs keep the input's shape and dtype and stay in
[0, 1]. Each example draws its own randomness from `jax.random.split(rng,
batch)`, so a batch is augmented differently per example, and the same key
gives the same result. Fold the step into the key to draw fresh augmentations
each step.

* `weak_augment`: random horizontal flip (turn off for digits or text) and a
  random translation by up to `pad` pixels (reflect padding, random crop), the
  FixMatch/USB weak view.
* `strong_augment`: the weak view, then RandAugment with random magnitudes
  (FixMatch's "RA" variant, Sohn et al., 2020, Table 12 ranges): `num_ops`
  operations drawn uniformly (with replacement) from `RANDAUGMENT_OPS`, each at
  a magnitude drawn uniformly from its range, then Cutout of a random square of
  side up to `cutout` × the image size.
* `simclr_augment`: SimCLR's view (Chen et al., 2020, appendix A): random
  resized crop with a random flip, colour jitter (brightness, contrast, and
  saturation for RGB) with probability 0.8, grayscale (RGB) with probability
  0.2, Gaussian blur with probability 0.5. `simclr_views` draws two.
* `tabular_strong_augment`: feature masking and Gaussian noise for
  standardized tabular features.
* `make_views`: the (weak, strong) pair a config asks for, per data kind.

Under `vmap` a per-example `lax.switch` evaluates every branch and selects
one, so each RandAugment slot costs one affine warp plus all pixel operations.
"""

import functools
import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections

# Value that geometric ops and Cutout paint into uncovered pixels (mid-gray).
FILL_VALUE = 0.5


def check_images(images: jax.Array) -> None:
  """Raises ValueError unless `images` is [N, H, W, C] float with C in {1, 3}."""
  if images.ndim != 4:
    raise ValueError(f"Expected NHWC images of rank 4, got shape {images.shape}.")
  if images.shape[-1] not in (1, 3):
    raise ValueError(f"Expected 1 or 3 channels (NHWC), got shape {images.shape}.")
  if not jnp.issubdtype(images.dtype, jnp.floating):
    raise ValueError(f"Expected floating-point images in [0, 1], got dtype "
                     f"{images.dtype}; convert uint8 with x / 255 first.")


def _default_pad(images: jax.Array, pad: int | None) -> int:
  """FixMatch's translation: up to 12.5% of the side (4 px at 32 px)."""
  if pad is None:
    return int(round(0.125 * min(images.shape[1:3])))
  if pad < 0 or pad >= min(images.shape[1:3]):
    raise ValueError(f"pad must be in [0, {min(images.shape[1:3])}), got {pad}.")
  return pad


# Weak augmentation.


def _flip_and_translate(key: jax.Array, padded: jax.Array, height: int, width: int,
                        flip: bool, pad: int) -> jax.Array:
  """One example: random crop of the padded image, then maybe a flip."""
  flip_key, y_key, x_key = jax.random.split(key, 3)
  y = jax.random.randint(y_key, (), 0, 2 * pad + 1)
  x = jax.random.randint(x_key, (), 0, 2 * pad + 1)
  image = jax.lax.dynamic_slice(padded, (y, x, 0), (height, width, padded.shape[-1]))
  if flip:
    image = jnp.where(jax.random.bernoulli(flip_key), image[:, ::-1], image)
  return image


@functools.partial(jax.jit, static_argnums=(2, 3))
def _weak(rng, images, flip, pad):
  n, height, width, _ = images.shape
  padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
  fn = functools.partial(_flip_and_translate, height=height, width=width,
                         flip=flip, pad=pad)
  return jax.vmap(fn)(jax.random.split(rng, n), padded)


def weak_augment(rng: jax.Array, images: jax.Array, *, flip: bool = True,
                 pad: int | None = None) -> jax.Array:
  """Random horizontal flip (if `flip`) and translation by up to `pad` pixels.

  Args:
    rng: a PRNG key.
    images: [N, H, W, C] floats in [0, 1], C in {1, 3}.
    flip: flip left-right with probability 1/2; False for digits and text.
    pad: maximal shift in pixels (reflect padding + random crop); None means
      12.5% of the shorter side, 0 disables the shift.

  Returns:
    Augmented images, same shape and dtype.
  """
  check_images(images)
  return _weak(rng, images, flip, _default_pad(images, pad))


# RandAugment operations on one image [H, W, C] in [0, 1] at a magnitude v.


def _grayscale(image: jax.Array) -> jax.Array:
  """ITU-R 601-2 luma (as PIL's "L"), [H, W, 1]."""
  if image.shape[-1] == 1:
    return image
  return image @ jnp.array([[0.299], [0.587], [0.114]], image.dtype)


def _blend(degenerate: jax.Array, image: jax.Array, factor: jax.Array) -> jax.Array:
  """PIL's ImageEnhance: degenerate + factor · (image − degenerate)."""
  return jnp.clip(degenerate + factor * (image - degenerate), 0.0, 1.0)


def _affine(image: jax.Array, matrix: jax.Array, shift: jax.Array) -> jax.Array:
  """Bilinear samples of image at matrix · (o − center) + center + shift.

  For each output pixel o in (row, column) coordinates; samples from outside
  the image read FILL_VALUE.
  """
  height, width, channels = image.shape
  center = jnp.array([(height - 1) / 2.0, (width - 1) / 2.0])
  rows, cols = jnp.meshgrid(jnp.arange(height), jnp.arange(width), indexing="ij")
  grid = jnp.stack([rows.ravel(), cols.ravel()], -1).astype(jnp.float32)
  source = (grid - center) @ matrix.T + center + shift
  base = jnp.floor(source)
  frac = source - base
  base = base.astype(jnp.int32)

  def tap(dy, dx):
    y, x = base[:, 0] + dy, base[:, 1] + dx
    inside = (y >= 0) & (y < height) & (x >= 0) & (x < width)
    values = image[jnp.clip(y, 0, height - 1), jnp.clip(x, 0, width - 1)]
    weight = ((frac[:, 0] if dy else 1.0 - frac[:, 0])
              * (frac[:, 1] if dx else 1.0 - frac[:, 1]))
    return weight[:, None] * jnp.where(inside[:, None], values, FILL_VALUE)

  out = tap(0, 0) + tap(0, 1) + tap(1, 0) + tap(1, 1)
  return out.reshape(height, width, channels).astype(image.dtype)


# Pixel ops map (image, v) to an image.


def _identity(image, v):
  del v
  return image


def _autocontrast(image, v):
  del v
  low = image.min(axis=(0, 1), keepdims=True)
  high = image.max(axis=(0, 1), keepdims=True)
  scale = jnp.where(high > low, high - low, 1.0)
  return jnp.where(high > low, (image - low) / scale, image)


def _brightness(image, v):
  return _blend(jnp.zeros_like(image), image, v)


def _color(image, v):
  return _blend(_grayscale(image), image, v)


def _contrast(image, v):
  return _blend(jnp.mean(_grayscale(image)), image, v)


def _equalize_channel(channel: jax.Array) -> jax.Array:
  """Histogram equalization of one [H, W] channel over 256 levels."""
  levels = jnp.round(channel * 255.0).astype(jnp.int32)
  hist = jnp.bincount(levels.ravel(), length=256)
  cdf = jnp.cumsum(hist)
  cdf_min = jnp.min(jnp.where(hist > 0, cdf, cdf[-1]))
  spread = cdf[-1] - cdf_min
  # A single-level channel has nothing to spread and is left unchanged.
  equalized = (cdf[levels] - cdf_min) / jnp.maximum(spread, 1)
  return jnp.where(spread > 0, equalized.astype(channel.dtype), channel)


def _equalize(image, v):
  del v
  return jax.vmap(_equalize_channel, in_axes=-1, out_axes=-1)(image)


def _posterize(image, v):
  """Keeps the top round(v) of 8 bits."""
  step = 2.0 ** (8 - jnp.round(v))
  return jnp.floor(jnp.round(image * 255.0) / step) * step / 255.0


def _sharpness(image, v):
  """Blend with PIL's SMOOTH-filtered image (3x3, center 5, sum 13), border kept."""
  height, width, _ = image.shape
  padded = jnp.pad(image, ((1, 1), (1, 1), (0, 0)), mode="edge")
  smooth = sum(padded[dy:dy + height, dx:dx + width]
               for dy in range(3) for dx in range(3))
  smooth = (smooth + 4.0 * image) / 13.0
  rows = jnp.arange(height)[:, None, None]
  cols = jnp.arange(width)[None, :, None]
  interior = (rows > 0) & (rows < height - 1) & (cols > 0) & (cols < width - 1)
  return _blend(jnp.where(interior, smooth, image), image, v)


def _solarize(image, v):
  return jnp.where(image < v, image, 1.0 - image)


# Geometric ops map (v, image shape) to the (matrix, shift) of `_affine`.


def _rotate(v, shape):
  del shape
  theta = v * math.pi / 180.0
  cos, sin = jnp.cos(theta), jnp.sin(theta)
  return jnp.array([[cos, -sin], [sin, cos]]), jnp.zeros(2)


def _shear_x(v, shape):
  del shape
  return jnp.array([[1.0, 0.0], [v, 1.0]]), jnp.zeros(2)


def _shear_y(v, shape):
  del shape
  return jnp.array([[1.0, v], [0.0, 1.0]]), jnp.zeros(2)


def _translate_x(v, shape):
  return jnp.eye(2), jnp.array([0.0, v * shape[1]])


def _translate_y(v, shape):
  return jnp.eye(2), jnp.array([v * shape[0], 0.0])


def _no_geometry(v, shape):
  del v, shape
  return jnp.eye(2), jnp.zeros(2)


class RandAugmentOp(NamedTuple):
  name: str
  op: Callable
  low: float   # magnitudes are drawn uniformly from [low, high];
  high: float  # signed ranges cover both directions
  geometric: bool = False


RANDAUGMENT_OPS = (
    RandAugmentOp("identity", _identity, 0.0, 1.0),
    RandAugmentOp("autocontrast", _autocontrast, 0.0, 1.0),
    RandAugmentOp("brightness", _brightness, 0.05, 0.95),
    RandAugmentOp("color", _color, 0.05, 0.95),
    RandAugmentOp("contrast", _contrast, 0.05, 0.95),
    RandAugmentOp("equalize", _equalize, 0.0, 1.0),
    RandAugmentOp("posterize", _posterize, 4.0, 8.0),              # bits kept
    RandAugmentOp("rotate", _rotate, -30.0, 30.0, True),           # degrees
    RandAugmentOp("sharpness", _sharpness, 0.05, 0.95),
    RandAugmentOp("shear_x", _shear_x, -0.3, 0.3, True),
    RandAugmentOp("shear_y", _shear_y, -0.3, 0.3, True),
    RandAugmentOp("solarize", _solarize, 0.0, 1.0),                # threshold
    RandAugmentOp("translate_x", _translate_x, -0.3, 0.3, True),   # × width
    RandAugmentOp("translate_y", _translate_y, -0.3, 0.3, True),   # × height
)


def apply_op(op: RandAugmentOp, image: jax.Array, magnitude: jax.Array) -> jax.Array:
  """One RandAugment op on one [H, W, C] image in [0, 1]."""
  if op.geometric:
    return _affine(image, *op.op(magnitude, image.shape))
  return op.op(image, magnitude)


def _cutout(key: jax.Array, image: jax.Array, max_fraction: float) -> jax.Array:
  """Paints a square of side U(0, max_fraction)·size at a uniform center."""
  height, width, _ = image.shape
  size_key, y_key, x_key = jax.random.split(key, 3)
  half = 0.5 * jax.random.uniform(size_key, (), maxval=max_fraction) * min(height, width)
  cy = jax.random.uniform(y_key, (), maxval=height)
  cx = jax.random.uniform(x_key, (), maxval=width)
  rows = jnp.arange(height)[:, None, None] + 0.5
  cols = jnp.arange(width)[None, :, None] + 0.5
  inside = (jnp.abs(rows - cy) < half) & (jnp.abs(cols - cx) < half)
  return jnp.where(inside, FILL_VALUE, image)


def _randaugment(key: jax.Array, image: jax.Array, num_ops: int,
                 cutout: float) -> jax.Array:
  """RandAugment on one image.

  Under vmap a switch computes every branch, so each slot does one warp (the
  identity for pixel ops) and one pixel op (the identity for geometric ops)
  rather than every warp.
  """
  geometry = [op.op if op.geometric else _no_geometry for op in RANDAUGMENT_OPS]
  pixels = [_identity if op.geometric else op.op for op in RANDAUGMENT_OPS]
  low = jnp.array([op.low for op in RANDAUGMENT_OPS])
  high = jnp.array([op.high for op in RANDAUGMENT_OPS])
  dtype = image.dtype

  def one_op(image, op_key):
    index_key, magnitude_key = jax.random.split(op_key)
    index = jax.random.randint(index_key, (), 0, len(RANDAUGMENT_OPS))
    magnitude = low[index] + (high[index] - low[index]) * jax.random.uniform(
        magnitude_key)
    image = _affine(image, *jax.lax.switch(index, geometry, magnitude, image.shape))
    return jnp.clip(jax.lax.switch(index, pixels, image, magnitude), 0.0, 1.0), None

  op_keys, cutout_key = jnp.split(jax.random.split(key, num_ops + 1), [num_ops])
  # A scan compiles the op once, whatever num_ops is.
  image, _ = jax.lax.scan(one_op, image.astype(jnp.float32), op_keys)
  if cutout > 0:
    image = _cutout(cutout_key[0], image, cutout)
  return image.astype(dtype)


@functools.partial(jax.jit, static_argnums=(2, 3, 4, 5))
def _strong(rng, images, flip, pad, num_ops, cutout):
  weak_key, ra_key = jax.random.split(rng)
  images = _weak(weak_key, images, flip, pad)
  fn = functools.partial(_randaugment, num_ops=num_ops, cutout=cutout)
  return jax.vmap(fn)(jax.random.split(ra_key, images.shape[0]), images)


def strong_augment(rng: jax.Array, images: jax.Array, *, num_ops: int = 2,
                   cutout: float = 0.5, flip: bool = True,
                   pad: int | None = None) -> jax.Array:
  """The weak view, then RandAugment (`num_ops` random ops) and Cutout.

  Args:
    rng: a PRNG key.
    images: [N, H, W, C] floats in [0, 1], C in {1, 3}.
    num_ops: operations applied per example (FixMatch: 2; USB uses 3).
    cutout: the largest Cutout side as a fraction of the image; 0 disables it.
    flip, pad: as in `weak_augment`.

  Returns:
    Augmented images, same shape and dtype, values in [0, 1].
  """
  check_images(images)
  if num_ops < 0:
    raise ValueError(f"num_ops must be >= 0, got {num_ops}.")
  if not 0.0 <= cutout <= 1.0:
    raise ValueError(f"cutout must be a fraction in [0, 1], got {cutout}.")
  return _strong(rng, images, flip, _default_pad(images, pad), num_ops, float(cutout))


def make_views(kind: str, config: ml_collections.ConfigDict):
  """(weak, strong) augmentations `(rng, inputs) -> inputs` for the data kind
  ("image" or "tabular"), set by `config.flip`, `config.randaugment_ops`,
  `config.tabular_mask_prob` and `config.tabular_noise_std`: the views every
  family's train steps share."""
  if kind == "image":
    weak = lambda rng, x: weak_augment(rng, x, flip=config.flip)
    strong = lambda rng, x: strong_augment(rng, x, flip=config.flip,
                                           num_ops=config.randaugment_ops)
  else:
    weak = lambda rng, x: x  # Tabular rows have no label-preserving weak view.
    strong = lambda rng, x: tabular_strong_augment(
        rng, x, mask_prob=config.tabular_mask_prob, noise_std=config.tabular_noise_std)
  return weak, strong


# SimCLR views.


def _resized_crop(key: jax.Array, image: jax.Array, scale: tuple[float, float],
                  log_ratio: tuple[float, float]) -> jax.Array:
  """A crop of area fraction U(scale) and log aspect U(log_ratio), resized
  (bilinear) back to the image size. Its height and width are each clipped to
  the image's, so a large area at an extreme aspect gives a smaller crop than
  drawn (torchvision redraws instead); the crop lies inside the image."""
  height, width, _ = image.shape
  area_key, ratio_key, y_key, x_key = jax.random.split(key, 4)
  area = jax.random.uniform(area_key, (), minval=scale[0], maxval=scale[1])
  aspect = jnp.exp(jax.random.uniform(ratio_key, (), minval=log_ratio[0],
                                      maxval=log_ratio[1]))
  crop_h = jnp.clip(jnp.sqrt(area / aspect) * height, 1.0, height)
  crop_w = jnp.clip(jnp.sqrt(area * aspect) * width, 1.0, width)
  top = jax.random.uniform(y_key, ()) * (height - crop_h)
  left = jax.random.uniform(x_key, ()) * (width - crop_w)
  zoom = jnp.stack([height / crop_h, width / crop_w])
  return jax.image.scale_and_translate(
      image, image.shape, (0, 1), zoom, -jnp.stack([top, left]) * zoom,
      method="linear", antialias=False)


def _gaussian_blur(image: jax.Array, sigma: jax.Array, radius: int) -> jax.Array:
  """Separable Gaussian blur, kernel 2·radius + 1, reflect padding."""
  height, width, _ = image.shape
  offsets = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
  weights = jnp.exp(-0.5 * (offsets / sigma) ** 2)
  weights = weights / weights.sum()
  padded = jnp.pad(image, ((radius, radius), (radius, radius), (0, 0)), mode="reflect")
  rows = sum(w * padded[i:i + height] for i, w in enumerate(weights))
  return sum(w * rows[:, i:i + width] for i, w in enumerate(weights))


def _simclr_view(key: jax.Array, image: jax.Array, *, scale, log_ratio, flip: bool,
                 jitter: float, jitter_prob: float, grayscale_prob: float,
                 blur_prob: float, blur_radius: int) -> jax.Array:
  keys = jax.random.split(key, 10)
  apply = lambda k, p, augmented, original: jnp.where(
      jax.random.bernoulli(k, p), augmented, original)
  image = _resized_crop(keys[0], image, scale, log_ratio)
  if flip:
    image = apply(keys[1], 0.5, image[:, ::-1], image)
  factor = lambda k: jax.random.uniform(k, (), minval=1.0 - jitter, maxval=1.0 + jitter)
  jittered = _contrast(_brightness(image, factor(keys[2])), factor(keys[3]))
  if image.shape[-1] == 3:
    jittered = _color(jittered, factor(keys[4]))  # saturation
  image = apply(keys[5], jitter_prob, jittered, image)
  if image.shape[-1] == 3:
    image = apply(keys[6], grayscale_prob,
                  jnp.broadcast_to(_grayscale(image), image.shape), image)
  sigma = jax.random.uniform(keys[7], (), minval=0.1, maxval=2.0)
  image = apply(keys[8], blur_prob, _gaussian_blur(image, sigma, blur_radius), image)
  return jnp.clip(image, 0.0, 1.0)


@functools.partial(jax.jit, static_argnames=("scale", "log_ratio", "flip", "jitter",
                                             "jitter_prob", "grayscale_prob",
                                             "blur_prob", "blur_radius"))
def _simclr(rng, images, **kwargs):
  fn = functools.partial(_simclr_view, **kwargs)
  return jax.vmap(fn)(jax.random.split(rng, images.shape[0]), images)


def simclr_augment(rng: jax.Array, images: jax.Array, *,
                   crop_scale: tuple[float, float] = (0.08, 1.0),
                   crop_ratio: tuple[float, float] = (3 / 4, 4 / 3), flip: bool = True,
                   jitter_strength: float = 0.5, jitter_prob: float = 0.8,
                   grayscale_prob: float = 0.2, blur_prob: float = 0.5) -> jax.Array:
  """One SimCLR view of each image (Chen et al., 2020, appendix A).

  Random resized crop (area fraction in `crop_scale`, aspect ratio in
  `crop_ratio`, log-uniform), a horizontal flip (if `flip`), colour jitter
  with probability `jitter_prob`: brightness and contrast factors (and
  saturation, for RGB) each uniform in 1 ± 0.8·`jitter_strength`, applied in
  that order (SimCLR shuffles the order and adds hue: neither is done here);
  grayscale with probability `grayscale_prob` (RGB only); Gaussian blur with
  σ ~ U(0.1, 2) and a kernel of a tenth of the image side, with probability
  `blur_prob`.

  Args:
    rng: a PRNG key.
    images: [N, H, W, C] floats in [0, 1], C in {1, 3}.

  Returns:
    Augmented images, same shape and dtype, values in [0, 1].
  """
  check_images(images)
  if not 0.0 < crop_scale[0] <= crop_scale[1] <= 1.0:
    raise ValueError(f"crop_scale must be 0 < low <= high <= 1, got {crop_scale}.")
  if not 0.0 < crop_ratio[0] <= crop_ratio[1]:
    raise ValueError(f"crop_ratio must be 0 < low <= high, got {crop_ratio}.")
  if not 0.0 <= jitter_strength < 1.25:
    raise ValueError(f"jitter_strength must be in [0, 1.25) (factors stay > 0), got "
                     f"{jitter_strength}.")
  for name, p in (("jitter_prob", jitter_prob), ("grayscale_prob", grayscale_prob),
                  ("blur_prob", blur_prob)):
    if not 0.0 <= p <= 1.0:
      raise ValueError(f"{name} must be a probability in [0, 1], got {p}.")
  return _simclr(rng, images, scale=tuple(map(float, crop_scale)),
                 log_ratio=(math.log(crop_ratio[0]), math.log(crop_ratio[1])),
                 flip=flip, jitter=0.8 * jitter_strength, jitter_prob=jitter_prob,
                 grayscale_prob=grayscale_prob, blur_prob=blur_prob,
                 blur_radius=max(1, min(images.shape[1:3]) // 20)).astype(images.dtype)


def simclr_views(rng: jax.Array, images: jax.Array, **kwargs) -> tuple[jax.Array, jax.Array]:
  """Two independent SimCLR views of each image (see `simclr_augment`)."""
  first, second = jax.random.split(rng)
  return simclr_augment(first, images, **kwargs), simclr_augment(second, images, **kwargs)


@jax.jit
def _tabular(rng, features, mask_prob, noise_std):
  mask_key, noise_key = jax.random.split(rng)
  keep = jax.random.bernoulli(mask_key, 1.0 - mask_prob, features.shape)
  noise = noise_std * jax.random.normal(noise_key, features.shape, features.dtype)
  return jnp.where(keep, features, 0.0).astype(features.dtype) + noise


def tabular_strong_augment(rng: jax.Array, features: jax.Array, *,
                           mask_prob: float = 0.2,
                           noise_std: float = 0.1) -> jax.Array:
  """Zeroes each feature with probability `mask_prob`, then adds N(0, noise_std²).

  For standardized features [N, D] (see `labeljax.data.tabular`), where 0 is
  the training mean, so a masked feature reads as "average". The defaults are
  a moderate perturbation, not values from a paper.
  """
  if features.ndim != 2:
    raise ValueError(f"Expected tabular features [N, D], got shape {features.shape}.")
  if not jnp.issubdtype(features.dtype, jnp.floating):
    raise ValueError(f"Expected floating-point features, got dtype {features.dtype}.")
  if not 0.0 <= mask_prob < 1.0:
    raise ValueError(f"mask_prob must be in [0, 1), got {mask_prob}.")
  if noise_std < 0:
    raise ValueError(f"noise_std must be >= 0, got {noise_std}.")
  return _tabular(rng, features, mask_prob, noise_std)
