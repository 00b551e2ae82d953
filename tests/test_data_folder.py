"""Image folders as a data source: listing, batches, determinism, hosts, unreadable files, errors.

Offline only: the folders are generated here (numpy + tf.io.encode_*).
"""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest
import tensorflow as tf
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from leave_one_out import config as config_lib
from leave_one_out import data as data_lib
from leave_one_out.data import DataError
from leave_one_out.data import folder as folder_source
from leave_one_out.data.pipeline import classes
from leave_one_out.data.pipeline import host
from leave_one_out.data.pipeline import prefetch
from leave_one_out.run import checkpoints
from leave_one_out.run import logs
from leave_one_out.run import loop
from tests import helpers

# Its module-scoped fixtures are built once: every test of the file runs in one xdist worker.
pytestmark = pytest.mark.xdist_group("test_data_folder")

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
        _write_image(
          os.path.join(root, split, cls, f"{i:03d}{ext}"),
          *SHAPES[cls],
          seed=1000 * c + i + (0 if split == "train" else 500),
        )
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
  return make_folder(
    tmp_path_factory.mktemp("corrupt"), per_class=(4, 1), corrupt=("bad1.jpg", "bad2.jpg")
  )


def folder_config(root, batch=6, size=16, steps=4, **data):
  cfg = helpers.tiny_config(steps=steps)
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
  listing = folder_source.list_image_folder(
    cfg.data.data_dir, cfg.data.train_split, classes.class_list(cfg.data.classes)
  )
  kwargs = host.pipeline_kwargs(cfg)
  kwargs.update(process_index=process_index, process_count=process_count)
  return folder_source.FolderSource(listing.files, description="test folder", **kwargs)


def take(iterator, n):
  return [next(iterator) for _ in range(n)]


# ------------------------------------------------------------------------------ image folders


def test_folder_batches_shapes_aspect_and_epochs(folder):
  cfg = folder_config(folder)
  source = data_lib.create_train_source(cfg)
  assert isinstance(source, folder_source.FolderSource)
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
  a = take(data_lib.create_train_source(cfg).iterate(0), 8)
  b = take(data_lib.create_train_source(cfg).iterate(0), 8)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x["image"], y["image"])
  resumed = take(data_lib.create_train_source(cfg).iterate(3), 5)  # crosses the epoch boundary
  for x, y in zip(a[3:], resumed):
    np.testing.assert_array_equal(x["image"], y["image"])
    np.testing.assert_array_equal(x["aspect"], y["aspect"])
  cfg.seed = 1
  other = take(data_lib.create_train_source(cfg).iterate(0), 1)
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
  np.testing.assert_array_equal(
    np.concatenate([f["image"] for f in first]), next(one.iterate(2))["image"]
  )


def test_folder_class_filter_and_eval_source(folder, tmp_path):
  classes = tmp_path / "classes.txt"
  classes.write_text("# keep two\neel\ncat\n")
  cfg = folder_config(folder, batch=4, classes=str(classes))
  source = data_lib.create_train_source(cfg)
  assert source.num_examples == 20 and source.steps_per_epoch == 5
  ev = data_lib.create_eval_source(cfg.data, image_size=12, batch_size=3)
  assert ev.num_classes == 2 and ev.class_names == ("cat", "eel")
  data = ev.load()
  assert data["image"].shape == (8, 12, 12, 3) and data["image"].dtype == np.uint8
  assert sorted(data["label"].tolist()) == [0] * 4 + [1] * 4
  # Labels follow the training split's class list even where the eval split lacks a class.
  full = data_lib.load_eval_arrays(folder_config(folder).data, "val", image_size=8, num_examples=5)
  assert full["image"].shape == (5, 8, 8, 3) and full["num_classes"] == 3


def test_corrupt_images_are_masked_counted_and_keep_batches_aligned(corrupt_folder):
  cfg = folder_config(corrupt_folder, batch=7)  # 14 files (2 corrupt): 2 steps per epoch
  source = data_lib.create_train_source(cfg)
  assert source.num_examples == 14
  straight = take(source.iterate(0), 8)
  assert all(b["image"].shape == (7, 16, 16, 3) for b in straight)
  assert source.num_corrupt == 8  # 2 per epoch, 4 epochs
  bad = [
    (s, k)
    for s in range(8)
    for k, f in enumerate(source.file_indices(s))
    if os.path.basename(str(source.files[f])).startswith("bad")
  ]
  assert len(bad) == 8
  for s, batch in enumerate(straight):
    # An unreadable file's slot is empty and masked; no other image is copied into it.
    expected = np.array([(s, k) not in bad for k in range(7)])
    np.testing.assert_array_equal(batch["valid"], expected)
    assert not batch["image"][~expected].any()
    flat = batch["image"][expected].reshape(int(expected.sum()), -1)
    assert len(np.unique(flat, axis=0)) == len(flat)  # no duplicates within a batch
  bad = sorted({s for s, _ in bad})
  fresh = data_lib.create_train_source(cfg)
  for step in (bad[0], bad[-1]):
    np.testing.assert_array_equal(next(fresh.iterate(step))["image"], straight[step]["image"])
  cfg.data.skip_corrupt = False
  strict = data_lib.create_train_source(cfg)
  with pytest.raises(DataError, match=r"undecodable image .*bad[12]\.jpg"):
    take(strict.iterate(0), 2)


