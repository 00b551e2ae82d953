r"""The paper's claims at small scale: every row x seed x condition, then the analysis.

  python -m leave_one_out.experiments.claims [--preset=full|ci|gpu|mechanism|objectives] \
      [--conditions=digits] [--seeds=0,1] [--workdir=/tmp/looc_claims] \
      [--compilation_cache_dir=~/.cache/leave_one_out/jax]
  python -m leave_one_out.experiments.claims --claims=configs/claims.py:ci \
      --claims.base.train.num_steps=400 --claims.rows='("moco","looc_rotation")'

For every condition, row (configs/claims.py) and seed, in ``<workdir>/<condition>/<row>/seed<s>``:
pretrain (resumed if already there), or make the row's baseline (``baselines``: the
initialisation with calibrated BatchNorm statistics, or supervised training); evaluate the
frozen features with ``leave_one_out.evaluate`` (linear probes of the condition's labels, the
4-way rotation probe, the sensitivity matrix; an evaluation of the same checkpoint with the same
config is reused). Then, per condition (``analysis``): the gates, printed as soon as the runs
are done and before any hypothesis is computed; the pre-registered family of hypotheses
(one-sided paired t-tests, Holm); the exploratory comparisons. It writes, in ``<workdir>``:

- ``claims.json``: per condition, row and seed every probe accuracy, the training metrics
  (own-view top-1 of every space) and the sensitivity rows; the aggregate (mean, sample sd,
  per-seed values); the gates, every hypothesis with its t, p, Holm p, t interval, bound and
  verdict; the exploratory comparisons; the pre-registration's commit and the deviations;
  wall and CPU seconds; the configs.
- ``claims.md``: the tables (``report.format_report``).
- ``claims.png``: a bar chart per condition, error bars = sd over seeds.
"""

from __future__ import annotations

import copy
import gc
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import ml_collections
import numpy as np
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from leave_one_out import config as config_lib
from leave_one_out import evaluate
from leave_one_out.experiments import analysis
from leave_one_out.experiments import baselines
from leave_one_out.experiments import report
from leave_one_out.run import checkpoints
from leave_one_out.run import loop

PRESETS = ("full", "ci", "gpu", "mechanism", "objectives")  # configs/claims.py
CONFIG_FILE = "configs/claims.py"  # looked up as config.find_file does (the working directory,
#                                    then the repository of an editable install)


def _config_path() -> str:
  try:
    return config_lib.find_file(CONFIG_FILE)
  except FileNotFoundError:
    return CONFIG_FILE  # --claims names the file; the flag's error says where it looked


_CLAIMS = config_flags.DEFINE_config_file(
  "claims",
  _config_path(),
  "Experiment config, with a preset after the colon: "
  "configs/claims.py:ci. Fields are overridden as --claims.base.train.num_steps=1200. "
  "Default: configs/claims.py (the full preset).",
  lock_config=True,
)
_PRESET = flags.DEFINE_enum(
  "preset",
  None,
  list(PRESETS),
  "Shorthand for --claims=configs/claims.py:<preset>; not together with --claims or its overrides.",
)
_CONDITIONS = flags.DEFINE_list(
  "conditions", None, "Conditions to run, e.g. lit,unlit (default: the preset's run_conditions)."
)
_SEEDS = flags.DEFINE_list("seeds", None, "Seeds, e.g. 0,1,2 (default: the preset's).")
_WORKDIR = flags.DEFINE_string("workdir", "/tmp/looc_claims", "Output directory.")
_COMPILATION_CACHE = flags.DEFINE_string(
  "compilation_cache_dir",
  None,
  "Persistent XLA compilation cache: the second seed of a "
  "row and reruns skip compiling (e.g. ~/.cache/leave_one_out/jax).",
)


