"""Tests for the procedurally generated dataset (leave_one_out.data.synthetic.scenes)."""

import itertools

import numpy as np
import pytest

from leave_one_out.data.synthetic import scenes

LABELS = ("shape", "color", "texture")


def _factors(n, image_size=64, seed=0):
  return scenes.sample_factors(n, image_size, np.random.default_rng(seed))


def _replace(factors, index, **changes):
  """A copy of ``factors`` with the given entries of example ``index`` replaced."""
  out = {name: value.copy() for name, value in factors.items()}
  for name, value in changes.items():
    out[name][index] = value
  return out


def _mask(factors, index, image_size=64):
  """The object mask [S, S] of example ``index``."""
  one = slice(index, index + 1)
  return scenes.shape_masks(
    factors["shape"][one], factors["position"][one], factors["scale"][one], image_size
  )[0]


def _patterns(factors, image_size):
  return scenes.texture_patterns(
    factors["texture"],
    factors["texture_period"],
    factors["texture_phase"],
    factors["noise_key"],
    image_size,
  )


def _palette_rgb(color):
  return scenes.hsv_to_rgb(np.array([60.0 * color]), np.array([1.0]), np.array([0.9]))[0]


# ----------------------------------------------------------------------------- API and ranges


def test_label_sets():
  assert scenes.FACTORS == {
    "shape": scenes.SHAPES,
    "color": scenes.COLORS,
    "texture": scenes.TEXTURES,
  }
  for names in scenes.FACTORS.values():
    assert 4 <= len(names) <= 8
    assert len(set(names)) == len(names)
  for forbidden in ("circle", "square", "plus"):
    assert forbidden not in scenes.SHAPES


@pytest.mark.parametrize("image_size", [64, 33, 16])
def test_generate_shapes_dtypes_and_ranges(image_size):
  n = 40
  data = scenes.generate(n, image_size=image_size, seed=3)
  assert set(data) == {"image", *LABELS, "hue", "position", "scale", "light"}
  assert data["image"].shape == (n, image_size, image_size, 3)
  assert data["image"].dtype == np.uint8
  for name in LABELS:
    assert data[name].shape == (n,)
    assert data[name].dtype == np.int32
    assert data[name].min() >= 0 and data[name].max() < len(scenes.FACTORS[name])
  position, scale = data["position"], data["scale"]
  assert position.shape == (n, 2) and position.dtype == np.float32
  assert scale.shape == (n,) and scale.dtype == np.float32
  assert np.all((scale > 0.0) & (scale <= 1.0))
  light = data["light"]
  assert light.shape == (n,) and light.dtype == np.float32
  assert np.all((light >= scenes.MAX_LIGHT / 2) & (light <= scenes.MAX_LIGHT))
  # The object's bounding box lies inside the image.
  assert np.all(position - scale[:, None] / 2 >= 0.0)
  assert np.all(position + scale[:, None] / 2 <= 1.0)


def test_every_object_is_visible_and_inside():
  factors = _factors(200, image_size=32)
  masks = scenes.shape_masks(factors["shape"], factors["position"], factors["scale"], 32)
  area = masks.mean(axis=(1, 2))
  assert np.all(area > 0.05) and np.all(area < 0.7)
  # Background takes grey values only: every colour is in the object.
  images = scenes.render(factors, 32)
  background = images[~masks]
  assert np.all(background == background[:, :1])
  foreground = images[masks].astype(int)
  top, bottom = foreground.max(axis=1), foreground.min(axis=1)
  assert np.all(top > 40) and np.all((top - bottom) / top > 0.6)  # lit, and saturated


# ----------------------------------------------------------------------------- determinism


def test_same_seed_is_bit_identical():
  a = scenes.generate(30, image_size=32, seed=7)
  b = scenes.generate(30, image_size=32, seed=7)
  for name in a:
    assert a[name].dtype == b[name].dtype
    np.testing.assert_array_equal(a[name], b[name])


def test_different_seed_differs():
  a = scenes.generate(30, image_size=32, seed=7)
  b = scenes.generate(30, image_size=32, seed=8)
  assert not np.array_equal(a["image"], b["image"])
  assert not np.array_equal(a["position"], b["position"])


