"""Few-shot classification (``eval_config.fewshot``): K images per class, many trials.

docs/method.md's protocol (the paper's Flowers-102 transfer): per trial, K training images of every
class of the primary label are drawn from the pool (the training split; for Flowers-102
train+validation, 20 per class, configs/data/oxford_flowers102.py), a linear classifier is fitted
on their frozen features (Adam, lr 0.03, 250 iterations; all trials in one vmapped call,
``classifiers.few_shot``) and tested on the whole test split; reported: the mean over trials and its
95% confidence interval (Student's t), with the number of trials.

A class whose pool holds K images or fewer cannot give K-shot trials that differ (with exactly
K, every trial draws the same images and the interval is 0): that is an error naming the class
and K, raised before any feature is extracted, or, with ``small_classes = "skip"``, such classes
and their test images are left out of that K and the table says so.
"""

from __future__ import annotations

import ml_collections
import numpy as np
from absl import logging

from leave_one_out import fields
from leave_one_out.evaluate.lib import classifiers

SMALL_CLASS_POLICIES = ("error", "skip")


def default_config() -> ml_collections.ConfigDict:
  f = ml_collections.ConfigDict()
  f.enabled = True
  f.shots = (5, 10)  # K values (one column each)
  f.trials = 10  # trials per K; reported: mean and 95% CI (Student's t)
  f.steps = 250  # Adam iterations per classifier
  f.lr = 0.03  # Adam learning rate
  f.l2 = 0.0  # L2 strength on the weights
  f.normalize = "l2"  # l2 | standardize | none
  f.small_classes = "error"  # a class with <= K pool images: error (naming it, before any
  #                            feature is extracted) | skip (left out of that K, with its test
  #                            images)
  return f


def validate(c: ml_collections.ConfigDict) -> None:
  check = fields.Section(c, "eval_config")
  f = c.fewshot
  check.boolean("fewshot.enabled")
  if not f.shots or any(not fields.is_int(k) or k < 1 for k in f.shots):
    check.fail("fewshot.shots", f"must be a non-empty tuple of ints >= 1, got {f.shots!r}")
  check.integer("fewshot.trials", 1)
  check.integer("fewshot.steps", 1)
  check.number("fewshot.lr", 0, low_open=True)
  check.number("fewshot.l2", 0.0)
  check.one_of("fewshot.normalize", classifiers.NORMALIZATIONS)
  check.one_of("fewshot.small_classes", SMALL_CLASS_POLICIES)


def usable_classes(
  f, labels, num_classes: int, names=None, label: str = "label"
) -> dict[int, np.ndarray]:
  """{K: bool [C]}: the classes whose pool holds more than K images.

  Raises ValueError naming the classes and K where one holds K or fewer and
  ``f.small_classes`` is "error".
  """
  counts = np.bincount(np.asarray(labels), minlength=num_classes)
  out = {}
  for k in f.shots:
    short = np.flatnonzero(counts <= k)
    if short.size and f.small_classes == "error":
      shown = ", ".join(f"{names[i] if names else i}: {counts[i]}" for i in short[:8])
      raise ValueError(
        f"eval_config.fewshot.shots: {k}-shot needs more than {k} pool images of every class "
        f"(with exactly {k} every trial draws the same images and the 95% CI is 0), but "
        f"{short.size} of the {num_classes} classes of {label!r} have {k} or fewer in the "
        f"training split (class: count: {shown}{', ...' if short.size > 8 else ''}). Set "
        "eval_config.fewshot.small_classes='skip' to leave those classes (and their test "
        "images) out of the K-shot task, lower fewshot.shots, or read more of the training "
        "split (dataset.num_train; 0 = all of it)."
      )
    out[k] = counts > k
  return out


