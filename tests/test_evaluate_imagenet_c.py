"""ImageNet-C on tfds.testing.mock_data: ImageNet-100 (mock imagenet2012) with its ImageNet-C.

Every config of the mock imagenet2012_corrupted holds its own images and its own labels (and a
different number of ImageNet-100 images), so a label list reused across configs would not fit.
"""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from leave_one_out import config as config_lib
from leave_one_out import evaluate
from leave_one_out.data import DataError
from leave_one_out.data.pipeline import classes as class_lists
from leave_one_out.data.pipeline import tfds_reader
from leave_one_out.evaluate import imagenet_c
from tests.helpers import tiny_config
from tests.helpers import write_checkpoint

# Its module-scoped fixtures are built once: every test of the file runs in one xdist worker.
pytestmark = pytest.mark.xdist_group("test_evaluate_imagenet_c")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WNIDS = tfds.builder("imagenet2012", data_dir="/nonexistent").info.features["label"].names
KEPT = sorted(class_lists.IMAGENET100_WNIDS)[:4]  # the ImageNet-100 classes the mock holds
KEPT_INDEX = [WNIDS.index(w) for w in KEPT]
OTHER = next(i for i, w in enumerate(WNIDS) if w not in class_lists.IMAGENET100_WNIDS)
CONFIGS = {("gaussian_noise", 1): 12, ("gaussian_noise", 5): 12, ("frost", 3): 8}


def _images(n, seed):
  rng = np.random.default_rng(seed)
  return [
    tf.io.encode_jpeg(rng.integers(0, 256, (24, 30, 3), dtype=np.uint8)).numpy() for _ in range(n)
  ]


def as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False):
  """imagenet2012: train 6 / validation 3 images per kept class; imagenet2012_corrupted: per
  config its own count of kept images, in its own label order, plus images of another class."""
  del decoders, read_config, shuffle_files
  if self.name == "imagenet2012":
    per = {"train": 6, "validation": 3}[split.split("[")[0]]
    labels = np.repeat(KEPT_INDEX, per).tolist() + [OTHER] * 2
    seed = 0 if split.startswith("train") else 1
  else:
    name, _, severity = self.builder_config.name.rpartition("_")
    n = CONFIGS[(name, int(severity))]
    rng = np.random.default_rng(n + int(severity))
    labels = rng.permutation(np.resize(KEPT_INDEX, n)).tolist() + [OTHER] * 3
    seed = 10 + int(severity)
  return tf.data.Dataset.from_tensor_slices(
    {
      "image": _images(len(labels), seed),
      "label": np.asarray(labels, np.int64),
      "file_name": [f"{i}.JPEG" for i in range(len(labels))],
    }
  )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("imagenet_c") / "run")
  write_checkpoint(path, tiny_config())
  return path


def in100_config():
  c = config_lib.load_file(os.path.join(REPO, "configs", "eval", "tfds.py"), "imagenet100")
  assert c.imagenet_c.enabled and not c.corruption.enabled
  c.probe.protocol, c.probe.steps = "fast", 20
  for name in ("rotation", "knn", "fewshot", "sensitivity"):
    c[name].enabled = False
  c.imagenet_c.corruptions = ("gaussian_noise", "frost")
  c.imagenet_c.severities = (1, 3, 5)
  return c


def test_imagenet_c_on_mock_data(workdir, monkeypatch):
  monkeypatch.setattr(tfds_reader, "_is_prepared", lambda builder: True)
  c = in100_config()
  c.imagenet_c.severities = (1, 5)
  c.imagenet_c.corruptions = ("gaussian_noise",)
  with tfds.testing.mock_data(as_dataset_fn=as_dataset):
    base = evaluate.run(workdir, c)
    c.imagenet_c.baseline_results = os.path.join(workdir, c.results_file)
    c.results_file = "evaluation_against_baseline.json"
    against = evaluate.run(workdir, c)
  assert base["dataset"]["num_classes"] == {"label": 100}
  assert (base["dataset"]["num_train"], base["dataset"]["num_test"]) == (24, 12)
  for kind in base["kinds"]:
    r = base["rows"][kind]["imagenet_c"]
    assert r["num_images"] == {"gaussian_noise_1": 12, "gaussian_noise_5": 12}
    assert len(r["errors"]["gaussian_noise"]) == 2 and r["num_corruptions"] == 1
    assert all(0.0 <= e <= 1.0 for e in r["errors"]["gaussian_noise"])
    assert r["mean_error"] == pytest.approx(np.mean(r["errors"]["gaussian_noise"]))
    assert r["by_family"] == {"noise": pytest.approx(r["mean_error"])}
    assert r["clean_error"] == pytest.approx(1 - base["rows"][kind]["probe"]["label"]["top1"])
    assert "mce" not in r
    same = against["rows"][kind]["imagenet_c"]  # the same model against itself: CE = 1
    assert same["mce"] == pytest.approx(1.0) and same["ce"] == {"gaussian_noise": 1.0}
  table = evaluate.format_table(against)
  assert "| IN-C err | mCE" in table and "mCE %: corruption errors relative to" in table
  assert (
    "IN-C err: ImageNet-C (tfds imagenet2012_corrupted) top-1 error %, mean over 1 "
    "corruptions x 2 severities, 12-12 images each" in table
  ), table
  with open(os.path.join(workdir, c.results_file)) as f:
    assert evaluate.format_table(json.load(f)) == table


