"""Tables and the chart of the claims experiment (``claims.run_experiment``'s record).

Per condition, in the order they are read: the pre-registration's commit and the deviations;
the gates and the condition's status; the means (sd over seeds) per row and metric; the
pre-registered hypotheses (one-sided paired t-tests, Holm-adjusted p, t intervals, bounds,
verdicts); the exploratory comparisons with the reference row (two-sided, no verdict); the
per-seed values of the metrics the hypotheses are about; the sensitivity matrices. Accuracies
are in % everywhere, gaps in percentage points.
"""

from __future__ import annotations

import numpy as np

METRIC_TITLES = {
  "rotation": "rotation",
  "shape": "shape",
  "color": "colour",
  "texture": "texture",
  "hue": "hue (24 bins)",
  "photo": "photo",
  "digit": "digit",
  "digit_hue": "digit x hue",
}
SYMBOLS = {"greater": ">", "less": "<"}


def _metrics(summary: dict) -> list[str]:
  """Metric columns: rotation first, then the probe labels in the order they were run."""
  names = []
  for s in summary.values():
    for key in s["metrics"]:
      if key not in names:
        names.append(key)
  return sorted(names, key=lambda k: (k != "rotation", names.index(k)))


def _table(header: list[str], rows: list[list[str]]) -> str:
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(r) + " |" for r in rows]
  return "\n".join(lines)


def _title(cond: dict, row: str) -> str:
  return cond["summary"].get(row, {}).get("title", row)


def format_means(cond: dict) -> str:
  """Rows x metrics: mean ± sd over seeds (%)."""
  metrics = _metrics(cond["summary"])
  body = []
  for row, s in cond["summary"].items():
    cells = [s.get("title", row), s["feature"]]
    for key in metrics:
      a = s["metrics"].get(key)
      cells.append("-" if a is None else f"{100 * a['mean']:.1f} ± {100 * a['sd']:.1f}")
    body.append(cells)
  header = ["row", "feature"] + [METRIC_TITLES.get(k, k) for k in metrics]
  text = _table(header, body)
  chance = cond.get("chance") or {}
  if chance:
    text += "\n\nchance: " + ", ".join(
      f"{METRIC_TITLES.get(k, k)} {100 * chance[k]:.1f}" for k in metrics if k in chance
    )
  return text


def _gap_cell(r: dict) -> str:
  low, high = r["ci"]
  return f"{100 * r['mean_gap']:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}] p{_p(r['p'])}"


def _p(p: float) -> str:
  """ "<0.001" or "=0.012"."""
  return "<0.001" if p < 0.001 else f"={p:.3f}"


def _points(x: float) -> str:
  return f"{100 * x:+.1f}"


def format_preregistration(cond: dict) -> str:
  """The pre-registration's commit, and every deviation from it (stated and from git)."""
  pre = cond.get("preregistration")
  lines = []
  if pre:
    if pre.get("commit"):
      lines.append(
        f"Pre-registration: {pre['file']}, committed in {pre['commit'][:12]} "
        f'({pre["date"]}, "{pre["subject"][:100]}"), before any run of this condition.'
      )
    else:
      lines.append(f"Pre-registration: {pre['file']}, commit unknown ({pre.get('note')}).")
  deviations = list(cond.get("deviations", []))
  for later in (pre or {}).get("later", []):
    deviations.append(
      f"the pre-registration file was changed after it was committed: {later['commit'][:12]} "
      f'({later["date"]}, "{later["subject"][:80]}")'
    )
  if (pre or {}).get("uncommitted"):
    deviations.append("the pre-registration file has uncommitted changes in this checkout")
  if pre or deviations:
    lines.append("Deviations:" + (" none." if not deviations else ""))
    lines += [f"- {d}" for d in deviations]
  return "\n".join(lines)


