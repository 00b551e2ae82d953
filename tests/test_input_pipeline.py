"""The host input pipeline: image folders, tfds datasets, ImageNet-100, errors, determinism.

Offline only: image folders are generated here (numpy + tf.io.encode_*), tfds data is either a
tiny builder prepared into a temporary data_dir (no download) or ``tfds.testing.mock_data``;
nothing calls a real ``tfds.load`` of a public dataset.
"""

import os
import re
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from jax.sharding import NamedSharding, PartitionSpec as P

from leave_one_out import config as config_lib
from leave_one_out import imagenet100
from leave_one_out import input_pipeline as ip

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ("cat", "dog", "eel")
# (height, width) per class: each class has its own aspect ratio, so "aspect" is checkable.
SHAPES = {"cat": (20, 40), "dog": (30, 30), "eel": (36, 18)}


def _write_image(path, height, width, seed):
  img = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
  data = tf.io.encode_png(img) if path.endswith(".png") else tf.io.encode_jpeg(img, quality=90)
  tf.io.write_file(path, data)


def make_folder(root, per_class=(10, 4), corrupt=()):
  """root/{train,val}/{cat,dog,eel}/*.jpg|png; ``corrupt``: extra undecodable train files."""
  for split, n in zip(("train", "val"), per_class):
    for c, cls in enumerate(CLASSES):
      os.makedirs(os.path.join(root, split, cls), exist_ok=True)
      for i in range(n):
        ext = ".png" if i % 3 == 0 else (".JPEG" if i % 3 == 1 else ".jpg")
        _write_image(os.path.join(root, split, cls, f"{i:03d}{ext}"), *SHAPES[cls],
                     seed=1000 * c + i + (0 if split == "train" else 500))
  for name in corrupt:
    with open(os.path.join(root, "train", "dog", name), "wb") as f:
      f.write(b"\xff\xd8\xff\xe0 this is not a JPEG")
  with open(os.path.join(root, "train", "cat", "notes.txt"), "w") as f:
    f.write("ignored: not an image extension")
  return str(root)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
  return make_folder(tmp_path_factory.mktemp("folder"))


@pytest.fixture(scope="module")
def corrupt_folder(tmp_path_factory):
  return make_folder(tmp_path_factory.mktemp("corrupt"), per_class=(4, 1),
                     corrupt=("bad1.jpg", "bad2.jpg"))


def folder_config(root, batch=6, size=16, **data):
  cfg = config_lib.default_config()
  cfg.data.name = "folder"
  cfg.data.data_dir = root
  cfg.data.train_split = "train"
  cfg.data.eval_split = "val"
  cfg.data.image_size = size
  for k, v in data.items():
    cfg.data[k] = v
  cfg.train.batch_size = batch
  config_lib.validate(cfg)
  return cfg


def _folder_source(cfg, process_index=0, process_count=1):
  listing = ip.list_image_folder(cfg.data.data_dir, cfg.data.train_split,
                                 ip.class_list(cfg.data.classes))
  kwargs = ip._pipeline_kwargs(cfg)
  kwargs.update(process_index=process_index, process_count=process_count)
  return ip.FolderSource(listing.files, description="test folder", **kwargs)


def take(iterator, n):
  return [next(iterator) for _ in range(n)]


# ------------------------------------------------------------------------------ ImageNet-100


def test_imagenet100_list_is_the_cmc_list_and_matches_tfds_labels():
  wnids = imagenet100.IMAGENET100_WNIDS
  assert len(wnids) == len(set(wnids)) == 100
  assert all(re.fullmatch(r"n\d{8}", w) for w in wnids)
  assert wnids[:3] == ("n02869837", "n01749939", "n02488291") and wnids[-1] == "n02090622"
  names = tfds.builder("imagenet2012", data_dir="/nonexistent").info.features["label"].names
  assert set(wnids) <= set(names)
  assert ip.class_list("imagenet100") == wnids


# ------------------------------------------------------------------------------ image folders


