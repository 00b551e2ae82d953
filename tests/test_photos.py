"""The natural-image source (leave_one_out/data/photos.py): patches of scikit-image's photographs."""

import sys

import numpy as np
import pytest

from leave_one_out.data import photos

# Its module-scoped fixtures are built once: every test of the file runs in one xdist worker.
pytestmark = pytest.mark.xdist_group("test_photos")

pytest.importorskip("skimage", reason="the photos source needs scikit-image")

SIZE = 16


@pytest.fixture(scope="module")
def images():
  return photos.photographs(SIZE)


def test_every_photograph_ships_offline_at_the_working_resolution(images):
  assert len(images) == len(photos.PHOTOS) == len(set(photos.PHOTOS))
  short = int(np.ceil(SIZE / photos.SCALE[0]))
  for name, x in zip(photos.PHOTOS, images):
    assert x.dtype == np.float32 and x.ndim == 3 and x.shape[2] == 3, name
    assert min(x.shape[:2]) == short, (name, x.shape)
    assert 0.0 <= x.min() and x.max() <= 1.0
    grey = np.abs(x[..., 0] - x[..., 1]).max() == 0 and np.abs(x[..., 1] - x[..., 2]).max() == 0
    assert grey == (name in photos.GRAY_PHOTOS), name


def test_load_shapes_dtypes_and_ranges():
  d = photos.load("test", num_examples=64, image_size=SIZE, seed=2)
  assert d["image"].shape == (64, SIZE, SIZE, 3) and d["image"].dtype == np.uint8
  assert d["photo"].dtype == np.int32 and d["photo"].shape == (64,)
  assert d["photo"].min() >= 0 and d["photo"].max() < len(photos.PHOTOS)
  assert d["scale"].dtype == np.float32
  assert np.all((d["scale"] >= photos.SCALE[0]) & (d["scale"] <= photos.SCALE[1]))
  assert d["position"].shape == (64, 2) and np.all((d["position"] > 0) & (d["position"] < 1))
  assert d["image"].std() > 10  # real content, not a constant


def test_same_seed_is_identical_and_splits_use_different_streams():
  a = photos.load("train", num_examples=32, image_size=SIZE, seed=1)
  b = photos.load("train", num_examples=32, image_size=SIZE, seed=1)
  for key in a:
    np.testing.assert_array_equal(a[key], b[key])
  test = photos.load("test", num_examples=32, image_size=SIZE, seed=1)
  other = photos.load("train", num_examples=32, image_size=SIZE, seed=2)
  assert not np.array_equal(a["position"], test["position"])
  assert not np.array_equal(a["position"], other["position"])


def test_labels_cover_every_photograph_roughly_uniformly(images):
  p = photos.sample_patches(8000, np.random.default_rng(0), [x.shape[:2] for x in images])
  counts = np.bincount(p["photo"], minlength=len(photos.PHOTOS))
  expected = 8000 / len(photos.PHOTOS)
  assert counts.min() > 0.8 * expected and counts.max() < 1.2 * expected


def _box_reference(x, side, cx, cy, size, k=8):
  """The square [cx +- side / 2] x [cy +- side / 2] of x, box-averaged onto size x size pixels
  from k x k nearest-pixel samples per output pixel (a slow, obviously correct resampler)."""
  h, w = x.shape[:2]
  g = (np.arange(size * k) + 0.5) / (size * k) * side
  ys = np.clip(np.floor(cy - side / 2 + g).astype(int), 0, h - 1)
  xs = np.clip(np.floor(cx - side / 2 + g).astype(int), 0, w - 1)
  return x[ys][:, xs].reshape(size, k, size, k, 3).mean(axis=(1, 3))


def test_a_patch_shows_its_region_of_the_photograph(images):
  p = photos.sample_patches(40, np.random.default_rng(0), [x.shape[:2] for x in images])
  out = photos.render(p, images, SIZE).astype(np.float64) / 255
  closer_than_mirrored = 0
  for i in range(40):
    x = images[p["photo"][i]]
    h, w = x.shape[:2]
    side = p["scale"][i] * min(h, w)
    cx, cy = p["position"][i, 0] * w, p["position"][i, 1] * h
    assert side / 2 - 1e-3 <= cx <= w - side / 2 + 1e-3  # inside the photograph
    assert side / 2 - 1e-3 <= cy <= h - side / 2 + 1e-3
    ref = _box_reference(x, side, cx, cy, SIZE)
    error = np.abs(out[i] - ref).mean()
    assert error < 0.02, (i, photos.PHOTOS[p["photo"][i]], error)
    closer_than_mirrored += error < np.abs(out[i] - ref[::-1]).mean()
  assert closer_than_mirrored >= 35  # upright, not flipped (a few patches are symmetric)


@pytest.mark.parametrize(
  "call, argument",
  [
    (lambda: photos.generate(0), "num_examples"),
    (lambda: photos.generate(4, image_size=8), "image_size"),
    (lambda: photos.generate(4, seed=-1), "seed"),
    (lambda: photos.generate(2.5), "num_examples"),
  ],
)
def test_bad_arguments_raise_value_error_naming_the_argument(call, argument):
  with pytest.raises(ValueError, match=argument):
    call()


def test_unknown_split_names_the_allowed_ones():
  with pytest.raises(ValueError, match=r"'val'.*\['test', 'train'\]"):
    photos.load("val")


def test_missing_scikit_image_says_how_to_install_it(monkeypatch):
  monkeypatch.setitem(sys.modules, "skimage", None)
  monkeypatch.setitem(sys.modules, "skimage.data", None)
  with pytest.raises(ImportError, match="pip install scikit-image"):
    photos.photographs(SIZE)


def _photos_data_section(**fields):
  from leave_one_out import data as data_config

  d = data_config.default_config()
  d.name, d.image_size, d.eval_split = "photos", 32, "test"
  for k, v in fields.items():
    d[k] = v
  return d


def test_registered_source_gives_labelled_splits_split_over_hosts():
  """``config.data.name = "photos"``: validated by name, evaluation labels are the photograph,
  every host gets its contiguous share of the same fixed split."""
  from leave_one_out import data
  from leave_one_out import data as data_config

  d = _photos_data_section()
  data_config.validate(d)
  assert "scikit-image" in data.describe(d)
  whole = data.load_eval_arrays(d, image_size=32, num_examples=40)
  assert whole["image"].shape == (40, 32, 32, 3) and whole["num_classes"] == len(photos.PHOTOS)
  np.testing.assert_array_equal(whole["label"], whole["photo"])
  expected = photos.load("test", num_examples=40, image_size=32, seed=0)
  np.testing.assert_array_equal(whole["image"], expected["image"])
  halves = [
    data.load_eval_arrays(d, image_size=32, num_examples=40, process_index=i, process_count=2)
    for i in range(2)
  ]
  np.testing.assert_array_equal(np.concatenate([h["image"] for h in halves]), whole["image"])
  with pytest.raises(ValueError, match="config.data.eval_split must be one of"):
    data_config.validate(_photos_data_section(eval_split="val"))
  with pytest.raises(ValueError, match="config.data.image_size must be >= 16"):
    data_config.validate(_photos_data_section(image_size=8))


def test_missing_scikit_image_is_a_data_error_naming_the_extra(monkeypatch):
  import importlib.util

  from leave_one_out import data
  from leave_one_out.data import DataError

  real = importlib.util.find_spec
  monkeypatch.setattr(
    importlib.util, "find_spec", lambda name, *a: None if name == "skimage" else real(name, *a)
  )
  with pytest.raises(DataError, match=r"pip install -e '\.\[photos\]'"):
    data.check_ready(_photos_data_section())
