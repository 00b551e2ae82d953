r"""Evaluation of a pretrained LooC encoder: the paper's protocols, one command, one table.

  python -m leave_one_out.evaluate --workdir=W [--config=configs/eval/synthetic.py]
  python -m leave_one_out.evaluate --workdir=W --config=configs/eval/tfds.py:imagenet100
  python -m leave_one_out.evaluate --workdir=W --config=configs/eval/folder.py:/data/images

``run(workdir, eval_cfg)`` loads a checkpoint (``pretrained.load_pretrained``), reads the
evaluation dataset (``eval_config.dataset``, module ``dataset``: by default the pretraining
run's own data), runs every enabled evaluator on the frozen features of every feature kind and
writes ``<workdir>/<results_file>``; ``format_table(results)`` turns the results into the table
(rows: feature kinds; columns: what each evaluator adds). docs/evaluation.md states each
protocol and where it differs from the paper's.

Evaluators (``EVALUATORS``, run in this order; each owns ``eval_config.<name>``):

  probe        linear probe per label: protocol "fast" (cached features) or "moco" (MoCo's
               linear classification protocol on device)
  rotation     4-way probe of the rotation (0/90/180/270) applied to every image
  knn          weighted kNN with the training split as the bank
  fewshot      K-shot linear classification, mean and 95% CI over trials
  corruption   the probe on this project's on-device synthetic corruptions (any dataset)
  imagenet_c   ImageNet-C (tfds imagenet2012_corrupted) on the dataset's ImageNet classes
  sensitivity  the augmentation-sensitivity matrix and its heatmap
  random_init  the same network at random init, probed as the trained one (off by default)

An evaluator is a module (or any object) with

  default_config()  its section, with a bool ``enabled`` and a comment per field
  validate(c)       checks its section of the eval config ``c``; ValueError naming
                    ``eval_config.<name>.<field>``
  evaluate(ctx)     its results from a ``context.Context`` (model, splits, cached features):
                    {kind: result}, spread over ``results["rows"]``; or, with
                    ``PER_KIND = False``, one result stored as ``results[<name>]``
  columns(results)  [(title, cell)]: its table columns, ``cell(results["rows"][kind]) -> str``
  notes(results)    lines printed under the table

and optionally ``check_ready(c)`` (before the model loads: metadata only), ``check_data(ctx)``
(after the images are read, before any feature) and ``CHANCE`` ({name: accuracy} for the
chance line). Adding one is a module plus a line in ``EVALUATORS`` (``register`` adds one at run
time). The folder's rule: a module per section of the eval config (plus ``context``, what every
evaluator reads, and ``tables``, the results record as JSON and as a table); ``lib/`` holds the array functions
that read no config (classifiers, common corruptions, MoCo's linear protocol).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import time
from typing import Any

import ml_collections
from etils import epath

from leave_one_out import extract
from leave_one_out import fields
from leave_one_out import pretrained
from leave_one_out.evaluate import context
from leave_one_out.evaluate import dataset
from leave_one_out.evaluate import tables

EVALUATORS: dict[str, Any] = {  # eval_config section -> the evaluator: a module path or object
  "probe": "leave_one_out.evaluate.probe",
  "rotation": "leave_one_out.evaluate.rotation",
  "knn": "leave_one_out.evaluate.knn",
  "fewshot": "leave_one_out.evaluate.fewshot",
  "corruption": "leave_one_out.evaluate.corruption",
  "imagenet_c": "leave_one_out.evaluate.imagenet_c",
  "sensitivity": "leave_one_out.evaluate.sensitivity",
  "random_init": "leave_one_out.evaluate.random_init",
}
RESULTS_FILE = "evaluation.json"
HEATMAP_FILE = "sensitivity.png"


def results_name(c) -> str:
  """The results file of eval config ``c``: ``results_file``, with "_moco" before the
  extension when the probe runs MoCo's protocol, so that the fast and MoCo protocols never
  overwrite each other's results."""
  name = c.results_file
  if c.probe.enabled and c.probe.protocol == "moco":
    stem, ext = os.path.splitext(name)
    if not stem.endswith("_moco"):
      name = f"{stem}_moco{ext}"
  return name


def register(name: str, evaluator: Any) -> None:
  """Adds (or replaces) the evaluator ``name``: a module path or an object (module docstring)."""
  EVALUATORS[name] = evaluator


