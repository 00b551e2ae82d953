"""Tests of leave_one_out.augment: leave-one-out sharing, sampling statistics, rendering."""

import colorsys
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from leave_one_out import augment
from leave_one_out import config as config_lib
from leave_one_out import render
from leave_one_out.run import checkpoints

# Its module-scoped fixtures are built once: every test of the file runs in one xdist worker.
pytestmark = pytest.mark.xdist_group("test_augment")

S = 16  # output side used throughout (small: compile and run fast on CPU)
B = 16


def _cfg(spaces=("color", "rotation", "texture"), only=None, **overrides):
  """A test config: image_size S, the given spaces, texture on; ``only`` = the enabled set."""
  cfg = augment.default_config()
  cfg.image_size = S
  cfg.texture.enabled = True
  cfg.texture.freq = (3.0, 6.0)  # below S / 2
  cfg.spaces = tuple(spaces)
  if only is not None:
    for name in augment.AUGMENTATIONS:
      cfg[name].enabled = name in only
  for path, value in overrides.items():
    group, field = path.split("__") if "__" in path else (None, path)
    (cfg[group] if group else cfg)[field] = value
  augment.validate(cfg)
  return cfg


def _images(b=B, h=20, w=20, seed=0):
  return np.random.RandomState(seed).randint(0, 256, (b, h, w, 3)).astype(np.uint8)


_COMPILED = {}


def make_views(cfg, rng, images, aspect=None):
  """Jitted make_views, compiled once per distinct config (cfg is static, closed over)."""
  key = cfg.to_json()
  if key not in _COMPILED:
    frozen = augment.default_config()
    frozen.update(cfg)
    _COMPILED[key] = jax.jit(lambda r, x, a: augment.make_views(r, x, frozen, a))
  return _COMPILED[key](rng, images, aspect)


@pytest.fixture(scope="module")
def general():
  """spaces colour, rotation, texture, everything enabled: (cfg, images, views, params)."""
  cfg = _cfg()
  images = _images(64)
  views, params = make_views(cfg, jax.random.key(0), images)
  return cfg, images, np.asarray(views), jax.tree.map(np.asarray, params)


def _group_equal(params, name, v, w=0):
  return [np.array_equal(a[v], a[w]) for a in jax.tree.leaves(params[name])]


# ----------------------------------------------------------------------------- views and sharing


def test_rotation_only_views_are_rotations_of_q():
  cfg = _cfg(spaces=("rotation",), only=("rotation",))
  views, params = make_views(cfg, jax.random.key(1), _images())
  views, k = np.asarray(views), np.asarray(params["rotation"]["k"])
  assert views.shape == (3, B, S, S, 3)
  np.testing.assert_array_equal(views[2], views[0])  # k_1 shares rotation with q
  diff = (k[1] - k[0]) % 4
  assert np.all(diff != 0)  # redraw "different"
  for b in range(B):
    np.testing.assert_array_equal(views[1, b], np.rot90(views[0, b], diff[b], axes=(0, 1)))


def test_flip_space_redraw_flips_q():
  cfg = _cfg(spaces=("flip",), only=("flip",))
  views, params = make_views(cfg, jax.random.key(2), _images())
  views, f = np.asarray(views), np.asarray(params["flip"]["apply"])
  np.testing.assert_array_equal(f[1], ~f[0])
  np.testing.assert_array_equal(views[1], views[0][:, :, ::-1])
  np.testing.assert_array_equal(views[2], views[0])


def test_general_sharing(general):
  cfg, _, views, params = general
  assert views.shape == (5, 64, S, S, 3)
  for i, name in enumerate(cfg.spaces):
    v = i + 2
    assert all(_group_equal(params, name, v)), name  # shared group: q's exactly
    for other in augment.AUGMENTATIONS:
      if other == name:
        continue
      leaves = {
        "crop": params["crop"]["y0"],
        "blur": params["blur"]["sigma"],
        "color": params["color"]["brightness"],
        "texture": params["texture"]["amp"],
        "flip": params["flip"]["apply"],
        "rotation": params["rotation"]["k"],
      }[other]
      frac = np.mean(leaves[v] != leaves[0])
      assert frac > {"flip": 0.25, "rotation": 0.99}.get(other, 0.95), (name, other, frac)
    assert not np.array_equal(views[v], views[0])
  # k_0 shares nothing.
  for name in augment.AUGMENTATIONS:
    assert not all(_group_equal(params, name, 1)), name


