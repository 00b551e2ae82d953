"""extract_features on images as users hold them: a list of photos of different sizes, floats."""

import numpy as np
import pytest

from leave_one_out import extract
from leave_one_out import pretrained
from tests.helpers import tiny_config
from tests.helpers import write_checkpoint


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("extract") / "run")
  write_checkpoint(path, tiny_config())
  return pretrained.load_pretrained(path)


def _photos():
  rng = np.random.default_rng(0)
  shapes = [(40, 30), (24, 24), (40, 30), (17, 50)]  # two share a size
  return [rng.integers(0, 256, s + (3,), dtype=np.uint8) for s in shapes]


def test_a_list_of_images_of_any_sizes_is_resized_each_as_evaluation_does(loaded):
  model, variables, config = loaded
  size = config.augment.image_size
  photos = _photos()
  feats = extract.extract_features(model, variables, photos, image_size=size)
  assert feats.shape == (4, model.feature_dim)
  each = np.concatenate([extract.preprocess(p[None], size) for p in photos])  # [4, S, S, 3]
  np.testing.assert_allclose(
    feats, extract.extract_features(model, variables, each), rtol=1e-5, atol=1e-6
  )
  as_floats = extract.extract_features(
    model, variables, [p.astype(np.float32) / 255 for p in photos], image_size=size
  )
  np.testing.assert_allclose(as_floats, feats, rtol=1e-4, atol=1e-5)
  with pytest.raises(ValueError, match="images of different sizes need image_size"):
    extract.extract_features(model, variables, photos)
  with pytest.raises(ValueError, match=r"image 1 has shape \(24, 24\)"):
    extract.extract_features(model, variables, [photos[0], photos[1][..., 0]], image_size=size)


def test_floats_outside_0_1_are_an_error(loaded):
  model, variables, config = loaded
  images = np.stack([p[:17, :24] for p in _photos()]).astype(np.float32)  # [0, 255] as floats
  with pytest.raises(ValueError, match=r"float images must be in \[0, 1\], got values in \[0"):
    extract.extract_features(model, variables, images, image_size=config.augment.image_size)
  with pytest.raises(ValueError, match="float images must be in"):
    extract.extract_features(model, variables, list(images), image_size=16)