def format_gates(cond: dict) -> str:
  """The gates: what each measures, the value, the threshold, pass / fail / not measured."""
  a = cond["analysis"]
  if not a.get("gates"):
    return ""
  ran = {row: s.get("title", row) for row, s in cond["summary"].items()}
  body = []
  for g in a["gates"]:
    titles = {**ran, **g.get("titles", {})}  # the gate's rows, whether or not they ran
    title = lambda row: titles.get(row, row)
    measured = "-"
    if g["kind"] == "gain":
      what = f"{title(g['row'])} - {title(g['reference'])} ({METRIC_TITLES.get(g['metric'])})"
      threshold = f">= {_points(g['threshold'])}"
      if "value" in g:
        measured = (
          f"{_points(g['value'])} ({100 * g['detail']['row']:.1f} vs "
          f"{100 * g['detail']['reference']:.1f})"
        )
    elif g["kind"] == "at_most":
      what = f"{title(g['row'])} ({METRIC_TITLES.get(g['metric'])})"
      threshold = f"<= {100 * g['threshold']:.1f}"
      if "value" in g:
        measured = f"{100 * g['value']:.1f}"
    else:
      what = "own-view top-1 of every LooC space (lowest)"
      threshold = f">= {100 * g['threshold']:.1f}"
      if "value" in g:
        measured = (
          f"{100 * g['value']:.1f} ("
          + ", ".join(f"{k} {100 * v:.1f}" for k, v in g["detail"].items())
          + ")"
        )
    body.append([g["name"], f"{g['text']}: {what}", measured, threshold, f"**{g['status']}**"])
  text = _table(["gate", "what (means over seeds, %)", "measured", "threshold", "result"], body)
  if a["status"] == "uninformative":
    status = (
      f"Condition **uninformative**: gate {', '.join(a['failed'])} failed, so its hypotheses "
      "are not tested (never read as negative results)."
    )
  else:
    status = "Condition **informative**: every gate measured passed."
    if a.get("unmeasured"):
      status += f" Not measured in this preset: {', '.join(a['unmeasured'])}."
  return text + "\n\n" + status


def format_gaps(cond: dict, reference: str) -> str:
  """Exploratory: each row's paired gap to ``reference`` per metric: mean [95% t interval] and
  p (two-sided, uncorrected, no verdict)."""
  versus = cond["analysis"].get("exploratory", {})
  if not versus:
    return ""
  metrics = _metrics(cond["summary"])
  body = [
    [_title(cond, row)] + [_gap_cell(per[k]) if k in per else "-" for k in metrics]
    for row, per in versus.items()
  ]
  header = [f"row - {_title(cond, reference)}"] + [METRIC_TITLES.get(k, k) for k in metrics]
  return _table(header, body)


def _hypothesis_title(cond: dict, h: dict) -> str:
  a, b, symbol = _title(cond, h["a"]), _title(cond, h["b"]), SYMBOLS[h["direction"]]
  claim = f"{a} - {b} {symbol} {_points(h['margin'])}" if h.get("margin") else f"{a} {symbol} {b}"
  return f"{h['name']}: {claim} ({METRIC_TITLES.get(h['metric'], h['metric'])})"


def format_hypotheses(cond: dict) -> str:
  """The family: gap, two-sided t interval, one-sided bound, t, p, Holm p, verdict."""
  tested = cond["analysis"]["hypotheses"]
  if not tested:
    return ""
  body = []
  for h in tested:
    low, high = h["ci"]
    body.append(
      [
        _hypothesis_title(cond, h),
        _points(h["mean_gap"]),
        f"[{_points(low)}, {_points(high)}]",
        f"{'>=' if h['direction'] == 'greater' else '<='} {_points(h['bound'])}",
        f"{h['t']:.2f} ({h['df']})",
        _p(h["p"]).lstrip("="),
        _p(h["p_holm"]).lstrip("="),
        f"**{h['verdict']}**",
      ]
    )
  header = [
    "hypothesis",
    "mean gap",
    "95% CI (t)",
    "one-sided 95% bound",
    "t (df)",
    "p (one-sided)",
    "Holm p",
    "verdict",
  ]
  return _table(header, body)


def format_seeds(cond: dict, metric: str) -> str:
  """Rows x seeds of one metric (%), paired: the same column is the same seed."""
  runs = cond["runs"]
  seeds = sorted({s for r in runs.values() for s in r}, key=int)
  body = [
    [_title(cond, row)]
    + [f"{100 * per[s]['metrics'][metric]:.1f}" if s in per else "-" for s in seeds]
    for row, per in runs.items()
  ]
  return _table([METRIC_TITLES.get(metric, metric)] + [f"seed {s}" for s in seeds], body)


