"""The evaluate runner on the embedded dataset: results, table, registry, config checks."""

import json
import os
import re

import ml_collections
import numpy as np
import pytest

from leave_one_out import config as config_lib
from leave_one_out import data as data_lib
from leave_one_out import evaluate
from leave_one_out import fields
from leave_one_out.data.pipeline import eval_split
from tests.helpers import set_field
from tests.helpers import tiny_config
from tests.helpers import write_checkpoint

# Its module-scoped fixtures are built once: every test of the file runs in one xdist worker.
pytestmark = pytest.mark.xdist_group("test_evaluate")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KINDS = ["backbone", "embedding:0", "embedding:1", "embedding:2"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("evaluate") / "run")
  write_checkpoint(path, tiny_config())  # resnet10 width 4, 16 px, spaces color, rotation
  return path


def tiny_eval_config():
  """Every evaluator at sizes that take seconds on a CPU (fast protocols)."""
  c = evaluate.default_config()
  c.batch_size = 64
  c.dataset.num_train, c.dataset.num_test = 120, 60
  c.probe.steps, c.probe.l2_grid = 20, (0.0, 1e-2)
  c.rotation.num_train, c.rotation.num_test = 24, 12
  c.fewshot.shots, c.fewshot.trials, c.fewshot.steps = (2, 3), 3, 20
  c.corruption.names, c.corruption.severities = ("gaussian_noise", "contrast"), (1, 5)
  c.corruption.num_images = 24
  c.sensitivity.num_images = 16
  return c


def test_evaluate_run_writes_results_and_table(workdir):
  results = evaluate.run(workdir, tiny_eval_config())
  with open(os.path.join(workdir, "evaluation.json")) as f:
    saved = json.load(f)
  assert saved["rows"].keys() == results["rows"].keys()
  assert results["kinds"] == KINDS and results["step"] == 3
  d = results["dataset"]
  # The run's own data (the embedded dataset): "label" equals "shape", so it is left out.
  assert d["from_run"] and d["name"] == "synthetic"
  assert (d["labels"], d["primary_label"]) == (["shape", "color", "texture"], "shape")
  assert (d["num_train"], d["num_test"], d["image_size"]) == (120, 60, 20)  # data.image_size
  assert results["evaluators"] == [
    "probe",
    "rotation",
    "knn",
    "fewshot",
    "corruption",
    "sensitivity",
  ]
  for kind in KINDS:
    row = results["rows"][kind]
    accuracies = [row["probe"][l]["top1"] for l in ("shape", "color", "texture")] + [
      row["rotation"]["top1"],
      row["knn"]["shape"]["top1"],
      row["fewshot"]["2"]["mean"],
      row["corruption"]["mean"],
      row["corruption"]["clean"],
    ]
    assert all(0.0 <= a <= 1.0 for a in accuracies), (kind, accuracies)
    assert row["probe"]["shape"]["protocol"]["name"] == "fast"
    assert row["probe"]["shape"]["protocol"]["steps"] == 20
    assert (row["rotation"]["num_train"], row["rotation"]["num_test"]) == (96, 48)
    assert sorted(row["corruption"]["by_corruption"]) == ["contrast", "gaussian_noise"]
    assert sorted(row["corruption"]["by_family"]) == ["digital", "noise"]
    assert row["corruption"]["source"] == "synthetic"
    assert len(row["fewshot"]["3"]["accuracies"]) == 3 and row["fewshot"]["3"]["trials"] == 3
  s = results["sensitivity"]
  assert s["columns"] == ["crop", "flip", "blur", "color", "rotation"]
  assert np.asarray(s["matrix"]).shape == (4, 5)
  assert os.path.getsize(os.path.join(workdir, "sensitivity.png")) > 1000
  table = evaluate.format_table(results)
  header = next(line for line in table.splitlines() if line.startswith("| features"))
  assert re.sub(r"\s+", " ", header) == (
    "| features | dim | shape | color | texture | rotation "
    "| kNN shape | 2-shot | 3-shot | corrupt |"
  ), header
  for text in (
    "embedding:1 (color)",
    "embedding:2 (rotation)",
    "chance: shape 16.7",
    "rotation 25.0",
    "linear probe: fast (full-batch Adam, 20 steps",
    "over 3 trials",
    "24 train / 12 test images, each at 0/90/180/270",
    "synthetic: this project's on-device stand-ins, not ImageNet-C",
    "augmentation sensitivity",
    "time (s): load",
  ):
    assert text in table, (text, table)
  assert evaluate.format_table(saved) == table  # the JSON alone reproduces the table