def test_redraw_different_vs_independent(general):
  cfg, images, _, params = general
  k = params["rotation"]["k"]
  for v in (1, 2, 4):  # k_0, k_1 (colour), k_3 (texture): rotation re-drawn, must differ
    assert np.all(k[v] != k[0])
  np.testing.assert_array_equal(k[3], k[0])
  # Probabilistic space groups: if q's group is the identity, the non-sharing keys apply it.
  for name, v_shared in (("color", 2), ("texture", 4)):
    g = params[name]
    q_identity = ~g["apply"][0] & (~g["gray"][0] if name == "color" else True)
    assert q_identity.any()
    for v in range(1, 5):
      if v != v_shared:
        assert np.all(g["apply"][v][q_identity])
  # Independent redraw: rotation of other keys sometimes equals q's.
  cfg = _cfg(redraw="independent")
  indep = jax.jit(lambda r: augment.sample_views(r, 64, cfg))(jax.random.key(0))
  k = np.asarray(indep["rotation"]["k"])
  for v in (1, 2, 4):
    assert 0 < np.mean(k[v] == k[0]) < 0.6


def test_extra_keys_are_drawn_like_k0():
  # spaces=() with 2 extra keys (the compute-matched MoCo control) and a rotation space with one.
  for spaces, extra in (((), 2), (("rotation",), 1)):
    cfg = _cfg(spaces=spaces, extra_keys=extra)
    n = len(spaces)
    assert augment.num_views(cfg) == n + 2 + extra
    assert augment.view_names(cfg)[n + 2 :] == [
      f"k{n + 1 + j}: shares nothing" for j in range(extra)
    ]
    views, params = make_views(cfg, jax.random.key(3), _images(64))
    assert np.asarray(views).shape == (n + 2 + extra, 64, S, S, 3)
    k = np.asarray(params["rotation"]["k"])
    for v in range(n + 2, n + 2 + extra):
      for name in augment.AUGMENTATIONS:  # every group fresh, as for k_0
        assert not all(_group_equal(params, name, v)), (spaces, v, name)
      if spaces:
        assert np.all(k[v] != k[0])  # a re-drawn space factor differs from q's, as for k_0
  with pytest.raises(ValueError, match="config.augment.extra_keys must be an integer >= 0"):
    _cfg(extra_keys=-1)


def test_shared_augmentations_are_the_same_in_every_view_of_an_image():
  # MoCo + rotation with the same rotation for q and k (the paper's Table 1 row), with an extra
  # key: every view of an image has q's rotation; images differ; everything else is fresh.
  cfg = _cfg(spaces=(), shared=("rotation",), extra_keys=1)
  views, params = make_views(cfg, jax.random.key(5), _images(64))
  k = np.asarray(params["rotation"]["k"])
  assert (k == k[:1]).all() and len(set(k[0].tolist())) == 4
  for v in (1, 2):
    assert all(_group_equal(params, "rotation", v))
    for name in ("crop", "color"):
      assert not all(_group_equal(params, name, v)), (v, name)
  # With rotation the only augmentation, q and its key render identically.
  only = _cfg(spaces=(), only=("rotation",), shared=("rotation",))
  views, params = make_views(only, jax.random.key(6), _images(8))
  views = np.asarray(views)
  np.testing.assert_array_equal(views[0], views[1])
  # A shared augmentation has no space, and must be on.
  with pytest.raises(ValueError, match="augment.shared has 'rotation', which augment.spaces"):
    _cfg(spaces=("rotation",), shared=("rotation",))
  with pytest.raises(ValueError, match="augment.shared has 'blur' but augment.blur.enabled"):
    _cfg(spaces=(), shared=("blur",), blur__enabled=False)
  with pytest.raises(ValueError, match="augment.shared has unknown augmentation 'spin'"):
    _cfg(spaces=(), shared=("spin",))


