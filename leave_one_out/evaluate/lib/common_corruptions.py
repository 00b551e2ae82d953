"""Synthetic common corruptions on device, at 5 severities (ImageNet-C style), for any dataset.

``corrupt(images, name, severity, rng)`` maps float images `[B, H, W, 3]` in [0, 1] to
corrupted images of the same shape in [0, 1]. It is pure ``jnp``; ``name`` is static (one
compilation per corruption) and ``severity`` (1..5) may be traced, so one compiled function
serves all five severities. Four families, as in ImageNet-C (Hendrycks & Dietterich, ICLR 2019):

| family | corruptions |
|---|---|
| noise | gaussian_noise, shot_noise (signal-dependent), impulse_noise, speckle_noise |
| blur | gaussian_blur, defocus_blur (disk), motion_blur (random direction), zoom_blur |
| weather | fog (fractal noise), snow (thresholded, motion-blurred flakes), brightness |
| digital | contrast, saturate, pixelate, jpeg_compression (8x8 DCT quantisation, IJG tables) |

These are stand-ins written from the published descriptions, not the benchmark's code: glass
blur, frost, spatter and elastic transforms are left out, shot noise is the Gaussian
approximation of Poisson noise, JPEG skips chroma subsampling, and
the constants are this project's choice. Photometric and scale-free constants (noise
strengths, brightness, contrast, saturation, JPEG quality, pixelation factor, fog strength) are
close to ImageNet-C's; sizes in pixels (blur radii, flakes) are given for a 32-px image, like
CIFAR-10-C, and scale with the image side (``REFERENCE_SIZE``). Results are comparable between
models evaluated with this module, not with published ImageNet-C numbers; for those use the
real ImageNet-C (``eval_config.imagenet_c``, through tfds ``imagenet2012_corrupted``).
"""

from __future__ import annotations

import math

import dm_pix as pix
import jax
import jax.numpy as jnp
import numpy as np

FAMILIES: dict[str, tuple[str, ...]] = {
  "noise": ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"),
  "blur": ("gaussian_blur", "defocus_blur", "motion_blur", "zoom_blur"),
  "weather": ("fog", "snow", "brightness"),
  "digital": ("contrast", "saturate", "pixelate", "jpeg_compression"),
}
CORRUPTIONS: tuple[str, ...] = tuple(n for names in FAMILIES.values() for n in names)
FAMILY_OF: dict[str, str] = {n: f for f, names in FAMILIES.items() for n in names}
SEVERITIES = (1, 2, 3, 4, 5)
REFERENCE_SIZE = 32  # pixel-sized constants below are for an image of this side

# Per corruption, one row per severity 1..5 (columns: that corruption's parameters).
PARAMS: dict[str, np.ndarray] = {
  k: np.asarray(v, np.float32).reshape(5, -1)
  for k, v in {
    "gaussian_noise": [0.08, 0.12, 0.18, 0.26, 0.38],  # std
    "shot_noise": [60, 25, 12, 5, 3],  # photons per unit intensity (lower = noisier)
    "impulse_noise": [0.03, 0.06, 0.09, 0.17, 0.27],  # fraction of values set to 0 or 1
    "speckle_noise": [0.15, 0.2, 0.35, 0.45, 0.6],  # std of multiplicative noise
    "gaussian_blur": [0.4, 0.6, 0.8, 1.0, 1.3],  # sigma, px at 32
    "defocus_blur": [[0.3, 0.4], [0.5, 0.5], [0.8, 0.5], [1.0, 0.3], [1.5, 0.2]],  # disk r, sigma
    "motion_blur": [0.6, 0.9, 1.2, 1.6, 2.0],  # sigma along the motion, px at 32
    "zoom_blur": [1.06, 1.11, 1.16, 1.21, 1.26],  # largest zoom
    "fog": [[1.5, 2.0], [2.0, 2.0], [2.5, 1.7], [2.5, 1.5], [3.0, 1.4]],  # strength, decay
    # loc, scale, threshold of the flake noise, motion sigma (px at 32), blend of the whitening
    "snow": [
      [0.1, 0.2, 0.6, 0.75, 0.95],
      [0.1, 0.2, 0.5, 1.0, 0.9],
      [0.15, 0.3, 0.55, 1.0, 0.9],
      [0.25, 0.3, 0.6, 1.5, 0.85],
      [0.3, 0.3, 0.65, 2.0, 0.8],
    ],
    "brightness": [0.1, 0.2, 0.3, 0.4, 0.5],  # added to HSV value
    "contrast": [0.4, 0.3, 0.2, 0.1, 0.05],  # factor around the per-channel mean
    "saturate": [[0.3, 0.0], [0.1, 0.0], [2.0, 0.0], [5.0, 0.1], [20.0, 0.2]],  # s * a + b
    "pixelate": [0.6, 0.5, 0.4, 0.3, 0.25],  # side of the coarse grid / image side
    "jpeg_compression": [25, 18, 15, 10, 7],  # quality
  }.items()
}
assert set(PARAMS) == set(CORRUPTIONS)


