"""ImageNet-C (``eval_config.imagenet_c``): Hendrycks & Dietterich (ICLR 2019) on the dataset's
ImageNet classes, through tfds ``imagenet2012_corrupted``.

The benchmark corrupts the 50,000 ImageNet validation images with 15 corruptions in four
families (``FAMILIES``) at 5 severities; tfds stores each pair as a config
``imagenet2012_corrupted/<corruption>_<severity>`` of 224 x 224 centre crops. For every pair,
every image of the evaluation dataset's classes (50 per class: 5,000 for ImageNet-100) is read
(resized to the model's input, no further crop), its label mapped by WordNet id from that
config's own class list, and the primary label's linear classifier (``probe.primary_classifiers``, the
probe protocol's, trained on clean images) applied. Reported per feature kind: the top-1 error
per corruption and severity, the mean over the standard corruptions (each averaged over its
severities), the mean per family, the clean error on the test split (the ImageNet-100
validation set), and, given a baseline run's results file, the corruption errors CE_c =
sum_s E_{c,s} / sum_s E^base_{c,s}, their mean (mCE) and the relative mCE (errors minus the
clean error, over the baseline's). Hendrycks & Dietterich normalise by AlexNet; here the
baseline is whatever run the file holds.

Nothing is downloaded: every config must be prepared (``tfds build imagenet2012_corrupted
--config=<corruption>_<severity>``, which needs the ImageNet validation archive), checked before
the model loads.
"""

from __future__ import annotations

import json
import re

import ml_collections
import numpy as np
from etils import epath

from leave_one_out import data as data_lib
from leave_one_out import fields
from leave_one_out.data.pipeline import classes as class_lists
from leave_one_out.data.pipeline import tf_data
from leave_one_out.evaluate import probe
from leave_one_out.evaluate import tables
from leave_one_out.evaluate.lib import classifiers

TFDS_NAME = "imagenet2012_corrupted"
FAMILIES: dict[str, tuple[str, ...]] = {
  "noise": ("gaussian_noise", "shot_noise", "impulse_noise"),
  "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur"),
  "weather": ("snow", "frost", "fog", "brightness"),
  "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression"),
}
CORRUPTIONS: tuple[str, ...] = tuple(n for names in FAMILIES.values() for n in names)
EXTRA = ("gaussian_blur", "saturate", "spatter", "speckle_noise")  # tfds's held-out four
SEVERITIES = (1, 2, 3, 4, 5)


def default_config() -> ml_collections.ConfigDict:
  s = ml_collections.ConfigDict()
  s.enabled = False
  s.data_dir = ""  # tfds data_dir holding imagenet2012_corrupted; "" = $TFDS_DATA_DIR or
  #                  ~/tensorflow_datasets. Never downloads: unprepared configs are an error
  s.corruptions = CORRUPTIONS  # the 15 standard ones; the means and mCE cover those present;
  #                              EXTRA ones may be added (reported, kept out of the means)
  s.severities = SEVERITIES
  s.num_images = 0  # images read per corruption and severity; 0 = every image of the
  #                   dataset's classes (5,000 for ImageNet-100)
  s.imagenet_classes = ()  # ImageNet-1k index of each class of the primary label; () = from
  #                          class names that are WordNet ids (ImageNet-100, an ImageNet folder)
  s.baseline_results = ""  # a baseline run's evaluation JSON with imagenet_c results: mCE and
  #                          relative mCE against it; "" = none
  s.baseline_kind = ""  # the baseline's row; "" = the same feature kind, else its backbone
  return s


def validate(c: ml_collections.ConfigDict) -> None:
  check = fields.Section(c, "eval_config")
  s = c.imagenet_c
  check.boolean("imagenet_c.enabled")
  if not isinstance(s.data_dir, str):
    check.fail("imagenet_c.data_dir", f"must be a string, got {s.data_dir!r}")
  names = tuple(s.corruptions)
  if not names or len(set(names)) != len(names) or any(n not in CORRUPTIONS + EXTRA for n in names):
    check.fail(
      "imagenet_c.corruptions",
      f"must be distinct names from {CORRUPTIONS} (or the extra {EXTRA}), got {names!r}",
    )
  if not s.severities or any(v not in SEVERITIES for v in s.severities):
    check.fail(
      "imagenet_c.severities",
      f"must be a non-empty subset of {SEVERITIES}, got {tuple(s.severities)!r}",
    )
  check.integer("imagenet_c.num_images", 0)
  classes = tuple(s.imagenet_classes)
  if any(not fields.is_int(i) or not 0 <= i < 1000 for i in classes) or len(set(classes)) != len(
    classes
  ):
    check.fail(
      "imagenet_c.imagenet_classes",
      f"must be distinct ImageNet-1k indices in [0, 1000), got {classes!r}",
    )
  for field in ("baseline_results", "baseline_kind"):
    if not isinstance(s[field], str):
      check.fail(f"imagenet_c.{field}", f"must be a string, got {s[field]!r}")