def test_rendering_does_not_depend_on_batch_composition():
  factors = _factors(600, image_size=24)  # more than one rendering chunk
  full = scenes.render(factors, 24)
  tail = scenes.render({name: value[500:] for name, value in factors.items()}, 24)
  np.testing.assert_array_equal(full[500:], tail)


# ----------------------------------------------------------------------------- labels and splits


def test_labels_cover_every_class_roughly_uniformly():
  n = 3000
  data = scenes.generate(n, image_size=16, seed=1)
  for name in LABELS:
    counts = np.bincount(data[name], minlength=len(scenes.FACTORS[name]))
    expected = n / len(counts)
    assert np.all(np.abs(counts - expected) < 0.25 * expected), (name, counts)


def test_splits():
  assert set(scenes.SPLITS) == {"train", "test"}
  test = scenes.load("test", image_size=16)
  assert len(test["image"]) == scenes.SPLITS["test"]
  train = scenes.load("train", num_examples=64, image_size=32, seed=5)
  test = scenes.load("test", num_examples=64, image_size=32, seed=5)
  assert train["image"].shape == test["image"].shape == (64, 32, 32, 3)
  assert not np.array_equal(train["image"], test["image"])
  flat_train = {image.tobytes() for image in train["image"]}
  assert not any(image.tobytes() in flat_train for image in test["image"])
  again = scenes.load("train", num_examples=64, image_size=32, seed=5)
  np.testing.assert_array_equal(train["image"], again["image"])
  other_seed = scenes.load("train", num_examples=64, image_size=32, seed=6)
  assert not np.array_equal(train["image"], other_seed["image"])


# ----------------------------------------------------------------------------- each factor matters


def test_colour_changes_only_object_pixels():
  factors = _factors(8)
  i = 0
  new_color = (factors["color"][i] + 3) % len(scenes.COLORS)
  changed = _replace(factors, i, color=new_color, object_rgb=_palette_rgb(new_color))
  before, after = scenes.render(factors, 64)[i], scenes.render(changed, 64)[i]
  differs = np.any(before != after, axis=-1)
  np.testing.assert_array_equal(differs, _mask(factors, i))


def test_texture_changes_only_background_pixels():
  factors = _replace(_factors(8), 0, texture=0)  # plain
  changed = _replace(factors, 0, texture=scenes.TEXTURES.index("checkerboard"))
  before, after = scenes.render(factors, 64)[0], scenes.render(changed, 64)[0]
  mask = _mask(factors, 0)
  differs = np.any(before != after, axis=-1)
  assert not np.any(differs & mask)
  assert differs[~mask].mean() > 0.3


@pytest.mark.parametrize(
  "changes",
  [
    {"shape": 1},
    {"position": np.array([0.62, 0.4], np.float32)},
    {"scale": np.float32(0.5)},
  ],
  ids=["shape", "position", "scale"],
)
def test_shape_position_and_scale_change_the_object(changes):
  centre = np.array([0.5, 0.5], np.float32)
  factors = _replace(_factors(4), 0, shape=0, position=centre, scale=np.float32(0.7))
  changed = _replace(factors, 0, **changes)
  assert np.mean(_mask(factors, 0) != _mask(changed, 0)) > 0.02
  assert not np.array_equal(scenes.render(factors, 64)[0], scenes.render(changed, 64)[0])


# ----------------------------------------------------------------------------- rotation


def _upright_masks(image_size=64):
  n = len(scenes.SHAPES)
  return scenes.shape_masks(
    np.arange(n), np.full((n, 2), 0.5, np.float32), np.full(n, 0.9, np.float32), image_size
  )


def test_shapes_show_their_orientation():
  masks = _upright_masks()
  for label, mask in zip(scenes.SHAPES, masks):
    for k in (1, 2, 3):
      rotated = np.rot90(mask, k)
      assert np.sum(rotated != mask) > 0.1 * mask.sum(), (label, k)


def test_shapes_are_mirror_symmetric():
  # A horizontal flip (a common augmentation) must not change an upright object.
  for label, mask in zip(scenes.SHAPES, _upright_masks()):
    np.testing.assert_array_equal(mask, mask[:, ::-1], err_msg=label)