def test_folder_batches_shapes_aspect_and_epochs(folder):
  cfg = folder_config(folder)
  source = ip.create_train_source(cfg)
  assert isinstance(source, ip.FolderSource)
  assert source.steps_per_epoch == 30 // 6
  batches = take(source.iterate(0), 2 * source.steps_per_epoch)
  for b in batches:
    assert b["image"].shape == (6, 16, 16, 3) and b["image"].dtype == np.uint8
    assert b["aspect"].dtype == np.float32
    assert set(np.round(b["aspect"], 4)) <= {2.0, 1.0, 0.5}  # width / height of the originals
  # Every epoch is a permutation of the files, with the files of each example in order.
  epoch0 = np.concatenate([source.file_indices(s) for s in range(source.steps_per_epoch)])
  assert sorted(epoch0) == list(range(30))
  epoch1 = np.concatenate([source.file_indices(s) for s in range(5, 10)])
  assert sorted(epoch1) == list(range(30)) and not np.array_equal(epoch0, epoch1)
  expected_aspect = {0: 2.0, 1: 1.0, 2: 0.5}
  aspects = [expected_aspect[i // 10] for i in source.file_indices(3)]
  np.testing.assert_allclose(batches[3]["aspect"], aspects, rtol=1e-6)


def test_folder_is_deterministic_and_resumes_exactly(folder):
  cfg = folder_config(folder)
  a = take(ip.create_train_source(cfg).iterate(0), 8)
  b = take(ip.create_train_source(cfg).iterate(0), 8)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x["image"], y["image"])
  resumed = take(ip.create_train_source(cfg).iterate(3), 5)  # crosses the epoch boundary
  for x, y in zip(a[3:], resumed):
    np.testing.assert_array_equal(x["image"], y["image"])
    np.testing.assert_array_equal(x["aspect"], y["aspect"])
  cfg.seed = 1
  other = take(ip.create_train_source(cfg).iterate(0), 1)
  assert not np.array_equal(other[0]["image"], a[0]["image"])


def test_folder_hosts_split_each_global_batch(folder):
  cfg = folder_config(folder)
  one = _folder_source(cfg)
  hosts = [_folder_source(cfg, p, 2) for p in range(2)]
  assert all(h.steps_per_epoch == one.steps_per_epoch for h in hosts)
  for step in (0, 4, 7):
    joined = np.concatenate([h.file_indices(step) for h in hosts])
    np.testing.assert_array_equal(joined, one.file_indices(step))
  first = [next(h.iterate(2)) for h in hosts]
  np.testing.assert_array_equal(np.concatenate([f["image"] for f in first]),
                                next(one.iterate(2))["image"])


def test_folder_class_filter_and_eval_source(folder, tmp_path):
  classes = tmp_path / "classes.txt"
  classes.write_text("# keep two\neel\ncat\n")
  cfg = folder_config(folder, batch=4, classes=str(classes))
  source = ip.create_train_source(cfg)
  assert source.num_examples == 20 and source.steps_per_epoch == 5
  ev = ip.create_eval_source(cfg.data, image_size=12, batch_size=3)
  assert ev.num_classes == 2 and ev.class_names == ("cat", "eel")
  data = ev.load()
  assert data["image"].shape == (8, 12, 12, 3) and data["image"].dtype == np.uint8
  assert sorted(data["label"].tolist()) == [0] * 4 + [1] * 4
  # Labels follow the training split's class list even where the eval split lacks a class.
  full = ip.load_eval_arrays(folder_config(folder).data, "val", image_size=8, num_examples=5)
  assert full["image"].shape == (5, 8, 8, 3) and full["num_classes"] == 3


def test_decode_semantics():
  # 20 x 40 (h x w): left half red, right half blue.
  img = np.zeros((20, 40, 3), np.uint8)
  img[:, :20, 0] = 255
  img[:, 20:, 2] = 255
  encoded = tf.io.encode_png(img)
  resized, aspect = ip.decode_resize(encoded, 16)
  assert resized.shape == (16, 16, 3) and float(aspect) == 2.0
  assert resized.numpy()[8, 2, 0] == 255 and resized.numpy()[8, 13, 2] == 255
  crop = ip.decode_center_crop(encoded, 10, crop_fraction=1.0).numpy()
  assert crop.shape == (10, 10, 3)  # shorter side 20 -> 10, width 40 -> 20, centre 10 columns
  assert crop[5, 2, 0] == 255 and crop[5, 7, 2] == 255
  assert ip.decode_center_crop(encoded, 8).shape == (8, 8, 3)  # 0.875: shorter side 9
  # A JPEG >= 2x the target on both sides is decoded at reduced scale in the DCT domain: the
  # aspect is still the original's, and the result is close to a full decode + resize.
  big = np.zeros((96, 192, 3), np.uint8)
  big[:, :, 0] = np.linspace(0, 255, 192, dtype=np.uint8)[None]
  big[:48, :, 1] = 200
  jpeg = tf.io.encode_jpeg(big, quality=95)
  fast, aspect = ip.decode_resize(jpeg, 16)  # 96 // 16 = 6: decoded at 1/4 scale
  assert float(aspect) == 2.0
  full = tf.image.resize(tf.io.decode_jpeg(jpeg), [16, 16], antialias=True).numpy()
  assert np.abs(fast.numpy().astype(np.float32) - full).mean() < 4
  slow, _ = ip.decode_resize(jpeg, 16, antialias="always")
  assert np.abs(slow.numpy().astype(np.float32) - full).mean() < 4


def test_corrupt_images_are_skipped_counted_and_keep_batches_aligned(corrupt_folder):
  cfg = folder_config(corrupt_folder, batch=7)  # 14 files (2 corrupt): 2 steps per epoch
  source = ip.create_train_source(cfg)
  assert source.num_examples == 14
  straight = take(source.iterate(0), 8)
  assert all(b["image"].shape == (7, 16, 16, 3) for b in straight)
  assert source.num_corrupt == 8  # 2 per epoch, 4 epochs
  bad = [s for s in range(8) for f in source.file_indices(s)
         if os.path.basename(str(source.files[f])).startswith("bad")]
  assert len(bad) == 8
  fresh = ip.create_train_source(cfg)
  for step in (bad[0], bad[-1]):
    np.testing.assert_array_equal(next(fresh.iterate(step))["image"], straight[step]["image"])
  cfg.data.skip_corrupt = False
  strict = ip.create_train_source(cfg)
  with pytest.raises(ip.DataError, match=r"undecodable image .*bad[12]\.jpg"):
    take(strict.iterate(0), 2)


@pytest.mark.parametrize("case,message", [
    ("no_root", "does not exist"),
    ("no_split", r"has no split 'train' \(found: \['other'\]\)"),
    ("no_classes", "holds no class subdirectories"),
    ("no_images", "holds no images"),
    ("mismatch", "class list mismatch: 1 of the requested classes .* zebra"),
])
def test_folder_errors(tmp_path, case, message):
  root = tmp_path / "data"
  classes = ""
  if case == "no_split":
    (root / "other").mkdir(parents=True)
  elif case == "no_classes":
    (root / "train").mkdir(parents=True)
  elif case == "no_images":
    (root / "train" / "cat").mkdir(parents=True)
    (root / "train" / "cat" / "readme.txt").write_text("x")
  elif case == "mismatch":
    make_folder(root, per_class=(1, 1))
    classes = tmp_path / "classes.txt"
    classes.write_text("cat\nzebra\n")
  cfg = config_lib.default_config()
  cfg.data.name, cfg.data.data_dir, cfg.data.classes = "folder", str(root), str(classes)
  with pytest.raises(ip.DataError, match=message):
    ip.create_train_source(cfg)


# ------------------------------------------------------------------------------ tfds (prepared)


class LoocTestImages(tfds.core.GeneratorBasedBuilder):
  """A tiny image dataset prepared offline into a temporary data_dir (nothing downloaded)."""
  VERSION = tfds.core.Version("1.0.0")
  LABELS = ("n001", "n002", "n003", "n004")

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
        "label": tfds.features.ClassLabel(names=self.LABELS)}))

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
  cfg = config_lib.default_config()
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
  source = ip.create_train_source(cfg)
  assert isinstance(source, ip.TfdsSource) and source.steps_per_epoch == 6
  straight = take(source.iterate(0), 14)
  for b in straight:
    assert b["image"].shape == (8, 16, 16, 3) and b["image"].dtype == np.uint8
    assert set(np.round(b["aspect"], 4)) <= {0.5, 2.0}
  again = take(ip.create_train_source(cfg).iterate(0), 2)
  np.testing.assert_array_equal(again[1]["image"], straight[1]["image"])
  for start in (4, 7):  # mid-epoch 0 (continues into epoch 1), and mid-epoch 1
    resumed = take(ip.create_train_source(cfg).iterate(start), 3)
    for k, b in enumerate(resumed):
      np.testing.assert_array_equal(b["image"], straight[start + k]["image"])
  def epoch_set(e):
    return sorted(bytes(x.tobytes()) for s in range(6 * e, 6 * e + 6)
                  for x in straight[s]["image"])
  assert epoch_set(0) == epoch_set(1)  # each epoch sees every example once ...
  assert not np.array_equal(straight[0]["image"], straight[6]["image"])  # ... in a new order


