"""Synthetic corruptions (``eval_config.corruption``): robustness on any dataset.

The primary label's linear classifier (``probe.primary_classifiers``: the probe protocol's, trained on
clean images) is applied to test images corrupted on device by ``leave_one_out.evaluate.lib.common_corruptions``:
this project's stand-ins for ImageNet-C's corruption types in four families (noise, blur,
weather, digital) at 5 severities, written from the published descriptions. Results are
comparable between models evaluated with this module, not with published ImageNet-C numbers,
and are reported under their own name ("corrupt", source "synthetic"); the benchmark itself is
the ``imagenet_c`` evaluator. Reported: mean accuracy over every corruption and severity, per
family, per corruption and severity, and the clean accuracy on the same images.
"""

from __future__ import annotations

import jax
import ml_collections
import numpy as np

from leave_one_out import fields
from leave_one_out.evaluate import probe
from leave_one_out.evaluate import tables
from leave_one_out.evaluate.lib import classifiers
from leave_one_out.evaluate.lib import common_corruptions

SOURCE = "synthetic"


def default_config() -> ml_collections.ConfigDict:
  s = ml_collections.ConfigDict()
  s.enabled = True
  s.names = common_corruptions.CORRUPTIONS  # families noise, blur, weather, digital
  s.severities = common_corruptions.SEVERITIES  # 1..5
  s.num_images = 200  # test images corrupted per corruption and severity
  return s


def validate(c: ml_collections.ConfigDict) -> None:
  check = fields.Section(c, "eval_config")
  s = c.corruption
  check.boolean("corruption.enabled")
  if not s.names:
    check.fail("corruption.names", "must name at least one corruption")
  for name in s.names:
    if name not in common_corruptions.CORRUPTIONS:
      check.fail(
        "corruption.names",
        f"has unknown corruption {name!r}; the synthetic ones "
        f"are {common_corruptions.CORRUPTIONS} (ImageNet-C itself: eval_config.imagenet_c)",
      )
  if not s.severities or any(v not in common_corruptions.SEVERITIES for v in s.severities):
    check.fail(
      "corruption.severities",
      f"must be a non-empty subset of {common_corruptions.SEVERITIES}, got {tuple(s.severities)!r}",
    )
  check.integer("corruption.num_images", 1)


def summarise(acc: dict, clean: float | None) -> dict:
  """acc {(name, severity): accuracy} -> mean, per family, per corruption (list by severity)."""
  by_corruption: dict[str, list[float]] = {}
  for (name, _), a in sorted(acc.items()):
    by_corruption.setdefault(name, []).append(a)
  by_family = {}
  for family, names in common_corruptions.FAMILIES.items():
    values = [a for (n, _), a in acc.items() if n in names]
    if values:
      by_family[family] = float(np.mean(values))
  mean = float(np.mean(list(acc.values())))
  return {
    "mean": mean,
    "clean": clean,
    "relative": mean / clean if clean else None,
    "by_family": by_family,
    "by_corruption": by_corruption,
    "source": SOURCE,
  }


def evaluate(ctx) -> dict:
  """{kind: summary}: the first ``num_images`` test images, every corruption and severity."""
  s = ctx.c.corruption
  fitted = probe.primary_classifiers(ctx)
  n = min(s.num_images, len(ctx.test))
  x = ctx.test.model_input[:n]
  clean_x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x
  corrupted = {}
  for i, name in enumerate(s.names):
    images = [
      np.asarray(
        common_corruptions.corrupt_jit(  # rbg keys: fast on CPU
          clean_x, name, severity, jax.random.key(ctx.c.seed * 1000 + i * 10 + severity, impl="rbg")
        )
      )
      for severity in s.severities
    ]
    feats = ctx.featurize(np.concatenate(images))  # one call per corruption: fewer padded batches
    for j, severity in enumerate(s.severities):
      corrupted[(name, severity)] = {k: f[j * n : (j + 1) * n] for k, f in feats.items()}
  y = ctx.test.labels[ctx.primary][:n]
  clean = ctx.features("test")
  out = {}
  for kind in ctx.kinds:
    accuracy = lambda f: classifiers.topk_accuracy(classifiers.classify(fitted[kind], f), y)
    acc = {key: accuracy(f[kind]) for key, f in corrupted.items()}
    out[kind] = summarise(acc, accuracy(clean[kind][:n]))
  return out


def columns(results: dict) -> list:
  return [("corrupt", lambda r: tables.pct(r.get("corruption", {}).get("mean")))]


def notes(results: dict) -> list[str]:
  rows, kinds = results["rows"], results["kinds"]
  first = rows[kinds[0]].get("corruption") if kinds else None
  if not first:
    return []
  labels = results.get("kind_labels", {})
  clean = ", ".join(
    f"{labels.get(k, k)} {tables.pct(rows[k]['corruption'].get('clean'))}" for k in kinds
  )
  return [
    f"corrupt: mean over {len(first['by_corruption'])} corruptions x severities "
    f"({first['source']}: this project's on-device stand-ins, not ImageNet-C); clean "
    f"accuracy on the same images: {clean}"
  ]