def test_no_rotated_shape_looks_like_another_upright_shape():
  masks = _upright_masks()
  for (a, mask_a), (b, mask_b) in itertools.product(enumerate(masks), repeat=2):
    for k in range(4):
      if a == b and k == 0:
        continue
      rotated = np.rot90(mask_a, k)
      iou = np.sum(rotated & mask_b) / np.sum(rotated | mask_b)
      assert iou < 0.85, (scenes.SHAPES[a], k, scenes.SHAPES[b], iou)


@pytest.mark.parametrize("texture", [t for t in scenes.TEXTURES if t != "noise"])
def test_rotated_texture_is_the_same_texture_with_another_phase(texture):
  size, period = 32, 8  # the period divides the size, so the rotated image is periodic too
  label = scenes.TEXTURES.index(texture)
  phases = np.array(list(itertools.product(range(period), repeat=2)), np.float32)
  n = len(phases)
  patterns = scenes.texture_patterns(
    np.full(n, label), np.full(n, period, np.float32), phases, np.zeros(n, np.uint32), size
  )
  for start in (0, 13):
    rotated = np.rot90(patterns[start])
    assert np.any(np.all(patterns == rotated, axis=(1, 2))), texture


@pytest.mark.parametrize("texture", scenes.TEXTURES)
def test_textures_are_isotropic(texture):
  # A 90 degree rotation swaps horizontal and vertical statistics; for every texture class
  # they agree, so the class statistic is unchanged by a rotation.
  n, size = 100, 64
  label = scenes.TEXTURES.index(texture)
  patterns = _patterns(_replace(_factors(n, image_size=size), slice(None), texture=label), size)
  dx = np.abs(np.diff(patterns, axis=2)).mean()
  dy = np.abs(np.diff(patterns, axis=1)).mean()
  if texture == "plain":
    assert dx == dy == 0.0
  else:
    assert dx > 0.05
    assert abs(dx - dy) < 0.05 * dx, (dx, dy)


# ----------------------------------------------------------------------------- light


def _row_brightness(images):
  """Mean grey level of each image row, [N, S]."""
  return images.astype(np.float32).mean(axis=(2, 3))


def test_the_light_comes_from_above_and_moves_with_a_rotation():
  data = scenes.generate(64, image_size=32, seed=4)
  rows = _row_brightness(data["image"])
  assert np.all(rows[:, :8].mean(1) > rows[:, -8:].mean(1) + 10)  # every image, by a margin
  # A quarter turn (counter-clockwise) puts the light on the left: columns, not rows, fall off.
  turned = np.rot90(data["image"], 1, axes=(1, 2))
  cols = turned.astype(np.float32).mean(axis=(1, 3))
  assert np.all(cols[:, :8].mean(1) > cols[:, -8:].mean(1) + 10)
  rows_turned = _row_brightness(turned)  # objects differ top to bottom, not on average
  assert abs(np.mean(rows_turned[:, :8] - rows_turned[:, -8:])) < 5


def test_no_light_is_the_evenly_lit_dataset_with_the_same_factors():
  lit = scenes.generate(40, image_size=32, seed=9)
  even = scenes.generate(40, image_size=32, seed=9, max_light=0.0)
  for name in (*LABELS, "position", "scale"):
    np.testing.assert_array_equal(lit[name], even[name])
  assert np.all(even["light"] == 0.0)
  rows = _row_brightness(even["image"])
  assert abs(np.mean(rows[:, :8] - rows[:, -8:])) < 5
  factors = _factors(8, image_size=32)
  unlit = {name: value for name, value in factors.items() if name != "light"}
  no_light = {**factors, "light": 0 * factors["light"]}
  np.testing.assert_array_equal(scenes.render(unlit, 32), scenes.render(no_light, 32))


def test_the_light_changes_brightness_not_hue():
  factors = _factors(16, image_size=32)
  masks = scenes.shape_masks(factors["shape"], factors["position"], factors["scale"], 32)
  lit = scenes.render(factors, 32).astype(np.float32)
  even = scenes.render({**factors, "light": 0 * factors["light"]}, 32).astype(np.float32)
  assert np.all(lit[~masks] == lit[~masks][:, :1])  # the background stays grey
  # Object pixels keep their hue: the lit colour is a multiple of the evenly lit one.
  a, b = lit[masks], even[masks]
  ratio = a.sum(1, keepdims=True) / b.sum(1, keepdims=True)
  assert np.abs(a - ratio * b).max() <= 3.0  # uint8 rounding