@pytest.mark.parametrize(
  "case,message",
  [
    ("no_root", "does not exist"),
    ("no_split", r"has no split 'train' \(found: \['other'\]\)"),
    ("no_classes", "holds no images: expected class subdirectories"),
    ("no_images", "holds no images"),
    ("mismatch", "class list mismatch: 1 of the requested classes .* zebra"),
  ],
)
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
  cfg = helpers.tiny_config()
  cfg.data.name, cfg.data.data_dir, cfg.data.classes = "folder", str(root), str(classes)
  with pytest.raises(DataError, match=message):
    data_lib.create_train_source(cfg)


def _save(path, seed, fmt=None, size=(12, 16)):
  from PIL import Image  # pylint: disable=import-outside-toplevel

  os.makedirs(os.path.dirname(path), exist_ok=True)
  pixels = np.random.default_rng(seed).integers(0, 256, size + (3,), dtype=np.uint8)
  Image.fromarray(pixels).save(path, format=fmt)


def test_folder_reads_every_image_below_a_class_in_every_format_and_logs_what_it_skipped(
  tmp_path, caplog
):
  """As torchvision's ImageFolder: nested folders, any decodable format; the rest counted."""
  root = tmp_path / "photos"
  made = {
    "train/birds/a.JPG": "JPEG",
    "train/birds/2024/summer/b.png": "PNG",
    "train/birds/2024/c.bmp": "BMP",
    "train/birds/2025/d.webp": "WEBP",
    "train/fish/e.gif": "GIF",
    "train/fish/deep/f.jpeg": "JPEG",
  }
  for i, (rel, fmt) in enumerate(made.items()):
    _save(str(root / rel), i, fmt)
  _save(str(root / "train" / "stray.jpg"), 9)  # beside the class folders: not in a class
  _save(str(root / "train" / "fish" / ".thumbs" / "g.jpg"), 10)  # hidden folder
  (root / "train" / "fish" / ".DS_Store").write_bytes(b"x")
  (root / "train" / "birds" / "notes.txt").write_text("not an image")
  (root / "train" / "birds" / "scan.tif").write_bytes(b"II*")
  caplog.set_level("INFO")
  listing = folder_source.list_image_folder(str(root), "train")
  assert listing.class_names == ("birds", "fish")
  rel = [os.path.relpath(f, root / "train") for f in listing.files]
  assert rel == sorted(rel, key=lambda p: (p.split("/")[0], os.path.dirname(p), p))
  assert sorted(rel) == sorted(r[len("train/") :] for r in made)
  assert listing.labels.tolist() == [0, 0, 0, 0, 1, 1]
  assert listing.skipped == {
    "images beside the class folders (at the split's top level)": 1,
    "hidden files": 2,
    "not an image file": 2,
  }
  text = caplog.text
  assert "6 images in 2 classes" in text
  assert "skipped 2 hidden files; 1 images beside the class folders" in text
  assert "2 not an image file (.txt 1, .tif 1)" in text or "(.tif 1, .txt 1)" in text
  # Every listed format decodes into a training batch: no slot is masked as unreadable.
  cfg = folder_config(str(root), batch=6, eval_split="train")
  batch = next(data_lib.create_train_source(cfg).iterate(0))
  assert batch["valid"].all() and batch["image"].shape == (6, 16, 16, 3)


def test_split_with_images_at_its_top_level_is_one_unlabelled_class(tmp_path):
  root = tmp_path / "unlabelled"
  for i in range(6):
    _save(str(root / "train" / f"{i}.jpg"), i)
  for i in range(3):
    _save(str(root / "val" / f"{i}.png"), 10 + i, "PNG")
  listing = folder_source.list_image_folder(str(root), "train")
  assert listing.class_names == (folder_source.UNLABELLED,) and set(listing.labels) == {0}
  cfg = folder_config(str(root), batch=6, eval_split="validation")  # finds val/
  assert data_lib.create_train_source(cfg).steps_per_epoch == 1
  ev = data_lib.create_eval_source(cfg.data, image_size=8)
  assert ev.num_examples == 3 and ev.class_names == (folder_source.UNLABELLED,)


def test_the_default_eval_split_finds_val_and_a_missing_split_is_named(folder, tmp_path):
  cfg = folder_config(folder)
  cfg.data.eval_split = "validation"  # the data section's default; the folder has val/
  data_lib.check_ready(cfg.data)
  ev = data_lib.create_eval_source(cfg.data, image_size=8)
  assert ev.num_examples == 12 and ev.description.endswith("/val")
  cfg.data.eval_split = "test"
  with pytest.raises(DataError, match=r"split .*/test does not exist .*eval_split='test'"):
    data_lib.check_ready(cfg.data)


