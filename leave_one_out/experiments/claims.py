r"""The paper's rotation claim at small scale: MoCo vs MoCo + rotation vs LooC vs LooC++.

  python -m leave_one_out.experiments.claims [--preset=full|ci] [--seeds=0,1] \
      [--workdir=/tmp/looc_claims] [--compilation_cache_dir=~/.cache/leave_one_out/jax]
  python -m leave_one_out.experiments.claims --claims=configs/claims.py:ci \
      --claims.base.train.num_steps=400 --claims.looc_spaces='("color", "rotation")'

For every method (configs/claims.py) and seed: pretrain in ``<workdir>/<method>/seed<s>``
(resumed if already there), evaluate the frozen features with ``leave_one_out.evaluate``
(linear probes for shape, colour, texture; the 4-way rotation probe; the sensitivity matrix
when the preset asks for it),
then aggregate over seeds and write, in ``<workdir>``:

- ``claims.json``: per method and seed, every probe accuracy and the sensitivity rows; the
  aggregate (mean and spread = (max - min) / 2 over seeds); runtimes and the configs.
- ``claims.md``: the table (rows: methods; columns: rotation, shape, colour, texture).
- ``claims.png``: a bar chart of the same numbers, error bars = spread over seeds.
"""

from __future__ import annotations

import copy
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app
from absl import flags
from absl import logging
import ml_collections
from ml_collections import config_flags
import numpy as np

PRESETS = ("full", "ci")  # configs/claims.py

# Table columns: (key in a run's metrics, column title).
COLUMNS = (("rotation", "rotation"), ("shape", "shape"), ("color", "colour"),
           ("texture", "texture"))
METHOD_TITLES = {"moco": "MoCo (colour)", "moco_rotation": "MoCo + rotation",
                 "looc": "LooC", "looc_pp": "LooC++"}

CONFIG_PATH = os.path.normpath(
    os.path.join(os.path.dirname(__file__), "..", "..", "configs", "claims.py"))

_CLAIMS = config_flags.DEFINE_config_file(
    "claims", CONFIG_PATH, "Experiment config, with a preset after the colon: "
    "configs/claims.py:ci. Fields are overridden as --claims.base.train.num_steps=1200. "
    "Default: configs/claims.py (the full preset).", lock_config=True)
_PRESET = flags.DEFINE_enum("preset", None, list(PRESETS),
                            "Shorthand for --claims=configs/claims.py:<preset>; not together "
                            "with --claims or its overrides.")
_SEEDS = flags.DEFINE_list("seeds", None, "Seeds, e.g. 0,1,2 (default: the preset's).")
_WORKDIR = flags.DEFINE_string("workdir", "/tmp/looc_claims", "Output directory.")
_COMPILATION_CACHE = flags.DEFINE_string(
    "compilation_cache_dir", None, "Persistent XLA compilation cache: the second seed of a "
    "method and reruns skip compiling (e.g. ~/.cache/leave_one_out/jax).")


def method_config(base: ml_collections.ConfigDict, method: str, looc_spaces, seed: int
                  ) -> ml_collections.ConfigDict:
  """The pretraining config of one method: ``base`` with only the method's fields changed."""
  cfg = copy.deepcopy(base)
  cfg.unlock()
  cfg.seed = int(seed)
  if method == "moco":
    cfg.augment.spaces = ()
    cfg.augment.rotation.enabled = False
  elif method == "moco_rotation":
    cfg.augment.spaces = ()
    cfg.augment.rotation.enabled = True
  elif method in ("looc", "looc_pp"):
    cfg.augment.spaces = tuple(looc_spaces)
    cfg.augment.rotation.enabled = True
    cfg.model.looc_plus_plus = method == "looc_pp"
  else:
    raise ValueError(f"unknown method {method!r}; known: {tuple(METHOD_TITLES)}")
  cfg.lock()
  return cfg


def probed_kind(method: str) -> str:
  """The downstream feature the paper probes: LooC++'s concatenation, else the backbone's V."""
  return "looc++" if method == "looc_pp" else "backbone"


def run_metrics(results: dict, kind: str) -> dict[str, float]:
  """One evaluation's accuracies (in [0, 1]) of feature ``kind``: rotation and every label."""
  row = results["rows"][kind]
  out = {label: r["top1"] for label, r in row.get("probe", {}).items()}
  if "rotation" in row:
    out["rotation"] = row["rotation"]["top1"]
  return out


def aggregate(per_seed: list[dict[str, float]]) -> dict[str, dict[str, float]]:
  """[{metric: acc}] over seeds -> {metric: {"mean", "spread" = (max - min) / 2, "n"}}."""
  out = {}
  for key in per_seed[0]:
    v = np.asarray([r[key] for r in per_seed], np.float64)
    out[key] = {"mean": float(v.mean()), "spread": float((v.max() - v.min()) / 2),
                "n": int(len(v))}
  return out


def format_table(summary: dict[str, dict], chance: dict[str, float] | None = None) -> str:
  """Markdown table, rows = methods, columns = probe accuracies as mean ± spread (%)."""
  header = ["method", "feature"] + [f"{title} acc" for _, title in COLUMNS]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for method, s in summary.items():
    cells = [METHOD_TITLES.get(method, method), s["feature"]]
    for key, _ in COLUMNS:
      a = s["metrics"].get(key)
      cells.append("-" if a is None else
                   f"{100 * a['mean']:.1f} ± {100 * a['spread']:.1f}")
    lines.append("| " + " | ".join(cells) + " |")
  if chance:
    lines.append("chance: " + ", ".join(f"{t} {100 * chance[k]:.1f}" for k, t in COLUMNS
                                        if k in chance))
  return "\n".join(lines)