def test_tfds_hosts_read_disjoint_shards(tfds_dir):
  cfg = tfds_config(tfds_dir)
  data = ip.open_tfds(cfg.data.name, "train", data_dir=tfds_dir)
  kwargs = ip._pipeline_kwargs(cfg)
  hosts = []
  for p in range(2):
    kwargs.update(process_index=p, process_count=2)
    hosts.append(ip.TfdsSource(data, shuffle_buffer=16, **kwargs))
  assert [h.steps_per_epoch for h in hosts] == [6, 6] and hosts[0].local_batch == 4
  seen = [{x.tobytes() for b in take(h.iterate(0), 6) for x in b["image"]} for h in hosts]
  assert len(seen[0]) == len(seen[1]) == 24 and not seen[0] & seen[1]


def test_tfds_class_filter_count_and_eval(tfds_dir, tmp_path):
  classes = tmp_path / "classes.txt"
  classes.write_text("n004\nn002\n")
  cfg = tfds_config(tfds_dir, batch=4, classes=str(classes))
  source = ip.create_train_source(cfg)
  assert source.num_examples == 24 and source.steps_per_epoch == 6  # counted once
  assert next(source.iterate(0))["image"].shape == (4, 16, 16, 3)
  ev = ip.create_eval_source(cfg.data, image_size=8, batch_size=5)
  assert ev.class_names == ("n002", "n004") and ev.num_examples == 6
  data = ev.load()
  assert data["image"].shape == (6, 8, 8, 3)
  assert sorted(data["label"].tolist()) == [0, 0, 0, 1, 1, 1]
  unfiltered = ip.create_eval_source(tfds_config(tfds_dir).data, "test", image_size=8,
                                     num_examples=5)
  assert unfiltered.num_classes == 4 and len(unfiltered.load()["label"]) == 5


