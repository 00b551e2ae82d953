"""tensorflow-datasets and ImageNet-100 as data sources: prepared builders, hosts, class filters.

Offline only: a tiny builder is prepared into a temporary data_dir (no download), or
``tfds.testing.mock_data`` stands in for imagenet2012; nothing calls a real ``tfds.load``.
"""

import re
import time

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from leave_one_out import config as config_lib
from leave_one_out import data as data_lib
from leave_one_out.data import DataError
from leave_one_out.data import folder as folder_source
from leave_one_out.data import tfds as tfds_source
from leave_one_out.data.pipeline import classes
from leave_one_out.data.pipeline import host
from leave_one_out.data.pipeline import tfds_reader
from tests import helpers
from tests.test_data_folder import take

# Its module-scoped fixtures are built once: every test of the file runs in one xdist worker.
pytestmark = pytest.mark.xdist_group("test_data_tfds")


def test_imagenet100_list_is_the_cmc_list_and_matches_tfds_labels():
  wnids = classes.IMAGENET100_WNIDS
  assert len(wnids) == len(set(wnids)) == 100
  assert all(re.fullmatch(r"n\d{8}", w) for w in wnids)
  assert wnids[:3] == ("n02869837", "n01749939", "n02488291") and wnids[-1] == "n02090622"
  names = tfds.builder("imagenet2012", data_dir="/nonexistent").info.features["label"].names
  assert set(wnids) <= set(names)
  assert classes.class_list("imagenet100") == wnids


class LoocTestImages(tfds.core.GeneratorBasedBuilder):
  """A tiny image dataset prepared offline into a temporary data_dir (nothing downloaded)."""

  VERSION = tfds.core.Version("1.0.0")
  LABELS = ("n001", "n002", "n003", "n004")

  def _info(self):
    return tfds.core.DatasetInfo(
      builder=self,
      features=tfds.features.FeaturesDict(
        {
          "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
          "label": tfds.features.ClassLabel(names=self.LABELS),
        }
      ),
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples(48, 0), "test": self._generate_examples(12, 1)}

  def _generate_examples(self, n, seed):
    rng = np.random.default_rng(seed)
    for i in range(n):
      h, w = (24, 12) if i % 2 else (16, 32)
      yield i, {"image": rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "label": i % 4}


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  tfds.builder("looc_test_images", data_dir=data_dir).download_and_prepare()
  return data_dir


def tfds_config(data_dir, batch=8, **data):
  cfg = helpers.tiny_config()
  cfg.data.name = "looc_test_images"
  cfg.data.data_dir = data_dir
  cfg.data.image_size = 16
  cfg.data.shuffle_buffer = 16
  cfg.data.eval_split = "test"
  for k, v in data.items():
    cfg.data[k] = v
  cfg.train.batch_size = batch
  config_lib.validate(cfg)
  return cfg


def test_tfds_source_deterministic_resumable_and_reshuffled(tfds_dir):
  cfg = tfds_config(tfds_dir)
  source = data_lib.create_train_source(cfg)
  assert isinstance(source, tfds_source.TfdsSource) and source.steps_per_epoch == 6
  straight = take(source.iterate(0), 14)
  for b in straight:
    assert b["image"].shape == (8, 16, 16, 3) and b["image"].dtype == np.uint8
    assert set(np.round(b["aspect"], 4)) <= {0.5, 2.0}
  again = take(data_lib.create_train_source(cfg).iterate(0), 2)
  np.testing.assert_array_equal(again[1]["image"], straight[1]["image"])
  for start in (4, 7):  # mid-epoch 0 (continues into epoch 1), and mid-epoch 1
    resumed = take(data_lib.create_train_source(cfg).iterate(start), 3)
    for k, b in enumerate(resumed):
      np.testing.assert_array_equal(b["image"], straight[start + k]["image"])

  def epoch_set(e):
    return sorted(bytes(x.tobytes()) for s in range(6 * e, 6 * e + 6) for x in straight[s]["image"])

  assert epoch_set(0) == epoch_set(1)  # each epoch sees every example once ...
  assert not np.array_equal(straight[0]["image"], straight[6]["image"])  # ... in a new order


def test_tfds_hosts_read_disjoint_shards(tfds_dir):
  cfg = tfds_config(tfds_dir)
  data = tfds_reader.open_tfds(cfg.data.name, "train", data_dir=tfds_dir)
  kwargs = host.pipeline_kwargs(cfg)
  hosts = []
  for p in range(2):
    kwargs.update(process_index=p, process_count=2)
    hosts.append(tfds_source.TfdsSource(data, shuffle_buffer=16, **kwargs))
  assert [h.steps_per_epoch for h in hosts] == [6, 6] and hosts[0].local_batch == 4
  seen = [{x.tobytes() for b in take(h.iterate(0), 6) for x in b["image"]} for h in hosts]
  assert len(seen[0]) == len(seen[1]) == 24 and not seen[0] & seen[1]


