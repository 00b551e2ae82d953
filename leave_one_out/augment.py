"""LooC views: augmentations with explicit, shareable parameters, rendered on device.

For n augmentations with their own embedding space (``cfg.spaces``) every image gets n + 2 views,
ordered ``q, k_0, k_1 .. k_n`` (docs/method.md, "Views"):

- ``q``: every augmentation drawn fresh; ``k_0``: every augmentation drawn fresh again.
- ``k_i`` (i >= 1): the parameter group of augmentation ``cfg.spaces[i - 1]`` is copied from ``q``
  (so that factor renders bit-identically); every other group, common ones included, is fresh.
- ``cfg.redraw = "different"`` (default): a key view that does *not* share a space augmentation
  gets a group that cannot coincide with q's, so it is never a false negative in that space:
  rotation: k' is drawn from the configured distribution restricted to k' != k_q (with the
  default uniform distribution ``k' = (k_q + randint(1, 4)) mod 4``), flip ``f' = not f_q``; for
  the probabilistic
  groups (blur, colour, texture) the continuous factors are fresh (they differ almost surely) and,
  when q's group is the identity (not applied; for colour also not grayscale), the key's apply bit
  is forced on. Crop is continuous and always fresh. ``"independent"``: plain fresh draws. Common
  augmentations (not in ``cfg.spaces``) are always independent.
- ``cfg.extra_keys = m`` appends m more keys drawn like ``k_0`` (every augmentation fresh), after
  ``k_n``: n + 2 + m views. They are positives of the invariant space only, which makes a run
  with ``spaces=()`` and ``extra_keys=n`` a compute-matched MoCo control of a LooC run with n
  spaces (the same number of key views per image, all positive in one space).
- ``cfg.shared``: augmentations drawn once per image and copied into every view (q and every
  key), so that the views of an image never differ in them; their draws still differ between
  images. ``shared=("rotation",)`` with ``spaces=()`` is the paper's "MoCo + rotation, same
  rotation for q and k" (Table 1). A shared augmentation has no space of its own.

Parameters are a pytree ``{augmentation: {field: array}}``; from ``sample_params`` leaves are
``[B, ...]``, from ``make_views`` ``[n + 2, B, ...]``. Every augmentation is always present; a
disabled one carries identity parameters (full-image box, apply bits off, rotation k = 0) and is
skipped when rendering, so the pytree structure never depends on the config.

- crop: ``y0, x0, h, w`` float [B], the box in fractions of the stored image's height / width.
- flip: ``apply`` bool [B] (horizontal flip).
- blur: ``apply`` bool [B], ``sigma`` float [B] (in pixels of a ``sigma_reference_size`` image).
- color: ``apply`` bool [B] (jitter), ``brightness, contrast, saturation`` float [B] (factors),
  ``hue`` float [B] (shift in turns), ``order`` int32 [B, 4] (op order: indices into
  ``render.COLOR_OPS``), ``gray`` bool [B].
- rotation: ``k`` int32 [B], counter-clockwise quarter turns (like ``np.rot90(x, k, (1, 2))``);
  k != 0 with probability ``rotation.prob``, then uniform over {1, 2, 3}.
- texture: ``apply`` bool [B], ``freq, theta, phase`` float [B, C], ``amp`` float [B].

Order of operations (``render``): crop + resize -> flip -> colour jitter -> grayscale -> texture ->
blur -> rotation, then clip to [0, 1]. Rotation comes last so it turns the finished view (output
is square, S x S, so all four rotations have the same shape).

- crop: torchvision ``RandomResizedCrop`` relative to the *original* image (``aspect`` = its
  width / height): area fraction ~ U(scale), log aspect ratio ~ U(log ratio), 10 attempts
  (vectorised), the first that fits wins, else torchvision's centre-crop fallback with the ratio
  clamped. Boxes are continuous (torchvision rounds them to whole pixels) and are rendered from the
  stored image with ``jax.image.scale_and_translate`` (bilinear, antialiased when shrinking).
- colour: torchvision ``ColorJitter`` semantics (factors ~ U[max(0, 1 - s), 1 + s], hue shift ~
  U[-h, h]): brightness ``x * b``, contrast blends with the mean grey level, saturation blends with
  the grey image, hue rotates HSV hue (``pix.adjust_hue``); each result is clipped to [0, 1]. With
  ``random_order`` the four ops run in a per-image random order. Grayscale
  (``pix.rgb_to_grayscale``, rec601) is drawn independently with ``gray_prob``, as in MoCo v2.
- blur: Gaussian, separable, per-image sigma, taps beyond the kernel radius dropped, weights
  renormalised at the borders. MoCo v2's sigma in [0.1, 2.0] is in pixels of a 224-px image; it
  is scaled by ``S / sigma_reference_size`` (0 = sigma in output pixels). Kernel size
  ``2 * (floor(kernel_frac * S) // 2) + 1``, at least 3 (23 at 224, 7 at 64, 3 at 32).
- texture (weight-free texture randomisation; the paper's transform could not be confirmed, see
  docs/method.md): the view is low-pass filtered (Gaussian, sigma = ``lowpass_sigma * S``; 1/e
  cut-off about 4.5 cycles per image at the default 0.05), which keeps object shape, layout and
  colour but removes fine-scale detail, and the result is multiplied by ``1 + amp * T(x, y)``,
  where T is a unit-variance band-limited pattern: a sum of C oriented sinusoidal gratings with
  random frequency (cycles per image, log-uniform in ``freq``, above the cut-off), orientation and
  phase; ``detail_keep`` of the original detail is added back. Multiplying all channels by the
  same factor keeps chromaticity (hue, saturation) and, since T has zero mean, roughly the mean
  colour: what changes is the local texture statistics (orientation, scale, contrast of the fine
  detail). All factors are explicit parameters, so a shared texture renders bit-identically, and
  it is a few matrix products on device. Texture is off by default (not part of MoCo v2): enable
  it to use it, common or in ``spaces``.

All spatial filters (crop-resize, blur, low-pass) are dense matrix products at full float32
precision: fast on accelerators and fusion boundaries for XLA (on a CPU they dominate the cost).
Everything is pure ``jnp`` (batched or vmapped), jittable with ``cfg`` static (closed over), and
works with the batch dimension sharded over devices.

Also here: ``sample_views`` (all views' parameters, the sampling half of ``make_views``),
``view_names`` (column titles). Rendering parameters into pixels is ``leave_one_out.render``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from leave_one_out import fields
from leave_one_out import render

AUGMENTATIONS = ("crop", "flip", "blur", "color", "rotation", "texture")
REDRAW = ("different", "independent")

Params = dict[str, dict[str, jax.Array]]


def default_config() -> ml_collections.ConfigDict:
  """MoCo v2 augmentations plus rotation, with spaces colour and rotation (LooC's default)."""
  c = ml_collections.ConfigDict()
  c.image_size = 224  # S: output views are S x S
  c.spaces = ("color", "rotation")  # augmentations with their own embedding space, in order
  c.redraw = "different"  # different | independent: re-drawn space factors vs q (module doc)
  c.extra_keys = 0  # more keys drawn like k_0, after k_1..k_n (module doc); 0 = LooC's n + 1
  c.shared = ()  # augmentations drawn once per image, the same in every view (module doc)

  c.crop = ml_collections.ConfigDict()
  c.crop.enabled = True  # off: the whole stored image, resized to S x S
  c.crop.scale = (0.2, 1.0)  # area fraction of the original image (torchvision RandomResizedCrop)
  c.crop.ratio = (3 / 4, 4 / 3)  # width / height range of the box, in original pixels

  c.flip = ml_collections.ConfigDict()
  c.flip.enabled = True
  c.flip.prob = 0.5  # horizontal flip

  c.blur = ml_collections.ConfigDict()
  c.blur.enabled = True
  c.blur.prob = 0.5
  c.blur.sigma = (0.1, 2.0)  # uniform, in pixels of a sigma_reference_size-px image (MoCo v2)
  c.blur.kernel_frac = 0.1  # kernel size 2 * (floor(kernel_frac * S) // 2) + 1, >= 3
  c.blur.sigma_reference_size = 224  # sigma_px = sigma * S / this; 0 = sigma is in output pixels

  c.color = ml_collections.ConfigDict()
  c.color.enabled = True
  c.color.prob = 0.8  # probability of applying the jitter (all four ops)
  c.color.brightness = 0.4  # factor ~ U[max(0, 1 - s), 1 + s]
  c.color.contrast = 0.4  # factor ~ U[max(0, 1 - s), 1 + s]
  c.color.saturation = 0.4  # factor ~ U[max(0, 1 - s), 1 + s]
  c.color.hue = 0.1  # hue shift ~ U[-h, h] turns, h in [0, 0.5]
  c.color.gray_prob = 0.2  # grayscale, drawn independently of the jitter
  c.color.random_order = True  # per-image random order of the four ops (torchvision); else b,c,s,h

  c.rotation = ml_collections.ConfigDict()
  c.rotation.enabled = True  # k * 90 degrees counter-clockwise, k in {0, 1, 2, 3}
  c.rotation.prob = 0.75  # P(k != 0); when rotated, k is uniform in {1, 2, 3}. 0.75 = uniform
  #                         over all four. The paper's distribution could not be confirmed
  #                         (docs/method.md); one reproduction rotates with prob 0.5

  c.texture = ml_collections.ConfigDict()
  c.texture.enabled = False  # not in MoCo v2: off unless asked for (enable it to put it in spaces)
  c.texture.prob = 0.8
  c.texture.num_components = 3  # C: gratings summed into the pattern
  c.texture.freq = (5.0, 12.0)  # cycles per image side, log-uniform; max <= S / 2 (Nyquist)
  c.texture.amplitude = (0.1, 0.3)  # amp ~ U(amplitude): std of the relative modulation
  c.texture.lowpass_sigma = 0.05  # Gaussian low-pass sigma as a fraction of S
  c.texture.detail_keep = 0.0  # fraction of the original fine detail added back, in [0, 1]
  return c


# ----------------------------------------------------------------------------- validation


def validate(cfg: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the first bad field (``config.augment.<field> ...``)."""
  check = fields.Section(cfg, "config.augment")
  size = check.integer("image_size", 8)
  for name in AUGMENTATIONS:
    check.boolean(f"{name}.enabled")
  spaces = cfg.spaces
  check.check(
    isinstance(spaces, (tuple, list)),
    "spaces",
    f"must be a tuple of augmentation names, got {spaces!r}",
  )
  for name in spaces:
    check.check(
      name in AUGMENTATIONS,
      "spaces",
      f"has unknown augmentation {name!r}; allowed: {AUGMENTATIONS}",
    )
    check.check(cfg[name].enabled, "spaces", f"has {name!r} but augment.{name}.enabled is False")
  check.check(len(set(spaces)) == len(spaces), "spaces", f"has duplicates: {tuple(spaces)!r}")
  shared = cfg.shared
  check.check(
    isinstance(shared, (tuple, list)),
    "shared",
    f"must be a tuple of augmentation names, got {shared!r}",
  )
  for name in shared:
    check.check(
      name in AUGMENTATIONS,
      "shared",
      f"has unknown augmentation {name!r}; allowed: {AUGMENTATIONS}",
    )
    check.check(cfg[name].enabled, "shared", f"has {name!r} but augment.{name}.enabled is False")
    check.check(
      name not in spaces, "shared", f"has {name!r}, which augment.spaces gives a space of its own"
    )
  check.check(len(set(shared)) == len(shared), "shared", f"has duplicates: {tuple(shared)!r}")
  check.one_of("redraw", REDRAW)
  check.integer("extra_keys", 0)
  check.number_range("crop.scale", 0.0, 1.0, low_open=True)
  check.number_range("crop.ratio", 0.0, low_open=True)
  for field in (
    "flip.prob",
    "blur.prob",
    "color.prob",
    "color.gray_prob",
    "texture.prob",
    "rotation.prob",
  ):
    check.probability(field)
  check.check(
    not ("rotation" in spaces and cfg.rotation.prob == 0),
    "rotation.prob",
    "must be > 0 when 'rotation' is in augment.spaces (with 0 every view is upright, "
    "so no key can differ from the query in rotation)",
  )
  check.number_range("blur.sigma", 0.0, low_open=True)
  check.number("blur.kernel_frac", 0.0, low_open=True)
  check.number("blur.sigma_reference_size", 0.0)
  for field in ("brightness", "contrast", "saturation"):
    check.number(f"color.{field}", 0.0)
  check.number("color.hue", 0.0, 0.5)
  check.boolean("color.random_order")
  check.integer("texture.num_components", 1)
  # Frequencies must stay below Nyquist (S / 2 cycles per image) only when texture is used.
  check.number_range("texture.freq", 0.0, size / 2 if cfg.texture.enabled else None, low_open=True)
  check.number_range("texture.amplitude", 0.0)
  check.number("texture.lowpass_sigma", 0.0, low_open=True)
  check.probability("texture.detail_keep")


def num_views(cfg) -> int:
  """n + 2 + extra_keys: q, k_0, one key per space and the extra fresh keys."""
  return len(cfg.spaces) + 2 + cfg.extra_keys


def view_names(cfg) -> list[str]:
  """Human-readable view labels: ``["q", "k0: shares nothing", "k1: shares color", ...]``."""
  n = len(cfg.spaces)
  return (
    ["q", "k0: shares nothing"]
    + [f"k{i + 1}: shares {name}" for i, name in enumerate(cfg.spaces)]
    + [f"k{n + 1 + j}: shares nothing" for j in range(cfg.extra_keys)]
  )


# ----------------------------------------------------------------------------- sampling
#
# Random numbers are expensive to compile (each threefry call adds ~0.1 s on CPU), so one view's
# parameters all come from a single uniform draw u [B, M]: every group owns fixed columns of u
# (``_columns``), whether or not it is enabled, so disabling one group never changes another's.


def _columns(cfg) -> dict[str, tuple[int, int]]:
  """Static (start, width) of each group's columns in u."""
  widths = {
    "crop": 22,
    "flip": 1,
    "blur": 2,
    "color": 10,
    "rotation": 1,
    "texture": 2 + 3 * cfg.texture.num_components,
  }
  out, start = {}, 0
  for name in AUGMENTATIONS:
    out[name] = (start, widths[name])
    start += widths[name]
  return out


def _affine(u, lo, hi):
  return lo + (hi - lo) * u


def _sample_crop(u, cfg, aspect):
  """torchvision RandomResizedCrop.get_params in units where the original height is 1.

  u: [B, 22] uniforms; aspect: [B] original width / height. Returns the box as fractions of the
  image: y0, x0, h, w, each [B].
  """
  a = aspect[:, None]  # [B, 1]
  lo, hi = cfg.crop.ratio
  area = a * _affine(u[:, 0:10], *cfg.crop.scale)  # 10 attempts, [B, 10]
  ratio = jnp.exp(_affine(u[:, 10:20], math.log(lo), math.log(hi)))
  w, h = jnp.sqrt(area * ratio), jnp.sqrt(area / ratio)
  fits = (w <= a) & (h <= 1.0)
  first = jnp.argmax(fits, axis=1)[:, None]  # the first attempt that fits wins
  w = jnp.take_along_axis(w, first, 1)[:, 0]
  h = jnp.take_along_axis(h, first, 1)[:, 0]
  a = aspect
  # Fallback (no attempt fits): centre crop of the whole image with the ratio clamped.
  ok = fits.any(axis=1)
  w = jnp.where(ok, w, jnp.where(a > hi, hi, a))
  h = jnp.where(ok, h, jnp.where(a < lo, a / lo, 1.0))
  uy, ux = jnp.where(ok, u[:, 20], 0.5), jnp.where(ok, u[:, 21], 0.5)
  return {"y0": uy * (1.0 - h), "x0": ux * (a - w) / a, "h": h, "w": w / a}


def _identity_params(b, cfg) -> Params:
  f, z = jnp.zeros((b,), jnp.float32), jnp.zeros((b,), bool)
  c = cfg.texture.num_components
  fc = jnp.zeros((b, c), jnp.float32)
  return {
    "crop": {"y0": f, "x0": f, "h": f + 1, "w": f + 1},
    "flip": {"apply": z},
    "blur": {"apply": z, "sigma": f},
    "color": {
      "apply": z,
      "brightness": f + 1,
      "contrast": f + 1,
      "saturation": f + 1,
      "hue": f,
      "order": jnp.broadcast_to(jnp.arange(4, dtype=jnp.int32), (b, 4)),
      "gray": z,
    },
    "rotation": {"k": jnp.zeros((b,), jnp.int32)},
    "texture": {"apply": z, "freq": fc + 1, "theta": fc, "phase": fc, "amp": f},
  }


def sample_params(rng, batch_size: int, cfg, aspect=None) -> Params:
  """One view's parameters, every group drawn fresh; leaves [B, ...] (layout: module doc).

  ``aspect``: float [B], the original image's width / height (None: 1.0, a square original).
  """
  b = batch_size
  aspect = jnp.ones((b,), jnp.float32) if aspect is None else jnp.asarray(aspect, jnp.float32)
  cols = _columns(cfg)
  u_all = jax.random.uniform(rng, (b, sum(w for _, w in cols.values())), jnp.float32)
  u = {name: u_all[:, s : s + w] for name, (s, w) in cols.items()}
  p = _identity_params(b, cfg)
  if cfg.crop.enabled:
    p["crop"] = _sample_crop(u["crop"], cfg, aspect)
  if cfg.flip.enabled:
    p["flip"] = {"apply": u["flip"][:, 0] < cfg.flip.prob}
  if cfg.blur.enabled:
    p["blur"] = {
      "apply": u["blur"][:, 0] < cfg.blur.prob,
      "sigma": _affine(u["blur"][:, 1], *cfg.blur.sigma),
    }
  if cfg.color.enabled:
    cc, uc = cfg.color, u["color"]
    factor = lambda j, s: _affine(uc[:, j], max(0.0, 1.0 - s), 1.0 + s)
    order = (
      jnp.argsort(uc[:, 5:9], axis=1).astype(jnp.int32)  # a uniform random permutation
      if cc.random_order
      else p["color"]["order"]
    )
    p["color"] = {
      "apply": uc[:, 0] < cc.prob,
      "brightness": factor(1, cc.brightness),
      "contrast": factor(2, cc.contrast),
      "saturation": factor(3, cc.saturation),
      "hue": _affine(uc[:, 4], -cc.hue, cc.hue),
      "order": order,
      "gray": uc[:, 9] < cc.gray_prob,
    }
  if cfg.rotation.enabled:
    p["rotation"] = {"k": _sample_rotation(u["rotation"][:, 0], cfg.rotation.prob)}
  if cfg.texture.enabled:
    t, ut, c = cfg.texture, u["texture"], cfg.texture.num_components
    lo, hi = t.freq
    p["texture"] = {
      "apply": ut[:, 0] < t.prob,
      "freq": jnp.exp(_affine(ut[:, 2 : 2 + c], math.log(lo), math.log(hi))),
      "theta": _affine(ut[:, 2 + c : 2 + 2 * c], 0.0, math.pi),
      "phase": _affine(ut[:, 2 + 2 * c :], 0.0, 2 * math.pi),
      "amp": _affine(ut[:, 1], *t.amplitude),
    }
  return p


def _sample_rotation(u, prob: float):
  """k int32 [B] from uniforms u [B]: 0 with probability 1 - prob, else uniform in {1, 2, 3}.

  With prob 0.75 (uniform over four) this is exactly ``min(floor(4 u), 3)``.
  """
  if prob == 0:
    return jnp.zeros(u.shape, jnp.int32)
  rotated = 1 + jnp.minimum(jnp.floor((u - (1 - prob)) * (3 / prob)), 2)
  return jnp.where(u < 1 - prob, 0, rotated).astype(jnp.int32)


def _differ_rotation(u, k_q, prob: float):
  """k' int32 [B] != k_q [B], from the rotation distribution restricted to k' != k_q.

  The candidates k_q + 1, k_q + 2, k_q + 3 (mod 4) weigh 1 each, except 0, which weighs
  r = P(0) / P(one given non-zero k) = 3 (1 - prob) / prob; with the default prob 0.75 (r = 1)
  this is exactly ``k_q + 1 + floor(3 u)``. Needs prob > 0 (``validate``).
  """
  r = 3 * (1 - prob) / prob
  weight = lambda offset: jnp.where((k_q + offset) % 4 == 0, r, 1.0)
  t = u * (weight(1) + weight(2) + weight(3))
  offset = 1 + (t >= weight(1)).astype(jnp.int32) + (t >= weight(1) + weight(2)).astype(jnp.int32)
  return (k_q + offset) % 4


def _is_identity(name, group):
  """Bool [...]: the group leaves the image unchanged (probabilistic groups only)."""
  if name == "color":
    return ~group["apply"] & ~group["gray"]
  return ~group["apply"]


def _differ(u, name, fresh, q, cfg):
  """A fresh group for a key that must not coincide with q's (``cfg.redraw == "different"``).

  u: uniforms shaped like q's leaves [B]; fresh, q: groups with leaves [B, ...].
  """
  if name == "rotation":
    return {"k": _differ_rotation(u, q["k"], cfg.rotation.prob)}
  if name == "flip":
    return {"apply": ~q["apply"]}
  if name in ("blur", "color", "texture"):
    return {**fresh, "apply": fresh["apply"] | _is_identity(name, q)}
  return fresh  # crop: continuous, differs almost surely


def sample_views(rng, batch_size: int, cfg, aspect=None) -> Params:
  """Parameters of all n + 2 (+ extra_keys) views with leave-one-out sharing; leaves [V, B, ...].

  Every view is first drawn fresh (``sample_params`` vmapped over n + 2 keys); then, for the
  space of augmentation i, k_i takes q's group and the other keys are made to differ from q's
  (``cfg.redraw == "different"``) or left as drawn ("independent"). Each group of
  ``cfg.shared`` is q's in every view.
  """
  n, v = len(cfg.spaces), num_views(cfg)
  keys = jax.random.split(rng, v + 1)
  fresh = jax.vmap(lambda k: sample_params(k, batch_size, cfg, aspect))(keys[:v])
  redraw_u = jax.random.uniform(keys[v], (max(n, 1), v, batch_size), jnp.float32)
  out = dict(fresh)
  for i, name in enumerate(cfg.spaces):
    q = jax.tree.map(lambda a: a[0], fresh[name])
    group = fresh[name]
    if cfg.redraw == "different":
      group = jax.vmap(lambda u, g: _differ(u, name, g, q, cfg))(redraw_u[i], group)
    shares = np.isin(np.arange(v), [0, i + 2])  # q itself and k_i
    out[name] = jax.tree.map(
      lambda g, a: jnp.where(shares.reshape((v,) + (1,) * (a.ndim - 1)), a[:1], g),
      group,
      fresh[name],
    )
  for name in cfg.shared:
    out[name] = jax.tree.map(lambda a: jnp.broadcast_to(a[:1], a.shape), fresh[name])
  return out


def make_views(rng, images, cfg, aspect=None) -> tuple[jax.Array, Params]:
  """q, k_0, k_1..k_n of every image, and their parameters (``sample_views`` then ``render``).

  Args:
    rng: a PRNG key.
    images: uint8 [B, H0, W0, 3] or float [B, H0, W0, 3] in [0, 1].
    cfg: the augment config (static: close over it under jit).
    aspect: float [B], each original image's width / height before the host resized it to
      H0 x W0; None: W0 / H0 (the stored image is undistorted).
  Returns:
    views: float32 [n + 2, B, S, S, 3] in [0, 1]; params: leaves [n + 2, B, ...].
  """
  b, h0, w0 = images.shape[:3]
  if aspect is None:
    aspect = jnp.full((b,), w0 / h0, jnp.float32)
  params = sample_views(rng, b, cfg, aspect)
  # Where a backend honours it, the barrier keeps XLA from fusing sampling arithmetic into the
  # rendering, so that make_views and a separate render of the same parameters compile the
  # rendering alike (bit-equal). XLA on CPU drops barriers; there the tests check the equality.
  params = jax.lax.optimization_barrier(params)
  return render.render(images, params, cfg), params


# ----------------------------------------------------------------------------- encodings
#
# What the auxiliary objectives (leave_one_out.objectives) read from one view's parameters: pure
# functions of a group's leaves [...] -> float32 [..., d], the conventions of AugSelf's code
# (hankook/AugSelf, transforms.py), which CASSLE's code shares.


def crop_center_size(crop) -> jax.Array:
  """[..., 4]: the crop box's centre and size ``(cy, cx, h, w)`` in fractions of the image."""
  return jnp.stack(
    [crop["y0"] + crop["h"] / 2, crop["x0"] + crop["w"] / 2, crop["h"], crop["w"]], axis=-1
  ).astype(jnp.float32)


def color_factors(color, cfg) -> jax.Array:
  """[..., 4]: the jitter's brightness, contrast, saturation and hue, each centred and divided by
  the width of its range: ``(f - 1) / (hi - lo)`` with ``[lo, hi] = [max(0, 1 - s), 1 + s]``
  (``s``: ``cfg.color.<op>``), ``hue / (2 h)``; zeros where the jitter was not applied (and for
  an op of strength 0). MoCo v2's strengths (0.4, 0.4, 0.4, 0.1) give ``(f - 1) / 0.8`` and
  ``hue / 0.2``, each in [-0.5, 0.5]. Grayscale and the order of the ops are not encoded.
  """
  widths = [(1 + s) - max(0.0, 1 - s) for s in (cfg.color[op] for op in render.COLOR_OPS[:3])]
  widths.append(2 * cfg.color.hue)
  centred = [color[op] - 1 for op in render.COLOR_OPS[:3]] + [color["hue"]]
  encoded = [c / w if w else jnp.zeros_like(c) for c, w in zip(centred, widths)]
  return jnp.where(color["apply"][..., None], jnp.stack(encoded, axis=-1), 0.0).astype(jnp.float32)


def blur_sigma(blur) -> jax.Array:
  """[..., 1]: the blur's sigma (pixels of a ``sigma_reference_size`` image), 0 where not applied."""
  return jnp.where(blur["apply"], blur["sigma"], 0.0)[..., None].astype(jnp.float32)