def test_export_image_folder_round_trip(tfds_dir, tmp_path):
  classes = ("n001", "n003")
  written = ip.export_image_folder("looc_test_images", "test", str(tmp_path / "out"),
                                   data_dir=tfds_dir, classes=classes, out_split="val")
  assert written == 6
  listing = ip.list_image_folder(str(tmp_path / "out"), "val")
  assert listing.class_names == classes and len(listing.files) == 6
  cfg = tfds_config(tfds_dir, classes="")
  cfg.data.name, cfg.data.data_dir = "folder", str(tmp_path / "out")
  from_folder = ip.load_eval_arrays(cfg.data, "val", image_size=8)
  assert sorted(from_folder["label"].tolist()) == [0, 0, 0, 1, 1, 1]


def test_tfds_errors_are_clear_and_instant(tfds_dir, tmp_path):
  empty = str(tmp_path / "empty_data_dir")
  start = time.perf_counter()
  with pytest.raises(ip.DataError, match=r"(?s)not prepared.*tfds build imagenet2012 "
                     r"--data_dir=.*empty_data_dir --manual_dir=.*ILSVRC2012_img_train\.tar"):
    ip.tfds_builder("imagenet2012", empty)
  cfg = config_lib.default_config()
  cfg.data.name, cfg.data.data_dir = "imagenet100", empty
  with pytest.raises(ip.DataError, match="tfds build imagenet2012"):
    ip.create_train_source(cfg)
  cfg.data.name = "oxford_flowers102"
  with pytest.raises(ip.DataError, match="tfds build oxford_flowers102 --data_dir="):
    ip.create_train_source(cfg)
  assert time.perf_counter() - start < 20  # metadata only: never a download attempt
  with pytest.raises(ip.DataError, match=r"has no split 'dev': its splits are \['test', 'train'\]"):
    ip.open_tfds("looc_test_images", "dev", data_dir=tfds_dir)
  bad = tmp_path / "bad.txt"
  bad.write_text("n001\nn0xx\n")
  with pytest.raises(ip.DataError, match="class list mismatch.*n0xx"):
    ip.create_train_source(tfds_config(tfds_dir, classes=str(bad)))
  with pytest.raises(ip.DataError, match="fewer than one global batch"):
    ip.create_train_source(tfds_config(tfds_dir, batch=64))