def test_prefetch_to_device_places_global_batches(folder):
  mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:2]), ("data",))
  sharding = NamedSharding(mesh, P("data"))
  source = data_lib.create_train_source(folder_config(folder))
  batches = prefetch.prefetch_to_device(source.iterate(0), sharding, size=2)
  first = next(batches)
  assert first["image"].shape == (6, 16, 16, 3) and first["image"].sharding == sharding
  np.testing.assert_array_equal(np.asarray(first["image"]), next(source.iterate(0))["image"])
  batches.close()

  def failing():
    yield {"x": np.zeros((2,), np.float32)}
    raise DataError("boom")

  out = prefetch.prefetch_to_device(failing(), sharding)
  next(out)
  with pytest.raises(DataError, match="boom"):
    next(out)


def test_data_skipped_counts_the_skipped_images_of_the_whole_run_across_a_resume(
  corrupt_folder, tmp_path
):
  """``data_skipped``: unreadable images in the batches trained on, since the run began (kept
  in the checkpoint), not the prefetched ones of this process."""
  cfg = folder_config(corrupt_folder, batch=8, steps=4)  # 14 files: 1 step per epoch
  source = data_lib.create_train_source(cfg)
  bad = lambda step: sum(
    os.path.basename(str(source.files[f])).startswith("bad") for f in source.file_indices(step)
  )
  expected = np.cumsum([bad(s) for s in range(4)])
  assert expected[-1] > expected[1] > 0  # both halves of the run skip some
  loop.pretrain(cfg, str(tmp_path), stop_at=2)
  ckpt = checkpoints.Checkpointer(str(tmp_path), async_save=False)
  assert ckpt.restore_meta(2)["data_skipped"] == expected[1]
  ckpt.close()
  loop.pretrain(cfg, str(tmp_path))  # a new process would start from the checkpoint alike
  logged = [(r["step"], r["data_skipped"]) for r in logs.read_metrics(tmp_path)]
  assert logged == [(2, expected[1]), (4, expected[3])]


def test_a_missing_monitoring_split_is_a_start_up_error(folder, tmp_path):
  cfg = folder_config(folder, batch=8)
  cfg.eval_every_steps = 20
  cfg.data.eval_split = "test"  # the folder has train/ and val/
  with pytest.raises(DataError, match=r"online monitoring .*eval_every_steps=20.*test"):
    loop.pretrain(cfg, str(tmp_path))
  assert not (tmp_path / "checkpoints").exists()  # before any step or save
  cfg.data.eval_split = "validation"  # the default: finds val/
  cfg.online.eval_split = "train"  # the bank's split: queries after the bank ...
  cfg.online.num_train = 30  # ... but the bank takes all 30 images
  with pytest.raises(DataError, match="none left for queries"):
    loop.check(cfg)


@pytest.mark.slow
def test_cli_pretrains_on_an_image_folder_and_evaluates_it_without_a_config(tmp_path):
  """python -m leave_one_out.main on a generated folder (same config interface, online kNN on
  its val/), then python -m leave_one_out.evaluate --workdir with no config: the run's data."""
  folder = make_folder(tmp_path / "images", per_class=(12, 4))
  env = dict(
    os.environ,
    JAX_PLATFORMS="cpu",
    XLA_FLAGS="--xla_force_host_platform_device_count=1",
    JAX_COMPILATION_CACHE_DIR=jax.config.jax_compilation_cache_dir or "",
    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
  )
  run = subprocess.run(
    [
      sys.executable,
      "-m",
      "leave_one_out.main",
      "--config=configs/demo.py",
      f"--workdir={tmp_path / 'run'}",
      "--config.data.name=folder",
      f"--config.data.data_dir={folder}",
      "--config.train.num_steps=2",
      "--config.log_every_steps=1",
      "--config.checkpoint_every_steps=2",
      "--config.eval_every_steps=2",
      "--config.online.num_train=24",
      "--config.online.num_test=12",
      "--config.train.batch_size=6",
      "--config.data.image_size=20",
      "--config.augment.image_size=16",
      "--config.augment.spaces=('rotation',)",
      "--config.augment.texture.freq=(2.0,6.0)",
      "--config.model.width=4",
      "--config.model.head_hidden=16",
      "--config.model.embedding_dim=8",
    ],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert run.returncode == 0, run.stderr[-3000:]
  assert "FolderSource(image folder" in run.stderr and "step 2/2" in run.stderr
  assert "36 images in 3 classes" in run.stderr and "skipped 1 not an image file" in run.stderr
  assert "online kNN top-1" in run.stderr  # monitoring read the val/ split
  assert "| rotation |" in run.stdout
  evaluated = subprocess.run(
    [sys.executable, "-m", "leave_one_out.evaluate", f"--workdir={tmp_path / 'run'}"],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert evaluated.returncode == 0, evaluated.stderr[-3000:]
  assert f"image folder {folder} (train / validation): 36 train / 12 test images" in (
    evaluated.stdout
  )
  assert "| backbone" in evaluated.stdout and "top-5" not in evaluated.stdout  # 3 classes