def few_shot(
  f,
  kinds,
  f_train,
  y_train,
  f_test,
  y_test,
  num_classes: int,
  *,
  names=None,
  label: str = "label",
  seed: int = 0,
) -> dict:
  """{kind: {str(K): {"mean", "ci95", "accuracies", "shots", "trials", "pool", ...}}}.

  ``f_train`` / ``f_test``: {kind: features}. Where some classes are too small
  (``small_classes="skip"``), the K-shot classifier covers the others (relabelled) and is tested
  on their test images; the result adds num_classes, skipped_classes and num_test. With fewer
  than 2 such classes, or no test image of them, the result is empty (mean None).
  """
  y_train, y_test = np.asarray(y_train), np.asarray(y_test)
  usable = usable_classes(f, y_train, num_classes, names, label)
  counts = np.bincount(y_train, minlength=num_classes)
  out = {kind: {} for kind in kinds}
  for k in f.shots:
    keep = usable[k]
    pool = {
      "pool": {
        "images": int(counts[keep].sum()),
        "min_per_class": int(counts[keep].min()) if keep.any() else 0,
        "max_per_class": int(counts[keep].max()) if keep.any() else 0,
      }
    }
    fit = lambda tr_x, tr_y, te_x, te_y, n: classifiers.few_shot(
      tr_x,
      tr_y,
      te_x,
      te_y,
      n,
      shots=k,
      trials=f.trials,
      steps=f.steps,
      lr=f.lr,
      l2=f.l2,
      normalize_mode=f.normalize,
      seed=seed,
    )
    if keep.all():
      for kind in kinds:
        out[kind][str(k)] = {
          **fit(f_train[kind], y_train, f_test[kind], y_test, num_classes),
          **pool,
        }
      continue
    relabel = np.full((num_classes,), -1, np.int32)
    relabel[keep] = np.arange(int(keep.sum()), dtype=np.int32)
    m_train, m_test = keep[y_train], keep[y_test]
    info = {
      "num_classes": int(keep.sum()),
      "skipped_classes": int((~keep).sum()),
      "num_test": int(m_test.sum()),
      **pool,
    }
    logging.warning(
      "%d-shot: %d of %d classes have %d or fewer pool images and are left out "
      "(eval_config.fewshot.small_classes='skip'); %d test images remain",
      k,
      info["skipped_classes"],
      num_classes,
      k,
      info["num_test"],
    )
    for kind in kinds:
      if info["num_classes"] < 2 or info["num_test"] == 0:
        out[kind][str(k)] = {
          "mean": None,
          "ci95": None,
          "accuracies": [],
          "shots": int(k),
          "trials": int(f.trials),
          **info,
        }
      else:
        out[kind][str(k)] = {
          **fit(
            f_train[kind][m_train],
            relabel[y_train[m_train]],
            f_test[kind][m_test],
            relabel[y_test[m_test]],
            info["num_classes"],
          ),
          **info,
        }
  return out


def check_data(ctx) -> None:
  """Pool sizes, before any feature is extracted."""
  usable_classes(
    ctx.c.fewshot,
    ctx.train.labels[ctx.primary],
    ctx.train.num_classes[ctx.primary],
    ctx.train.class_names.get(ctx.primary),
    ctx.primary,
  )


def evaluate(ctx) -> dict:
  label = ctx.primary
  return few_shot(
    ctx.c.fewshot,
    ctx.kinds,
    ctx.features("train"),
    ctx.train.labels[label],
    ctx.features("test"),
    ctx.test.labels[label],
    ctx.train.num_classes[label],
    names=ctx.train.class_names.get(label),
    label=label,
    seed=ctx.c.seed,
  )


def cell(r: dict) -> str:
  """ "mean±ci95" in %, "-" for an empty result."""
  if r.get("mean") is None:
    return "-"
  return f"{100 * r['mean']:.1f}±{100 * (r['ci95'] or 0):.1f}"


def columns(results: dict) -> list:
  first = results["rows"][results["kinds"][0]].get("fewshot", {}) if results["kinds"] else {}
  return [(f"{k}-shot", lambda r, k=k: cell(r.get("fewshot", {}).get(k, {}))) for k in first]


def notes(results: dict) -> list[str]:
  first = results["rows"][results["kinds"][0]].get("fewshot", {}) if results["kinds"] else {}
  if not first:
    return []
  r = next(iter(first.values()))
  pool = r.get("pool") or {}
  lines = [
    f"K-shot: mean ± 95% CI (Student's t) over {r['trials']} trials of K images per "
    f"class drawn from the training split (pool: {pool.get('images', '?')} images, "
    f"{pool.get('min_per_class', '?')}-{pool.get('max_per_class', '?')} per class), "
    "tested on the whole test split"
  ]
  for k, r in first.items():
    if r.get("skipped_classes"):
      lines.append(
        f"{k}-shot: {r['skipped_classes']} classes with {k} or fewer pool images "
        f"left out; {r['num_classes']} classes, {r['num_test']} test images"
        + ("" if r.get("mean") is not None else " (too few to classify)")
      )
  return lines