class NormEvaluator:
  """A test evaluator: the mean feature norm of the test split, times a scale."""

  @staticmethod
  def default_config():
    s = ml_collections.ConfigDict()
    s.enabled = True
    s.scale = 1.0  # multiplies the norm
    return s

  @staticmethod
  def validate(c):
    fields.Section(c, "eval_config").number("norm.scale", 0, low_open=True)

  @staticmethod
  def evaluate(ctx):
    return {
      kind: {"norm": ctx.c.norm.scale * float(np.linalg.norm(f, axis=1).mean())}
      for kind, f in ctx.features("test").items()
    }

  @staticmethod
  def columns(results):
    del results
    return [("norm", lambda r: f"{r['norm']['norm']:.3f}")]

  @staticmethod
  def notes(results):
    return [f"norm: mean L2 norm of {results['dataset']['num_test']} test features"]


def test_a_registered_evaluator_appears_in_the_table(workdir, monkeypatch):
  monkeypatch.setitem(evaluate.EVALUATORS, "norm", NormEvaluator)
  c = tiny_eval_config()
  assert c.norm.scale == 1.0  # its section is part of the config
  for name in ("probe", "rotation", "fewshot", "corruption", "sensitivity"):
    c[name].enabled = False
  c.results_file = "evaluation_norm.json"
  c.norm.scale = 2.0
  results = evaluate.run(workdir, c)
  assert results["evaluators"] == ["knn", "norm"]
  norms = [results["rows"][k]["norm"]["norm"] for k in KINDS]
  assert norms[1] == pytest.approx(2.0, rel=1e-4)  # embedding:0 is L2-normalised, times 2
  table = evaluate.format_table(results)
  header = next(line for line in table.splitlines() if line.startswith("| features"))
  assert re.sub(r"\s+", " ", header) == "| features | dim | kNN shape | norm |", header
  assert "norm: mean L2 norm of 60 test features" in table and "2.000" in table
  c.norm.scale = -1.0
  with pytest.raises(ValueError, match="eval_config.norm.scale must be a number > 0"):
    evaluate.run(workdir, c)


def test_config_file_is_the_default_config():
  loaded = config_lib.load_file(os.path.join(REPO, "configs", "eval", "synthetic.py"))
  assert loaded.to_json() == evaluate.default_config().to_json()
  evaluate.validate_config(loaded)


@pytest.mark.parametrize(
  "field,value,message",
  [
    ("encoder", "key", "eval_config.encoder must be one of"),
    ("dataset.num_train", 1, r"eval_config.dataset.num_train must be 0 \(the whole split\) or"),
    (
      "dataset.labels",
      ("shape", "shape"),
      "eval_config.dataset.labels must be a tuple of distinct",
    ),
    ("dataset.data", "synthetic", "eval_config.dataset.data must be None .* or a data section"),
    ("probe.protocol", "lbfgs", r"eval_config.probe.protocol must be one of \('fast', 'moco'\)"),
    ("probe.decay_epochs", (80, 60), "eval_config.probe.decay_epochs must be increasing"),
    ("probe.crop_scale", (0.5, 1.5), "eval_config.probe.crop_scale must be a"),
    ("probe.sgd_lr", 0.0, "eval_config.probe.sgd_lr must be a number > 0"),
    (
      "rotation.num_test",
      -1,
      r"eval_config.rotation.num_test must be 0 \(the whole split\) or an integer >= 1, got -1",
    ),
    ("knn.temperature", 0.0, "eval_config.knn.temperature must be a number > 0"),
    ("fewshot.small_classes", "drop", "eval_config.fewshot.small_classes must be one of"),
    (
      "corruption.names",
      ("frost",),
      "eval_config.corruption.names has unknown corruption "
      "'frost'.*ImageNet-C itself: eval_config.imagenet_c",
    ),
    ("imagenet_c.corruptions", ("fog", "smoke"), "eval_config.imagenet_c.corruptions must be"),
    (
      "sensitivity.augmentations",
      ("warp",),
      "eval_config.sensitivity.augmentations has unknown augmentation 'warp'",
    ),
  ],
)
def test_bad_fields_are_named(field, value, message):
  c = evaluate.default_config()
  set_field(c, field, value)
  with pytest.raises(ValueError, match=message):
    evaluate.validate_config(c)