def apply_overrides(cfg: ml_collections.ConfigDict, overrides) -> None:
  """Sets ``(("section.field", value), ...)`` on ``cfg``; ValueError naming an unknown field."""
  for path, value in overrides:
    *parents, name = path.split(".")
    section = cfg
    for parent in parents:
      section = section.get(parent) if isinstance(section, ml_collections.ConfigDict) else None
    if not isinstance(section, ml_collections.ConfigDict) or name not in section:
      raise ValueError(f"override {path!r} names no field of the pretraining config")
    section[name] = value


def method_config(
  claims: ml_collections.ConfigDict, condition: str, method: str, seed: int
) -> ml_collections.ConfigDict:
  """The pretraining config of one row: the base config, the condition's overrides, then only
  the fields the row's method changes."""
  if condition not in claims.conditions:
    raise ValueError(f"unknown condition {condition!r}; known: {tuple(claims.conditions)}")
  if method not in claims.methods:
    raise ValueError(f"unknown method {method!r}; known: {tuple(claims.methods)}")
  m, cond = claims.methods[method], claims.conditions[condition]
  cfg = copy.deepcopy(claims.base)
  cfg.seed = int(seed)
  apply_overrides(cfg, cond.overrides)
  cfg.augment.spaces = tuple(m.get("spaces", ()))
  cfg.augment.shared = tuple(m.get("shared", ()))
  cfg.augment.rotation.enabled = bool(m.get("rotation", False))
  cfg.augment.texture.enabled = bool(m.get("texture", False))
  cfg.augment.extra_keys = int(m.get("extra_keys", 0))
  cfg.model.looc_plus_plus = bool(m.get("looc_plus_plus", False))
  apply_overrides(cfg, m.get("overrides", ()))
  return cfg


def eval_config(
  claims: ml_collections.ConfigDict, condition: str, cfg=None
) -> ml_collections.ConfigDict:
  """The evaluation config of a condition: its labels and sensitivity columns, everything else
  shared (the data are the pretraining run's own data section). Given a row's pretraining config
  ``cfg``, the feature kinds are ``claims.feature_kinds`` less "looc++" where the row is not
  LooC++."""
  cond = claims.conditions[condition]
  c = copy.deepcopy(claims.eval)
  c.dataset.labels = tuple(cond.labels)
  c.dataset.primary_label = cond.primary_label
  c.sensitivity.augmentations = tuple(cond.sensitivity)
  if cfg is not None:
    c.kinds = tuple(k for k in claims.feature_kinds if k != "looc++" or cfg.model.looc_plus_plus)
  return c


def condition_rows(claims: ml_collections.ConfigDict, condition: str) -> tuple[str, ...]:
  """The rows a condition runs: its own ``rows`` where it names some, else ``claims.rows``."""
  return tuple(claims.conditions[condition].rows) or tuple(claims.rows)


def probed_kind(cfg) -> str:
  """The downstream feature the paper probes: LooC++'s concatenation, else the backbone's V."""
  return "looc++" if cfg.model.looc_plus_plus else "backbone"


def run_metrics(results: dict, kind: str) -> dict[str, float]:
  """One evaluation's accuracies (in [0, 1]) of feature ``kind``: rotation and every label."""
  row = results["rows"][kind]
  out = {label: r["top1"] for label, r in row.get("probe", {}).items()}
  if "rotation" in row:
    out["rotation"] = row["rotation"]["top1"]
  return out


def aggregate(per_seed: list[dict[str, float]]) -> dict[str, dict]:
  """[{metric: acc}] over seeds -> {metric: {"mean", "sd" (sample, 0 for one seed), "n",
  "values"}}."""
  out = {}
  for key in per_seed[0]:
    v = np.asarray([r[key] for r in per_seed], np.float64)
    out[key] = {
      "mean": float(v.mean()),
      "sd": float(v.std(ddof=1)) if v.size > 1 else 0.0,
      "n": int(v.size),
      "values": [float(x) for x in v],
    }
  return out


