"""scikit-learn's handwritten digits on a canvas (leave_one_out/data/digits.py): the split by
source image, determinism, labels, ranges, the registered source and its config checks."""

import colorsys
import sys

import numpy as np
import pytest

from leave_one_out import data
from leave_one_out.data import DataError
from leave_one_out.data import digits

pytest.importorskip("sklearn", reason="the digits source needs scikit-learn")

SIZE = 24


def _section(**fields):
  d = data.default_config()
  d.name, d.image_size, d.eval_split = "digits", 32, "test"
  for k, v in fields.items():
    d[k] = v
  return d


def test_train_and_test_never_share_a_source_image():
  train, test = digits.split_images("train"), digits.split_images("test")
  assert (len(train), len(test)) == (1347, 450)
  assert not set(train) & set(test)
  assert sorted(np.concatenate([train, test])) == list(range(digits.NUM_IMAGES))
  # The split is the registered one whatever the run's seed; renderings stay on their side.
  for seed in (0, 7):
    rendered_train = digits.load("train", num_examples=600, image_size=SIZE, seed=seed)
    rendered_test = digits.load("test", num_examples=600, image_size=SIZE, seed=seed)
    assert set(rendered_train["source"]) <= set(train)
    assert set(rendered_test["source"]) <= set(test)
    assert set(rendered_test["digit"]) == set(range(10))


def test_renderings_are_deterministic_and_differ_between_seeds_and_splits():
  a = digits.generate(64, "train", image_size=SIZE, seed=3)
  b = digits.generate(64, "train", image_size=SIZE, seed=3)
  for key in a:
    np.testing.assert_array_equal(a[key], b[key])
  assert not np.array_equal(
    a["image"], digits.generate(64, "train", image_size=SIZE, seed=4)["image"]
  )
  # load: train draws with 2 * seed, test with 2 * seed + 1 (disjoint streams).
  np.testing.assert_array_equal(
    digits.load("test", num_examples=64, image_size=SIZE, seed=1)["image"],
    digits.generate(64, "test", image_size=SIZE, seed=3)["image"],
  )


def test_labels_and_geometry_follow_the_registered_ranges():
  x = digits.generate(500, "train", image_size=32, seed=0)
  _, target = digits.source_images()
  np.testing.assert_array_equal(x["digit"], target[x["source"]])
  assert set(x["hue"]) == set(range(12))
  np.testing.assert_array_equal(x["digit_hue"], 12 * x["digit"] + x["hue"])
  assert x["digit_hue"].min() >= 0 and x["digit_hue"].max() < 120
  assert 0.45 <= x["scale"].min() and x["scale"].max() <= 0.8
  half = x["scale"][:, None] / 2
  assert (x["position"] - half >= 0).all() and (x["position"] + half <= 1).all()
  assert x["image"].shape == (500, 32, 32, 3) and x["image"].dtype == np.uint8


def test_pixels_are_ink_of_the_hue_over_a_dark_grey_background():
  x = digits.generate(200, "train", image_size=32, seed=1)
  img = x["image"].astype(np.float32) / 255
  # Far from the digit (outside its box) a pixel is grey at 0.15 with noise of sd 0.03.
  yy, xx = np.mgrid[:32, :32] + 0.5
  cx, cy = (x["position"] * 32).T
  half = x["scale"] * 16
  outside = (np.abs(xx[None] - cx[:, None, None]) > half[:, None, None] + 2) | (
    np.abs(yy[None] - cy[:, None, None]) > half[:, None, None] + 2
  )
  background = img[outside]
  assert np.ptp(background, axis=-1).max() < 1e-6  # grey: the three channels equal
  assert abs(background.mean() - 0.15) < 0.005 and abs(background[:, 0].std() - 0.03) < 0.005
  # The brightest pixel of each image is ink blended with grey: the hue's angle, h x 30 degrees.
  flat = img.reshape(200, -1, 3)
  brightest = flat[np.arange(200), flat.sum(-1).argmax(1)]
  hue = np.array([colorsys.rgb_to_hsv(*p)[0] for p in brightest]) * 360
  error = (hue - 30 * x["hue"] + 180) % 360 - 180
  assert np.abs(error).max() < 3


def test_upsampling_at_the_source_resolution_is_the_identity():
  m = digits._upsample_matrices(np.array([0.0, 8.0]), np.array([8.0, 8.0]), 16)
  np.testing.assert_allclose(m[0, :8], np.eye(8), atol=1e-6)
  assert np.abs(m[0, 8:]).max() == 0 and np.abs(m[1, :8]).max() == 0  # zero outside the digit
  np.testing.assert_allclose(m[1, 8:], np.eye(8), atol=1e-6)


def test_registered_source_gives_every_label_and_its_training_labels():
  from leave_one_out import config as config_lib

  d = _section()
  data.validate(d)
  assert "digits" in data.describe(d)
  whole = data.load_eval_arrays(d, image_size=32, num_examples=40, seed=2)
  assert whole["num_classes"] == 10 and whole["image"].shape == (40, 32, 32, 3)
  np.testing.assert_array_equal(whole["label"], whole["digit"])
  expected = digits.load("test", num_examples=40, image_size=32, seed=2)
  for key in ("image", "digit", "hue", "digit_hue"):
    np.testing.assert_array_equal(whole[key], expected[key])
  halves = [
    data.load_eval_arrays(
      d, image_size=32, num_examples=40, seed=2, process_index=i, process_count=2
    )
    for i in range(2)
  ]
  np.testing.assert_array_equal(np.concatenate([h["image"] for h in halves]), whole["image"])
  cfg = config_lib.default_config()
  cfg.data = d
  cfg.data.num_train, cfg.train.batch_size, cfg.seed = 64, 16, 5
  source = data.create_train_source(cfg)
  rendered = digits.load("train", num_examples=64, image_size=32, seed=5)
  np.testing.assert_array_equal(source.images, rendered["image"])
  idx = source.indices(3)
  np.testing.assert_array_equal(source.labels["digit"][idx], rendered["digit"][idx])


@pytest.mark.parametrize(
  "fields, message",
  [
    ({"eval_split": "val"}, "config.data.eval_split must be one of"),
    ({"image_size": 8}, "config.data.image_size must be >= 16 for the digits dataset"),
    ({"classes": "imagenet100"}, "config.data.classes must be ''"),
  ],
)
def test_bad_fields_are_named(fields, message):
  with pytest.raises(ValueError, match=message):
    data.validate(_section(**fields))


def test_without_scikit_learn_validation_says_how_to_install_it(monkeypatch):
  monkeypatch.setitem(sys.modules, "sklearn", None)
  with pytest.raises(DataError, match=r"needs scikit-learn.*pip install scikit-learn"):
    data.validate(_section())
  digits.source_images.cache_clear()
  try:
    with pytest.raises(ImportError, match="pip install scikit-learn"):
      digits.source_images()
  finally:
    digits.source_images.cache_clear()
