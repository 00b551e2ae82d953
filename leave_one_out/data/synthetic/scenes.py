"""A small, procedurally generated image dataset with known factors of variation.

Every image shows one coloured object on a grey textured background. Four factors are drawn
uniformly and independently per image, and each is returned with the image:

- ``shape`` (``SHAPES``): the object class. Every shape has an obvious "up" and is *not* symmetric
  under a 90 or 180 degree rotation, so the orientation of an image is visible from the object
  alone. Every shape is left-right mirror-symmetric, so a horizontal flip (a common augmentation)
  leaves an upright object upright and never imitates a rotation.
- ``color`` (``COLORS``): the object's hue, from a palette of six well-separated hues, with a small
  per-image jitter of hue (+-``hue_jitter`` degrees, 10 by default), saturation and value. Only
  object pixels carry colour. ``hue`` (float, degrees) is the exact hue; ``hue_jitter=30`` spreads
  the hues uniformly over the colour circle, and ``hue_bins`` turns them into a fine colour label
  (24 bins of 15 degrees, 4 per colour class: finer than the hue shifts of MoCo v2's colour
  jitter, up to +-36 degrees).
- ``texture`` (``TEXTURES``): the background pattern. Backgrounds are grey (no saturation), so
  colour and texture never share pixels. Every pattern has the same period in x and y and is
  symmetric under a 90 degree rotation: a rotated background is the same class with another phase,
  so texture and rotation are not confounded. Period, phase, brightness and contrast are jittered.
- ``position`` / ``scale`` (continuous): the object's centre and size, jittered so that the object's
  bounding box always lies inside the image.
- ``light`` (continuous): the scene is lit from above, like most photographs (sky and sun up):
  the illumination falls linearly from full brightness on the top row to ``(1 - light) /
  (1 + light)`` of it on the bottom row (a third for ``light = 0.5``), with ``light`` drawn per
  image from ``[max_light / 2, max_light]`` (``generate``'s argument; 0 gives evenly lit
  scenes). It scales every pixel by at most 1, so it never clips, changes no hue and keeps the
  background grey. It is the dataset's cheap, low-level orientation cue: without it an
  image's orientation is visible only through the object's shape, which small models learn
  slowly (docs/claims.md), and with it a rotation by 90, 180 or 270 degrees moves the light to
  the side or the bottom, as it would in a natural image.

This is the setting LooC is about: a downstream task may need exactly the information a contrastive
augmentation destroys. Colour jitter erases ``color`` (but not ``shape`` or ``texture``), rotation
erases orientation (visible from the object's shape and from the direction of the light; the
background patterns themselves are rotation-symmetric), and texture randomisation erases
``texture`` (but not ``color``, which lives in other pixels).

Everything is pure numpy and deterministic: ``generate`` draws the factors from
``np.random.default_rng(seed)`` and ``render`` turns explicit factors into pixels without any
randomness, so the same seed gives bit-identical images (for a given numpy version).

Coordinates: ``position[:, 0]`` is x (left to right) and ``position[:, 1]`` is y (top to bottom),
both as fractions of the image side; ``scale`` is the side of the object's square bounding box as a
fraction of the image side.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

SHAPES: tuple[str, ...] = ("arrow", "triangle", "house", "letter_t", "mushroom", "heart")
COLORS: tuple[str, ...] = ("red", "yellow", "green", "cyan", "blue", "magenta")
TEXTURES: tuple[str, ...] = ("plain", "checkerboard", "dots", "grid", "crosshatch", "noise")

FACTORS: dict[str, tuple[str, ...]] = {"shape": SHAPES, "color": COLORS, "texture": TEXTURES}

SPLITS: dict[str, int] = {"train": 4096, "test": 1024}
_SPLIT_SEED_OFFSET = {"train": 0, "test": 1}  # split seed = 2 * seed + offset: disjoint streams

MIN_IMAGE_SIZE = 16

# Hue (degrees) of each entry of COLORS, in the same order.
_HUES = np.array([0.0, 60.0, 120.0, 180.0, 240.0, 300.0], dtype=np.float32)

# Ranges of the jittered parameters.
HUE_JITTER = 10.0  # default object hue jitter, degrees, +-
MAX_HUE_JITTER = 30.0  # half the palette spacing: hues uniform over the circle
_SATURATION = (0.7, 1.0)
_VALUE = (0.75, 1.0)
_SCALE = (0.45, 0.75)  # bounding-box side / image side
_PERIOD = (0.10, 0.19)  # texture period / image side
_MIN_PERIOD_PX = 4.0
_BRIGHTNESS = (0.3, 0.7)  # background grey level
_CONTRAST = (0.15, 0.35)  # peak-to-peak amplitude of the pattern, random sign
MAX_LIGHT = 0.5  # default strength of the light from above; per image in [MAX_LIGHT / 2, MAX_LIGHT]

_CHUNK = 256  # images rendered at once; bounds the float32 temporaries


# ---------------------------------------------------------------------------------------------
# Shapes. Each maps object coordinates u (right) and v (up), both in [-1, 1] over the object's
# bounding box, to a boolean mask. Arguments broadcast: u is [n, 1, S], v is [n, S, 1].
# ---------------------------------------------------------------------------------------------


def _arrow(u: np.ndarray, v: np.ndarray) -> np.ndarray:
  head = (v >= 0.0) & (v <= 1.0) & (np.abs(u) <= 0.9 * (1.0 - v))
  shaft = (v >= -1.0) & (v < 0.0) & (np.abs(u) <= 0.3)
  return head | shaft


def _triangle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
  return (v >= -0.8) & (v <= 1.0) & (np.abs(u) <= 0.5 * (1.0 - v))


def _house(u: np.ndarray, v: np.ndarray) -> np.ndarray:
  roof = (v >= 0.15) & (v <= 1.0) & (np.abs(u) <= (1.0 - v) * (0.95 / 0.85))
  body = (v >= -1.0) & (v < 0.15) & (np.abs(u) <= 0.7)
  door = (v < -0.4) & (np.abs(u) <= 0.2)
  return roof | (body & ~door)


def _letter_t(u: np.ndarray, v: np.ndarray) -> np.ndarray:
  bar = (v >= 0.45) & (v <= 1.0) & (np.abs(u) <= 0.95)
  stem = (v >= -1.0) & (v < 0.45) & (np.abs(u) <= 0.27)
  return bar | stem


def _mushroom(u: np.ndarray, v: np.ndarray) -> np.ndarray:
  cap = (v >= 0.0) & ((u / 0.95) ** 2 + v**2 <= 1.0)
  stem = (v >= -1.0) & (v < 0.0) & (np.abs(u) <= 0.3)
  return cap | stem


def _heart(u: np.ndarray, v: np.ndarray) -> np.ndarray:
  # (x^2 + y^2 - 1)^3 <= x^2 y^3 spans x in [-1.14, 1.14], y in [-1, 1.25]; lobes up, tip down.
  x = 1.14 * u
  y = 1.125 * v + 0.125
  return (x**2 + y**2 - 1.0) ** 3 <= x**2 * y**3


_SHAPE_FNS: tuple[Callable[[np.ndarray, np.ndarray], np.ndarray], ...] = (
  _arrow,
  _triangle,
  _house,
  _letter_t,
  _mushroom,
  _heart,
)
assert len(_SHAPE_FNS) == len(SHAPES)


# ---------------------------------------------------------------------------------------------
# Textures. Each maps phase-shifted pixel coordinates xs [n, 1, S], ys [n, S, 1] (pixels, >= 0)
# and the period p [n, 1, 1] (pixels) to a pattern in [-1, 1]. Every pattern has the same period in
# x and y and is symmetric under a 90 degree rotation, up to a phase shift.
# ---------------------------------------------------------------------------------------------


def _centred(t: np.ndarray, p: np.ndarray) -> np.ndarray:
  """Signed offset of t from the centre of its period cell, in [-p/2, p/2) (floor modulo)."""
  return np.mod(t, p) - 0.5 * p


def _sign(condition: np.ndarray) -> np.ndarray:
  return np.where(condition, np.float32(1.0), np.float32(-1.0))


def _plain(xs: np.ndarray, ys: np.ndarray, p: np.ndarray, key: np.ndarray) -> np.ndarray:
  return np.zeros(np.broadcast_shapes(xs.shape, ys.shape), dtype=np.float32)


def _checkerboard(xs: np.ndarray, ys: np.ndarray, p: np.ndarray, key: np.ndarray) -> np.ndarray:
  cell = 0.5 * p
  return _sign((np.floor(xs / cell) + np.floor(ys / cell)) % 2 == 0)


def _dots(xs: np.ndarray, ys: np.ndarray, p: np.ndarray, key: np.ndarray) -> np.ndarray:
  radius = 0.28 * p
  return _sign(_centred(xs, p) ** 2 + _centred(ys, p) ** 2 <= radius**2)


def _grid(xs: np.ndarray, ys: np.ndarray, p: np.ndarray, key: np.ndarray) -> np.ndarray:
  half_width = np.maximum(0.5, 0.1 * p)
  return _sign((np.abs(_centred(xs, p)) < half_width) | (np.abs(_centred(ys, p)) < half_width))


def _crosshatch(xs: np.ndarray, ys: np.ndarray, p: np.ndarray, key: np.ndarray) -> np.ndarray:
  # Lines along both diagonals; the period is measured along x (and y), like the other textures.
  half_width = np.maximum(0.75, 0.14 * p)
  a = np.abs(_centred(xs + ys, p))
  b = np.abs(_centred(xs - ys, p))
  return _sign((a < half_width) | (b < half_width))


def _hash_u32(x: np.ndarray) -> np.ndarray:
  """An integer hash (lowbias32) of uint32 values; uint32 arithmetic wraps on purpose."""
  x = x ^ (x >> np.uint32(16))
  x = x * np.uint32(0x7FEB352D)
  x = x ^ (x >> np.uint32(15))
  x = x * np.uint32(0x846CA68B)
  return x ^ (x >> np.uint32(16))


def _noise(xs: np.ndarray, ys: np.ndarray, p: np.ndarray, key: np.ndarray) -> np.ndarray:
  # Independent uniform values on square cells of side p / 5 (1-2.5 px at 64 px), from a hash of
  # the cell index and the image's key, so the pattern is a pure function of explicit factors.
  cell = 0.2 * p
  ix = np.floor(xs / cell).astype(np.uint32)
  iy = np.floor(ys / cell).astype(np.uint32)
  h = _hash_u32(_hash_u32(iy ^ key) + ix * np.uint32(0x9E3779B1))
  return (h >> np.uint32(8)).astype(np.float32) * np.float32(2.0 / (1 << 24)) - np.float32(1.0)


_TEXTURE_FNS: tuple[Callable[..., np.ndarray], ...] = (
  _plain,
  _checkerboard,
  _dots,
  _grid,
  _crosshatch,
  _noise,
)
assert len(_TEXTURE_FNS) == len(TEXTURES)


# ---------------------------------------------------------------------------------------------
# Factors and rendering.
# ---------------------------------------------------------------------------------------------


def _checked_int(value: int, name: str, minimum: int) -> int:
  """``value`` as an int; ValueError naming the argument unless it is an integer >= minimum."""
  if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
    raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
  if value < minimum:
    raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
  return int(value)


def hsv_to_rgb(hue: np.ndarray, saturation: np.ndarray, value: np.ndarray) -> np.ndarray:
  """Converts HSV (hue in degrees, saturation and value in [0, 1]) of shape [N] to RGB [N, 3]."""
  h = np.mod(np.asarray(hue, np.float32), 360.0)[:, None] / 60.0
  s = np.asarray(saturation, np.float32)[:, None]
  v = np.asarray(value, np.float32)[:, None]
  k = np.mod(np.array([5.0, 3.0, 1.0], np.float32) + h, 6.0)
  return v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def _checked_light(max_light: float) -> float:
  if isinstance(max_light, (bool, np.bool_)) or not isinstance(
    max_light, (int, float, np.integer, np.floating)
  ):
    raise ValueError(f"max_light must be a number in [0, 1), got {max_light!r}")
  if not 0.0 <= float(max_light) < 1.0:
    raise ValueError(f"max_light must be in [0, 1), got {max_light!r}")
  return float(max_light)


def _checked_hue_jitter(hue_jitter: float) -> float:
  if (
    isinstance(hue_jitter, (bool, np.bool_))
    or not isinstance(hue_jitter, (int, float, np.integer, np.floating))
    or not 0.0 <= float(hue_jitter) <= MAX_HUE_JITTER
  ):
    raise ValueError(
      f"hue_jitter must be a number of degrees in [0, {MAX_HUE_JITTER:g}], got {hue_jitter!r}"
    )
  return float(hue_jitter)


def hue_bins(hue: np.ndarray, num_bins: int = 24) -> np.ndarray:
  """Fine colour labels int32 [N]: ``hue`` (degrees) in ``num_bins`` equal bins on the circle.

  Bin edges start at -30 degrees, the lower edge of the red class, so with ``num_bins`` a
  multiple of 6 each ``color`` class of a ``hue_jitter=30`` dataset is exactly ``num_bins / 6``
  consecutive bins (``label // (num_bins // 6) == color``).
  """
  num_bins = _checked_int(num_bins, "num_bins", 2)
  width = 360.0 / num_bins
  shifted = np.mod(np.asarray(hue, np.float64) + MAX_HUE_JITTER, 360.0)
  return np.minimum(np.floor(shifted / width), num_bins - 1).astype(np.int32)


def sample_factors(
  num_examples: int,
  image_size: int,
  rng: np.random.Generator,
  max_light: float = MAX_LIGHT,
  hue_jitter: float = HUE_JITTER,
) -> dict[str, np.ndarray]:
  """Draws every factor of ``num_examples`` images (labels uniform and independent).

  Returns a dict of arrays with leading dimension N:
    shape, color, texture: int32 [N] labels (indices into SHAPES, COLORS, TEXTURES);
    position: float32 [N, 2] object centre (x, y) in [0, 1]; scale: float32 [N] in [0, 1];
    hue: float32 [N] the object's hue in degrees, [0, 360), within +-hue_jitter of its
    palette hue; object_rgb: float32 [N, 3] the jittered object colour in [0, 1];
    texture_period: float32 [N] pixels; texture_phase: float32 [N, 2] pixels in [0, period);
    brightness: float32 [N] background grey level; contrast: float32 [N] signed pattern amplitude;
    noise_key: uint32 [N] key of the "noise" texture;
    light: float32 [N] strength of the light from above, in [max_light / 2, max_light].
  The light is drawn last, so ``max_light`` changes no other factor of the same ``rng``;
  ``hue_jitter`` only scales one uniform draw, so it changes the hues and nothing else.
  """
  n = _checked_int(num_examples, "num_examples", 1)
  image_size = _checked_int(image_size, "image_size", MIN_IMAGE_SIZE)
  max_light = _checked_light(max_light)
  hue_jitter = _checked_hue_jitter(hue_jitter)

  shape = rng.integers(0, len(SHAPES), n).astype(np.int32)
  color = rng.integers(0, len(COLORS), n).astype(np.int32)
  texture = rng.integers(0, len(TEXTURES), n).astype(np.int32)

  scale = rng.uniform(*_SCALE, n).astype(np.float32)
  # Centre uniform in [scale / 2, 1 - scale / 2]: the bounding box stays inside the image.
  position = scale[:, None] / 2 + rng.uniform(0.0, 1.0, (n, 2)) * (1.0 - scale[:, None])
  position = position.astype(np.float32)

  hue = _HUES[color] + rng.uniform(-hue_jitter, hue_jitter, n)
  object_rgb = hsv_to_rgb(hue, rng.uniform(*_SATURATION, n), rng.uniform(*_VALUE, n))

  period = np.maximum(_MIN_PERIOD_PX, rng.uniform(*_PERIOD, n) * image_size).astype(np.float32)
  phase = (rng.uniform(0.0, 1.0, (n, 2)) * period[:, None]).astype(np.float32)
  brightness = rng.uniform(*_BRIGHTNESS, n).astype(np.float32)
  contrast = (rng.uniform(*_CONTRAST, n) * rng.choice([-1.0, 1.0], n)).astype(np.float32)
  noise_key = rng.integers(0, 2**32, n, dtype=np.uint32)
  light = (max_light * rng.uniform(0.5, 1.0, n)).astype(np.float32)

  return {
    "shape": shape,
    "color": color,
    "texture": texture,
    "position": position,
    "scale": scale,
    "hue": np.mod(hue, 360.0).astype(np.float32),
    "object_rgb": object_rgb.astype(np.float32),
    "texture_period": period,
    "texture_phase": phase,
    "brightness": brightness,
    "contrast": contrast,
    "noise_key": noise_key,
    "light": light,
  }


def _pixel_centres(image_size: int) -> np.ndarray:
  return np.arange(image_size, dtype=np.float32) + np.float32(0.5)


def shape_masks(
  shape: np.ndarray, position: np.ndarray, scale: np.ndarray, image_size: int
) -> np.ndarray:
  """Boolean object masks [N, S, S] for shape labels [N], centres [N, 2] (x, y) and scales [N]."""
  shape = np.asarray(shape)
  centre = np.asarray(position, np.float32) * np.float32(image_size)
  half = np.asarray(scale, np.float32) * np.float32(image_size / 2)
  grid = _pixel_centres(image_size)
  u = (grid[None, None, :] - centre[:, 0, None, None]) / half[:, None, None]  # [N, 1, S]
  v = (centre[:, 1, None, None] - grid[None, :, None]) / half[:, None, None]  # [N, S, 1]
  masks = np.zeros((len(shape), image_size, image_size), dtype=bool)
  for label, fn in enumerate(_SHAPE_FNS):
    (idx,) = np.nonzero(shape == label)
    if idx.size:
      masks[idx] = fn(u[idx], v[idx])
  return masks


def texture_patterns(
  texture: np.ndarray,
  period: np.ndarray,
  phase: np.ndarray,
  noise_key: np.ndarray,
  image_size: int,
) -> np.ndarray:
  """Background patterns float32 [N, S, S] in [-1, 1] for texture labels [N].

  ``period`` [N] is in pixels, ``phase`` [N, 2] (x, y) in pixels, ``noise_key`` [N] uint32 seeds
  the "noise" texture. A phase shifts the pattern left/up by that many pixels.
  """
  texture = np.asarray(texture)
  period = np.asarray(period, np.float32)[:, None, None]
  phase = np.asarray(phase, np.float32)
  grid = _pixel_centres(image_size)
  xs = grid[None, None, :] + phase[:, 0, None, None]  # [N, 1, S]
  ys = grid[None, :, None] + phase[:, 1, None, None]  # [N, S, 1]
  key = np.asarray(noise_key, np.uint32)[:, None, None]
  patterns = np.zeros((len(texture), image_size, image_size), dtype=np.float32)
  for label, fn in enumerate(_TEXTURE_FNS):
    (idx,) = np.nonzero(texture == label)
    if idx.size:
      patterns[idx] = fn(xs[idx], ys[idx], period[idx], key[idx])
  return patterns


def _to_uint8(x: np.ndarray) -> np.ndarray:
  return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def render(factors: dict[str, np.ndarray], image_size: int = 64) -> np.ndarray:
  """Renders explicit factors (as returned by ``sample_factors``) to uint8 images [N, S, S, 3].

  Deterministic: no randomness is involved. Object pixels take ``object_rgb``; every other
  pixel is grey, ``brightness + contrast / 2 * pattern``; then every pixel of row y (pixel
  centres at y in (0, 1), top to bottom) is multiplied by ``(1 + light (1 - 2 y)) / (1 + light)``.
  Factors without ``light`` render evenly lit.
  """
  image_size = _checked_int(image_size, "image_size", MIN_IMAGE_SIZE)
  n = len(factors["shape"])
  images = np.empty((n, image_size, image_size, 3), dtype=np.uint8)
  for start in range(0, n, _CHUNK):
    f = {name: value[start : start + _CHUNK] for name, value in factors.items()}
    masks = shape_masks(f["shape"], f["position"], f["scale"], image_size)
    patterns = texture_patterns(
      f["texture"], f["texture_period"], f["texture_phase"], f["noise_key"], image_size
    )
    grey = f["brightness"][:, None, None] + 0.5 * f["contrast"][:, None, None] * patterns
    scene = np.where(masks[..., None], f["object_rgb"][:, None, None, :], grey[..., None])
    if "light" in f:
      y = _pixel_centres(image_size) / np.float32(image_size)
      light = f["light"][:, None]
      gain = (1.0 + light * (1.0 - 2.0 * y)) / (1.0 + light)  # [n, S] rows, in (0, 1]
      scene = scene * gain[:, :, None, None]
    images[start : start + _CHUNK] = _to_uint8(scene)
  return images


def generate(
  num_examples: int,
  *,
  image_size: int = 64,
  seed: int = 0,
  max_light: float = MAX_LIGHT,
  hue_jitter: float = HUE_JITTER,
) -> dict[str, np.ndarray]:
  """Generates ``num_examples`` images with their factors, deterministically from ``seed``.

  ``max_light`` in [0, 1) is the strongest light from above (module docstring); 0 renders
  evenly lit scenes and leaves every other factor as it is. ``hue_jitter`` in [0, 30] degrees
  spreads each object's hue around its palette hue (30: uniform over the circle).

  Returns:
    image: uint8 [N, S, S, 3]; shape, color, texture: int32 [N] labels (indices into SHAPES,
    COLORS, TEXTURES); hue: float32 [N] the object's hue in degrees (``hue_bins`` gives a fine
    colour label); position: float32 [N, 2] object centre (x, y) in [0, 1];
    scale: float32 [N] object bounding-box side / image side; light: float32 [N].
  """
  num_examples = _checked_int(num_examples, "num_examples", 1)
  image_size = _checked_int(image_size, "image_size", MIN_IMAGE_SIZE)
  seed = _checked_int(seed, "seed", 0)
  factors = sample_factors(
    num_examples, image_size, np.random.default_rng(seed), max_light, hue_jitter
  )
  out = {"image": render(factors, image_size)}
  names = ("shape", "color", "texture", "hue", "position", "scale", "light")
  out.update({name: factors[name] for name in names})
  return out


def load(
  split: str = "train",
  *,
  num_examples: int | None = None,
  image_size: int = 64,
  seed: int = 0,
  max_light: float = MAX_LIGHT,
  hue_jitter: float = HUE_JITTER,
) -> dict[str, np.ndarray]:
  """Loads a split (see ``generate`` for the arrays). Train uses seed ``2 * seed``, test
  ``2 * seed + 1``, so splits never share a random stream. ``num_examples`` defaults to
  ``SPLITS[split]``."""
  if split not in SPLITS:
    raise ValueError(f"unknown split {split!r}; allowed splits: {sorted(SPLITS)}")
  if num_examples is None:
    num_examples = SPLITS[split]
  seed = _checked_int(seed, "seed", 0)
  return generate(
    num_examples,
    image_size=image_size,
    seed=2 * seed + _SPLIT_SEED_OFFSET[split],
    max_light=max_light,
    hue_jitter=hue_jitter,
  )