# ------------------------------------------------------------------------------------ helpers


def _px(image_side: int) -> float:
  """Pixels of this image per pixel of a REFERENCE_SIZE image."""
  return image_side / REFERENCE_SIZE


def _radius(name: str, column: int, image_side: int, mult: float = 3.0) -> int:
  """Static kernel radius covering ``mult`` x the largest pixel-sized parameter."""
  return max(1, math.ceil(mult * float(PARAMS[name][:, column].max()) * _px(image_side)))


def _gaussian_kernel(sigma, radius: int):
  t = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
  k = jnp.exp(-0.5 * (t / jnp.maximum(sigma, 1e-3)) ** 2)
  return k / k.sum()


def _conv_separable(x, kernel):
  """x [B, H, W, C], one 1-D kernel [K] along both axes, reflect padding."""
  r = kernel.shape[0] // 2
  h, w = x.shape[1:3]
  xp = jnp.pad(x, ((0, 0), (0, 0), (r, r), (0, 0)), mode="reflect")
  x = sum(kernel[i] * xp[:, :, i : i + w] for i in range(2 * r + 1))
  xp = jnp.pad(x, ((0, 0), (r, r), (0, 0), (0, 0)), mode="reflect")
  return sum(kernel[i] * xp[:, i : i + h] for i in range(2 * r + 1))


def _conv2d(x, kernel):
  """Depthwise 2-D convolution of x [B, H, W, C] with one kernel [K, K], reflect padding."""
  r = kernel.shape[0] // 2
  c = x.shape[-1]
  xp = jnp.pad(x, ((0, 0), (r, r), (r, r), (0, 0)), mode="reflect")
  k = jnp.tile(kernel[:, :, None, None], (1, 1, 1, c))
  return jax.lax.conv_general_dilated(
    xp, k, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=c
  )


def _interpolation_matrix(offset, size: int):
  """[..., size, size]: row i samples position i + offset (linear, edges clamped)."""
  pos = jnp.clip(jnp.arange(size, dtype=jnp.float32) + offset[..., None], 0.0, size - 1.0)
  grid = jnp.arange(size, dtype=jnp.float32)
  return jnp.maximum(0.0, 1.0 - jnp.abs(pos[..., :, None] - grid))  # [..., size, size]


def _motion(x, sigma, radius: int, rng):
  """One-sided Gaussian motion blur along a random direction per image. x [B, H, W, C].

  Tap j (j = 0..radius) is the image shifted by j pixels along the direction (bilinear, edges
  clamped; the shift is separable, so it is two small matrix products), weighted by a Gaussian
  of j with standard deviation ``sigma``.
  """
  b, h, w, _ = x.shape
  angle = jax.random.uniform(rng, (b,), minval=0.0, maxval=2 * math.pi)
  weights = jnp.exp(-0.5 * (jnp.arange(radius + 1.0) / jnp.maximum(sigma, 1e-3)) ** 2)
  weights = weights / weights.sum()
  out = jnp.zeros_like(x)
  for j in range(radius + 1):
    my = _interpolation_matrix(j * jnp.sin(angle), h)  # [B, H, H]
    mx = _interpolation_matrix(j * jnp.cos(angle), w)  # [B, W, W]
    out = out + weights[j] * jnp.einsum("byh,bhwc,bxw->byxc", my, x, mx)
  return out


