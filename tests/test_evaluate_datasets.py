"""The evaluate command on an image folder and a tfds dataset, end to end, and its config checks.

Offline: the image folder is generated here (tests.test_data_folder.make_folder), the tfds
dataset is ``tfds.testing.mock_data`` with per-split examples; nothing is downloaded.
"""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from leave_one_out import config as config_lib
from leave_one_out import evaluate
from leave_one_out import extract
from leave_one_out import pretrained
from leave_one_out.data import DataError
from leave_one_out.data.pipeline import tfds_reader
from tests.helpers import set_field
from tests.helpers import tiny_config
from tests.helpers import write_checkpoint
from tests.test_data_folder import make_folder

# Its module-scoped fixtures are built once: every test of the file runs in one xdist worker.
pytestmark = pytest.mark.xdist_group("test_evaluate_datasets")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KINDS = ["backbone", "embedding:0", "embedding:1", "embedding:2"]


def eval_config_file(name, arg=None):
  """configs/eval/<name>.py's get_config(arg), through the project's one config loader."""
  return config_lib.load_file(os.path.join(REPO, "configs", "eval", name), arg)


def shrink(c, protocol=None):
  """Protocol sizes that take seconds on a CPU; ``protocol`` replaces the config's."""
  c.probe.protocol = protocol or c.probe.protocol
  c.probe.steps, c.probe.l2_grid, c.probe.epochs = 20, (0.0, 1e-2), 2
  c.fewshot.shots, c.fewshot.trials, c.fewshot.steps = (2, 3), 3, 20
  c.corruption.names, c.corruption.severities = ("gaussian_noise", "contrast"), (1, 5)
  c.corruption.num_images = 24
  c.sensitivity.num_images = 16
  c.batch_size = 16  # every forward pass the same shape
  return c


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("evaluate_datasets") / "run")
  write_checkpoint(path, tiny_config())  # resnet10 width 4, 16 px input, spaces color, rotation
  return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
  # root/{train,val}/{cat,dog,eel}/: 12 train and 4 val images per class, jpg/JPEG/png, each
  # class with its own aspect ratio (resize + centre crop are exercised), plus an ignored .txt.
  return make_folder(tmp_path_factory.mktemp("images"), per_class=(12, 4))


def check_results(results, workdir, c, *, name, num_train, num_test, num_classes, source):
  """Every protocol for every kind, the files written, and the single-label table."""
  assert results["results_file"] == evaluate.results_name(c)  # "_moco" for MoCo's protocol
  with open(os.path.join(workdir, results["results_file"])) as f:
    saved = json.load(f)
  assert os.path.getsize(os.path.join(workdir, c.heatmap_file)) > 1000
  d = results["dataset"]
  assert (d["name"], d["labels"], d["primary_label"], d["from_run"]) == (
    name,
    ["label"],
    "label",
    False,
  )
  assert (d["num_train"], d["num_test"]) == (num_train, num_test)
  assert d["num_classes"] == {"label": num_classes} and d["image_size"] == 16
  assert d["source"].startswith(source), d["source"]
  assert results["kinds"] == KINDS and saved["rows"].keys() == results["rows"].keys()
  assert results["chance"] == pytest.approx({"label": 1 / num_classes, "rotation": 0.25})
  for kind in KINDS:
    row = results["rows"][kind]
    assert set(row) == {"dim", "probe", "rotation", "knn", "fewshot", "corruption"}, kind
    assert list(row["probe"]) == ["label"] and list(row["knn"]) == ["label"]
    assert list(row["fewshot"]) == ["2", "3"] and len(row["fewshot"]["3"]["accuracies"]) == 3
    assert row["probe"]["label"]["protocol"]["name"] == c.probe.protocol
    assert row["rotation"]["protocol"]["name"] == c.probe.protocol
    assert row["rotation"]["num_test"] == 4 * num_test  # the whole test split, four turns
    top5 = row["probe"]["label"]["top5"]
    assert (top5 is None) == (num_classes <= 5)  # top-5 of 5 classes or fewer is always 100%
    accuracies = [
      row["probe"]["label"]["top1"],
      *([top5] if top5 is not None else []),
      row["rotation"]["top1"],
      row["knn"]["label"]["top1"],
      row["fewshot"]["2"]["mean"],
      row["corruption"]["mean"],
      row["corruption"]["clean"],
    ]
    assert all(0.0 <= a <= 1.0 for a in accuracies), (kind, accuracies)
    assert sorted(row["corruption"]["by_corruption"]) == ["contrast", "gaussian_noise"]
  assert np.asarray(results["sensitivity"]["matrix"]).shape == (4, 5)
  table = evaluate.format_table(results)
  header = next(line for line in table.splitlines() if line.startswith("| features"))
  top5 = " top-5 |" if num_classes > 5 else ""
  assert re.sub(r"\s+", " ", header) == (
    f"| features | dim | top-1 |{top5} rotation | kNN | 2-shot | 3-shot | corrupt |"
  ), header
  for text in (
    source,
    f"{num_train} train / {num_test} test images",
    f"{num_classes} classes",
    "embedding:1 (color)",
    "chance: label",
    "augmentation sensitivity",
    f"linear probe: {c.probe.protocol} (",
  ):
    assert text in table, (text, table)
  assert evaluate.format_table(saved) == table  # the JSON alone reproduces the table
  return table


