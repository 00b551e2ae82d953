r"""The paper's claims at small scale: every row x seed x condition, then the paired analysis.

  python -m leave_one_out.experiments.claims [--preset=full|ci|gpu] [--conditions=lit,unlit] \
      [--seeds=0,1] [--workdir=/tmp/looc_claims] [--compilation_cache_dir=~/.cache/leave_one_out/jax]
  python -m leave_one_out.experiments.claims --claims=configs/claims.py:ci \
      --claims.base.train.num_steps=400 --claims.rows='("moco","looc_rotation")'

For every condition, row (configs/claims.py) and seed: pretrain in
``<workdir>/<condition>/<row>/seed<s>`` (resumed if already there; a row without pretraining
saves its initialisation), evaluate the frozen features with ``leave_one_out.evaluate`` (linear
probes of the condition's labels, the 4-way rotation probe, the sensitivity matrix when the
preset asks for it; an evaluation of the same checkpoint with the same config is reused), then
analyse paired by seed (``stats.compare``) and write, in ``<workdir>``:

- ``claims.json``: per condition, row and seed every probe accuracy and the sensitivity rows;
  the aggregate (mean, sample sd, per-seed values); every hypothesis with its t, p, CI and
  verdict; every row's gap to the reference row; runtimes and the configs.
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
from leave_one_out import sharding
from leave_one_out import train
from leave_one_out.experiments import report
from leave_one_out.experiments import stats
from leave_one_out.run import checkpoints
from leave_one_out.run import loop

PRESETS = ("full", "ci", "gpu")  # configs/claims.py
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


def _set(section: ml_collections.ConfigDict, overrides) -> None:
  """Sets ``overrides`` (a dict or ConfigDict) on ``section``, adding fields it lacks."""
  with section.unlocked():
    for key, value in dict(overrides).items():
      section[key] = value


def method_config(
  claims: ml_collections.ConfigDict, condition: str, method: str, seed: int
) -> ml_collections.ConfigDict:
  """The pretraining config of one row: the base config, the condition's data and train
  overrides, then only the fields the row's method changes."""
  if condition not in claims.conditions:
    raise ValueError(f"unknown condition {condition!r}; known: {tuple(claims.conditions)}")
  if method not in claims.methods:
    raise ValueError(f"unknown method {method!r}; known: {tuple(claims.methods)}")
  m, cond = claims.methods[method], claims.conditions[condition]
  cfg = copy.deepcopy(claims.base)
  cfg.unlock()
  cfg.seed = int(seed)
  _set(cfg.data, cond.data)
  _set(cfg.train, cond.train)
  cfg.augment.spaces = tuple(m.spaces)
  cfg.augment.rotation.enabled = bool(m.get("rotation", False))
  cfg.augment.texture.enabled = bool(m.get("texture", False))
  cfg.augment.extra_keys = int(m.get("extra_keys", 0))
  cfg.model.looc_plus_plus = bool(m.get("looc_plus_plus", False))
  for name, changed in dict(m.get("objectives", {})).items():  # {"augself": {"weight": 0.5}}
    for field, value in dict(changed).items():
      if field not in cfg.objectives[name]:
        raise ValueError(f"method {method!r} sets unknown field objectives.{name}.{field}")
      cfg.objectives[name][field] = value
  cfg.lock()
  return cfg


def eval_config(
  claims: ml_collections.ConfigDict, condition: str, cfg=None
) -> ml_collections.ConfigDict:
  """The evaluation config of a condition: its labels, everything else shared (the data are the
  pretraining run's own data section). Given a row's pretraining config ``cfg``, the feature
  kinds are ``claims.feature_kinds`` less "looc++" where the row is not LooC++."""
  cond = claims.conditions[condition]
  c = copy.deepcopy(claims.eval)
  c.dataset.labels = tuple(cond.labels)
  c.dataset.primary_label = cond.primary_label
  if cfg is not None:
    c.kinds = tuple(k for k in claims.feature_kinds if k != "looc++" or cfg.model.looc_plus_plus)
  return c


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


