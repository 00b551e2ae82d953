"""What a run writes besides checkpoints: metrics files, TensorBoard summaries, the console line.

``RunLog`` is the one writer a run logs through: every logged step goes to the metrics files and
to TensorBoard (process 0 only, both off the training thread), once (a resumed run does not log
a step twice).

Metrics files. Each logged step is one JSON object, ``{"step": 100, "loss": 5.1,
"top1/color": 0.3, ...}``, in ``workdir/metrics-<first step>.jsonl``. A process start opens a
new segment, and a segment holds at most ``segment_lines`` lines, so no write touches more than
one bounded file: on local disks the line is appended; on object stores (``gs://``), which cannot
append, the current segment is rewritten from memory (never read back). Writes run on a
background thread (``clu.asynclib``); an error surfaces at the next write or at ``flush``.
After a kill -9 the run repeats the steps since its last checkpoint; steps up to the newest one
already in the workdir are not logged again. ``read_metrics(workdir)`` returns every record in
step order; read metrics only through it.

TensorBoard summaries go through tensorboard's own event-file writer
(``tensorboard.summary.writer``), which needs no TensorFlow: a core install writes the same
event files as one with TensorFlow. File access: tensorboard reaches files through TensorFlow's
gfile when TensorFlow is installed (needed for a gs:// workdir), else through its own stub
(local paths). Importing TensorFlow costs about 8 s of CPU at start-up, so for a local logdir in
a process that has not imported TensorFlow already, the writer selects tensorboard's stub
(``tensorboard.compat.notf``) before tensorboard first resolves it. That choice holds for the
process: a process that writes a local run's summaries and later a gs:// run's needs
``import tensorflow`` first.

The console: ``format_line`` is the one-line progress every process prints (``legend`` says how
to read it, once at the start), ``average`` the interval's means, ``check_finite`` the
non-finite-step rule.

Weights & Biases (``WandbLogger``, ``main --wandb_project``): optional, off by default and not a
dependency; the same records as the metrics files, from process 0, off the training thread.
"""

from __future__ import annotations

import hashlib
import json
import logging as pylogging
import math
import os
import re
import sys
import time
import types
from typing import Any
from typing import Mapping

import jax
import ml_collections
import numpy as np
from absl import logging
from clu import asynclib
from etils import epath

from leave_one_out import objectives

# ------------------------------------------------------------------ metrics files

LEGACY_FILE = "metrics.jsonl"  # a single file, written by runs before segments existed
_SEGMENT = re.compile(r"^metrics-(\d+)\.jsonl$")


def segment_name(first_step: int) -> str:
  return f"metrics-{int(first_step):09d}.jsonl"


def segment_paths(workdir) -> list[epath.Path]:
  """The workdir's metrics files, oldest first (the legacy single file, if any, first)."""
  root = epath.Path(workdir)
  if not root.exists():
    return []
  found = []
  for path in root.iterdir():
    match = _SEGMENT.match(path.name)
    if match:
      found.append((int(match.group(1)), path))
    elif path.name == LEGACY_FILE:
      found.append((-1, path))
  return [path for _, path in sorted(found)]


def read_metrics(workdir) -> list[dict]:
  """Every logged record of the run in ``workdir``, in the order written (by step).

  A last line cut short (a write interrupted by kill -9) is left out; a malformed line anywhere
  else is an error naming the file and line.
  """
  records = []
  for path in segment_paths(workdir):
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
      if not line.strip():
        continue
      try:
        records.append(json.loads(line))
      except json.JSONDecodeError as e:
        if i == len(lines) - 1:
          logging.warning("Ignoring a truncated last line in %s", path)
          continue
        raise ValueError(f"{path}, line {i + 1}: not JSON ({e})") from e
  return records


def last_logged_step(workdir) -> int:
  """The newest step in the workdir's metrics files; -1 when there is none."""
  return max((int(r["step"]) for r in read_metrics(workdir)), default=-1)


