"""Checkpoints through orbax: the whole train state plus a JSON record of the run.

A checkpoint holds the train state (params, BatchNorm statistics, EMA copies, optimizer state,
queue, step, RNG) and ``meta``: the config as JSON and the data position. Restores always go
through an abstract target (``jax.ShapeDtypeStruct`` with shardings) so arrays come back with
their types, shapes and placement, never as lists.
"""

from __future__ import annotations

import os
import time
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath
from absl import logging

CHECKPOINT_DIR = "checkpoints"


class Checkpointer:
  """Saves and restores ``(state, meta)`` under ``workdir/checkpoints/<step>``.

  Keeps the last ``keep`` checkpoints plus every ``keep_every``-th step (0 = none). Saves are
  asynchronous when ``async_save``: training goes on while the arrays are written, and
  ``wait()`` blocks until the last save is committed.
  """

  def __init__(self, workdir: str, *, keep: int = 3, keep_every: int = 0,
               async_save: bool = True):
    self.directory = epath.Path(workdir if "://" in str(workdir) else os.path.abspath(workdir))
    self.directory = self.directory / CHECKPOINT_DIR
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep,
        keep_period=keep_every or None,
        enable_async_checkpointing=async_save,
        create=True,
    )
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_names=("state", "meta"))

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state: Any, meta: dict, *, force: bool = False) -> bool:
    """Starts writing ``state`` and ``meta`` for ``step``; returns whether a save started."""
    return self._manager.save(
        int(step),
        args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                meta=ocp.args.JsonSave(meta)),
        force=force)

  def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict]:
    """Restores ``step`` into the structure, dtypes and shardings of ``abstract_state``."""
    restored = self._manager.restore(
        int(step),
        args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                                meta=ocp.args.JsonRestore()))
    return restored["state"], restored["meta"]

  def restore_latest_good(self, abstract_state: Any) -> tuple[Any, dict] | None:
    """Restores the newest checkpoint that reads back; None when there is none.

    A checkpoint that fails to restore (truncated file, missing or garbled metadata) is logged
    with its path, moved aside to ``checkpoints/corrupt-<step>-<time>`` (never deleted) and the
    next older one is tried.
    """
    for step in reversed(self.all_steps()):
      try:
        return self.restore(step, abstract_state)
      except Exception as e:  # orbax raises many types for unreadable data
        path = self.directory / str(step)
        aside = self.directory / f"corrupt-{step}-{int(time.time())}"
        logging.warning("Checkpoint %s cannot be restored (%s: %s); moving it to %s and trying "
                        "the previous one.", path, type(e).__name__, str(e)[:300], aside)
        if jax.process_index() == 0 and path.exists():
          path.rename(aside)
        self._manager.reload()
    return None

  def reached_preemption(self, step: int) -> bool:
    """Whether the platform announced a preemption (multi-host: agreed at a sync point)."""
    if jax.process_count() == 1:
      return False  # single process: SIGTERM is handled by the training loop itself
    return self._manager.reached_preemption(int(step))

  def restore_meta(self, step: int) -> dict:
    return self._manager.restore(
        int(step), args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


def abstract_like(tree: Any) -> Any:
  """``jax.ShapeDtypeStruct`` with sharding for every array leaf of ``tree`` (an eval_shape)."""
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
      tree)