# ------------------------------------------------------------------------------------ folder


def test_evaluate_on_an_image_folder_with_the_moco_protocol(workdir, folder):
  c = shrink(eval_config_file("folder.py", folder))
  assert c.probe.protocol == "moco"  # the real-dataset default
  assert (c.dataset.data.train_split, c.dataset.data.eval_split) == ("train", "validation")
  results = evaluate.run(workdir, c)  # "validation" finds the folder's val/
  assert c.results_file == f"evaluation_folder_{os.path.basename(folder)}.json"
  assert results["results_file"] == f"evaluation_folder_{os.path.basename(folder)}_moco.json"
  table = check_results(
    results,
    workdir,
    c,
    name="folder",
    num_train=36,
    num_test=12,
    num_classes=3,
    source=f"image folder {folder} (train / validation)",
  )
  probe = results["rows"]["backbone"]["probe"]["label"]
  assert probe["protocol"]["epochs"] == 2 and probe["protocol"]["lr"] == 30.0
  assert len(probe["epoch_seconds"]) == 2 and np.isfinite(probe["train_loss"])
  assert "SGD lr 30, momentum 0.9, weight decay 0, batch 256, 2 epochs" in table, table
  print(table)


# ------------------------------------------------------------------------------------ tfds

SPLITS = {"train": (24, 0), "validation": (12, 1), "test": (18, 2)}  # examples, seed


def flowers_as_dataset(requested):
  """A mock ``_as_dataset``: encoded images and labels, different for each split; "a+b" is
  the concatenation, as tfds reads it."""

  def one(base):
    requested.append(base)
    n, seed = SPLITS[base]
    rng = np.random.default_rng(seed)
    shapes = [(20, 30), (28, 22)]
    images = [
      tf.io.encode_jpeg(rng.integers(0, 256, shapes[i % 2] + (3,), dtype=np.uint8)).numpy()
      for i in range(n)
    ]
    labels = np.arange(n, dtype=np.int64) % 6  # flower classes 0..5
    return tf.data.Dataset.from_tensor_slices({"image": images, "label": labels})

  def as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False):
    del self, decoders, read_config, shuffle_files
    parts = [one(part.split("[")[0]) for part in str(split).split("+")]
    ds = parts[0]
    for part in parts[1:]:
      ds = ds.concatenate(part)
    return ds

  return as_dataset


