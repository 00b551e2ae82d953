"""The results record of an evaluation as JSON and as tables: kind labels, cells, Markdown.
Light: numpy and the standard library only (no jax, no TensorFlow)."""

from __future__ import annotations

import math

import numpy as np


def space_names(cfg) -> list[str]:
  """ "invariant", then the augmentations with a space of their own (as ``train.space_names``)."""
  return ["invariant"] + list(cfg.augment.spaces)


def kind_label(kind: str, spaces: list[str]) -> str:
  """ "embedding:1" -> "embedding:1 (color)"."""
  name, _, index = kind.partition(":")
  if index.isdigit() and int(index) < len(spaces):
    return f"{kind} ({spaces[int(index)]})"
  return kind


def jsonable(x):
  """Numpy scalars and arrays as Python values, non-finite floats as None, keys as strings."""
  if isinstance(x, dict):
    return {str(k): jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [jsonable(v) for v in x]
  if isinstance(x, (np.floating, float)):
    return None if not math.isfinite(float(x)) else float(x)
  if isinstance(x, np.integer):
    return int(x)
  if isinstance(x, np.bool_):
    return bool(x)
  if isinstance(x, np.ndarray):
    return jsonable(x.tolist())
  return x


def pct(x) -> str:
  """An accuracy in [0, 1] as a percentage with one decimal; "-" for none."""
  return "-" if x is None else f"{100 * x:.1f}"


def markdown(header: list[str], body: list[list[str]]) -> str:
  widths = [max(len(str(r[i])) for r in [header] + body) for i in range(len(header))]
  fmt = lambda r: "| " + " | ".join(str(v).ljust(w) for v, w in zip(r, widths)) + " |"
  return "\n".join(
    [fmt(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [fmt(r) for r in body]
  )