def data_section(
  corruption: str, severity: int, data_dir: str = "", classes: str = ""
) -> ml_collections.ConfigDict:
  """The data section of one ImageNet-C config (its one split, "validation", 224-px crops)."""
  d = data_lib.default_config()
  d.name = f"{TFDS_NAME}/{corruption}_{severity}"
  d.data_dir = data_dir
  d.classes = classes  # "" | "imagenet100" | a class-list file (data.classes)
  d.train_split = "validation"  # the only split
  d.eval_split = "validation"
  d.image_size = 224
  d.eval_crop_fraction = 1.0  # stored as 224 x 224 centre crops already
  return d


def _configs(s):
  return [(name, int(severity)) for name in s.corruptions for severity in s.severities]


def _read_baseline(path: str) -> dict:
  try:
    results = json.loads(epath.Path(path).read_text())
    rows = results["rows"]
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(
      f"eval_config.imagenet_c.baseline_results: {path} is not a readable "
      f"evaluation results file ({type(e).__name__}: {e})"
    ) from e
  if not any("imagenet_c" in row for row in rows.values()):
    raise ValueError(
      f"eval_config.imagenet_c.baseline_results: {path} holds no ImageNet-C "
      "results (it was evaluated without eval_config.imagenet_c.enabled)"
    )
  return results


def check_ready(c) -> None:
  """Before the model loads: every config prepared (metadata only), the baseline readable."""
  s = c.imagenet_c
  missing, root = [], None
  for name, severity in _configs(s):
    d = data_section(name, severity, s.data_dir)
    try:
      data_lib.check_ready(d, fields=("eval_split",))
    except data_lib.DataError as e:
      missing.append(f"{name}_{severity}")
      root = root or re.search(r"not prepared in (\S+)", str(e))
  if missing:
    where = root.group(1) if root else (s.data_dir or "tfds' default data_dir")
    raise data_lib.DataError(
      f"ImageNet-C (tfds {TFDS_NAME}) is not prepared in {where}: {len(missing)} of "
      f"{len(_configs(s))} configs are missing, e.g. {', '.join(missing[:4])}. Evaluation "
      f"never downloads; prepare each once with `tfds build {TFDS_NAME} "
      "--config=<corruption>_<severity> --data_dir=<dir> --manual_dir=<dir with the ImageNet "
      "validation tar>` and point eval_config.imagenet_c.data_dir at <dir>, or set "
      "eval_config.imagenet_c.enabled=False."
    )
  if s.baseline_results:
    _read_baseline(s.baseline_results)


def dataset_wnids(c, class_names) -> tuple[str, ...]:
  """The WordNet id of each class of the primary label, in label order."""
  s = c.imagenet_c
  if s.imagenet_classes:
    wnids = (
      tf_data.tfds().builder("imagenet2012", data_dir="/nonexistent").info.features["label"].names
    )
    return tuple(wnids[int(i)] for i in s.imagenet_classes)
  names = tuple(class_names or ())
  if names and all(re.fullmatch(r"n\d{8}", str(n)) for n in names):
    return names
  raise ValueError(
    "eval_config.imagenet_c.imagenet_classes must give the ImageNet-1k index of each class "
    "of the evaluation dataset: its class names are not all ImageNet WordNet ids (e.g. "
    f"{list(names)[:3]}). ImageNet-C needs an ImageNet-class dataset (ImageNet-100: "
    "configs/eval/tfds.py:imagenet100); for others use eval_config.corruption (synthetic)."
  )


def check_data(ctx) -> None:
  ctx.shared["imagenet_c/wnids"] = dataset_wnids(ctx.c, ctx.train.class_names.get(ctx.primary))


def _class_spec(ctx, wnids) -> str:
  """data.classes for the ImageNet-C configs: read only the dataset's classes where a spec
  names exactly them, else "" (all 1,000, the others dropped after decoding)."""
  if set(wnids) == set(class_lists.IMAGENET100_WNIDS):
    return "imagenet100"
  spec = ctx.data.classes
  if spec and set(class_lists.class_list(spec) or ()) == set(wnids):
    return spec
  return ""


def summarise(errors: dict, clean_error: float) -> dict:
  """errors {(name, severity): error} -> per corruption, means, per family."""
  by_corruption: dict[str, list[float]] = {}
  for (name, _), e in sorted(errors.items(), key=lambda kv: (kv[0][0], kv[0][1])):
    by_corruption.setdefault(name, []).append(e)
  standard = [n for n in CORRUPTIONS if n in by_corruption]
  per = {n: float(np.mean(v)) for n, v in by_corruption.items()}
  by_family = {
    f: float(np.mean([per[n] for n in names if n in per]))
    for f, names in FAMILIES.items()
    if any(n in per for n in names)
  }
  return {
    "source": TFDS_NAME,
    "errors": by_corruption,
    "mean_error": float(np.mean([per[n] for n in standard])) if standard else None,
    "num_corruptions": len(standard),
    "by_family": by_family,
    "clean_error": clean_error,
    "clean": 1.0 - clean_error,
  }