class JsonlWriter:
  """Writes metric records to the workdir's segment files, off the calling thread.

  Args:
    workdir: the run's directory (local path or ``gs://...``).
    enabled: False makes every call a no-op (processes other than 0).
    segment_lines: the most lines one segment holds before the next one starts.
    asynchronous: write on a background thread (False: in the caller, for tests and tools).
  """

  def __init__(
    self, workdir, *, enabled: bool = True, segment_lines: int = 1000, asynchronous: bool = True
  ):
    if segment_lines < 1:
      raise ValueError(f"segment_lines must be >= 1, got {segment_lines}")
    self.enabled = enabled
    self._root = epath.Path(workdir)
    self._remote = "://" in str(workdir)
    self._segment_lines = segment_lines
    self._path, self._lines = None, []
    self.resumed_after = last_logged_step(workdir) if enabled else -1
    self._pool = (
      asynclib.Pool(thread_name_prefix="JsonlWriter", max_workers=1) if asynchronous else None
    )

  def should_log(self, step: int) -> bool:
    """False for a step this run already logged before it was interrupted."""
    return int(step) > self.resumed_after

  def write(self, step: int, scalars: dict) -> None:
    """Queues ``{"step": step, **scalars}``; skipped when ``should_log(step)`` is False."""
    if not self.enabled or not self.should_log(step):
      return
    record = {"step": int(step), **scalars}  # a copy: the caller may keep its dict
    if self._pool is None:
      self._write(record)
    else:
      self._pool(self._write)(record)

  def _write(self, record: dict) -> None:
    if self._path is None or len(self._lines) >= self._segment_lines:
      self._path, self._lines = self._root / segment_name(record["step"]), []
    line = json.dumps(record) + "\n"
    self._lines.append(line)
    if self._remote:
      self._path.write_text("".join(self._lines))
    else:
      with self._path.open("a") as f:
        f.write(line)

  def flush(self) -> None:
    """Blocks until every queued record is written; re-raises a background write's error."""
    if self._pool is not None:
      self._pool.join()


# ------------------------------------------------------------------ TensorBoard


def _use_tensorboard_stub() -> None:
  """Makes tensorboard use its own file stub rather than import TensorFlow (module docstring);
  no effect once tensorboard has resolved its TensorFlow module."""
  sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))