def test_evaluate_on_a_tfds_dataset_with_the_fast_protocol(workdir, monkeypatch, tmp_path):
  names = tfds.builder("oxford_flowers102", data_dir="/nonexistent").info.features["label"].names
  classes = tmp_path / "classes.txt"  # keep 4 of the 6 classes present: data.classes works too
  classes.write_text("\n".join(names[i] for i in (0, 2, 3, 5)) + "\n")
  c = shrink(eval_config_file("tfds.py", "oxford_flowers102"), protocol="fast")
  assert (c.dataset.data.train_split, c.dataset.data.eval_split) == ("train+validation", "test")
  c.dataset.data.classes = str(classes)
  requested = []
  monkeypatch.setattr(tfds_reader, "_is_prepared", lambda builder: True)  # mock data has no files
  with tfds.testing.mock_data(as_dataset_fn=flowers_as_dataset(requested)):
    results = evaluate.run(workdir, c)
  assert {"train", "validation", "test"} <= set(requested)  # the pool is train+validation
  assert c.results_file == "evaluation_oxford_flowers102.json"
  check_results(
    results,
    workdir,
    c,
    name="oxford_flowers102",
    num_train=24,
    num_test=12,
    num_classes=4,
    source="tfds oxford_flowers102 (train+validation / test)",
  )
  shot = results["rows"]["backbone"]["fewshot"]["3"]
  assert shot.get("skipped_classes") is None
  assert shot["pool"] == {"images": 24, "min_per_class": 6, "max_per_class": 6}


def test_run_fails_on_small_classes_before_features(workdir, folder, monkeypatch):
  c = shrink(eval_config_file("folder.py", folder))
  c.fewshot.shots = (2, 12)  # 12 training images per class: 12 shots would repeat every trial
  monkeypatch.setattr(
    extract,
    "extract_feature_dict",
    lambda *a, **k: pytest.fail("features extracted before the check"),
  )
  with pytest.raises(
    ValueError,
    match=r"12-shot needs more than 12 pool images.*3 of the 3 "
    r"classes.*cat: 12",
  ):
    evaluate.run(workdir, c)


# ------------------------------------------------------------------------------------ configs


def test_eval_config_files():
  birds = eval_config_file("tfds.py", "caltech_birds2011")
  evaluate.validate_config(birds)
  d = birds.dataset.data
  assert (d.name, d.train_split, d.eval_split, d.eval_crop_fraction) == (
    "caltech_birds2011",
    "train",
    "test",
    0.875,
  )
  assert birds.dataset.num_train == birds.dataset.num_test == 0
  assert birds.probe.protocol == "moco" and birds.probe.epochs == 100
  assert (birds.rotation.num_train, birds.rotation.num_test) == (0, 0)
  assert birds.corruption.enabled and not birds.imagenet_c.enabled
  in100 = eval_config_file("tfds.py", "imagenet100")
  assert in100.dataset.data.eval_split == "validation"
  assert in100.imagenet_c.enabled and not in100.corruption.enabled  # ImageNet-C instead
  flowers = eval_config_file("tfds.py", "oxford_flowers102")
  assert flowers.dataset.data.train_split == "train+validation"  # 20 per class
  other = eval_config_file("tfds.py", "cifar10:3.0.2")  # no configs/data file: defaults
  assert (other.dataset.data.name, other.dataset.data.eval_split) == ("cifar10:3.0.2", "test")
  assert other.results_file == "evaluation_cifar10_3.0.2.json"
  evaluate.validate_config(other)
  folder = eval_config_file("folder.py", "/data/my_images/")
  assert (folder.dataset.data.name, folder.dataset.data.data_dir) == ("folder", "/data/my_images/")
  assert folder.results_file == "evaluation_folder_my_images.json"
  assert folder.probe.protocol == "moco"
  assert set(folder.to_dict()) == set(evaluate.default_config().to_dict())  # same layout
  for arg, message in (
    (None, "takes a tfds dataset name"),
    ("folder", "configs/eval/folder.py"),
    ("imagenet2012_corrupted/fog_3", "tfds.py:imagenet100"),
  ):
    with pytest.raises(ValueError, match=message):
      eval_config_file("tfds.py", arg)