# ------------------------------------------------------------------------------ mock_data


def test_imagenet100_view_with_mock_data(monkeypatch):
  """imagenet2012 through tfds.testing.mock_data: filter to the 100 classes, relabel sorted."""
  names = tfds.builder("imagenet2012", data_dir="/nonexistent").info.features["label"].names
  kept = sorted(imagenet100.IMAGENET100_WNIDS)
  outside = [i for i, n in enumerate(names) if n not in kept][:3]
  labels = [names.index(kept[i * 7 % 100]) if i % 3 else outside[i % 3] for i in range(60)]
  rng = np.random.default_rng(0)
  images = [tf.io.encode_jpeg(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).numpy()
            for _ in labels]
  images[4] = b"corrupt"  # label kept: exercises skipping inside a tfds source

  def as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False):
    del self, split, decoders, read_config, shuffle_files
    return tf.data.Dataset.from_tensor_slices(
        {"image": images, "label": np.asarray(labels, np.int64), "file_name": ["x"] * 60})

  monkeypatch.setattr(ip, "_is_prepared", lambda builder: True)  # mock data has no files
  with tfds.testing.mock_data(num_examples=60, as_dataset_fn=as_dataset):
    cfg = config_lib.default_config()
    cfg.data.name = "imagenet100"
    cfg.data.image_size = 12
    cfg.data.shuffle_buffer = 8
    cfg.data.num_examples = 40  # 40 of the 60 mock examples are ImageNet-100 classes
    cfg.train.batch_size = 8
    config_lib.validate(cfg)
    source = ip.create_train_source(cfg)
    batches = take(source.iterate(0), 6)
    assert all(b["image"].shape == (8, 12, 12, 3) for b in batches)
    np.testing.assert_allclose(batches[0]["aspect"], 1.5)
    assert source.num_corrupt == 1
    ev = ip.create_eval_source(cfg.data, "validation", image_size=8, batch_size=16)
    assert ev.num_examples == 5000 and ev.num_classes == 100  # the known validation size
    data = ev.load()
  expected = [i * 7 % 100 for i in range(60) if i % 3 and i != 4]
  assert data["label"].tolist() == expected and ev.num_corrupt == 1


# ------------------------------------------------------------------------------ config, device