def analyse(runs: dict, hypotheses, reference: str, analysis) -> dict:
  """The pre-registered tests and the comparisons with the reference row, paired by seed.

  Args:
    runs: {row: {seed: {"metrics": {metric: acc}}}} (seeds as ints or strings).
    hypotheses: (metric, a, direction, b) tuples.
    reference: the row every other row is compared with.
    analysis: alpha, confidence, bootstrap_resamples.

  Returns:
    {"hypotheses": [{metric, a, direction, b, seeds, ...stats.compare}], "vs_reference":
    {row: {metric: {...stats.compare with direction "none"}}}}. A hypothesis whose rows did not
    both run is left out.
  """

  def paired(a, b, metric):
    seeds = sorted(set(runs[a]) & set(runs[b]), key=int)
    return (
      seeds,
      [runs[a][s]["metrics"][metric] for s in seeds],
      [runs[b][s]["metrics"][metric] for s in seeds],
    )

  kw = dict(
    alpha=analysis.alpha, confidence=analysis.confidence, resamples=analysis.bootstrap_resamples
  )
  tested = []
  for metric, a, direction, b in hypotheses:
    if a not in runs or b not in runs:
      continue
    seeds, va, vb = paired(a, b, metric)
    tested.append(
      {
        "metric": metric,
        "a": a,
        "direction": direction,
        "b": b,
        "seeds": [int(s) for s in seeds],
        **stats.compare(va, vb, direction=direction, **kw),
      }
    )
  versus = {}
  if reference in runs:
    for row in runs:
      if row == reference:
        continue
      versus[row] = {}
      for metric in next(iter(runs[row].values()))["metrics"]:
        seeds, va, vb = paired(row, reference, metric)
        if len(seeds) < 2:
          continue
        r = stats.compare(va, vb, direction="greater", **kw)
        r.update(direction="none", verdict=None)
        versus[row][metric] = r
  return {"hypotheses": tested, "vs_reference": versus}


def _init_checkpoint(cfg, workdir: str) -> None:
  """Saves the untrained state of ``cfg`` as step 0 (the random-initialisation row)."""
  ckpt = checkpoints.Checkpointer(workdir, async_save=False)
  try:
    if ckpt.latest_step() is not None:
      return
    mesh = sharding.make_mesh()
    config_lib.validate(cfg, num_devices=mesh.size)
    state = train.programs(cfg, mesh, steps_per_epoch=1).new_state(cfg.seed)
    ckpt.save(0, state, checkpoints.meta_record(cfg, 0), force=True)
  finally:
    ckpt.close()


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


def run_one(cfg, eval_cfg, workdir: str, *, pretrain: bool = True) -> tuple[dict, dict]:
  """Pretrains (or resumes; or saves the initialisation) and evaluates ``workdir``."""
  if pretrain:
    summary = loop.pretrain(cfg, workdir)
    summary = {k: v for k, v in summary.items() if k != "state"}
  else:
    _init_checkpoint(cfg, workdir)
    summary = {"step": 0}
  results = _cached_results(workdir, eval_cfg)
  if results is None:
    results = evaluate.run(workdir, eval_cfg)
  return summary, results


def run_condition(claims, condition: str, workdir: str, seeds) -> dict:
  """Every row x seed of one condition, then its analysis."""
  runs, chance, features, t0 = {}, None, {}, time.perf_counter()
  for method in claims.rows:
    runs[method] = {}
    for seed in seeds:
      cfg = method_config(claims, condition, method, seed)
      kind = probed_kind(cfg)
      features[method] = kind
      eval_cfg = eval_config(claims, condition, cfg)
      t_run = time.perf_counter()
      train_summary, results = run_one(
        cfg,
        eval_cfg,
        os.path.join(workdir, condition, method, f"seed{seed}"),
        pretrain=bool(claims.methods[method].get("pretrain", True)),
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
  cond = claims.conditions[condition]
  return {
    "description": cond.description,
    "runs": runs,
    "summary": summary,
    "chance": chance,
    "analysis": analyse(runs, cond.hypotheses, claims.reference, claims.analysis),
    "seconds": round(time.perf_counter() - t0, 1),
  }


def run_experiment(
  claims: ml_collections.ConfigDict, workdir: str, seeds=None, conditions=None
) -> dict:
  """Every condition; writes claims.{json,md,png} in ``workdir`` and returns the record."""
  seeds = tuple(int(s) for s in (seeds if seeds is not None else claims.seeds))
  conditions = tuple(conditions if conditions is not None else claims.run_conditions)
  for name in conditions:
    if name not in claims.conditions:
      raise ValueError(f"unknown condition {name!r}; known: {tuple(claims.conditions)}")
  for name in claims.rows:
    if name not in claims.methods:
      raise ValueError(f"claims.rows has unknown row {name!r}; known: {tuple(claims.methods)}")
  os.makedirs(workdir, exist_ok=True)
  t_start = time.perf_counter()
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
    f"preset {out['preset']}, seeds {out['seeds']}: {out['seconds']:.0f} s; "
    f"wrote {_WORKDIR.value}/claims.{{json,md,png}}"
  )


if __name__ == "__main__":
  app.run(main)