def test_tfds_class_filter_count_and_eval(tfds_dir, tmp_path):
  classes = tmp_path / "classes.txt"
  classes.write_text("n004\nn002\n")
  cfg = tfds_config(tfds_dir, batch=4, classes=str(classes))
  source = data_lib.create_train_source(cfg)
  assert source.num_examples == 24 and source.steps_per_epoch == 6  # counted once
  assert next(source.iterate(0))["image"].shape == (4, 16, 16, 3)
  ev = data_lib.create_eval_source(cfg.data, image_size=8, batch_size=5)
  assert ev.class_names == ("n002", "n004") and ev.num_examples == 6
  data = ev.load()
  assert data["image"].shape == (6, 8, 8, 3)
  assert sorted(data["label"].tolist()) == [0, 0, 0, 1, 1, 1]
  unfiltered = data_lib.create_eval_source(
    tfds_config(tfds_dir).data, "test", image_size=8, num_examples=5
  )
  assert unfiltered.num_classes == 4 and len(unfiltered.load()["label"]) == 5


def test_export_image_folder_round_trip(tfds_dir, tmp_path):
  classes = ("n001", "n003")
  written = tfds_source.export_image_folder(
    "looc_test_images",
    "test",
    str(tmp_path / "out"),
    data_dir=tfds_dir,
    classes=classes,
    out_split="val",
  )
  assert written == 6
  listing = folder_source.list_image_folder(str(tmp_path / "out"), "val")
  assert listing.class_names == classes and len(listing.files) == 6
  cfg = tfds_config(tfds_dir, classes="")
  cfg.data.name, cfg.data.data_dir = "folder", str(tmp_path / "out")
  from_folder = data_lib.load_eval_arrays(cfg.data, "val", image_size=8)
  assert sorted(from_folder["label"].tolist()) == [0, 0, 0, 1, 1, 1]


def test_tfds_errors_are_clear_and_instant(tfds_dir, tmp_path):
  empty = str(tmp_path / "empty_data_dir")
  start = time.perf_counter()
  with pytest.raises(
    DataError,
    match=r"(?s)not prepared.*tfds build imagenet2012 "
    r"--data_dir=.*empty_data_dir --manual_dir=.*ILSVRC2012_img_train\.tar",
  ):
    tfds_reader.tfds_builder("imagenet2012", empty)
  cfg = helpers.tiny_config()
  cfg.data.name, cfg.data.data_dir = "imagenet100", empty
  with pytest.raises(DataError, match="tfds build imagenet2012"):
    data_lib.create_train_source(cfg)
  cfg.data.name = "oxford_flowers102"
  with pytest.raises(DataError, match="tfds build oxford_flowers102 --data_dir="):
    data_lib.create_train_source(cfg)
  assert time.perf_counter() - start < 20  # metadata only: never a download attempt
  with pytest.raises(DataError, match=r"has no split 'dev': its splits are \['test', 'train'\]"):
    tfds_reader.open_tfds("looc_test_images", "dev", data_dir=tfds_dir)
  bad = tmp_path / "bad.txt"
  bad.write_text("n001\nn0xx\n")
  with pytest.raises(DataError, match="class list mismatch.*n0xx"):
    data_lib.create_train_source(tfds_config(tfds_dir, classes=str(bad)))
  with pytest.raises(DataError, match="must hold at least one global batch"):
    data_lib.create_train_source(tfds_config(tfds_dir, batch=64))


# ------------------------------------------------------------------------------ mock_data


def test_imagenet100_view_with_mock_data(monkeypatch):
  """imagenet2012 through tfds.testing.mock_data: filter to the 100 classes, relabel sorted."""
  names = tfds.builder("imagenet2012", data_dir="/nonexistent").info.features["label"].names
  kept = sorted(classes.IMAGENET100_WNIDS)
  outside = [i for i, n in enumerate(names) if n not in kept][:3]
  labels = [names.index(kept[i * 7 % 100]) if i % 3 else outside[i % 3] for i in range(60)]
  rng = np.random.default_rng(0)
  images = [
    tf.io.encode_jpeg(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).numpy() for _ in labels
  ]
  images[4] = b"corrupt"  # label kept: exercises skipping inside a tfds source

  def as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False):
    del self, split, decoders, read_config, shuffle_files
    return tf.data.Dataset.from_tensor_slices(
      {"image": images, "label": np.asarray(labels, np.int64), "file_name": ["x"] * 60}
    )

  monkeypatch.setattr(tfds_reader, "_is_prepared", lambda builder: True)  # mock data has no files
  with tfds.testing.mock_data(num_examples=60, as_dataset_fn=as_dataset):
    cfg = helpers.tiny_config()
    cfg.data.name = "imagenet100"
    cfg.data.image_size = 12
    cfg.data.shuffle_buffer = 8
    cfg.data.num_examples = 40  # 40 of the 60 mock examples are ImageNet-100 classes
    cfg.train.batch_size = 8
    config_lib.validate(cfg)
    source = data_lib.create_train_source(cfg)
    batches = take(source.iterate(0), 6)
    assert all(b["image"].shape == (8, 12, 12, 3) for b in batches)
    np.testing.assert_allclose(batches[0]["aspect"], 1.5)
    assert source.num_corrupt == 1
    ev = data_lib.create_eval_source(cfg.data, "validation", image_size=8, batch_size=16)
    assert ev.num_examples == 5000 and ev.num_classes == 100  # the known validation size
    data = ev.load()
  expected = [i * 7 % 100 for i in range(60) if i % 3 and i != 4]
  assert data["label"].tolist() == expected and ev.num_corrupt == 1


# ------------------------------------------------------------------------------ config, device