def evaluator(name: str):
  """The evaluator registered as ``name``."""
  entry = EVALUATORS[name]
  return importlib.import_module(entry) if isinstance(entry, str) else entry


def default_config() -> ml_collections.ConfigDict:
  """Every knob of the evaluation: the run-level fields, the dataset and each evaluator's section.

  Sized for the embedded dataset on a CPU (probe protocol "fast"); configs/eval/synthetic.py is
  this config, configs/eval/tfds.py and folder.py change what real datasets need.
  """
  c = ml_collections.ConfigDict()
  c.seed = 0  # held-out splits, example orders, few-shot draws, corruption noise, views
  c.step = -1  # checkpoint step; -1 = the newest in the workdir
  c.encoder = "online"  # online (query encoder, as MoCo evaluates) | ema (momentum encoder)
  c.kinds = ()  # feature kinds (table rows); () = backbone, looc++ (LooC++ only), space:i
  #               (LooC++ only; for LooC they equal the backbone) and embedding:i
  c.batch_size = 256  # images per forward pass of feature extraction (a multiple of devices)
  c.results_file = RESULTS_FILE  # written in the workdir ("_moco" added before the extension
  #                               with probe.protocol="moco": results_name)
  c.heatmap_file = HEATMAP_FILE  # the augmentation-sensitivity heatmap, in the workdir
  c.dataset = dataset.default_config()
  for name in EVALUATORS:
    c[name] = evaluator(name).default_config()
  return c


