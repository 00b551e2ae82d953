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
accept Python and numpy ints and floats, never bools. The error is a ``ConfigError`` (a
ValueError): the command lines print it as one line (``one_line``), without a traceback.
"""

from __future__ import annotations

import math
import os
import re
import sys
from typing import Any
from typing import NoReturn

import numpy as np
from absl import flags

TRACEBACK_ENV = "LOOC_TRACEBACK"  # =1: command lines show the traceback of every error


class ConfigError(ValueError):
  """A config field the user must fix (named in the message)."""


def one_line(e: BaseException) -> str:
  """An error as the one line a command line prints: ml_collections' "did you mean" errors
  (a misspelt ``--config.<field>``, a KeyError inside an AttributeError) unwrapped, whitespace
  collapsed."""
  inner = e
  while isinstance(inner, (AttributeError, KeyError)) and len(inner.args) == 1:
    if isinstance(inner.args[0], BaseException):
      inner = inner.args[0]
      continue
    if "Did you mean" in str(inner.args[0]) or isinstance(inner, KeyError):
      name, _, rest = str(inner.args[0]).partition("\n")
      return " ".join(f"no such config field {name}. {rest}".split()).replace(" . ", " ")
    break
  return " ".join(str(e).split()) or type(e).__name__


def wants_traceback(argv=None) -> bool:
  """Whether a command line should show tracebacks: ``--verbosity=1`` (or more) or
  ``LOOC_TRACEBACK=1``."""
  if os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
    return True
  if argv is None:
    return flags.FLAGS.is_parsed() and flags.FLAGS.verbosity >= 1
  text = " ".join(argv[1:])
  return bool(re.search(r"(^|\s)--?(verbosity|v)[= ]([1-9])", text))


def exit_with(e: BaseException, argv=None, code: int = 2) -> NoReturn:
  """Prints ``e`` as one line (``one_line``) and exits, or re-raises it for a traceback
  (``wants_traceback``)."""
  if wants_traceback(argv):
    raise e
  spec = getattr(sys.modules.get("__main__"), "__spec__", None)  # python -m <module>
  prog = spec.name.removesuffix(".__main__") if spec else os.path.basename(sys.argv[0])
  sys.stderr.write(
    f"{prog}: error: {one_line(e)}\n(the traceback: add --verbosity=1 or set {TRACEBACK_ENV}=1)\n"
  )
  sys.stderr.flush()
  sys.exit(code)


def parse_flags(argv):
  """absl's flag parsing for ``app.run(..., flags_parser=parse_flags)``: an error in a flag
  (a misspelt ``--config.<field>``, a config file that is not found or raises) is one line."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:  # absl's own usage errors: its one line
    exit_with(e, argv, code=1)
  except Exception as e:  # pylint: disable=broad-except
    exit_with(e, argv)


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
    raise ConfigError(f"{self.prefix}.{field} {message}")

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
