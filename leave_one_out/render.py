"""Rendering LooC views from explicit augmentation parameters: pure, jittable jnp functions.

``render(images, params, cfg)`` turns the parameter pytrees that ``leave_one_out.augment``
samples (``{augmentation: {field: array}}``, its docstring lists the fields) into pixels, in
this order: crop + resize -> flip -> colour jitter -> grayscale -> texture -> blur -> rotation,
then clip to [0, 1]. The same parameters always render the same pixels, so a factor a key
shares with the query is bit-identical in both. Semantics of each operation: the docstring of
``leave_one_out.augment``.
"""

from __future__ import annotations

import math

import dm_pix as pix
import jax
import jax.numpy as jnp
import numpy as np

COLOR_OPS = ("brightness", "contrast", "saturation", "hue")  # the indices in params.color.order


# Every spatial filter is a matrix product (crop: jax.image.scale_and_translate; blur and the
# texture low-pass: dense [S, S] Gaussian matrices), at full float32 precision. Matrix products
# are fast on every backend and are fusion boundaries, so XLA never re-computes a stage per tap
# of a following filter (a shifted-slice blur made XLA on CPU do exactly that, several times over).

_HIGHEST = jax.lax.Precision.HIGHEST


def _crop_resize(image, crop, size):
  """image [H0, W0, 3] float, crop: scalars -> [S, S, 3]. Output pixel edges map onto the box."""
  h0, w0 = image.shape[:2]
  sy, sx = size / (crop["h"] * h0), size / (crop["w"] * w0)
  scale = jnp.stack([sy, sx])
  translation = jnp.stack([-crop["y0"] * h0 * sy, -crop["x0"] * w0 * sx])
  return jax.image.scale_and_translate(
    image, (size, size, image.shape[2]), (0, 1), scale, translation, method="linear", antialias=True
  )


def _gaussian_matrix(sigma, size: int, radius: int):
  """sigma [...] (pixels) -> [..., S, S] row-stochastic blur matrices M[out, in].

  Taps further than ``radius`` are dropped; at the borders the weights are renormalised over the
  pixels inside the image (no padding).
  """
  d = np.arange(size)[None, :] - np.arange(size)[:, None]  # in - out
  sigma = jnp.maximum(jnp.asarray(sigma, jnp.float32), 1e-3)[..., None, None]
  w = jnp.where(np.abs(d) <= radius, jnp.exp(-0.5 * (d / sigma) ** 2), 0.0)
  return w / w.sum(axis=-1, keepdims=True)


def _blur_with(x, m):
  """x [N, S, S, C]; m [N, S, S] (per image) or [S, S] (shared): separable blur, rows then cols."""
  spec = ("noi,nihc->nohc", "noi,nhic->nhoc") if m.ndim == 3 else ("oi,nihc->nohc", "oi,nhic->nhoc")
  x = jnp.einsum(spec[0], m, x, precision=_HIGHEST)
  return jnp.einsum(spec[1], m, x, precision=_HIGHEST)


def _gray(x):
  return pix.rgb_to_grayscale(x, keep_dims=True)  # [N, S, S, 3], rec601 (torchvision's weights)


def _blend(x, op, factors):
  """Brightness (op 0), contrast (1) or saturation (2), per image: torchvision ColorJitter.

  All three are ``clip(f * x + (1 - f) * m)`` with ``m`` = 0, the mean grey level or the grey
  image. x [N, S, S, 3] in [0, 1]; op int32 [N, 1, 1, 1] or a static int; factors: [N, 1, 1, 1].
  """
  gray = _gray(x)
  mean = jnp.mean(gray[..., :1], axis=(1, 2, 3), keepdims=True)
  m = jnp.where(op == 0, 0.0, jnp.where(op == 1, mean, gray))
  f = jnp.select([op == 0, op == 1], [factors[0], factors[1]], factors[2])
  return jnp.clip(f * x + (1 - f) * m, 0.0, 1.0)


def _color(x, p, cfg):
  """Colour jitter (p.apply) in the order p.order, then grayscale (p.gray). x [N, S, S, 3].

  Hue is the only expensive op, so it runs once: the three blends that precede it in p.order run
  first (masked per image), then hue, then the blends that follow it. Same result as applying
  the four ops stage by stage, at a quarter of the hue cost.
  """
  col = lambda a: a[:, None, None, None]
  factors = [col(p[op]) for op in COLOR_OPS]
  hue = lambda y: jnp.clip(pix.adjust_hue(y, factors[3][..., 0]), 0.0, 1.0)
  if not cfg.color.hue:  # hue factor 0: skipped, as torchvision skips an op of strength 0
    hue = lambda y: y
  y = x
  if cfg.color.random_order:
    order = p["order"]
    hue_pos = jnp.argmax(order == 3, axis=1)[:, None]  # [N, 1]
    j = np.arange(3)[None, :]
    blends = jnp.take_along_axis(order, j + (j >= hue_pos), axis=1)  # non-hue ops, in order
    for i in range(3):
      y = jnp.where(col(i < hue_pos[:, 0]), _blend(y, col(blends[:, i]), factors), y)
    y = hue(y)
    for i in range(3):
      y = jnp.where(col(i >= hue_pos[:, 0]), _blend(y, col(blends[:, i]), factors), y)
  else:  # brightness, contrast, saturation, hue
    for i in range(3):
      y = _blend(y, i, factors)
    y = hue(y)
  y = jnp.where(col(p["apply"]), y, x)
  return jnp.where(col(p["gray"]), _gray(y), y)