# ----------------------------------------------------------------------------- sampling


def test_sampling_statistics():
  cfg = _cfg()
  n = 4096
  p = jax.tree.map(
    np.asarray, jax.jit(lambda r: augment.sample_params(r, n, cfg))(jax.random.key(3))
  )
  tol = lambda q: 4.5 * np.sqrt(q * (1 - q) / n)
  for value, rate in (
    (p["flip"]["apply"], cfg.flip.prob),
    (p["blur"]["apply"], cfg.blur.prob),
    (p["color"]["apply"], cfg.color.prob),
    (p["color"]["gray"], cfg.color.gray_prob),
    (p["texture"]["apply"], cfg.texture.prob),
  ):
    assert abs(value.mean() - rate) < tol(rate)
  sigma = p["blur"]["sigma"]
  assert sigma.min() >= 0.1 and sigma.max() <= 2.0 and abs(sigma.mean() - 1.05) < 0.03
  c = p["color"]
  for op, s in (("brightness", 0.4), ("contrast", 0.4), ("saturation", 0.4)):
    assert c[op].min() >= 1 - s and c[op].max() <= 1 + s and abs(c[op].mean() - 1) < 0.02
    assert c[op].min() < 1 - 0.9 * s and c[op].max() > 1 + 0.9 * s
  assert np.abs(c["hue"]).max() <= 0.1 and np.abs(c["hue"]).max() > 0.09
  np.testing.assert_array_equal(np.sort(c["order"], axis=1), np.tile(np.arange(4), (n, 1)))
  for pos in range(4):
    counts = np.bincount(c["order"][:, pos], minlength=4)
    assert np.all(np.abs(counts - n / 4) < 4.5 * np.sqrt(n * 0.25 * 0.75))
  counts = np.bincount(p["rotation"]["k"], minlength=4)
  assert counts.shape == (4,) and np.all(np.abs(counts - n / 4) < 4.5 * np.sqrt(n * 0.1875))
  crop = p["crop"]
  area, ratio = crop["h"] * crop["w"], crop["w"] / crop["h"]  # square original
  assert area.min() >= 0.2 - 1e-6 and area.max() <= 1 + 1e-6
  assert ratio.min() >= 0.75 - 1e-5 and ratio.max() <= 4 / 3 + 1e-5
  t = p["texture"]
  assert t["freq"].min() >= 3.0 and t["freq"].max() <= 6.0
  assert t["amp"].min() >= 0.1 and t["amp"].max() <= 0.3


def test_crop_follows_original_aspect():
  cfg = _cfg()
  n = 2048
  sample = jax.jit(lambda r, a: augment.sample_params(r, n, cfg, a)["crop"])
  for a in (0.5, 1.0, 1.6, 2.0, 10.0):
    c = jax.tree.map(np.asarray, sample(jax.random.key(4), jnp.full((n,), a)))
    assert c["y0"].min() >= 0 and c["x0"].min() >= 0
    assert (c["y0"] + c["h"]).max() <= 1 + 1e-6 and (c["x0"] + c["w"]).max() <= 1 + 1e-6
    h_px, w_px = c["h"], c["w"] * a  # original pixels, original height = 1
    area, ratio = h_px * w_px / a, w_px / h_px
    assert ratio.min() >= 0.75 - 1e-5 and ratio.max() <= 4 / 3 + 1e-5
    if a == 10.0:  # no attempt can fit: torchvision's fallback, centre crop, ratio clamped
      np.testing.assert_allclose(c["h"], 1.0)
      np.testing.assert_allclose(w_px, 4 / 3, rtol=1e-6)
      np.testing.assert_allclose(c["x0"], (1 - c["w"]) / 2, atol=1e-6)
    else:
      assert area.min() >= 0.2 - 1e-6 and area.max() <= 1 + 1e-6
      assert np.ptp(ratio) > 0.4 and np.ptp(area) > 0.3  # a = 0.5: area <= 2/3


