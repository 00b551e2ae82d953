"""The run's metrics as JSON lines: segment files in the workdir, and the reader that joins them.

Each logged step is one JSON object, ``{"step": 100, "loss": 5.1, "top1/color": 0.3, ...}``,
in ``workdir/metrics-<first step>.jsonl``. A process start opens a new segment, and a segment
holds at most ``segment_lines`` lines, so no write touches more than one bounded file:

- local disks: the line is appended;
- object stores (``gs://``), which cannot append: the current segment is rewritten from memory
  (never read back), at most ``segment_lines`` lines.

Writes run on a background thread (``clu.asynclib``); an error surfaces at the next write or
at ``flush``. A resumed run does not log a step twice: steps up to the newest one already in
the workdir are skipped (after a kill -9 the run repeats the steps since its last checkpoint).

``read_metrics(workdir)`` returns every record in step order; read metrics only through it.
"""

from __future__ import annotations

import json
import re

from absl import logging
from clu import asynclib
from etils import epath

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

  def __init__(self, workdir, *, enabled: bool = True, segment_lines: int = 1000,
               asynchronous: bool = True):
    if segment_lines < 1:
      raise ValueError(f"segment_lines must be >= 1, got {segment_lines}")
    self.enabled = enabled
    self._root = epath.Path(workdir)
    self._remote = "://" in str(workdir)
    self._segment_lines = segment_lines
    self._path, self._lines = None, []
    self.resumed_after = last_logged_step(workdir) if enabled else -1
    self._pool = asynclib.Pool(thread_name_prefix="JsonlWriter", max_workers=1) \
        if asynchronous else None

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