def format_sensitivity(cond: dict) -> str:
  """Per row and feature kind: the sensitivity matrix row, mean over seeds (0 = invariant)."""
  body, columns = [], None
  for row, per in cond["runs"].items():
    mats = [r["sensitivity"] for r in per.values() if r.get("sensitivity", {}).get("columns")]
    if not mats:
      continue
    columns = columns or mats[0]["columns"]
    for kind in mats[0]["rows"]:
      if kind.startswith("space:"):
        continue  # LooC++'s per-space res5 features: the concatenation covers them
      values = np.mean([m["rows"][kind] for m in mats], axis=0)
      body.append([_title(cond, row), kind] + [f"{v + 0.0:.2f}" for v in values])
  if not body:
    return ""
  return _table(["row", "feature"] + list(columns), body)


def _overview_columns(out: dict) -> list[tuple[str, str]]:
  """(condition, metric) columns: per condition the rotation probe, its primary label and every
  other metric a hypothesis is about."""
  cols = []
  for name, cond in out["conditions"].items():
    primary = out["claims_config"]["conditions"][name]["primary_label"]
    tested = [h["metric"] for h in cond["analysis"]["hypotheses"]]
    for metric in dict.fromkeys(["rotation", primary, *tested]):
      if metric in _metrics(cond["summary"]):
        cols.append((name, metric))
  return cols


def format_overview(out: dict) -> str:
  """Every condition side by side: the reference row's mean ± sd, then each other row's paired
  gap to it (points, 95% t interval, two-sided p; exploratory), on the columns of
  ``_overview_columns``."""
  ref, cols = out["reference"], _overview_columns(out)
  conds = out["conditions"]
  if not cols or not any(ref in conds[c]["summary"] for c, _ in cols):
    return ""
  rows = list(dict.fromkeys(r for c in conds.values() for r in c["summary"]))
  first = next(c for c in conds.values() if ref in c["summary"])

  def mean(name, metric):
    a = conds[name]["summary"].get(ref, {}).get("metrics", {}).get(metric)
    return "-" if a is None else f"{100 * a['mean']:.1f} ± {100 * a['sd']:.1f}"

  body = [[f"{_title(first, ref)} (mean ± sd)"] + [mean(c, m) for c, m in cols]]
  for row in rows:
    if row == ref:
      continue
    title = next(_title(c, row) for c in conds.values() if row in c["summary"])
    cells = []
    for c, m in cols:
      r = conds[c]["analysis"]["exploratory"].get(row, {}).get(m)
      cells.append("-" if r is None else _gap_cell(r))
    body.append([f"{title} - ref."] + cells)
  header = ["row"] + [f"{c}: {METRIC_TITLES.get(m, m)}" for c, m in cols]
  return _table(header, body)


def format_verdicts(out: dict) -> str:
  """Each hypothesis x condition: verdict (mean gap, Holm p); "-" where not tested."""
  conds = out["conditions"]
  names = list(
    dict.fromkeys(h["name"] for c in conds.values() for h in c["analysis"]["hypotheses"])
  )
  if not names:
    return ""
  body = []
  for name in names:
    found = {
      c: next((h for h in cond["analysis"]["hypotheses"] if h["name"] == name), None)
      for c, cond in conds.items()
    }
    c, h = next((c, h) for c, h in found.items() if h is not None)
    cells = [_hypothesis_title(conds[c], h)]
    for h in found.values():
      cells.append(
        "-" if h is None else f"{h['verdict']} ({_points(h['mean_gap'])}, Holm p{_p(h['p_holm'])})"
      )
    body.append(cells)
  return _table(["hypothesis"] + list(conds), body)


