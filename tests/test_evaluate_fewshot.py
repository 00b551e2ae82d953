"""The few-shot evaluator: trials, CI, and classes whose pool is too small for K shots."""

import numpy as np
import pytest

from leave_one_out import evaluate
from leave_one_out.evaluate import fewshot


def _inputs():
  rng = np.random.default_rng(0)
  y_train = np.array([0] * 6 + [1] * 6 + [2] * 2, np.int32)  # class 2 ("eel"): 2 images
  y_test = np.array([0, 1, 2] * 4, np.int32)
  f_train = {"backbone": rng.normal(size=(14, 8)).astype(np.float32)}
  f_test = {"backbone": rng.normal(size=(12, 8)).astype(np.float32)}
  return f_train, y_train, f_test, y_test


def _section(shots, policy="error"):
  f = evaluate.default_config().fewshot
  f.shots, f.trials, f.steps, f.small_classes = shots, 3, 5, policy
  return f


def test_k_equal_to_a_class_pool_is_an_error_naming_the_class():
  f_train, y_train, f_test, y_test = _inputs()
  # 2 images of "eel" give 2-shot trials that all draw the same two: no spread to report.
  with pytest.raises(
    ValueError,
    match=r"eval_config.fewshot.shots: 2-shot needs more than 2 "
    r"pool images of every class \(with exactly 2 every trial draws the same "
    r"images and the 95% CI is 0\), but 1 of the 3 classes of 'label' have 2 "
    r"or fewer .*eel: 2.*small_classes='skip'",
  ):
    fewshot.few_shot(
      _section((1, 2)),
      ("backbone",),
      f_train,
      y_train,
      f_test,
      y_test,
      3,
      names=("cat", "dog", "eel"),
    )
  out = fewshot.few_shot(_section((1,)), ("backbone",), f_train, y_train, f_test, y_test, 3)
  r = out["backbone"]["1"]
  assert r["trials"] == 3 and len(r["accuracies"]) == 3 and r["ci95"] >= 0
  assert r["pool"] == {"images": 14, "min_per_class": 2, "max_per_class": 6}


def test_small_classes_skipped_and_reported():
  f_train, y_train, f_test, y_test = _inputs()
  out = fewshot.few_shot(
    _section((1, 3), "skip"), ("backbone",), f_train, y_train, f_test, y_test, 3
  )["backbone"]
  assert "skipped_classes" not in out["1"] and len(out["1"]["accuracies"]) == 3
  assert (out["3"]["num_classes"], out["3"]["skipped_classes"], out["3"]["num_test"]) == (2, 1, 8)
  assert 0.0 <= out["3"]["mean"] <= 1.0
  empty = fewshot.few_shot(
    _section((6,), "skip"), ("backbone",), f_train, y_train, f_test, y_test, 3
  )["backbone"]["6"]  # no class has more than 6
  assert empty["mean"] is None and empty["skipped_classes"] == 3
  assert fewshot.cell(empty) == "-"
  results = {"kinds": ["backbone"], "rows": {"backbone": {"fewshot": out}}}
  notes = fewshot.notes(results)
  assert "over 3 trials" in notes[0] and "pool: 14 images, 2-6 per class" in notes[0]
  assert notes[1] == (
    "3-shot: 1 classes with 3 or fewer pool images left out; 2 classes, 8 test images"
  )