def corruption_errors(row: dict, base: dict) -> dict:
  """CE per corruption, mCE and relative mCE of ``row`` against ``base`` (both summaries)."""
  ce, rel = {}, {}
  for name in CORRUPTIONS:
    e, b = row["errors"].get(name), base["errors"].get(name)
    if not e or not b or len(e) != len(b):
      continue
    ce[name] = float(np.sum(e) / max(np.sum(b), 1e-12))
    rel[name] = float(
      np.sum(np.asarray(e) - row["clean_error"])
      / max(np.sum(np.asarray(b) - base["clean_error"]), 1e-12)
    )
  return {
    "ce": ce,
    "mce": float(np.mean(list(ce.values()))) if ce else None,
    "relative_mce": float(np.mean(list(rel.values()))) if rel else None,
  }


def evaluate(ctx) -> dict:
  s = ctx.c.imagenet_c
  wnids = ctx.shared["imagenet_c/wnids"]
  index = {w: i for i, w in enumerate(wnids)}
  spec = _class_spec(ctx, wnids)
  fitted = probe.primary_classifiers(ctx)
  errors, counts = {kind: {} for kind in ctx.kinds}, {}
  for name, severity in _configs(s):
    d = data_section(name, severity, s.data_dir, spec)
    source = data_lib.create_eval_source(
      d,
      "validation",
      image_size=ctx.model_size,
      batch_size=ctx.c.batch_size,
      num_examples=s.num_images,
    )
    arrays = source.load()
    names = np.asarray(source.class_names)[arrays["label"]]  # this config's own labels
    keep = np.array([n in index for n in names])
    if not keep.any():
      raise data_lib.DataError(
        f"tfds {d.name}: none of its images belong to the evaluation dataset's classes"
      )
    y = np.array([index[n] for n in names[keep]], np.int32)
    feats = ctx.featurize(arrays["image"][keep])
    counts[f"{name}_{severity}"] = int(keep.sum())
    for kind in ctx.kinds:
      scores = classifiers.classify(fitted[kind], feats[kind])
      errors[kind][(name, severity)] = 1.0 - classifiers.topk_accuracy(scores, y)
  clean = ctx.features("test")
  base = _read_baseline(s.baseline_results) if s.baseline_results else None
  out = {}
  for kind in ctx.kinds:
    scores = classifiers.classify(fitted[kind], clean[kind])
    row = summarise(
      errors[kind], 1.0 - classifiers.topk_accuracy(scores, ctx.test.labels[ctx.primary])
    )
    row["num_images"] = counts
    if base is not None:
      base_kind = s.baseline_kind or (
        kind if "imagenet_c" in base["rows"].get(kind, {}) else "backbone"
      )
      base_row = base["rows"].get(base_kind, {}).get("imagenet_c")
      if base_row is None:
        raise ValueError(
          f"eval_config.imagenet_c.baseline_kind: {s.baseline_results} has no "
          f"ImageNet-C results for {base_kind!r}"
        )
      row.update(
        corruption_errors(row, base_row), baseline=s.baseline_results, baseline_kind=base_kind
      )
    out[kind] = row
  return out


def columns(results: dict) -> list:
  rows = results["rows"].values()
  cols = [("IN-C err", lambda r: tables.pct(r.get("imagenet_c", {}).get("mean_error")))]
  if any(r.get("imagenet_c", {}).get("mce") is not None for r in rows):
    cols.append(("mCE", lambda r: tables.pct(r.get("imagenet_c", {}).get("mce"))))
  return cols


def notes(results: dict) -> list[str]:
  rows, kinds = results["rows"], results["kinds"]
  first = rows[kinds[0]].get("imagenet_c") if kinds else None
  if not first:
    return []
  labels = results.get("kind_labels", {})
  counts = list(first["num_images"].values())
  clean = ", ".join(
    f"{labels.get(k, k)} {tables.pct(rows[k]['imagenet_c']['clean_error'])}" for k in kinds
  )
  lines = [
    f"IN-C err: ImageNet-C (tfds {TFDS_NAME}) top-1 error %, mean over "
    f"{first['num_corruptions']} corruptions x {len(next(iter(first['errors'].values())))}"
    f" severities, {min(counts)}-{max(counts)} images each; clean error on the test "
    f"split: {clean}"
  ]
  if first.get("mce") is not None:
    relative = ", ".join(
      f"{labels.get(k, k)} {tables.pct(rows[k]['imagenet_c']['relative_mce'])}" for k in kinds
    )
    lines.append(
      f"mCE %: corruption errors relative to {first['baseline']} "
      f"({first['baseline_kind']}), summed over severities, mean over "
      f"{len(first['ce'])} corruptions; relative mCE: {relative}"
    )
  return lines