def _cached_results(workdir: str, eval_cfg) -> dict | None:
  """The evaluation saved in ``workdir`` if it used ``eval_cfg`` on the newest checkpoint."""
  path = os.path.join(workdir, eval_cfg.results_file)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    results = json.load(f)
  ckpt = checkpoints.Checkpointer(workdir, async_save=False)
  latest = ckpt.latest_step()
  ckpt.close()
  same = results.get("eval_config") == json.loads(eval_cfg.to_json())
  return results if same and results.get("step") == latest else None


def run_one(cfg, eval_cfg, workdir: str, method, label: str) -> tuple[dict, dict]:
  """Trains one row in ``workdir`` (contrastive pretraining, resumed if there; or the
  ``method``'s baseline, on the condition's primary ``label`` where supervised), evaluates it."""
  baseline = method.get("baseline", "")
  if baseline == "random_init":
    summary = baselines.save_random_init(cfg, workdir)
  elif baseline == "supervised":
    summary = baselines.train_supervised(cfg, workdir, label)
  elif baseline:
    raise ValueError(f"unknown baseline {baseline!r} (random_init, supervised)")
  else:
    summary = loop.pretrain(cfg, workdir)
    summary = {k: v for k, v in summary.items() if k != "state"}
  results = _cached_results(workdir, eval_cfg)
  if results is None:
    results = evaluate.run(workdir, eval_cfg)
  return summary, results


def run_condition(claims, condition: str, workdir: str, seeds) -> dict:
  """Every row x seed of one condition, then its analysis: the gates, printed before the
  hypotheses are computed, then the hypotheses and the exploratory comparisons."""
  cond = claims.conditions[condition]
  runs, chance, features = {}, None, {}
  t0, cpu0 = time.perf_counter(), time.process_time()
  for method in condition_rows(claims, condition):
    runs[method] = {}
    for seed in seeds:
      cfg = method_config(claims, condition, method, seed)
      kind = probed_kind(cfg)
      features[method] = kind
      t_run, cpu_run = time.perf_counter(), time.process_time()
      train_summary, results = run_one(
        cfg,
        eval_config(claims, condition, cfg),
        os.path.join(workdir, condition, method, f"seed{seed}"),
        claims.methods[method],
        cond.primary_label,
      )
      chance = results["chance"]
      s = results.get("sensitivity") or {}
      runs[method][seed] = {
        "metrics": run_metrics(results, kind),
        "train": {
          k: v
          for k, v in train_summary.items()
          if k.startswith(("loss", "top1", "own_top1", "img_per_s")) or k == "step"
        },
        "sensitivity": {
          "columns": s.get("columns"),
          "rows": dict(zip(s.get("rows", []), s.get("matrix", []))),
        },
        "seconds": round(time.perf_counter() - t_run, 1),
        "cpu_seconds": round(time.process_time() - cpu_run, 1),
      }
      logging.info(
        "%s / %s seed %d: %s (%.0f s)",
        condition,
        method,
        seed,
        runs[method][seed]["metrics"],
        runs[method][seed]["seconds"],
      )
  summary = {
    m: {
      "feature": features[m],
      "title": claims.methods[m].title,
      "metrics": aggregate([r["metrics"] for r in runs[m].values()]),
    }
    for m in runs
  }
  gates = analysis.check_gates(runs, cond.gates, claims.methods)
  if gates["gates"]:  # read before any hypothesis is computed
    print(f"{condition}: gates\n{report.format_gates({'analysis': gates, 'summary': summary})}")
  out = {
    "description": cond.description,
    "runs": runs,
    "summary": summary,
    "chance": chance,
    "preregistration": _preregistration(cond.preregistration),
    "deviations": list(cond.deviations),
    "analysis": {
      **gates,
      "hypotheses": analysis.hypothesis_tests(
        runs, cond.hypotheses, claims.analysis, gates["status"] == "informative"
      ),
      "exploratory": analysis.explore(runs, claims.reference, claims.analysis),
    },
    "seconds": round(time.perf_counter() - t0, 1),
    "cpu_seconds": round(time.process_time() - cpu0, 1),
  }
  return out