def _resize_matrix(src: int, dst: int) -> np.ndarray:
  """[dst, src] linear interpolation with half-pixel centres (like jax.image.resize)."""
  pos = np.clip((np.arange(dst) + 0.5) * src / dst - 0.5, 0, src - 1)
  lo = np.floor(pos).astype(int)
  hi = np.minimum(lo + 1, src - 1)
  m = np.zeros((dst, src), np.float32)
  m[np.arange(dst), lo] += 1 - (pos - lo)
  m[np.arange(dst), hi] += pos - lo
  return m


def _gray(x):
  return pix.rgb_to_grayscale(x, keep_dims=True)


# ------------------------------------------------------------------------------------ noise


def _gaussian_noise(x, p, rng):
  return x + p[0] * jax.random.normal(rng, x.shape)


def _shot_noise(x, p, rng):
  # Poisson(x * c) / c, approximated by a Gaussian of the same mean and variance (x / c):
  # jax.random.poisson is slow to compile and needs a threefry key.
  return x + jnp.sqrt(x / p[0]) * jax.random.normal(rng, x.shape)


def _impulse_noise(x, p, rng):
  u = jax.random.uniform(rng, x.shape)
  return jnp.where(u < p[0] / 2, 0.0, jnp.where(u < p[0], 1.0, x))


def _speckle_noise(x, p, rng):
  return x + x * p[0] * jax.random.normal(rng, x.shape)


# ------------------------------------------------------------------------------------ blur


def _gaussian_blur(x, p, rng):
  del rng
  radius = _radius("gaussian_blur", 0, x.shape[1])
  return _conv_separable(x, _gaussian_kernel(p[0] * _px(x.shape[1]), radius))


def _defocus_blur(x, p, rng):
  del rng
  s = _px(x.shape[1])
  r_disk = _radius("defocus_blur", 0, x.shape[1], mult=1.0)
  t = jnp.arange(-r_disk, r_disk + 1, dtype=jnp.float32)
  dist = jnp.sqrt(t[:, None] ** 2 + t[None, :] ** 2)
  disk = jnp.clip(p[0] * s + 0.5 - dist, 0.0, 1.0)  # antialiased disk of radius p[0]
  x = _conv2d(x, disk / disk.sum())
  return _conv_separable(x, _gaussian_kernel(p[1] * s, _radius("defocus_blur", 1, x.shape[1])))


def _motion_blur(x, p, rng):
  radius = _radius("motion_blur", 0, x.shape[1])
  return _motion(x, p[0] * _px(x.shape[1]), radius, rng)


def _zoom_blur(x, p, rng, num_zooms: int = 8):
  del rng
  b, h, w, c = x.shape
  out = x
  for j in range(num_zooms):
    z = 1.0 + (p[0] - 1.0) * (j + 1) / num_zooms
    scale = jnp.stack([z, z])
    translation = jnp.stack([(1 - z) * h / 2, (1 - z) * w / 2])
    out = out + jax.image.scale_and_translate(
      x, x.shape, (1, 2), scale, translation, method="linear", antialias=False
    )
  return out / (num_zooms + 1)


# ------------------------------------------------------------------------------------ weather


def _fractal(rng, b, h, w, decay):
  """Fractal value noise [B, H, W] in [0, 1]: octaves on 2x2, 4x4, ... grids, amplitude
  decay^-octave (a plasma-fractal stand-in)."""
  octaves = max(1, math.ceil(math.log2(max(h, w))))
  keys = jax.random.split(rng, octaves)
  total = jnp.zeros((b, h, w), jnp.float32)
  for o in range(octaves):
    g = 2 ** (o + 1)
    noise = jax.random.uniform(keys[o], (b, g, g), minval=-1.0, maxval=1.0)
    up = jnp.einsum("yi,bij,xj->byx", _resize_matrix(g, h), noise, _resize_matrix(g, w))
    total = total + up * decay ** (-o)
  lo = total.min(axis=(1, 2), keepdims=True)
  hi = total.max(axis=(1, 2), keepdims=True)
  return (total - lo) / jnp.maximum(hi - lo, 1e-6)


