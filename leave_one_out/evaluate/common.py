"""What the evaluators share: field checks that name ``eval_config.<field>``, kind labels, the
JSON and table helpers. Light: numpy and the standard library only (no jax, no TensorFlow)."""

from __future__ import annotations

import math

import numpy as np


def fail(field: str, message: str):
  """Raises the ValueError every check of the evaluation config raises."""
  raise ValueError(f"eval_config.{field} {message}")


def is_int(value) -> bool:
  return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def is_number(value) -> bool:
  return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def int_at_least(value, field: str, low: int) -> None:
  if not is_int(value) or value < low:
    fail(field, f"must be an int >= {low}, got {value!r}")


def size_or_all(value, field: str, low: int = 1) -> None:
  """0 (the whole split) or an int >= ``low``."""
  if not is_int(value) or value < 0:
    fail(field, f"must be an int >= 0 (0 = the whole split), got {value!r}")
  if 0 < value < low:
    fail(field, f"must be 0 (the whole split) or >= {low}, got {value!r}")


def positive(value, field: str) -> None:
  if not is_number(value) or not value > 0:
    fail(field, f"must be a number > 0, got {value!r}")


def boolean(value, field: str) -> None:
  if not isinstance(value, bool):
    fail(field, f"must be True or False, got {value!r}")


def one_of(value, field: str, choices) -> None:
  if value not in choices:
    fail(field, f"must be one of {tuple(choices)}, got {value!r}")


def space_names(cfg) -> list[str]:
  """"invariant", then the augmentations with a space of their own (as ``train.space_names``)."""
  return ["invariant"] + list(cfg.augment.spaces)


def kind_label(kind: str, spaces: list[str]) -> str:
  """"embedding:1" -> "embedding:1 (color)"."""
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
  return "\n".join([fmt(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
                   + [fmt(r) for r in body])