def test_labels_the_source_lacks_are_named(workdir):
  c = tiny_eval_config()
  c.dataset.labels = ("shape", "size")
  c.dataset.primary_label = ""
  with pytest.raises(
    ValueError,
    match=r"eval_config.dataset.labels has \['size'\], which the "
    r"evaluation dataset does not provide; it has \['label', 'shape'",
  ):
    evaluate.run(workdir, c)
  c.dataset.labels = ()
  c.dataset.primary_label = "size"
  with pytest.raises(
    ValueError,
    match=r"eval_config.dataset.primary_label 'size' is not among "
    r"the evaluated labels \['shape', 'color', 'texture'\]",
  ):
    evaluate.run(workdir, c)
  c.dataset.labels = ("color",)
  with pytest.raises(
    ValueError, match="eval_config.dataset.primary_label must be one of dataset.labels"
  ):
    evaluate.validate_config(c)


class PhotoSource:
  """A registered data source with two labels, "label" and "photo" (made-up images)."""

  def validate(self, d):
    del d

  def check_ready(self, d, splits):
    del d, splits

  def describe(self, d):
    del d
    return "toy photos"

  def train_source(self, cfg):
    raise NotImplementedError("evaluation only")

  def eval_source(self, d, split, *, image_size, batch_size, num_examples, **unused):
    del d, unused
    n = num_examples or 40
    rng = np.random.default_rng(0 if split == "train" else 1)
    images = rng.integers(0, 256, (n, image_size, image_size, 3), dtype=np.uint8)
    arrays = {"image": images, "label": np.arange(n) % 4, "photo": np.arange(n) % 5}
    return eval_split.ArrayEvalSource(
      arrays, num_classes=4, class_names=None, batch_size=batch_size, description="toy photos"
    )


def test_a_newly_registered_source_is_evaluated_as_the_run_s_data(tmp_path, monkeypatch):
  monkeypatch.setattr(data_lib, "SOURCES", dict(data_lib.SOURCES))  # undone after the test
  data_lib.register("toy_photos", PhotoSource())
  cfg = tiny_config()
  cfg.data.name = "toy_photos"
  write_checkpoint(str(tmp_path), cfg)
  c = tiny_eval_config()
  c.dataset.num_train = c.dataset.num_test = 0  # the source's own sizes
  for name in ("rotation", "fewshot", "corruption", "sensitivity"):
    c[name].enabled = False
  results = evaluate.run(str(tmp_path), c)
  d = results["dataset"]
  assert (d["name"], d["labels"], d["primary_label"]) == ("toy_photos", ["label", "photo"], "label")
  assert d["num_classes"] == {"label": 4, "photo": 5} and d["image_size"] == 16
  table = evaluate.format_table(results)
  header = next(line for line in table.splitlines() if line.startswith("| features"))
  assert re.sub(r"\s+", " ", header) == "| features | dim | label | photo | kNN label |", header


def test_moco_protocol_on_the_embedded_dataset(workdir):
  c = tiny_eval_config()
  c.probe.protocol, c.probe.epochs, c.probe.sgd_lr = "moco", 2, 1.0
  for name in ("knn", "fewshot", "sensitivity"):
    c[name].enabled = False
  c.results_file = "evaluation_moco.json"
  results = evaluate.run(workdir, c)
  row = results["rows"]["backbone"]
  assert [row["probe"][l]["protocol"]["name"] for l in ("shape", "color", "texture")] == [
    "moco"
  ] * 3
  assert len(row["probe"]["color"]["epoch_seconds"]) == 2
  assert row["rotation"]["protocol"]["lr"] == 1.0 and row["rotation"]["num_train"] == 96
  assert results["results_file"] == "evaluation_moco.json"  # the protocol names the file:
  c.results_file = "evaluation.json"  # the fast protocol's file is never overwritten
  assert evaluate.results_name(c) == "evaluation_moco.json"
  c.probe.protocol = "fast"
  assert evaluate.results_name(c) == "evaluation.json"
  c.probe.protocol = "moco"
  assert 0.0 <= row["corruption"]["mean"] <= 1.0  # the MoCo layer applied to corrupted images