def _fog(x, p, rng):
  b, h, w, _ = x.shape
  top = x.max(axis=(1, 2, 3), keepdims=True)
  x = x + p[0] * _fractal(rng, b, h, w, p[1])[..., None]
  return x * top / (top + p[0])


def _snow(x, p, rng):
  b, h, w, _ = x.shape
  k1, k2 = jax.random.split(rng)
  flakes = p[0] + p[1] * jax.random.normal(k1, (b, h, w, 1))
  flakes = jnp.where(flakes < p[2], 0.0, flakes)
  flakes = _motion(flakes, p[3] * _px(h), _radius("snow", 3, h), k2)
  x = p[4] * x + (1 - p[4]) * jnp.maximum(x, _gray(x) * 1.5 + 0.5)
  return x + flakes + flakes[:, ::-1, ::-1]


def _brightness(x, p, rng):
  del rng
  hsv = pix.rgb_to_hsv(x)
  hsv = hsv.at[..., 2].set(jnp.clip(hsv[..., 2] + p[0], 0.0, 1.0))
  return pix.hsv_to_rgb(hsv)


# ------------------------------------------------------------------------------------ digital


def _contrast(x, p, rng):
  del rng
  mean = x.mean(axis=(1, 2), keepdims=True)
  return (x - mean) * p[0] + mean


def _saturate(x, p, rng):
  del rng
  hsv = pix.rgb_to_hsv(x)
  hsv = hsv.at[..., 1].set(jnp.clip(hsv[..., 1] * p[0] + p[1], 0.0, 1.0))
  return pix.hsv_to_rgb(hsv)


def _pixelate_matrix(size: int, factor):
  """[size, size]: average over blocks of a floor(size * factor) grid, then spread back."""
  n = jnp.maximum(jnp.floor(size * factor), 1.0)
  block = jnp.floor((jnp.arange(size, dtype=jnp.float32) + 0.5) * n / size)  # [size]
  member = (block[None, :] == jnp.arange(size, dtype=jnp.float32)[:, None]).astype(jnp.float32)
  average = member / jnp.maximum(member.sum(axis=1, keepdims=True), 1.0)  # [blocks, size]
  return member.T @ average


def _pixelate(x, p, rng):
  del rng
  py, px = _pixelate_matrix(x.shape[1], p[0]), _pixelate_matrix(x.shape[2], p[0])
  return jnp.einsum("yh,bhwc,xw->byxc", py, x, px)


_JPEG_LUMA = np.array(
  [
    [16, 11, 10, 16, 24, 40, 51, 61],
    [12, 12, 14, 19, 26, 58, 60, 55],
    [14, 13, 16, 24, 40, 57, 69, 56],
    [14, 17, 22, 29, 51, 87, 80, 62],
    [18, 22, 37, 56, 68, 109, 103, 77],
    [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101],
    [72, 92, 95, 98, 112, 100, 103, 99],
  ],
  np.float32,
)
_JPEG_CHROMA = np.full((8, 8), 99, np.float32)
_JPEG_CHROMA[:4, :4] = [[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]]


def _dct_matrix(n: int = 8) -> np.ndarray:
  k, i = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
  m = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * i + 1) * k / (2 * n))
  m[0] /= np.sqrt(2.0)
  return m.astype(np.float32)  # orthonormal DCT-II: coefficients = M @ block @ M.T