def validate_config(c: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the first bad field (``eval_config.<field> ...``)."""
  check = fields.Section(c, "eval_config")
  check.one_of("encoder", pretrained.ENCODERS)
  check.integer("step", -1)
  check.integer("batch_size", 1)
  for field in ("results_file", "heatmap_file"):
    if not isinstance(c[field], str) or not c[field].strip():
      check.fail(field, f"must be a file name, got {c[field]!r}")
  dataset.validate(c)
  for name in EVALUATORS:
    if name not in c:
      check.fail(
        name,
        f"is missing: the evaluator {name!r} is registered, so the config needs "
        "its section (start from leave_one_out.evaluate.default_config())",
      )
    evaluator(name).validate(c)


@contextlib.contextmanager
def _timed(seconds: dict, name: str):
  t0 = time.perf_counter()
  yield
  seconds[name] = round(time.perf_counter() - t0, 2)


def run(workdir: str, eval_cfg: ml_collections.ConfigDict | None = None, *, mesh=None) -> dict:
  """Evaluates the pretrained encoder in ``workdir`` with every enabled evaluator.

  Args:
    workdir: a training workdir (or anything ``pretrained.load_pretrained`` accepts).
    eval_cfg: ``default_config()`` layout; None = the defaults.
    mesh: a 1-D "data" mesh; None = every device.

  Returns:
    The results (also written to ``<workdir>/<eval_cfg.results_file>`` when workdir is a
    directory): "rows" maps each feature kind to its "dim" and one result per evaluator, plus
    the model, the dataset, "chance", per-run results (e.g. "sensitivity"), the eval config and
    the timings. ``format_table`` turns it into the table.
  """
  # Local: these import leave_one_out.config, which imports this package (module docstring).
  c = default_config() if eval_cfg is None else eval_cfg
  validate_config(c)
  names = [name for name in EVALUATORS if c[name].enabled]
  dataset.check_ready(c)  # an explicit dataset.data: before the model loads
  for name in names:
    getattr(evaluator(name), "check_ready", lambda c: None)(c)
  seconds, t_start = {}, time.perf_counter()
  with _timed(seconds, "load"):
    step = None if c.step < 0 else c.step
    model, variables, cfg = pretrained.load_pretrained(
      workdir, step=step, encoder=c.encoder, mesh=mesh
    )
    kinds = tuple(c.kinds) or tuple(extract.feature_kinds(model))
    for kind in kinds:
      extract.parse_kind(kind, model)
  out_dir = epath.Path(workdir) if epath.Path(workdir).is_dir() else None
  with _timed(seconds, "data"):
    if c.dataset.data is None:
      dataset.check_ready(c, cfg)  # the run's own data section, known now
    ctx = context.Context(c, cfg, model, variables, mesh, kinds, out_dir)
    for name in names:
      getattr(evaluator(name), "check_data", lambda ctx: None)(ctx)
  seconds["features"] = 0.0
  dims = ctx.dims()
  rows = {kind: {"dim": dims[kind]} for kind in kinds}
  per_run, chance = {}, {l: 1.0 / ctx.train.num_classes[l] for l in ctx.labels}
  for name in names:
    ev = evaluator(name)
    t0, f0 = time.perf_counter(), ctx.feature_seconds
    out = ev.evaluate(ctx)
    seconds[name] = round(time.perf_counter() - t0 - (ctx.feature_seconds - f0), 2)
    if getattr(ev, "PER_KIND", True):
      for kind in kinds:
        rows[kind][name] = out[kind]
    else:
      per_run[name] = out
    chance.update(getattr(ev, "CHANCE", {}))
  seconds["features"] = round(ctx.feature_seconds, 2)
  results = tables.jsonable(
    {
      "workdir": str(workdir) if "://" in str(workdir) else os.path.abspath(workdir),
      "step": pretrained.checkpoint_step(workdir, step),
      "model": {
        "architecture": cfg.model.architecture,
        "width": cfg.model.width,
        "looc_plus_plus": bool(cfg.model.looc_plus_plus),
        "image_size": ctx.model_size,
        "spaces": ctx.spaces,
      },
      "dataset": {
        "name": ctx.data.name,
        "source": ctx.train.description,
        "from_run": c.dataset.data is None,
        "num_train": len(ctx.train),
        "num_test": len(ctx.test),
        "labels": list(ctx.labels),
        "primary_label": ctx.primary,
        "num_classes": {l: ctx.train.num_classes[l] for l in ctx.labels},
        "image_size": int(ctx.train.images.shape[1]),
      },
      "chance": chance,
      "evaluators": names,
      "kinds": list(kinds),
      "kind_labels": {k: tables.kind_label(k, ctx.spaces) for k in kinds},
      "rows": rows,
      **per_run,
      "eval_config": json.loads(c.to_json()),
      "timing_s": {**seconds, "total": round(time.perf_counter() - t_start, 2)},
      "results_file": results_name(c),
    }
  )
  path = ctx.output_path(results_name(c))
  if path:
    epath.Path(path).write_text(json.dumps(results, indent=1))
  return results


def format_table(results: dict) -> str:
  """The evaluation table: rows = feature kinds, columns = what each evaluator adds (%).

  Reproduced from the results alone (the JSON file gives the same table); an evaluator that is
  not registered in this process is left out.
  """
  rows, kinds = results["rows"], results["kinds"]
  labels = results.get("kind_labels", {})
  first = rows[kinds[0]] if kinds else {}
  names = results.get("evaluators") or [n for n in EVALUATORS if n in first or n in results]
  evaluators = [evaluator(n) for n in names if n in EVALUATORS]
  columns = [("dim", lambda r: str(r["dim"]))]
  for ev in evaluators:
    columns += ev.columns(results)
  header = ["features"] + [title for title, _ in columns]
  body = [[labels.get(k, k)] + [cell(rows[k]) for _, cell in columns] for k in kinds]
  m, d = results["model"], results["dataset"]
  primary = d["primary_label"]
  if len(d["labels"]) == 1:
    classes = d.get("num_classes", {}).get(primary)
    top5 = " / top-5" if (classes or 6) > 5 else ""
    described = (
      f"{d['source']}: {d['num_train']} train / {d['num_test']} test images"
      f"{f', {classes} classes' if classes else ''}, {m['image_size']} px; accuracy "
      f"%: linear probe top-1{top5}, kNN, few-shot and corrupt on {primary!r}"
    )
  else:
    described = (
      f"{d['source']}: {d['num_train']} train / {d['num_test']} test images; "
      f"top-1 %; probe/kNN/few-shot on {primary!r} except the per-label columns"
    )
  lines = [
    f"LooC evaluation: {results['workdir']} (step {results.get('step')}, "
    f"{m['architecture']} width {m['width']}, {m['image_size']} px"
    f"{', LooC++' if m['looc_plus_plus'] else ''})",
    described,
    tables.markdown(header, body),
  ]
  chance = results.get("chance", {})
  lines.append("chance: " + ", ".join(f"{k} {100 * v:.1f}" for k, v in chance.items()))
  for ev in evaluators:
    lines += ev.notes(results)
  if results.get("timing_s"):
    lines.append("time (s): " + ", ".join(f"{k} {v}" for k, v in results["timing_s"].items()))
  return "\n".join(lines)
