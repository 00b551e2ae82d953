"""Checks of config fields: one helper for every section, one message format.

Every check raises ``ValueError("<section>.<field> must be <what>, got <value>")``, e.g.
``config.data.image_size must be an integer >= 1, got 0``, so a bad field is named the same way
wherever it is checked: at start-up (``config.validate``), in the evaluation config
(``eval_config.<field>``) and in the claims config (``claims.<field>``)::

  f = fields.Section(cfg.train, "config.train")
  f.integer("batch_size", low=1)
  f.number("momentum", low=0, high=1, high_open=True)
  f.one_of("schedule", SCHEDULES)
  f.check(ok, "step_epochs", "must be increasing, got ...")  # a rule the typed checks lack

A field may be dotted (``f.number("crop.scale", ...)`` reads ``section.crop.scale``). Numbers
accept Python and numpy ints and floats, never bools.
"""

from __future__ import annotations

import math
from typing import Any
from typing import NoReturn

import numpy as np


def is_int(value) -> bool:
  return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_number(value) -> bool:
  return is_int(value) or isinstance(value, (float, np.floating))


def _interval(low, high, low_open: bool, high_open: bool) -> str:
  if high is None:
    return f"{'>' if low_open else '>='} {low:g}"
  if low is None:
    return f"{'<' if high_open else '<='} {high:g}"
  return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


class Section:
  """The checks of one config section, its fields named ``<prefix>.<field>`` in errors."""

  def __init__(self, section, prefix: str):
    self.section = section
    self.prefix = prefix

  def value(self, field: str) -> Any:
    value = self.section
    for part in field.split("."):
      value = value[part]
    return value

  def fail(self, field: str, message: str) -> NoReturn:
    raise ValueError(f"{self.prefix}.{field} {message}")

  def check(self, ok: bool, field: str, message: str) -> None:
    """Fails with ``message`` (which says what the field must be and what it is) unless ok."""
    if not ok:
      self.fail(field, message)

  def integer(self, field: str, low: int | None = None, high: int | None = None) -> int:
    value = self.value(field)
    ok = is_int(value) and (low is None or value >= low) and (high is None or value <= high)
    bounds = "" if low is None and high is None else " " + _interval(low, high, False, False)
    self.check(ok, field, f"must be an integer{bounds}, got {value!r}")
    return int(value)

  def number(
    self,
    field: str,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
  ) -> float:
    value = self.value(field)
    ok = is_number(value) and math.isfinite(value)
    ok = ok and (low is None or (value > low if low_open else value >= low))
    ok = ok and (high is None or (value < high if high_open else value <= high))
    bounds = "" if low is None and high is None else " " + _interval(low, high, low_open, high_open)
    self.check(ok, field, f"must be a number{bounds}, got {value!r}")
    return float(value)

  def probability(self, field: str) -> float:
    return self.number(field, 0.0, 1.0)

  def boolean(self, field: str) -> bool:
    value = self.value(field)
    self.check(isinstance(value, bool), field, f"must be True or False, got {value!r}")
    return value

  def one_of(self, field: str, choices) -> Any:
    value = self.value(field)
    self.check(value in tuple(choices), field, f"must be one of {tuple(choices)}, got {value!r}")
    return value

  def string(self, field: str, *, empty: bool = False) -> str:
    value = self.value(field)
    ok = isinstance(value, str) and (empty or value.strip() != "")
    self.check(ok, field, f"must be a{'' if empty else ' non-empty'} string, got {value!r}")
    return value

  def size_or_all(self, field: str, low: int = 1) -> int:
    """0 (the whole split) or an integer >= ``low``."""
    value = self.value(field)
    ok = is_int(value) and (value == 0 or value >= low)
    self.check(ok, field, f"must be 0 (the whole split) or an integer >= {low}, got {value!r}")
    return int(value)

  def number_range(
    self, field: str, low: float | None = None, high: float | None = None, *, low_open: bool = False
  ) -> tuple[float, float]:
    """A pair ``(a, b)`` of numbers with ``a <= b``, both within the bounds."""
    value = self.value(field)
    ok = (
      isinstance(value, (tuple, list))
      and len(value) == 2
      and all(is_number(v) and math.isfinite(v) for v in value)
      and value[0] <= value[1]
    )
    ok = ok and all(
      (low is None or (v > low if low_open else v >= low)) and (high is None or v <= high)
      for v in value
    )
    bounds = (
      "" if low is None and high is None else f", each {_interval(low, high, low_open, False)}"
    )
    self.check(
      ok, field, f"must be a pair (low, high) of numbers with low <= high{bounds}, got {value!r}"
    )
    return float(value[0]), float(value[1])
