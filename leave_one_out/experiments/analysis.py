"""The claims experiment's analysis of one condition: gates, then the pre-registered family of
hypotheses with Holm's correction, then the exploratory comparisons; and the pre-registration's
commit, read from git.

Input: ``runs`` = {row: {seed: {"metrics": {metric: accuracy in [0, 1]}, "train": {"own_top1/
<space>": ...}}}} (seeds as ints or strings) and the condition's config (configs/claims.py:
``gates``, ``hypotheses``). Order of reading, as docs/preregistration_digits.md fixes it:

1. ``check_gates``: each gate on the means over seeds; a gate whose rows did not run is "not
   measured". One failed gate makes the condition "uninformative".
2. ``hypothesis_tests``: one-sided paired t-tests (``stats.compare``) of every hypothesis whose
   rows ran, Holm-adjusted over them (the family); verdict "confirmed" (adjusted p < alpha),
   "not shown", or "not tested (gate failed)" in an uninformative condition (the numbers are
   kept, the verdict is not read from them).
3. ``explore``: every other row against the reference row on every metric, two-sided, no
   correction, no verdict.
"""

from __future__ import annotations

import os
import subprocess

import numpy as np

from leave_one_out.experiments import stats

NOT_TESTED = "not tested (gate failed)"


def _seeds(runs: dict, *rows: str) -> list:
  common = set(runs[rows[0]])
  for row in rows[1:]:
    common &= set(runs[row])
  return sorted(common, key=int)


def _mean(runs: dict, row: str, metric: str) -> float:
  return float(np.mean([r["metrics"][metric] for r in runs[row].values()]))


def check_gates(runs: dict, gates, methods) -> dict:
  """{"gates": [{name, text, kind, threshold, status, value, detail}], "status"}.

  ``status``: "uninformative" when a gate failed, else "informative" (with "not measured" gates
  named in "unmeasured").
  """
  out = []
  for name, g in gates.items():
    r = {"name": name, "text": g.text, "kind": g.kind, "threshold": float(g.threshold)}
    if g.kind == "gain":
      if g.row in runs and g.reference in runs:
        a, b = _mean(runs, g.row, g.metric), _mean(runs, g.reference, g.metric)
        r.update(value=a - b, detail={"row": a, "reference": b}, ok=a - b >= g.threshold)
      r.update(metric=g.metric, row=g.row, reference=g.reference)
    elif g.kind == "at_most":
      if g.row in runs:
        a = _mean(runs, g.row, g.metric)
        r.update(value=a, ok=a <= g.threshold)
      r.update(metric=g.metric, row=g.row)
    elif g.kind == "own_view":
      spaces = {
        f"{row} / {space}": float(
          np.mean([s["train"][f"own_top1/{space}"] for s in runs[row].values()])
        )
        for row in runs
        for space in methods[row].get("spaces", ())
      }
      if spaces:
        r.update(value=min(spaces.values()), detail=spaces, ok=min(spaces.values()) >= g.threshold)
    else:
      raise ValueError(f"gate {name} has unknown kind {g.kind!r} (gain, at_most, own_view)")
    named = [n for n in (r.get("row"), r.get("reference")) if n in methods]
    r["titles"] = {n: methods[n].get("title", n) for n in named}  # rows that did not run too
    r["status"] = "not measured" if "ok" not in r else ("pass" if r.pop("ok") else "fail")
    out.append(r)
  failed = [g["name"] for g in out if g["status"] == "fail"]
  return {
    "gates": out,
    "status": "uninformative" if failed else "informative",
    "failed": failed,
    "unmeasured": [g["name"] for g in out if g["status"] == "not measured"],
  }


def hypothesis_tests(runs: dict, hypotheses, analysis, informative: bool) -> list[dict]:
  """The family: every hypothesis whose rows ran, tested and Holm-adjusted together."""
  tested = []
  for name, h in hypotheses.items():
    if h.a not in runs or h.b not in runs:
      continue
    seeds = _seeds(runs, h.a, h.b)
    a = [runs[h.a][s]["metrics"][h.metric] for s in seeds]
    b = [runs[h.b][s]["metrics"][h.metric] for s in seeds]
    r = stats.compare(a, b, direction=h.direction, margin=h.margin, confidence=analysis.confidence)
    tested.append(
      {
        "name": name,
        "text": h.text,
        "metric": h.metric,
        "a": h.a,
        "direction": h.direction,
        "b": h.b,
        "seeds": [int(s) for s in seeds],
        **r,
      }
    )
  for h, adjusted in zip(tested, stats.holm([h["p"] for h in tested])):
    h["p_holm"] = adjusted
    h["alpha"] = float(analysis.alpha)
    if not informative:
      h["verdict"] = NOT_TESTED
    else:
      h["verdict"] = "confirmed" if adjusted < analysis.alpha else "not shown"
  return tested


def explore(runs: dict, reference: str, analysis) -> dict:
  """{row: {metric: ``stats.compare`` two-sided}} of every row against ``reference``."""
  out = {}
  if reference not in runs:
    return out
  for row in runs:
    if row == reference:
      continue
    seeds = _seeds(runs, row, reference)
    if len(seeds) < 2:
      continue
    out[row] = {
      metric: stats.compare(
        [runs[row][s]["metrics"][metric] for s in seeds],
        [runs[reference][s]["metrics"][metric] for s in seeds],
        direction="two-sided",
        confidence=analysis.confidence,
      )
      for metric in runs[row][seeds[0]]["metrics"]
    }
  return out


def analyse(runs: dict, condition, methods, reference: str, analysis) -> dict:
  """Gates, hypotheses and exploratory comparisons of one condition (module docstring)."""
  gates = check_gates(runs, condition.gates, methods)
  return {
    **gates,
    "hypotheses": hypothesis_tests(
      runs, condition.hypotheses, analysis, gates["status"] == "informative"
    ),
    "exploratory": explore(runs, reference, analysis),
  }


def _git(root: str, *args: str) -> str:
  return subprocess.run(
    ["git", "-C", root, *args], capture_output=True, text=True, check=True, timeout=30
  ).stdout


def preregistration(path: str, name: str) -> dict:
  """Where the pre-registration file ``name``, found at ``path`` (absolute), was committed:
  {"file", "commit", "date", "subject", "later" (later commits that changed it: deviations),
  "uncommitted"}; "commit" None with a "note" where git cannot say (not a git checkout, the
  file not committed)."""
  out = {"file": name, "commit": None}
  root = os.path.dirname(path)
  try:
    log = _git(root, "log", "--format=%H%x09%ad%x09%s", "--date=short", "--", path)
    dirty = _git(root, "status", "--porcelain", "--", path).strip()
  except (OSError, subprocess.SubprocessError) as e:
    out["note"] = f"git could not be asked ({type(e).__name__})"
    return out
  commits = [line.split("\t", 2) for line in log.strip().splitlines()]
  if not commits:
    out["note"] = "the file is not committed"
    return out
  commit, date, subject = commits[-1]  # the oldest: the registration
  out.update(commit=commit, date=date, subject=subject)
  out["later"] = [{"commit": c, "date": d, "subject": s} for c, d, s in reversed(commits[:-1])]
  out["uncommitted"] = bool(dirty)
  return out