def _texture(x, p, cfg):
  """Low-pass x and modulate it with a random grating pattern (module doc). x [N, S, S, 3]."""
  t, s = cfg.texture, x.shape[1]
  sigma = t.lowpass_sigma * s
  low = _blur_with(x, _gaussian_matrix(sigma, s, max(1, min(s - 1, math.ceil(3 * sigma)))))
  # T(y, x) = sqrt(2 / C) * sum_c cos(u_c x + v_c y + phase_c), factored into 1-D terms.
  coords = (np.arange(s, dtype=np.float32) + 0.5) / s  # [S]
  omega = 2 * math.pi * p["freq"]  # [N, C]
  ax = omega[..., None] * jnp.cos(p["theta"])[..., None] * coords + p["phase"][..., None]
  ay = omega[..., None] * jnp.sin(p["theta"])[..., None] * coords  # [N, C, S]
  pattern = jnp.einsum("ncy,ncx->nyx", jnp.cos(ay), jnp.cos(ax), precision=_HIGHEST) - jnp.einsum(
    "ncy,ncx->nyx", jnp.sin(ay), jnp.sin(ax), precision=_HIGHEST
  )
  pattern = pattern * math.sqrt(2.0 / t.num_components)
  y = low * (1 + p["amp"][:, None, None, None] * pattern[..., None])
  y = jnp.clip(y + t.detail_keep * (x - low), 0.0, 1.0)
  return jnp.where(p["apply"][:, None, None, None], y, x)


def _blur(x, p, cfg):
  """Gaussian blur with per-image sigma (p.sigma, scaled to S), where p.apply. x [N, S, S, 3]."""
  s = x.shape[1]
  sigma = p["sigma"]
  if cfg.blur.sigma_reference_size:
    sigma = sigma * (s / cfg.blur.sigma_reference_size)
  radius = max(1, int(cfg.blur.kernel_frac * s) // 2)
  y = _blur_with(x, _gaussian_matrix(sigma, s, min(radius, s - 1)))
  return jnp.where(p["apply"][:, None, None, None], y, x)


def _rotate(x, k):
  """Counter-clockwise by k[n] * 90 degrees; x [N, S, S, C] (square)."""
  k = k[:, None, None, None]
  rots = [jnp.rot90(x, i, axes=(1, 2)) for i in range(4)]
  return jnp.select([k == 0, k == 1, k == 2], rots[:3], rots[3])


# uint8 -> float through a table computed by numpy, so uint8 input renders exactly like
# ``images.astype(np.float32) / 255`` (XLA would turn x / 255 into x * (1 / 255), off by an ulp).
_U8_TO_FLOAT = np.arange(256, dtype=np.float32) / np.float32(255)


def _to_float(images):
  if images.dtype == jnp.uint8:
    return jnp.asarray(_U8_TO_FLOAT)[images.astype(jnp.int32)]
  return jnp.asarray(images, jnp.float32)


def _finish(x, p, cfg):
  """Everything after the crop, for one view of every image: x [B, S, S, 3], leaves [B, ...]."""
  if cfg.flip.enabled:
    x = jnp.where(p["flip"]["apply"][:, None, None, None], x[:, :, ::-1], x)
  if cfg.color.enabled:
    x = _color(x, p["color"], cfg)
  if cfg.texture.enabled:
    x = _texture(x, p["texture"], cfg)
  if cfg.blur.enabled:
    x = _blur(x, p["blur"], cfg)
  if cfg.rotation.enabled:
    x = _rotate(x, p["rotation"]["k"])
  return jnp.clip(x, 0.0, 1.0)


def render(images, params, cfg):
  """Renders views from explicit parameters (``leave_one_out.augment`` draws them).

  Args:
    images: uint8 [B, H0, W0, 3] in [0, 255] or float [B, H0, W0, 3] in [0, 1].
    params: leaves [V, B, ...] (e.g. from ``augment.make_views``) or [B, ...] (from
      ``augment.sample_params``); crop boxes are fractions of the stored image.
    cfg: the augment config (static).
  Returns:
    float32 [V, B, S, S, 3] in [0, 1] (or [B, S, S, 3] for [B, ...] params).
  """
  single = params["crop"]["y0"].ndim == 1
  if single:
    params = jax.tree.map(lambda a: a[None], params)
  images = _to_float(images)
  s = cfg.image_size
  crop_one = lambda im, c: _crop_resize(im, c, s)
  x = jax.vmap(jax.vmap(crop_one), in_axes=(None, 0))(images, params["crop"])  # [V, B, S, S, 3]
  # vmap over views rather than a [V * B] reshape: with the batch sharded over devices, merging
  # the view and batch axes would make GSPMD gather the whole batch.
  x = jax.vmap(lambda x, p: _finish(x, p, cfg))(x, params)
  return x[0] if single else x