def _jpeg_compression(x, p, rng):
  """Baseline JPEG's lossy step: YCbCr, 8x8 DCT, quantisation with IJG tables at quality p."""
  del rng
  b, h, w, _ = x.shape
  q = p[0]
  scale = jnp.where(q < 50, 5000.0 / q, 200.0 - 2.0 * q)
  tables = jnp.stack(
    [jnp.asarray(_JPEG_LUMA), jnp.asarray(_JPEG_CHROMA), jnp.asarray(_JPEG_CHROMA)], axis=-1
  )  # [8, 8, 3]
  tables = jnp.clip(jnp.floor((tables * scale + 50.0) / 100.0), 1.0, 255.0)
  rgb = x * 255.0
  to_ycc = jnp.array(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], jnp.float32
  )
  ycc = rgb @ to_ycc.T + jnp.array([0.0, 128.0, 128.0])
  ph, pw = -h % 8, -w % 8
  ycc = jnp.pad(ycc, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge") - 128.0
  hb, wb = (h + ph) // 8, (w + pw) // 8
  blocks = ycc.reshape(b, hb, 8, wb, 8, 3)
  m = jnp.asarray(_dct_matrix())
  coef = jnp.einsum("ui,bhiwjc,vj->bhuwvc", m, blocks, m)
  t = tables[None, None, :, None, :, :]
  coef = jnp.round(coef / t) * t
  blocks = jnp.einsum("ui,bhuwvc,vj->bhiwjc", m, coef, m)
  ycc = blocks.reshape(b, h + ph, w + pw, 3)[:, :h, :w] + 128.0
  from_ycc = jnp.linalg.inv(to_ycc)
  rgb = (ycc - jnp.array([0.0, 128.0, 128.0])) @ from_ycc.T
  return jnp.round(jnp.clip(rgb, 0.0, 255.0)) / 255.0


_FUNCTIONS = {
  "gaussian_noise": _gaussian_noise,
  "shot_noise": _shot_noise,
  "impulse_noise": _impulse_noise,
  "speckle_noise": _speckle_noise,
  "gaussian_blur": _gaussian_blur,
  "defocus_blur": _defocus_blur,
  "motion_blur": _motion_blur,
  "zoom_blur": _zoom_blur,
  "fog": _fog,
  "snow": _snow,
  "brightness": _brightness,
  "contrast": _contrast,
  "saturate": _saturate,
  "pixelate": _pixelate,
  "jpeg_compression": _jpeg_compression,
}
assert set(_FUNCTIONS) == set(CORRUPTIONS)


def check_name(name: str) -> None:
  if name not in PARAMS:
    raise ValueError(
      f"unknown corruption {name!r}; available (by family): "
      + "; ".join(f"{f}: {', '.join(n)}" for f, n in FAMILIES.items())
    )


def corrupt(images, name: str, severity, rng):
  """Corrupts float images `[B, H, W, 3]` in [0, 1]; returns float32 `[B, H, W, 3]` in [0, 1].

  Args:
    images: float in [0, 1] (uint8 in [0, 255] is converted).
    name: one of ``CORRUPTIONS`` (static under jit).
    severity: 1..5, a Python int or an int array (traced is fine).
    rng: a PRNG key (noise, directions and fog/snow patterns; deterministic given it). Any
      implementation works; ``jax.random.key(seed, impl="rbg")`` compiles several times faster
      on CPU than the default threefry.
  """
  check_name(name)
  if isinstance(severity, (int, np.integer)) and severity not in SEVERITIES:
    raise ValueError(f"severity must be one of {SEVERITIES}, got {severity!r}")
  x = jnp.asarray(images)
  x = x.astype(jnp.float32) / 255.0 if x.dtype == jnp.uint8 else x.astype(jnp.float32)
  if x.ndim != 4 or x.shape[-1] != 3:
    raise ValueError(f"images must be [B, H, W, 3], got shape {x.shape}")
  p = jnp.asarray(PARAMS[name])[jnp.clip(jnp.asarray(severity, jnp.int32) - 1, 0, 4)]
  return jnp.clip(_FUNCTIONS[name](x, p, rng), 0.0, 1.0)


corrupt_jit = jax.jit(corrupt, static_argnames=("name",))
corrupt_jit.__doc__ = "``corrupt`` under jit (``name`` static, ``severity`` traced)."