def plot_bars(summary: dict[str, dict], path: str, chance: dict[str, float] | None = None
              ) -> None:
  """Grouped bar chart: one group per probe, one bar per method, error bars = seed spread."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  methods = list(summary)
  width = 0.8 / max(len(methods), 1)
  fig, ax = plt.subplots(figsize=(8, 4))
  x = np.arange(len(COLUMNS))
  for i, m in enumerate(methods):
    means = [100 * summary[m]["metrics"].get(k, {}).get("mean", np.nan) for k, _ in COLUMNS]
    errs = [100 * summary[m]["metrics"].get(k, {}).get("spread", 0.0) for k, _ in COLUMNS]
    ax.bar(x + (i - (len(methods) - 1) / 2) * width, means, width, yerr=errs, capsize=3,
           label=METHOD_TITLES.get(m, m))
  if chance:
    for j, (k, _) in enumerate(COLUMNS):
      if k in chance:
        ax.hlines(100 * chance[k], j - 0.45, j + 0.45, colors="k", linestyles="dashed",
                  linewidth=1)
  ax.set_xticks(x, [f"{t}" for _, t in COLUMNS])
  ax.set_ylabel("linear probe top-1 (%)")
  ax.set_ylim(0, 100)
  ax.set_title("Frozen-feature probes on the embedded dataset (dashed: chance)")
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def run_one(cfg: ml_collections.ConfigDict, eval_cfg: ml_collections.ConfigDict, workdir: str
            ) -> tuple[dict, dict]:
  """Pretrains (or resumes) in ``workdir`` and evaluates; returns (train summary, results)."""
  from leave_one_out import evaluate  # pylint: disable=import-outside-toplevel
  from leave_one_out import train  # pylint: disable=import-outside-toplevel
  summary = train.train_and_evaluate(cfg, workdir)
  summary = {k: v for k, v in summary.items() if k != "state"}
  results = evaluate.run(workdir, eval_cfg)
  return summary, results


def run_experiment(claims: ml_collections.ConfigDict, workdir: str, seeds=None) -> dict:
  """Every method x seed, then the aggregate; writes claims.{json,md,png} in ``workdir``."""
  seeds = tuple(int(s) for s in (seeds if seeds is not None else claims.seeds))
  os.makedirs(workdir, exist_ok=True)
  t_start = time.perf_counter()
  runs, summary, chance = {}, {}, None
  for method in claims.methods:
    kind = probed_kind(method)
    runs[method] = {}
    for seed in seeds:
      cfg = method_config(claims.base, method, claims.looc_spaces, seed)
      t0 = time.perf_counter()
      train_summary, results = run_one(cfg, claims.eval,
                                       os.path.join(workdir, method, f"seed{seed}"))
      chance = results["chance"]
      s = results.get("sensitivity") or {}
      runs[method][seed] = {
          "metrics": run_metrics(results, kind),
          "train": {k: v for k, v in train_summary.items()
                    if k.startswith(("loss", "top1", "own_top1")) or k == "step"},
          "sensitivity": {"columns": s.get("columns"),
                          "rows": dict(zip(s.get("rows", []), s.get("matrix", [])))},
          "seconds": round(time.perf_counter() - t0, 1)}
      logging.info("%s seed %d: %s (%.0f s)", method, seed, runs[method][seed]["metrics"],
                   runs[method][seed]["seconds"])
    summary[method] = {"feature": kind,
                       "metrics": aggregate([r["metrics"] for r in runs[method].values()])}
  seconds = round(time.perf_counter() - t_start, 1)
  table = format_table(summary, chance)
  out = {"preset": claims.preset, "seeds": list(seeds), "summary": summary, "runs": runs,
         "chance": chance, "seconds": seconds, "table": table,
         "claims_config": json.loads(claims.to_json())}
  with open(os.path.join(workdir, "claims.json"), "w") as f:
    json.dump(out, f, indent=1, default=str)
  with open(os.path.join(workdir, "claims.md"), "w") as f:
    f.write(table + f"\n\npreset {claims.preset}: {len(seeds)} seed(s) {list(seeds)} x "
            f"{len(claims.methods)} methods, total {seconds:.0f} s (pretraining + evaluation)\n")
  plot_bars(summary, os.path.join(workdir, "claims.png"), chance)
  return out


def load_config(preset: str = "full") -> ml_collections.ConfigDict:
  """configs/claims.py's ``get_config(preset)`` (the repository's configs/ is not a package)."""
  import importlib.util  # pylint: disable=import-outside-toplevel
  spec = importlib.util.spec_from_file_location("looc_claims_config", CONFIG_PATH)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(preset)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  claims = _CLAIMS.value
  if _PRESET.value is not None:
    given = [f"--{name}" for name in flags.FLAGS
             if (name == "claims" or name.startswith("claims.")) and flags.FLAGS[name].present]
    if given:
      raise app.UsageError(f"--preset cannot be combined with {', '.join(sorted(given))}; use "
                           f"--claims=configs/claims.py:{_PRESET.value} with the overrides")
    claims = load_config(_PRESET.value)
  if _COMPILATION_CACHE.value:
    import jax  # pylint: disable=import-outside-toplevel
    jax.config.update("jax_compilation_cache_dir", os.path.expanduser(_COMPILATION_CACHE.value))
  out = run_experiment(claims, _WORKDIR.value, _SEEDS.value)
  print(out["table"])
  print(f"preset {out['preset']}, seeds {out['seeds']}: {out['seconds']:.0f} s; "
        f"wrote {_WORKDIR.value}/claims.{{json,md,png}}")


if __name__ == "__main__":
  app.run(main)