def test_crop_renders_the_box():
  """A horizontal ramp, cropped to a known box, renders as the ramp restricted to that box."""
  cfg = _cfg(spaces=(), only=("crop",))
  h0, w0 = 24, 40
  xs, ys = np.meshgrid((np.arange(w0) + 0.5) / w0, (np.arange(h0) + 0.5) / h0)
  image = np.stack([xs, ys, xs], axis=-1).astype(np.float32)[None]  # ramps in x and y
  params = augment._identity_params(1, cfg)
  box = {"y0": 0.25, "x0": 0.2, "h": 0.5, "w": 0.25}  # 12 x 10 source pixels -> 16 x 16
  params["crop"] = {k: jnp.array([v]) for k, v in box.items()}
  view = np.asarray(jax.jit(lambda x, p: render.render(x, p, cfg))(image, params))[0]
  assert view.shape == (S, S, 3)  # [B, ...] params render one view
  centres = (np.arange(S) + 0.5) / S
  np.testing.assert_allclose(
    view[S // 2, 1:-1, 0], (box["x0"] + box["w"] * centres)[1:-1], atol=1e-5
  )
  np.testing.assert_allclose(
    view[1:-1, S // 2, 1], (box["y0"] + box["h"] * centres)[1:-1], atol=1e-5
  )


# ----------------------------------------------------------------------------- rendering


def test_render_reproduces_make_views(general):
  cfg, images, views, params = general
  again = jax.jit(lambda x, p: render.render(x, p, cfg))(images, params)
  np.testing.assert_array_equal(np.asarray(again), views)


def test_views_shape_dtype_range_determinism(general):
  cfg, images, views, _ = general
  assert views.dtype == np.float32 and views.min() >= 0 and views.max() <= 1
  assert augment.num_views(cfg) == 5
  same, _ = make_views(cfg, jax.random.key(0), images)
  np.testing.assert_array_equal(np.asarray(same), views)
  other, _ = make_views(cfg, jax.random.key(1), images)
  assert np.mean(np.asarray(other) != views) > 0.5
  floats, _ = make_views(cfg, jax.random.key(0), images.astype(np.float32) / 255.0)
  np.testing.assert_array_equal(np.asarray(floats), views)


def _hue_shift(rgb, delta):
  out = np.empty_like(rgb)
  for idx in np.ndindex(rgb.shape[:-1]):
    h, s, v = colorsys.rgb_to_hsv(*rgb[idx])
    out[idx] = colorsys.hsv_to_rgb((h + delta) % 1.0, s, v)
  return out


def test_color_matches_torchvision_semantics():
  """Colour jitter in the sampled op order, then grayscale, against a numpy reference."""
  cfg = _cfg(spaces=("color",), only=("color",))
  images = _images(16, S, S, seed=1)
  views, params = make_views(cfg, jax.random.key(6), images)
  views, c = np.asarray(views[0]), jax.tree.map(lambda a: np.asarray(a[0]), params["color"])
  gray_w = np.array([0.2989, 0.5870, 0.1140], np.float32)
  assert c["apply"].any() and (~c["apply"]).any() and c["gray"].any()
  for b in range(16):
    x = images[b].astype(np.float32) / 255
    if c["apply"][b]:
      for op in c["order"][b]:
        name = render.COLOR_OPS[op]
        f = c[name][b]
        if name == "brightness":
          x = x * f
        elif name == "contrast":
          x = f * x + (1 - f) * (x @ gray_w).mean()
        elif name == "saturation":
          x = f * x + (1 - f) * (x @ gray_w)[..., None]
        else:
          x = _hue_shift(x, f)
        x = np.clip(x, 0, 1)
    if c["gray"][b]:
      x = np.repeat((x @ gray_w)[..., None], 3, axis=-1)
    np.testing.assert_allclose(views[b], x, atol=2e-4)


def test_blur_and_texture():
  cfg = _cfg(
    spaces=("blur", "texture"),
    only=("blur", "texture"),
    blur__sigma_reference_size=0,
    blur__kernel_frac=0.4,
  )
  images = np.concatenate([np.full((4, S, S, 3), 128, np.uint8), _images(12, S, S, seed=2)])
  views, params = make_views(cfg, jax.random.key(7), images)
  views = np.asarray(views)
  blur = np.asarray(params["blur"]["apply"])
  tex = np.asarray(params["texture"]["apply"])
  x = images.astype(np.float32) / 255
  for v in range(views.shape[0]):
    plain = ~blur[v] & ~tex[v]
    np.testing.assert_array_equal(views[v][plain], x[plain])
    only_blur = blur[v] & ~tex[v]
    constant = only_blur & (np.arange(len(x)) < 4)  # a flat image stays flat
    np.testing.assert_allclose(views[v][constant], x[constant], atol=1e-6)
    noisy = only_blur & (np.arange(len(x)) >= 4)
    assert np.all(views[v][noisy].std(axis=(1, 2)) < x[noisy].std(axis=(1, 2)))
    # Texture keeps the mean colour roughly and changes the image.
    t = tex[v]
    assert np.all(np.abs(views[v][t].mean(axis=(1, 2)) - x[t].mean(axis=(1, 2))) < 0.08)
    assert np.all(np.abs(views[v][t] - x[t]).max(axis=(1, 2, 3)) > 0.02)


def test_texture_keeps_chromaticity():
  cfg = _cfg(spaces=(), only=("texture",), texture__prob=1.0)
  x = jnp.asarray(np.random.RandomState(3).uniform(0.3, 0.6, (8, S, S, 3)), jnp.float32)
  p = jax.jit(lambda r: augment.sample_params(r, 8, cfg))(jax.random.key(8))["texture"]
  texture = jax.jit(lambda x, p: render._texture(x, p, cfg))
  out = np.asarray(texture(x, p))
  low = np.asarray(texture(x, {**p, "amp": jnp.zeros(8)}))  # the low-passed image
  gain = out / low  # one multiplicative gain per pixel, the same for all three channels
  np.testing.assert_allclose(gain[..., 0], gain[..., 1], rtol=1e-4)
  np.testing.assert_allclose(gain[..., 0], gain[..., 2], rtol=1e-4)
  assert gain.std() > 0.05


def test_sharded_batch_matches_unsharded(general):
  """Batch sharded over 8 devices (GSPMD): same views, and no gathers across devices."""
  cfg, images, views, _ = general
  mesh = Mesh(np.array(jax.devices()), ("data",))
  batch = NamedSharding(mesh, P("data"))
  per_view = NamedSharding(mesh, P(None, "data"))
  fn = jax.jit(
    lambda r, x: augment.make_views(r, x, cfg),
    in_shardings=(None, batch),
    out_shardings=(per_view, per_view),
  )
  compiled = fn.lower(jax.random.key(0), jax.device_put(images, batch)).compile()
  hlo = compiled.as_text()
  for collective in ("all-gather", "all-to-all", "all-reduce", "collective-permute"):
    assert collective not in hlo, collective
  out, _ = compiled(jax.random.key(0), jax.device_put(images, batch))
  assert len(jax.devices()) == 8 and out.sharding.is_equivalent_to(per_view, out.ndim)
  np.testing.assert_allclose(np.asarray(out), views, atol=1e-6)


# ----------------------------------------------------------------------------- config


def test_validate_rejects_bad_configs():
  augment.validate(augment.default_config())
  cases = [
    ({"color__prob": 1.5}, "config.augment.color.prob must be a number in [0, 1], got 1.5"),
    ({"spaces": ("colour",)}, "augment.spaces has unknown augmentation 'colour'"),
    ({"spaces": ("color", "color")}, "augment.spaces has duplicates"),
    ({"redraw": "sometimes"}, "augment.redraw"),
    ({"crop__scale": (0.5, 0.2)}, "augment.crop.scale"),
    ({"crop__ratio": (0.0, 1.0)}, "augment.crop.ratio"),
    ({"blur__sigma": (-1.0, 2.0)}, "augment.blur.sigma"),
    ({"color__hue": 0.7}, "augment.color.hue"),
    ({"color__brightness": -0.1}, "augment.color.brightness"),
    ({"texture__freq": (2.0, 9.0)}, "augment.texture.freq"),  # max must be < S / 2
    ({"texture__num_components": 0}, "augment.texture.num_components"),
    ({"image_size": 4}, "augment.image_size"),
  ]
  for overrides, message in cases:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(")):
      _cfg(**overrides)
  cfg = _cfg(spaces=())
  cfg.texture.enabled = False
  cfg.spaces = ("texture",)
  with pytest.raises(ValueError, match="augment.spaces has 'texture' but augment.texture.enabled"):
    augment.validate(cfg)


def test_view_names():
  cfg = _cfg()
  assert augment.view_names(cfg) == [
    "q",
    "k0: shares nothing",
    "k1: shares color",
    "k2: shares rotation",
    "k3: shares texture",
  ]


@pytest.mark.parametrize("prob", [0.0, 0.5, 0.75, 1.0])
def test_rotation_prob(prob):
  """k != 0 with probability rotation.prob, then uniform over {1, 2, 3}; keys that re-draw
  rotation differ from q and follow the same distribution restricted to k != k_q."""
  spaces = ("color",) if prob == 0 else ("color", "rotation")  # a 0-prob rotation: common only
  cfg = _cfg(spaces=spaces, rotation__prob=prob)
  n = 4096
  views = jax.tree.map(
    np.asarray, jax.jit(lambda r: augment.sample_views(r, n, cfg))(jax.random.key(5))
  )
  k = views["rotation"]["k"]  # [n + 2, n]
  counts = np.bincount(k[0], minlength=4) / n
  want = np.array([1 - prob] + [prob / 3] * 3)
  tol = 4.5 * np.sqrt(np.maximum(want * (1 - want), 1e-12) / n)
  assert np.all(np.abs(counts - want) <= tol), (counts, want)
  if prob == 0:
    assert not k.any()  # nothing rotates, in any view
    return
  np.testing.assert_array_equal(k[3], k[0])  # k_2 shares rotation
  for v in (1, 2):  # k_0, k_1 re-draw rotation: never q's, P(k' = j | k_q) ~ P(j), j != k_q
    assert np.all(k[v] != k[0])
    for kq in np.unique(k[0]):
      sel = k[0] == kq
      cond = np.bincount(k[v][sel], minlength=4) / sel.sum()
      w = want.copy()
      w[kq] = 0
      w /= w.sum()
      assert np.all(np.abs(cond - w) <= 4.5 * np.sqrt(w * (1 - w) / sel.sum()) + 1e-9), (
        kq,
        cond,
        w,
      )


def test_default_rotation_draw_is_uniform_over_four_exactly():
  """prob 0.75 reproduces the uniform draw of earlier versions bit for bit (same views)."""
  u = jnp.arange(2**16, dtype=jnp.float32) / 2**16  # uniforms are multiples of 2**-23
  np.testing.assert_array_equal(
    augment._sample_rotation(u, 0.75), jnp.minimum(jnp.floor(u * 4), 3).astype(jnp.int32)
  )
  for kq in range(4):
    k = jnp.full(u.shape, kq, jnp.int32)
    np.testing.assert_array_equal(
      augment._differ_rotation(u, k, 0.75),
      (k + 1 + jnp.minimum(jnp.floor(u * 3), 2).astype(jnp.int32)) % 4,
    )


def test_rotation_prob_is_validated():
  with pytest.raises(
    ValueError, match=r"config\.augment\.rotation\.prob must be a number in \[0, 1\]"
  ):
    _cfg(rotation__prob=1.5)
  with pytest.raises(ValueError, match=r"augment\.rotation\.prob must be > 0 when 'rotation'"):
    _cfg(spaces=("rotation",), rotation__prob=0.0)
  _cfg(spaces=("color",), rotation__prob=0.0)  # valid: rotation as a common augmentation


def test_a_config_saved_before_rotation_prob_draws_uniform_rotations():
  """Checkpoints written before augment.rotation.prob existed render their views as they did:
  the checkpoint's config is read with the value those runs used (uniform rotations)."""
  cfg = config_lib.default_config()
  cfg.augment.image_size = 16
  saved = json.loads(cfg.to_json())
  del saved["augment"]["rotation"]["prob"]
  old = checkpoints.read_config(saved)
  key = jax.random.key(3)
  new, legacy = (augment.sample_params(key, 64, c.augment)["rotation"]["k"] for c in (cfg, old))
  np.testing.assert_array_equal(new, legacy)