def test_labels_are_read_per_config(workdir, monkeypatch):
  monkeypatch.setattr(tfds_reader, "_is_prepared", lambda builder: True)
  c = in100_config()
  c.imagenet_c.corruptions, c.imagenet_c.severities = ("gaussian_noise", "frost"), (3,)
  monkeypatch.setitem(CONFIGS, ("gaussian_noise", 3), 4)
  with tfds.testing.mock_data(as_dataset_fn=as_dataset):
    r = evaluate.run(workdir, c)["rows"]["backbone"]["imagenet_c"]
  assert r["num_images"] == {"gaussian_noise_3": 4, "frost_3": 8}  # each config's own images
  assert set(r["errors"]) == {"gaussian_noise", "frost"}
  assert set(r["by_family"]) == {"noise", "weather"}


def test_unprepared_imagenet_c_fails_before_the_model_loads(tmp_path, monkeypatch):
  monkeypatch.setattr(tfds_reader, "_is_prepared", lambda builder: builder.name == "imagenet2012")
  c = in100_config()
  c.imagenet_c.data_dir = str(tmp_path / "tfds")
  with pytest.raises(
    DataError,
    match=r"(?s)ImageNet-C \(tfds imagenet2012_corrupted\) "
    r"is not prepared in .*tfds: 6 of 6 configs are missing, e.g. "
    r"gaussian_noise_1.*never downloads.*imagenet_c.enabled=False",
  ):
    evaluate.run(str(tmp_path / "no_model_here"), c)
  assert not os.path.exists(tmp_path / "tfds" / "downloads")


def test_dataset_classes_as_wordnet_ids():
  c = evaluate.default_config()
  names = ("n01440764", "n01443537", "n15075141")
  assert imagenet_c.dataset_wnids(c, names) == names
  c.imagenet_c.imagenet_classes = (999, 0)
  assert imagenet_c.dataset_wnids(c, ("cat", "dog")) == ("n15075141", "n01440764")
  c.imagenet_c.imagenet_classes = ()
  with pytest.raises(ValueError, match="eval_config.imagenet_c.imagenet_classes must give"):
    imagenet_c.dataset_wnids(c, ("cat", "dog"))


def test_corruption_errors_by_hand():
  row = {"errors": {"fog": [0.2, 0.4], "contrast": [0.5, 0.5]}, "clean_error": 0.1}
  base = {"errors": {"fog": [0.4, 0.6], "contrast": [0.5, 1.0]}, "clean_error": 0.2}
  out = imagenet_c.corruption_errors(row, base)
  assert out["ce"] == pytest.approx({"fog": 0.6, "contrast": 1 / 1.5})
  assert out["mce"] == pytest.approx((0.6 + 1 / 1.5) / 2)
  # relative: (sum E - 2 * clean) / (sum E_base - 2 * clean_base)
  assert out["relative_mce"] == pytest.approx(((0.4 / 0.6) + (0.8 / 1.1)) / 2)
  s = imagenet_c.summarise({("fog", 1): 0.2, ("fog", 2): 0.4, ("saturate", 1): 0.9}, 0.1)
  assert s["mean_error"] == pytest.approx(0.3) and s["num_corruptions"] == 1  # extra: kept out
  assert s["errors"]["saturate"] == [0.9] and s["clean"] == pytest.approx(0.9)