def test_synthetic_source_uses_the_configured_light():
  cfg = config_lib.default_config()
  cfg.data.image_size, cfg.data.num_train, cfg.train.batch_size = 16, 64, 64
  images = {}
  for light in (0.0, 0.5):
    cfg.data.synthetic_light = light
    images[light] = next(ip.create_train_source(cfg).iterate(0))["image"].astype(np.float32)
  rows = {k: v.mean(axis=(0, 2, 3)) for k, v in images.items()}  # [S] per light
  assert rows[0.5][:4].mean() > rows[0.5][-4:].mean() + 10
  assert abs(rows[0.0][:4].mean() - rows[0.0][-4:].mean()) < 10
  # A config saved before the field existed described the evenly lit dataset.
  del cfg.data["synthetic_light"]
  assert config_lib.synthetic_light(cfg.data) == 0.0


@pytest.mark.parametrize("field,value,message", [
    ("name", "caltech_bird2011", "did you mean 'caltech_birds2011'"),
    ("name", "Not A Name", "config.data.name must be one of"),
    ("name", "folder", "config.data.data_dir must name the image folder root"),
    ("classes", "n01440764.txt", "config.data.classes must be '' for data.name='imagenet100'"),
    ("eval_crop_fraction", 0.0, "config.data.eval_crop_fraction must be in"),
    ("shuffle_buffer", 0, "config.data.shuffle_buffer must be an integer >= 1"),
    ("resize_method", "nearest", "config.data.resize_method must be one of"),
    ("num_examples", 10, "config.data.num_examples (10) must be 0 or hold at least one batch"),
    ("synthetic_light", 1.0, "config.data.synthetic_light must be a number in [0, 1), got 1.0"),
    ("synthetic_light", -0.2, "config.data.synthetic_light must be a number in [0, 1)"),
])
def test_data_config_validation(field, value, message):
  cfg = config_lib.default_config()
  if field == "classes":
    cfg.data.name = "imagenet100"
  cfg.data[field] = value
  with pytest.raises(ValueError, match=re.escape(message)):
    config_lib.validate(cfg)


def test_prefetch_to_device_places_global_batches(folder):
  mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:2]), ("data",))
  sharding = NamedSharding(mesh, P("data"))
  source = ip.create_train_source(folder_config(folder))
  batches = ip.prefetch_to_device(source.iterate(0), sharding, size=2)
  first = next(batches)
  assert first["image"].shape == (6, 16, 16, 3) and first["image"].sharding == sharding
  np.testing.assert_array_equal(np.asarray(first["image"]), next(source.iterate(0))["image"])
  batches.close()

  def failing():
    yield {"x": np.zeros((2,), np.float32)}
    raise ip.DataError("boom")
  out = ip.prefetch_to_device(failing(), sharding)
  next(out)
  with pytest.raises(ip.DataError, match="boom"):
    next(out)


def test_cli_pretrains_on_an_image_folder(folder, tmp_path):
  """python -m leave_one_out.main on a generated folder: same config interface, end to end."""
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1",
             JAX_COMPILATION_CACHE_DIR=jax.config.jax_compilation_cache_dir or "",
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
  run = subprocess.run(
      [sys.executable, "-m", "leave_one_out.main", "--config=configs/demo.py",
       f"--workdir={tmp_path / 'run'}", "--config.data.name=folder",
       f"--config.data.data_dir={folder}", "--config.train.num_steps=2",
       "--config.log_every_steps=1", "--config.checkpoint_every_steps=2",
       "--config.train.batch_size=6", "--config.data.image_size=20",
       "--config.augment.image_size=16", "--config.augment.spaces=('rotation',)",
       "--config.augment.texture.freq=(2.0,6.0)", "--config.model.width=4",
       "--config.model.head_hidden=16", "--config.model.embedding_dim=8"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert run.returncode == 0, run.stderr[-3000:]
  assert "FolderSource(image folder" in run.stderr and "step 2/2" in run.stderr
  assert "| rotation |" in run.stdout
