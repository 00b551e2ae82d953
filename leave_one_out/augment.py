"""LooC views: augmentations with explicit, shareable parameters, rendered on device.

For n augmentations with their own embedding space (``cfg.spaces``) every image gets n + 2 views,
ordered ``q, k_0, k_1 .. k_n`` (METHOD.md, "Views"):

- ``q``: every augmentation drawn fresh; ``k_0``: every augmentation drawn fresh again.
- ``k_i`` (i >= 1): the parameter group of augmentation ``cfg.spaces[i - 1]`` is copied from ``q``
  (so that factor renders bit-identically); every other group, common ones included, is fresh.
- ``cfg.redraw = "different"`` (default): a key view that does *not* share a space augmentation
  gets a group that cannot coincide with q's, so it is never a false negative in that space:
  rotation ``k' = (k_q + randint(1, 4)) mod 4``, flip ``f' = not f_q``; for the probabilistic
  groups (blur, colour, texture) the continuous factors are fresh (they differ almost surely) and,
  when q's group is the identity (not applied; for colour also not grayscale), the key's apply bit
  is forced on. Crop is continuous and always fresh. ``"independent"``: plain fresh draws. Common
  augmentations (not in ``cfg.spaces``) are always independent.
- ``cfg.extra_keys = m`` appends m more keys drawn like ``k_0`` (every augmentation fresh), after
  ``k_n``: n + 2 + m views. They are positives of the invariant space only, which makes a run
  with ``spaces=()`` and ``extra_keys=n`` a compute-matched MoCo control of a LooC run with n
  spaces (the same number of key views per image, all positive in one space).

Parameters are a pytree ``{augmentation: {field: array}}``; from ``sample_params`` leaves are
``[B, ...]``, from ``make_views`` ``[n + 2, B, ...]``. Every augmentation is always present; a
disabled one carries identity parameters (full-image box, apply bits off, rotation k = 0) and is
skipped when rendering, so the pytree structure never depends on the config.

- crop: ``y0, x0, h, w`` float [B], the box in fractions of the stored image's height / width.
- flip: ``apply`` bool [B] (horizontal flip).
- blur: ``apply`` bool [B], ``sigma`` float [B] (in pixels of a ``sigma_reference_size`` image).
- color: ``apply`` bool [B] (jitter), ``brightness, contrast, saturation`` float [B] (factors),
  ``hue`` float [B] (shift in turns), ``order`` int32 [B, 4] (op order: indices into
  ``COLOR_OPS``), ``gray`` bool [B].
- rotation: ``k`` int32 [B], counter-clockwise quarter turns (like ``np.rot90(x, k, (1, 2))``).
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
  METHOD.md): the view is low-pass filtered (Gaussian, sigma = ``lowpass_sigma * S``; 1/e
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
``view_names`` (column titles) and ``COLOR_OPS``.
"""

from __future__ import annotations

import math

import dm_pix as pix
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

AUGMENTATIONS = ("crop", "flip", "blur", "color", "rotation", "texture")
COLOR_OPS = ("brightness", "contrast", "saturation", "hue")  # the indices in params.color.order
REDRAW = ("different", "independent")

Params = dict[str, dict[str, jax.Array]]


def default_config() -> ml_collections.ConfigDict:
  """MoCo v2 augmentations plus rotation, with spaces colour and rotation (LooC's default)."""
  c = ml_collections.ConfigDict()
  c.image_size = 32  # S: output views are S x S
  c.spaces = ("color", "rotation")  # augmentations with their own embedding space, in order
  c.redraw = "different"  # different | independent: re-drawn space factors vs q (module doc)
  c.extra_keys = 0  # more keys drawn like k_0, after k_1..k_n (module doc); 0 = LooC's n + 1

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
  c.rotation.enabled = True  # k * 90 degrees counter-clockwise, k uniform in {0, 1, 2, 3}

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


def _fail(field: str, message: str):
  raise ValueError(f"augment.{field} {message}")


def _is_number(x) -> bool:
  return isinstance(x, (int, float)) and not isinstance(x, bool)


def _prob(cfg, field):
  value = cfg
  for part in field.split("."):
    value = value[part]
  if not _is_number(value) or not 0 <= value <= 1:
    _fail(field, f"must be in [0, 1], got {value!r}")


def _range(value, field, *, low=0.0, high=math.inf, strict_low=True):
  ok = isinstance(value, (tuple, list)) and len(value) == 2 and all(map(_is_number, value))
  if ok:
    lo, hi = value
    ok = (lo > low if strict_low else lo >= low) and lo <= hi and hi <= high
  if not ok:
    bound = f"{'>' if strict_low else '>='} {low}" + (f", max <= {high}" if high < math.inf else "")
    _fail(field, f"must be a (min, max) pair with min <= max, min {bound}, got {value!r}")