def format_condition(name: str, cond: dict, out: dict) -> list[str]:
  """One condition's section, in reading order (module docstring)."""
  parts = [f"## {name}: {cond['description']}", ""]
  pre = format_preregistration(cond)
  if pre:
    parts += [pre, ""]
  gates = format_gates(cond)
  if gates:
    parts += ["Gates (checked before any hypothesis):", "", gates, ""]
  parts += [f"Mean ± sd over seeds {out['seeds']} (top-1 %):", "", format_means(cond)]
  hyp = format_hypotheses(cond)
  if hyp:
    alpha = out["claims_config"]["analysis"]["alpha"]
    parts += [
      "",
      f"Pre-registered hypotheses, one family: one-sided paired t-tests of the mean per-seed gap "
      f"(against the margin where one is given), 95% two-sided t interval, one-sided 95% bound; "
      f"confirmed when Holm's adjusted p < {alpha}:",
      "",
      hyp,
    ]
  else:
    parts += ["", "No hypothesis is tested in this preset: every comparison below is exploratory."]
  gaps = format_gaps(cond, out["reference"])
  if gaps:
    parts += [
      "",
      "Exploratory (not pre-registered as hypotheses): each row's paired gap to "
      f"{_title(cond, out['reference'])} (points; 95% t interval; two-sided paired t-test p, "
      "uncorrected, no verdict):",
      "",
      gaps,
    ]
  for metric in dict.fromkeys(h["metric"] for h in cond["analysis"]["hypotheses"]):
    parts += ["", "Per seed:", "", format_seeds(cond, metric)]
  sens = format_sensitivity(cond)
  if sens:
    parts += [
      "",
      "Augmentation sensitivity, mean over seeds (exploratory; cosine distance when only that "
      "augmentation changes / distance between images; 0 = invariant):",
      "",
      sens,
    ]
  cpu = f", {cond['cpu_seconds']:.0f} CPU-s" if "cpu_seconds" in cond else ""
  parts += [
    "",
    f"{len(cond['runs'])} rows x {len(out['seeds'])} seeds: {cond['seconds']:.0f} s wall{cpu} "
    "(training + evaluation)",
    "",
  ]
  return parts


def format_report(out: dict) -> str:
  """An overview of every condition (when there are several), then each condition's section in
  the order they ran."""
  parts = []
  if len(out["conditions"]) > 1:
    ref = next(
      (
        _title(c, out["reference"])
        for c in out["conditions"].values()
        if out["reference"] in c["summary"]
      ),
      out["reference"],
    )
    parts += [
      "## Overview",
      "",
      f"Seeds {out['seeds']}. Top row: {ref}'s mean ± sd (top-1 %); other rows: paired gap to "
      "it (points; 95% t interval; two-sided paired t-test p; exploratory).",
      "",
      format_overview(out),
      "",
      "Hypotheses, one family per condition: verdict (mean gap, Holm p):",
      "",
      format_verdicts(out),
      "",
    ]
  for name, cond in out["conditions"].items():
    parts += format_condition(name, cond, out)
  return "\n".join(parts).rstrip()


def plot_bars(out: dict, path: str) -> None:
  """One panel per condition: a group per metric, a bar per row, error bars = sd over seeds."""
  import matplotlib  # pylint: disable=import-outside-toplevel

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  conds = list(out["conditions"].items())
  fig, axes = plt.subplots(len(conds), 1, figsize=(10, 3.6 * len(conds)), squeeze=False)
  for ax, (name, cond) in zip(axes[:, 0], conds):
    metrics = _metrics(cond["summary"])
    rows = list(cond["summary"])
    width = 0.8 / max(len(rows), 1)
    x = np.arange(len(metrics))
    for i, row in enumerate(rows):
      m = cond["summary"][row]["metrics"]
      means = [100 * m.get(k, {}).get("mean", np.nan) for k in metrics]
      errs = [100 * m.get(k, {}).get("sd", 0.0) for k in metrics]
      ax.bar(
        x + (i - (len(rows) - 1) / 2) * width,
        means,
        width,
        yerr=errs,
        capsize=2,
        label=_title(cond, row),
      )
    for j, k in enumerate(metrics):
      if k in (cond.get("chance") or {}):
        ax.hlines(
          100 * cond["chance"][k], j - 0.45, j + 0.45, colors="k", linestyles="dashed", linewidth=1
        )
    ax.set_xticks(x, [METRIC_TITLES.get(k, k) for k in metrics])
    ax.set_ylabel("linear probe top-1 (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"{name}: {cond['description']} (dashed: chance)", fontsize=9)
    ax.legend(fontsize=7, ncol=2)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)
