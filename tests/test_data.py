"""The data registry, decoding, the embedded source and the data section's validation."""

import re

import numpy as np
import pytest
import tensorflow as tf

from leave_one_out import config as config_lib
from leave_one_out import data as data_lib
from leave_one_out.data import synthetic as synthetic_source
from leave_one_out.data.pipeline import decode
from leave_one_out.data.pipeline import eval_split
from leave_one_out.data.pipeline import memory
from leave_one_out.run import loop
from tests import helpers


def test_decode_semantics():
  # 20 x 40 (h x w): left half red, right half blue.
  img = np.zeros((20, 40, 3), np.uint8)
  img[:, :20, 0] = 255
  img[:, 20:, 2] = 255
  encoded = tf.io.encode_png(img)
  resized, aspect = decode.decode_resize(encoded, 16)
  assert resized.shape == (16, 16, 3) and float(aspect) == 2.0
  assert resized.numpy()[8, 2, 0] == 255 and resized.numpy()[8, 13, 2] == 255
  crop = decode.decode_center_crop(encoded, 10, crop_fraction=1.0).numpy()
  assert crop.shape == (10, 10, 3)  # shorter side 20 -> 10, width 40 -> 20, centre 10 columns
  assert crop[5, 2, 0] == 255 and crop[5, 7, 2] == 255
  assert decode.decode_center_crop(encoded, 8).shape == (8, 8, 3)  # 0.875: shorter side 9
  # A JPEG >= 2x the target on both sides is decoded at reduced scale in the DCT domain: the
  # aspect is still the original's, and the result is close to a full decode + resize.
  big = np.zeros((96, 192, 3), np.uint8)
  big[:, :, 0] = np.linspace(0, 255, 192, dtype=np.uint8)[None]
  big[:48, :, 1] = 200
  jpeg = tf.io.encode_jpeg(big, quality=95)
  fast, aspect = decode.decode_resize(jpeg, 16)  # 96 // 16 = 6: decoded at 1/4 scale
  assert float(aspect) == 2.0
  full = tf.image.resize(tf.io.decode_jpeg(jpeg), [16, 16], antialias=True).numpy()
  assert np.abs(fast.numpy().astype(np.float32) - full).mean() < 4
  slow, _ = decode.decode_resize(jpeg, 16, antialias="always")
  assert np.abs(slow.numpy().astype(np.float32) - full).mean() < 4


def test_synthetic_source_uses_the_configured_light():
  cfg = helpers.tiny_config()
  cfg.data.image_size, cfg.data.num_train, cfg.train.batch_size = 16, 64, 64
  images = {}
  for light in (0.0, 0.5):
    cfg.data.synthetic_light = light
    images[light] = next(data_lib.create_train_source(cfg).iterate(0))["image"].astype(np.float32)
  rows = {k: v.mean(axis=(0, 2, 3)) for k, v in images.items()}  # [S] per light
  assert rows[0.5][:4].mean() > rows[0.5][-4:].mean() + 10
  assert abs(rows[0.0][:4].mean() - rows[0.0][-4:].mean()) < 10
  # A config saved before the field existed described the evenly lit dataset.
  del cfg.data["synthetic_light"]
  assert synthetic_source.light(cfg.data) == 0.0


@pytest.mark.parametrize(
  "field,value,message",
  [
    ("name", "caltech_bird2011", "did you mean 'caltech_birds2011'"),
    ("name", "Not A Name", "config.data.name must be one of"),
    ("name", "folder", "config.data.data_dir must name the image folder root"),
    ("classes", "n01440764.txt", "config.data.classes must be '' for data.name='imagenet100'"),
    ("eval_crop_fraction", 0.0, "config.data.eval_crop_fraction must be a number in (0, 1]"),
    ("shuffle_buffer", 0, "config.data.shuffle_buffer must be an integer >= 1"),
    ("resize_method", "nearest", "config.data.resize_method must be one of"),
    ("num_examples", 10, "config.data.num_examples (10) must hold at least one global batch"),
    ("synthetic_light", 1.0, "config.data.synthetic_light must be a number in [0, 1), got 1.0"),
    ("synthetic_light", -0.2, "config.data.synthetic_light must be a number in [0, 1)"),
  ],
)
def test_data_config_validation(field, value, message):
  cfg = helpers.tiny_config()
  if field == "classes":
    cfg.data.name = "imagenet100"
  cfg.data[field] = value
  with pytest.raises(ValueError, match=re.escape(message)):
    config_lib.validate(cfg)


class ToyStripes:
  """A data source defined in this test alone: horizontal or vertical stripes, two classes."""

  def __init__(self):
    self.validated = []

  @staticmethod
  def _images(n, size):
    stripes = (np.arange(size) // 2 % 2 * 255).astype(np.uint8)
    horizontal = np.broadcast_to(stripes[:, None, None], (size, size, 3))
    labels = np.arange(n) % 2
    images = np.stack([horizontal if y else horizontal.transpose(1, 0, 2) for y in labels])
    return images, labels.astype(np.int32)

  def validate(self, d):
    self.validated.append(d.name)
    if d.image_size % 2:
      raise ValueError("config.data.image_size must be even for the toy stripes")

  def check_ready(self, d, splits):
    del d, splits

  def describe(self, d):
    return f"toy stripes at {d.image_size} px"

  def train_source(self, cfg):
    images, _ = self._images(cfg.data.num_train, cfg.data.image_size)
    return memory.InMemorySource(images, cfg.train.batch_size, cfg.seed)

  def eval_source(self, d, split, *, image_size, batch_size, num_examples, **unused):
    del split, unused
    images, labels = self._images(num_examples or 8, image_size)
    return eval_split.ArrayEvalSource(
      {"image": images, "label": labels},
      num_classes=2,
      class_names=("vertical", "horizontal"),
      batch_size=batch_size,
      description=self.describe(d),
    )


def test_a_registered_source_is_validated_trained_on_and_evaluated(tmp_path, monkeypatch):
  monkeypatch.setattr(data_lib, "SOURCES", dict(data_lib.SOURCES))  # undone after the test
  toy = ToyStripes()
  data_lib.register("toy_stripes", toy)
  cfg = helpers.tiny_config(steps=2)
  cfg.data.name = "toy_stripes"
  cfg.data.image_size = 21
  with pytest.raises(ValueError, match="image_size must be even"):
    config_lib.validate(cfg)
  cfg.data.image_size = 20
  summary = loop.pretrain(cfg, str(tmp_path))
  assert summary["step"] == 2 and np.isfinite(summary["loss"]) and "toy_stripes" in toy.validated
  arrays = data_lib.load_eval_arrays(cfg.data, image_size=16, num_examples=6)
  assert arrays["image"].shape == (6, 16, 16, 3) and arrays["num_classes"] == 2
  assert data_lib.describe(cfg.data) == "toy stripes at 20 px (train / validation)"