def _nonneg(value, field, *, strict=False):
  if not _is_number(value) or value < 0 or (strict and value == 0):
    _fail(field, f"must be a number {'> 0' if strict else '>= 0'}, got {value!r}")


def validate(cfg: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the first bad field (``augment.<field> ...``)."""
  size = cfg.image_size
  if not isinstance(size, int) or isinstance(size, bool) or size < 8:
    _fail("image_size", f"must be an int >= 8, got {size!r}")
  for name in AUGMENTATIONS:
    if not isinstance(cfg[name].enabled, bool):
      _fail(f"{name}.enabled", f"must be a bool, got {cfg[name].enabled!r}")
  spaces = cfg.spaces
  if not isinstance(spaces, (tuple, list)):
    _fail("spaces", f"must be a tuple of augmentation names, got {spaces!r}")
  for name in spaces:
    if name not in AUGMENTATIONS:
      _fail("spaces", f"has unknown augmentation {name!r}; allowed: {AUGMENTATIONS}")
    if not cfg[name].enabled:
      _fail("spaces", f"has {name!r} but augment.{name}.enabled is False")
  if len(set(spaces)) != len(spaces):
    _fail("spaces", f"has duplicates: {tuple(spaces)!r}")
  if cfg.redraw not in REDRAW:
    _fail("redraw", f"must be one of {REDRAW}, got {cfg.redraw!r}")
  extra = cfg.get("extra_keys", 0)
  if not isinstance(extra, int) or isinstance(extra, bool) or extra < 0:
    _fail("extra_keys", f"must be an int >= 0, got {extra!r}")
  _range(cfg.crop.scale, "crop.scale", high=1.0)
  _range(cfg.crop.ratio, "crop.ratio")
  for field in ("flip.prob", "blur.prob", "color.prob", "color.gray_prob", "texture.prob"):
    _prob(cfg, field)
  _range(cfg.blur.sigma, "blur.sigma")
  _nonneg(cfg.blur.kernel_frac, "blur.kernel_frac", strict=True)
  _nonneg(cfg.blur.sigma_reference_size, "blur.sigma_reference_size")
  for field in ("brightness", "contrast", "saturation"):
    _nonneg(cfg.color[field], f"color.{field}")
  if not _is_number(cfg.color.hue) or not 0 <= cfg.color.hue <= 0.5:
    _fail("color.hue", f"must be in [0, 0.5], got {cfg.color.hue!r}")
  if not isinstance(cfg.color.random_order, bool):
    _fail("color.random_order", f"must be a bool, got {cfg.color.random_order!r}")
  c = cfg.texture.num_components
  if not isinstance(c, int) or isinstance(c, bool) or c < 1:
    _fail("texture.num_components", f"must be an int >= 1, got {c!r}")
  # Frequencies must stay below Nyquist (S / 2 cycles per image) only when texture is used.
  _range(cfg.texture.freq, "texture.freq", high=size / 2 if cfg.texture.enabled else math.inf)
  _range(cfg.texture.amplitude, "texture.amplitude", strict_low=False)
  _nonneg(cfg.texture.lowpass_sigma, "texture.lowpass_sigma", strict=True)
  _prob(cfg, "texture.detail_keep")


def num_views(cfg) -> int:
  """n + 2 + extra_keys: q, k_0, one key per space and the extra fresh keys."""
  return len(cfg.spaces) + 2 + cfg.get("extra_keys", 0)


def view_names(cfg) -> list[str]:
  """Human-readable view labels: ``["q", "k0: shares nothing", "k1: shares color", ...]``."""
  n = len(cfg.spaces)
  return ["q", "k0: shares nothing"] + [
      f"k{i + 1}: shares {name}" for i, name in enumerate(cfg.spaces)] + [
          f"k{n + 1 + j}: shares nothing" for j in range(cfg.get("extra_keys", 0))]


# ----------------------------------------------------------------------------- sampling
#
# Random numbers are expensive to compile (each threefry call adds ~0.1 s on CPU), so one view's
# parameters all come from a single uniform draw u [B, M]: every group owns fixed columns of u
# (``_columns``), whether or not it is enabled, so disabling one group never changes another's.


def _columns(cfg) -> dict[str, tuple[int, int]]:
  """Static (start, width) of each group's columns in u."""
  widths = {"crop": 22, "flip": 1, "blur": 2, "color": 10, "rotation": 1,
            "texture": 2 + 3 * cfg.texture.num_components}
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
      "color": {"apply": z, "brightness": f + 1, "contrast": f + 1, "saturation": f + 1,
                "hue": f, "order": jnp.broadcast_to(jnp.arange(4, dtype=jnp.int32), (b, 4)),
                "gray": z},
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
  u = {name: u_all[:, s:s + w] for name, (s, w) in cols.items()}
  p = _identity_params(b, cfg)
  if cfg.crop.enabled:
    p["crop"] = _sample_crop(u["crop"], cfg, aspect)
  if cfg.flip.enabled:
    p["flip"] = {"apply": u["flip"][:, 0] < cfg.flip.prob}
  if cfg.blur.enabled:
    p["blur"] = {"apply": u["blur"][:, 0] < cfg.blur.prob,
                 "sigma": _affine(u["blur"][:, 1], *cfg.blur.sigma)}
  if cfg.color.enabled:
    cc, uc = cfg.color, u["color"]
    factor = lambda j, s: _affine(uc[:, j], max(0.0, 1.0 - s), 1.0 + s)
    order = (jnp.argsort(uc[:, 5:9], axis=1).astype(jnp.int32)  # a uniform random permutation
             if cc.random_order else p["color"]["order"])
    p["color"] = {"apply": uc[:, 0] < cc.prob,
                  "brightness": factor(1, cc.brightness),
                  "contrast": factor(2, cc.contrast),
                  "saturation": factor(3, cc.saturation),
                  "hue": _affine(uc[:, 4], -cc.hue, cc.hue),
                  "order": order,
                  "gray": uc[:, 9] < cc.gray_prob}
  if cfg.rotation.enabled:
    p["rotation"] = {"k": jnp.minimum(jnp.floor(u["rotation"][:, 0] * 4), 3).astype(jnp.int32)}
  if cfg.texture.enabled:
    t, ut, c = cfg.texture, u["texture"], cfg.texture.num_components
    lo, hi = t.freq
    p["texture"] = {"apply": ut[:, 0] < t.prob,
                    "freq": jnp.exp(_affine(ut[:, 2:2 + c], math.log(lo), math.log(hi))),
                    "theta": _affine(ut[:, 2 + c:2 + 2 * c], 0.0, math.pi),
                    "phase": _affine(ut[:, 2 + 2 * c:], 0.0, 2 * math.pi),
                    "amp": _affine(ut[:, 1], *t.amplitude)}
  return p


def _is_identity(name, group):
  """Bool [...]: the group leaves the image unchanged (probabilistic groups only)."""
  if name == "color":
    return ~group["apply"] & ~group["gray"]
  return ~group["apply"]


def _differ(u, name, fresh, q):
  """A fresh group for a key that must not coincide with q's (``cfg.redraw == "different"``).

  u: uniforms shaped like q's leaves [B]; fresh, q: groups with leaves [B, ...].
  """
  if name == "rotation":
    offset = 1 + jnp.minimum(jnp.floor(u * 3), 2).astype(jnp.int32)  # uniform in {1, 2, 3}
    return {"k": (q["k"] + offset) % 4}
  if name == "flip":
    return {"apply": ~q["apply"]}
  if name in ("blur", "color", "texture"):
    return {**fresh, "apply": fresh["apply"] | _is_identity(name, q)}
  return fresh  # crop: continuous, differs almost surely


def sample_views(rng, batch_size: int, cfg, aspect=None) -> Params:
  """Parameters of all n + 2 (+ extra_keys) views with leave-one-out sharing; leaves [V, B, ...].

  Every view is first drawn fresh (``sample_params`` vmapped over n + 2 keys); then, for the
  space of augmentation i, k_i takes q's group and the other keys are made to differ from q's
  (``cfg.redraw == "different"``) or left as drawn ("independent").
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
      group = jax.vmap(lambda u, g: _differ(u, name, g, q))(redraw_u[i], group)
    shares = np.isin(np.arange(v), [0, i + 2])  # q itself and k_i
    out[name] = jax.tree.map(
        lambda g, a: jnp.where(shares.reshape((v,) + (1,) * (a.ndim - 1)), a[:1], g),
        group, fresh[name])
  return out


# ----------------------------------------------------------------------------- rendering
#
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
  return jax.image.scale_and_translate(image, (size, size, image.shape[2]), (0, 1), scale,
                                       translation, method="linear", antialias=True)


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
  pattern = (jnp.einsum("ncy,ncx->nyx", jnp.cos(ay), jnp.cos(ax), precision=_HIGHEST)
             - jnp.einsum("ncy,ncx->nyx", jnp.sin(ay), jnp.sin(ax), precision=_HIGHEST))
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


def render(images, params: Params, cfg, aspect=None):
  """Renders views from explicit parameters.

  Args:
    images: uint8 [B, H0, W0, 3] in [0, 255] or float [B, H0, W0, 3] in [0, 1].
    params: leaves [V, B, ...] (e.g. from make_views) or [B, ...] (from sample_params).
    cfg: the augment config (static).
    aspect: unused (crop boxes are already in fractions of the stored image); kept so that
      render and make_views take the same arguments.
  Returns:
    float32 [V, B, S, S, 3] in [0, 1] (or [B, S, S, 3] for [B, ...] params).
  """
  del aspect
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
  return render(images, params, cfg, aspect), params