# ----------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
  "call, argument",
  [
    (lambda: scenes.generate(0), "num_examples"),
    (lambda: scenes.generate(-3), "num_examples"),
    (lambda: scenes.generate(2.5), "num_examples"),
    (lambda: scenes.generate(4, image_size=15), "image_size"),
    (lambda: scenes.generate(4, image_size=32.0), "image_size"),
    (lambda: scenes.generate(4, seed=-1), "seed"),
    (lambda: scenes.load("train", num_examples=0), "num_examples"),
    (lambda: scenes.load("test", image_size=8), "image_size"),
    (lambda: scenes.load("train", num_examples=4, seed=-2), "seed"),
    (lambda: scenes.generate(4, max_light=1.0), "max_light"),
    (lambda: scenes.generate(4, max_light=-0.1), "max_light"),
    (lambda: scenes.load("train", num_examples=4, max_light="strong"), "max_light"),
    (lambda: scenes.generate(4, hue_jitter=31.0), "hue_jitter"),
    (lambda: scenes.load("test", num_examples=4, hue_jitter=-1), "hue_jitter"),
    (lambda: scenes.hue_bins(np.zeros(3), num_bins=1), "num_bins"),
  ],
)
def test_bad_arguments_raise_value_error_naming_the_argument(call, argument):
  with pytest.raises(ValueError, match=argument):
    call()


def test_unknown_split_names_the_split_and_the_allowed_ones():
  with pytest.raises(ValueError) as info:
    scenes.load("validation")
  message = str(info.value)
  for word in ("validation", "train", "test"):
    assert word in message


def test_hue_is_the_object_hue_and_the_default_jitter_keeps_the_palette():
  data = scenes.generate(400, image_size=32, seed=4)
  offset = np.mod(data["hue"] - 60.0 * data["color"] + 180.0, 360.0) - 180.0
  assert np.all(np.abs(offset) <= scenes.HUE_JITTER + 1e-4)
  # The rendered object colour has that hue (the object's centre pixel is an object pixel for
  # every shape at these scales).
  factors = _factors(400, image_size=32, seed=4)
  r, g, b = factors["object_rgb"].T
  hue = np.degrees(np.arctan2(np.sqrt(3.0) * (g - b), 2.0 * r - g - b)) % 360.0
  diff = np.mod(hue - factors["hue"] + 180.0, 360.0) - 180.0
  assert np.abs(diff).max() < 6.0  # the arctan hue approximates HSV hue within a few degrees


def test_hue_jitter_spreads_hues_and_changes_nothing_else():
  a = scenes.generate(3000, image_size=16, seed=9)
  b = scenes.generate(3000, image_size=16, seed=9, hue_jitter=scenes.MAX_HUE_JITTER)
  for name in ("shape", "color", "texture", "position", "scale", "light"):
    np.testing.assert_array_equal(a[name], b[name])
  # Uniform over the circle: every one of 24 fine bins holds about 1/24 of the images, and each
  # colour class is exactly its 4 bins.
  fine = scenes.hue_bins(b["hue"], 24)
  counts = np.bincount(fine, minlength=24)
  assert counts.min() > 0.7 * 3000 / 24 and counts.max() < 1.3 * 3000 / 24
  np.testing.assert_array_equal(fine // 4, b["color"])
  # With the default jitter (10 degrees) only the 2 middle bins of each class occur.
  assert set(np.unique(scenes.hue_bins(a["hue"], 24))) == {
    4 * c + i for c in range(6) for i in (1, 2)
  }


def test_hue_bins_nest_in_the_colour_classes():
  hue = np.array([0.0, 14.9, 15.1, 352.6, 330.0, 329.9, 60.0, 89.9])
  np.testing.assert_array_equal(scenes.hue_bins(hue, 24), [2, 2, 3, 1, 0, 23, 6, 7])
  np.testing.assert_array_equal(scenes.hue_bins(hue, 6), [0, 0, 0, 0, 0, 5, 1, 1])