def _preregistration(name: str) -> dict | None:
  """The pre-registration record of a condition's file (``analysis.preregistration``)."""
  if not name:
    return None
  try:
    path = config_lib.find_file(name)
  except FileNotFoundError:
    return {"file": name, "commit": None, "note": "the file is not in this checkout"}
  return analysis.preregistration(path, name)


def run_experiment(
  claims: ml_collections.ConfigDict, workdir: str, seeds=None, conditions=None
) -> dict:
  """Every condition; writes claims.{json,md,png} in ``workdir`` and returns the record."""
  seeds = tuple(int(s) for s in (seeds if seeds is not None else claims.seeds))
  conditions = tuple(conditions if conditions is not None else claims.run_conditions)
  for name in conditions:
    if name not in claims.conditions:
      raise ValueError(f"unknown condition {name!r}; known: {tuple(claims.conditions)}")
  for name in dict.fromkeys(r for c in conditions for r in condition_rows(claims, c)):
    if name not in claims.methods:
      raise ValueError(f"claims.rows has unknown row {name!r}; known: {tuple(claims.methods)}")
  os.makedirs(workdir, exist_ok=True)
  t_start, cpu_start = time.perf_counter(), time.process_time()
  out = {
    "preset": claims.preset,
    "seeds": list(seeds),
    "rows": list(claims.rows),
    "reference": claims.reference,
    "conditions": {},
    "claims_config": json.loads(claims.to_json()),
  }
  for name in conditions:
    out["conditions"][name] = run_condition(claims, name, workdir, seeds)
    out["seconds"] = round(time.perf_counter() - t_start, 1)
    out["cpu_seconds"] = round(time.process_time() - cpu_start, 1)
    _write(out, workdir)  # after every condition: a long run leaves its finished part behind
  return out


def _write(out: dict, workdir: str) -> None:
  out["report"] = report.format_report(out)
  with open(os.path.join(workdir, "claims.json"), "w") as f:
    json.dump(out, f, indent=1, default=str)
  with open(os.path.join(workdir, "claims.md"), "w") as f:
    f.write(out["report"] + "\n")
  report.plot_bars(out, os.path.join(workdir, "claims.png"))


def load_config(preset: str = "full") -> ml_collections.ConfigDict:
  """configs/claims.py's ``get_config(preset)`` (the repository's configs/ is not a package)."""
  return config_lib.load_file(CONFIG_FILE, preset)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  claims = _CLAIMS.value
  if _PRESET.value is not None:
    given = [
      f"--{name}"
      for name in flags.FLAGS
      if (name == "claims" or name.startswith("claims.")) and flags.FLAGS[name].present
    ]
    if given:
      raise app.UsageError(
        f"--preset cannot be combined with {', '.join(sorted(given))}; use "
        f"--claims=configs/claims.py:{_PRESET.value} with the overrides"
      )
    claims = load_config(_PRESET.value)
  gc.freeze()  # the modules imported so far (jax, flax) live as long as the process
  if _COMPILATION_CACHE.value:
    import jax  # pylint: disable=import-outside-toplevel

    jax.config.update("jax_compilation_cache_dir", os.path.expanduser(_COMPILATION_CACHE.value))
  out = run_experiment(claims, _WORKDIR.value, _SEEDS.value, _CONDITIONS.value)
  print(out["report"])
  print(
    f"preset {out['preset']}, seeds {out['seeds']}: {out['seconds']:.0f} s wall, "
    f"{out['cpu_seconds']:.0f} s CPU (this process); wrote {_WORKDIR.value}/claims.{{json,md,png}}"
  )


if __name__ == "__main__":
  app.run(main)