@pytest.mark.parametrize(
  "field,value,message",
  [
    (
      "dataset.data.name",
      "caltech_bird2011",
      "eval_config.dataset.data.name: unknown dataset 'caltech_bird2011'.*did you mean "
      "'caltech_birds2011'",
    ),
    (
      "dataset.data.eval_crop_fraction",
      1.5,
      r"eval_config.dataset.data.eval_crop_fraction must be a number in \(0, 1\]",
    ),
    ("dataset.data.eval_split", "train", "eval_config.dataset.data.eval_split must differ"),
    ("dataset.data.resize_method", "nearest", "eval_config.dataset.data.resize_method must be"),
    (
      "dataset.num_train",
      1,
      r"eval_config.dataset.num_train must be 0 \(the whole split\) or an "
      "integer >= 2",
    ),
    (
      "dataset.num_test",
      -1,
      r"eval_config.dataset.num_test must be 0 \(the whole split\) or an integer >= 2, got -1",
    ),
    ("fewshot.small_classes", "drop", "eval_config.fewshot.small_classes must be one of"),
  ],
)
def test_eval_config_errors_name_the_field(field, value, message):
  c = eval_config_file("tfds.py", "caltech_birds2011")
  set_field(c, field, value)
  with pytest.raises(ValueError, match=message):
    evaluate.validate_config(c)


def test_unreadable_data_fails_before_the_model_loads(folder, tmp_path, monkeypatch):
  monkeypatch.setattr(
    pretrained, "load_pretrained", lambda *a, **k: pytest.fail("model loaded before the data check")
  )
  c = eval_config_file("folder.py", folder)
  c.dataset.data.eval_split = "test"
  with pytest.raises(
    DataError,
    match=r"split .*test does not exist \(eval_config.dataset.data.eval_split='test'",
  ):
    evaluate.run(str(tmp_path), c)
  c = eval_config_file("tfds.py", "oxford_flowers102")
  c.dataset.data.data_dir = str(tmp_path / "tfds")
  with pytest.raises(
    DataError,
    match=r"(?s)not prepared.*tfds build oxford_flowers102 "
    r"--data_dir=.*point eval_config.dataset.data.data_dir",
  ):
    evaluate.run(str(tmp_path), c)
  assert not os.path.exists(tmp_path / "tfds" / "downloads")


def test_cli_rejects_a_bad_eval_config_field(workdir):
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1")
  run = subprocess.run(
    [
      sys.executable,
      "-m",
      "leave_one_out.evaluate",
      f"--workdir={workdir}",
      "--config=configs/eval/tfds.py:caltech_birds2011",
      "--config.dataset.data.eval_crop_fraction=1.5",
    ],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert run.returncode != 0
  assert (
    "eval_config.dataset.data.eval_crop_fraction must be a number in (0, 1], got 1.5" in run.stderr
  ), run.stderr[-3000:]


@pytest.mark.slow
def test_cli_runs_the_moco_protocol_on_a_folder(workdir, folder):
  """The issue's command, with the other protocols shrunk to keep it short."""
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=2")
  run = subprocess.run(
    [
      sys.executable,
      "-m",
      "leave_one_out.evaluate",
      f"--workdir={workdir}",
      f"--config=configs/eval/folder.py:{folder}",
      "--config.probe.protocol=moco",
      "--config.probe.epochs=2",
      "--config.results_file=evaluation_cli.json",
      "--config.corruption.names=('contrast',)",
      "--config.corruption.severities=(1,)",
      "--config.sensitivity.num_images=8",
      "--config.fewshot.trials=2",
      "--config.fewshot.steps=10",
    ],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert run.returncode == 0, run.stderr[-3000:]
  assert (
    "linear probe: moco (SGD lr 30, momentum 0.9, weight decay 0, batch 256, 2 epochs" in run.stdout
  ), run.stdout
  assert re.search(r"\| backbone\s+\| 32\s+\|", run.stdout), run.stdout
  assert "top-5" not in run.stdout  # 3 classes: top-5 would always be 100%
  assert "MoCo linear protocol: epoch 2/2" in run.stderr  # the probe's progress, as it goes
  assert f"results: {workdir}/evaluation_cli_moco.json" in run.stdout
  with open(os.path.join(workdir, "evaluation_cli_moco.json")) as f:
    saved = json.load(f)
  assert saved["rows"]["backbone"]["rotation"]["protocol"]["epochs"] == 2
