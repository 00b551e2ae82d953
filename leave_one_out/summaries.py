"""TensorBoard summaries of a run: scalars and hparams, written off the training thread.

Events go through tensorboard's own event-file writer (``tensorboard.summary.writer``), which
needs no TensorFlow: a core install (no ``[data]`` extra) writes the same event files as one
with TensorFlow. The writer queues each event and a background thread writes it, so a log step
never waits on the file system. Only process 0 writes (``enabled``).

File access: tensorboard reaches files through TensorFlow's gfile when TensorFlow is installed
(needed for a gs:// workdir), else through its own stub (local paths). Importing TensorFlow
costs about 8 s of CPU at start-up, so for a local logdir in a process that has not imported
TensorFlow already, the writer selects tensorboard's stub (``tensorboard.compat.notf``, the
switch tensorboard itself provides) before tensorboard first resolves it. That choice holds
for the process: a process that writes a local run's summaries and later a gs:// run's needs
``import tensorflow`` first.
"""

from __future__ import annotations

import sys
import time
import types
from typing import Any, Mapping

from absl import logging


def _use_tensorboard_stub() -> None:
  """Makes tensorboard use its own file stub rather than import TensorFlow (module docstring);
  no effect once tensorboard has resolved its TensorFlow module."""
  sys.modules.setdefault("tensorboard.compat.notf",
                         types.ModuleType("tensorboard.compat.notf"))


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
      logging.warning("tensorboard is not importable: no TensorBoard summaries for this run "
                      "(metrics-<step>.jsonl still has every logged value)")
      return
    self._writer = event_file_writer.EventFileWriter(str(logdir))

  def _add(self, step: int, summary) -> None:
    from tensorboard.compat.proto import event_pb2  # pylint: disable=g-import-not-at-top
    self._writer.add_event(event_pb2.Event(wall_time=time.time(), step=int(step),
                                           summary=summary))

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