class SummaryWriter:
  """Scalars and hparams in ``logdir``'s TensorBoard event file (a no-op when not enabled)."""

  def __init__(self, logdir: str, *, enabled: bool = True):
    self._writer = None
    if not enabled:
      return
    if "://" not in str(logdir) and "tensorflow" not in sys.modules:
      _use_tensorboard_stub()
    try:
      from tensorboard.summary.writer import event_file_writer  # pylint: disable=g-import-not-at-top
    except ImportError:  # tensorboard is a dependency; a broken install only loses summaries
      logging.warning(
        "tensorboard is not importable: no TensorBoard summaries for this run "
        "(metrics-<step>.jsonl still has every logged value)"
      )
      return
    self._writer = event_file_writer.EventFileWriter(str(logdir))

  def _add(self, step: int, summary) -> None:
    from tensorboard.compat.proto import event_pb2  # pylint: disable=g-import-not-at-top

    self._writer.add_event(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    if self._writer is None:
      return
    from tensorboard.compat.proto import summary_pb2  # pylint: disable=g-import-not-at-top

    values = [summary_pb2.Summary.Value(tag=k, simple_value=float(v)) for k, v in scalars.items()]
    self._add(step, summary_pb2.Summary(value=values))

  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    """``hparams``: flat {name: int | float | str | bool} (the run's config)."""
    if self._writer is None:
      return
    from tensorboard.plugins.hparams import summary_v2  # pylint: disable=g-import-not-at-top

    self._add(0, summary_v2.hparams_pb(dict(hparams)))

  def flush(self) -> None:
    if self._writer is not None:
      self._writer.flush()

  def close(self) -> None:
    """Writes everything queued and closes the file."""
    if self._writer is not None:
      self._writer.close()
      self._writer = None


# ------------------------------------------------------------------ the console


def flatten_metrics(metrics: dict, names: list[str]) -> dict[str, float]:
  """Device metrics -> {"loss": .., "loss/color": .., "top1/color": ..} as Python floats."""
  out = {}
  for key, value in jax.device_get(metrics).items():
    value = np.asarray(value)
    if key.endswith("_per_space"):
      prefix = key[: -len("_per_space")]
      out.update({f"{prefix}/{n}": float(v) for n, v in zip(names, value)})
    else:
      out[key] = float(value)
  return out


def average(history: list[dict], names: list[str]) -> dict[str, float]:
  """Mean of each metric over a logging interval, on the host: one transfer of the interval's
  metrics and no device op (an eager ``stack`` per metric cost about 8 ms each on CPUs)."""
  stacked = jax.tree.map(lambda *xs: np.stack(xs), *jax.device_get(history))
  scalars = flatten_metrics(
    jax.tree.map(lambda x: np.mean(np.asarray(x, np.float64), axis=0), stacked), names
  )
  scalars["nonfinite"] = float(len(history) - np.sum(stacked["finite"]))
  scalars.pop("finite", None)
  return scalars


def check_finite(cfg, scalars: dict, step: int) -> None:
  """Raises (naming the spaces) if the interval had a non-finite step and
  ``train.on_nonfinite`` is "stop"."""
  if scalars["nonfinite"] and cfg.train.on_nonfinite == "stop":
    bad = [k for k, v in scalars.items() if k.startswith("loss") and not math.isfinite(v)]
    raise FloatingPointError(
      f"non-finite loss or gradients in {int(scalars['nonfinite'])} step(s) up to step {step} "
      f"(spaces: {', '.join(bad) or 'gradients only'}); those updates were not applied and the "
      "last checkpoint is intact. Set config.train.on_nonfinite='skip' to skip such steps."
    )


def legend(names: list[str]) -> str:
  """How to read ``format_line``, with an example in this run's own spaces."""
  example = names[1] if len(names) > 1 else names[0]
  own = "/56%" if len(names) > 1 else ""
  return (
    f"progress: step | epoch | loss (the LooC loss) | per space 'loss/top-1"
    f"{'[/own-view top-1]' if own else ''}', e.g. '{example} 3.967/23%{own}' = that space's "
    "loss 3.967, top-1 23% (its positive beats every key of the global batch)"
    + (
      ", own-view top-1 56% (among the image's own keys, the one sharing the space's "
      "augmentation scores highest)"
      if own
      else ""
    )
    + " | img/s | ETA"
  )


def format_line(step, num_steps, steps_per_epoch, scalars, names, img_per_s, eta_s) -> str:
  """The one-line progress every process prints: step, epoch, loss, each space's loss / top-1
  (/ own-view top-1), each auxiliary objective's loss (/ top-1), throughput and ETA."""
  parts = [
    f"step {step}/{num_steps}",
    f"epoch {step / steps_per_epoch:.2f}",
    f"loss {scalars['loss']:.4f}",
  ]
  for i, n in enumerate(names):  # loss / top-1 [/ own-view top-1 for augmentation spaces]
    own = f"/{100 * scalars[f'own_top1/{n}']:.0f}%" if i else ""
    parts.append(f"{n} {scalars[f'loss/{n}']:.3f}/{100 * scalars[f'top1/{n}']:.0f}%{own}")
  parts += objectives.progress(scalars)  # each auxiliary objective's loss (/ top-1) by name
  if img_per_s:
    parts += [f"{img_per_s:.0f} img/s", f"ETA {eta_s / 60:.1f} min"]
  return " | ".join(parts)


def flat_config(cfg, prefix="") -> dict:
  """The config as {"section.field": value} for TensorBoard's hparams."""
  out = {}
  for key, value in cfg.items():
    if isinstance(value, ml_collections.ConfigDict):
      out.update(flat_config(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value if isinstance(value, (int, float, str, bool)) else str(value)
  return out


class RunLog:
  """The run's one writer: each logged step's scalars to the metrics files and TensorBoard.

  Process 0 writes (``enabled``); a step logged before an interruption is not logged again.
  """

  def __init__(self, workdir, *, enabled: bool = True, extra=()):
    self.summaries = SummaryWriter(workdir, enabled=enabled)
    self.jsonl = JsonlWriter(workdir, enabled=enabled)
    self.enabled = enabled
    self.extra = list(extra)  # more loggers: write(step, scalars), close() (``WandbLogger``)

  def write(self, step: int, scalars: Mapping[str, float]) -> None:
    if self.enabled and self.jsonl.should_log(step):
      self.summaries.write_scalars(step, scalars)
      self.jsonl.write(step, scalars)
      for logger in self.extra:
        logger.write(step, scalars)

  def write_config(self, cfg) -> None:
    """The run's config as TensorBoard hparams (once, at the start of a new run)."""
    self.summaries.write_hparams(flat_config(cfg))

  def close(self) -> None:
    """Writes everything queued (re-raising a background write's error) and closes."""
    try:
      self.summaries.close()
      for logger in self.extra:
        logger.close()
    finally:
      self.jsonl.flush()


class WandbLogger:
  """The run's logged records in Weights & Biases (``pip install wandb``; optional).

  One W&B run per workdir: its id is derived from the workdir's path, so a resumed run
  continues the same W&B run. Records go out on a background thread (``wandb.log`` never
  blocks a step). ImportError with the install command when wandb is missing.
  """

  def __init__(self, cfg, workdir, *, project: str, entity: str | None = None, name=None):
    try:
      import wandb  # pylint: disable=import-outside-toplevel
    except ImportError as e:
      raise ImportError(
        "--wandb_project needs the wandb package, which is optional: pip install wandb"
      ) from e
    path = str(workdir) if "://" in str(workdir) else os.path.abspath(workdir)
    self._wandb = wandb
    self._run = wandb.init(
      project=project,
      entity=entity or None,
      name=name or os.path.basename(path.rstrip("/")),
      id=hashlib.sha1(path.encode()).hexdigest()[:16],
      resume="allow",
      config=flat_config(cfg),
      dir=None if "://" in path else path,
    )
    self._pool = asynclib.Pool(thread_name_prefix="WandbLogger", max_workers=1)

  def write(self, step: int, scalars: Mapping[str, float]) -> None:
    self._pool(self._run.log)(dict(scalars), step=int(step))

  def close(self) -> None:
    self._pool.join()
    self._run.finish()


class QuietLibraries(pylogging.Filter):
  """Keeps orbax's per-save and per-restore INFO chatter out of the console (warnings show)."""

  def filter(self, record):
    return record.levelno >= pylogging.WARNING or "/orbax/" not in record.pathname
