"""Checkpoints through orbax: the whole train state plus a JSON record of the run.

A checkpoint holds the train state (params, BatchNorm statistics, EMA copies, optimizer state,
queue, step, RNG) and ``meta``: the config as JSON and the data position. Restores always go
through an abstract target (``jax.ShapeDtypeStruct`` with shardings) so arrays come back with
their types, shapes and placement, never as lists.

Arrays are written by orbax's ``ArrayHandler`` with one change: an array is split across its
replicas for writing (orbax's "replica-parallel" saving) only when each replica's slice holds
at least ``REPLICA_PARALLEL_MIN_BYTES``. Below that the split costs more than it saves: one
eager slice per replica and array (a ResNet train state has hundreds of small BatchNorm and bias
vectors), compiled on the first save of every process. Measured on 2 CPU cores with the tests'
tiny state on 2 devices: the first save of a process 2.2 s -> 0.6 s, later saves 0.75 s ->
0.55 s. The files written are the same (one ``ocdbt`` tree per item).
"""

from __future__ import annotations

import os
import time
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from absl import logging
from orbax.checkpoint import checkpoint_managers

CHECKPOINT_DIR = "checkpoints"
# Smallest per-replica slice for which an array's write is split across its replicas.
REPLICA_PARALLEL_MIN_BYTES = 256 * 1024


def _state_handler() -> ocp.PyTreeCheckpointHandler:
  """orbax's handler for the state item, with ``REPLICA_PARALLEL_MIN_BYTES`` for jax.Arrays."""
  # The store orbax's default ArrayHandler writes per-array metadata with (not public API).
  try:
    from orbax.checkpoint._src.metadata import array_metadata_store  # pylint: disable=all
    store = array_metadata_store.Store()
  except ImportError:  # another orbax layout: the same checkpoint without per-array metadata
    store = None
  arrays = ocp.type_handlers.ArrayHandler(
      array_metadata_store=store,
      min_slice_bytes_for_replica_parallel=REPLICA_PARALLEL_MIN_BYTES)
  scalars = ocp.type_handlers.ScalarHandler()
  registry = ocp.type_handlers.create_type_handler_registry(  # orbax's defaults but for arrays
      (int, scalars), (float, scalars), (bytes, scalars), (np.number, scalars),
      (np.ndarray, ocp.type_handlers.NumpyHandler()), (jax.Array, arrays),
      (str, ocp.type_handlers.StringHandler()))
  return ocp.PyTreeCheckpointHandler(type_handler_registry=registry)


def preservation_policy(keep: int, keep_every: int = 0, keep_steps=()):
  """Which checkpoints survive a save: the newest ``keep``, every multiple of ``keep_every``
  (0 = none) and each step in ``keep_steps`` (e.g. the run's final step)."""
  policies = [checkpoint_managers.LatestN(n=keep)]
  if keep_every:
    policies.append(checkpoint_managers.EveryNSteps(interval_steps=keep_every))
  if keep_steps:
    policies.append(checkpoint_managers.CustomSteps(steps=[int(s) for s in keep_steps]))
  return checkpoint_managers.AnyPreservationPolicy(policies)


class Checkpointer:
  """Saves and restores ``(state, meta)`` under ``workdir/checkpoints/<step>``.

  Keeps the newest ``keep`` checkpoints, every step that is a multiple of ``keep_every`` (0 =
  none) and the steps in ``keep_steps`` (``preservation_policy``). Saves are asynchronous when
  ``async_save``: training goes on while the arrays are written, and ``wait()`` blocks until the
  last save is committed. With several processes every call is collective: all processes make
  the same calls in the same order.
  """

  def __init__(self, workdir: str, *, keep: int = 3, keep_every: int = 0, keep_steps=(),
               async_save: bool = True):
    self.directory = epath.Path(workdir if "://" in str(workdir) else os.path.abspath(workdir))
    self.directory = self.directory / CHECKPOINT_DIR
    options = ocp.CheckpointManagerOptions(
        preservation_policy=preservation_policy(keep, keep_every, keep_steps),
        enable_async_checkpointing=async_save,
        create=True,
    )
    self._manager = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers={"state": _state_handler(), "meta": ocp.JsonCheckpointHandler()})

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state: Any, meta: dict, *, force: bool = False) -> bool:
    """Starts writing ``state`` and ``meta`` for ``step``; returns whether a save started."""
    return self._manager.save(
        int(step),
        args=ocp.args.Composite(state=ocp.args.PyTreeSave(state),
                                meta=ocp.args.JsonSave(meta)),
        force=force)

  def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict]:
    """Restores ``step`` into the structure, dtypes and shardings of ``abstract_state``."""
    restored = self._manager.restore(
        int(step),
        args=ocp.args.Composite(
            state=ocp.args.PyTreeRestore(
                item=abstract_state,
                restore_args=ocp.checkpoint_utils.construct_restore_args(abstract_state)),
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

  def reached_preemption(self, steps_this_run: int) -> bool:
    """Whether every process is to stop and save now (several processes only).

    With ``jax.distributed`` a SIGTERM (or the TPU maintenance notice) to any process reaches
    JAX's preemption sync manager, and this returns True on every process after the same step.
    Call it after every step on every process with the number of steps this process has run
    (1, 2, ...), not the global step: JAX counts from 0 at start-up, so a notice that arrives
    before the first step (while restoring or compiling) means step 1, which a run resumed at
    step 5000 would never pass. One process: always False (the loop handles SIGTERM itself).
    """
    if jax.process_count() == 1:
      return False
    return self._manager.reached_preemption(int(steps_this_run))

  def restore_meta(self, step: int) -> dict:
    return self._manager.restore(
        int(step), args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
