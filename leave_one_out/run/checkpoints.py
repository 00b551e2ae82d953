"""Checkpoints through orbax: the whole train state plus the run's meta record.

A checkpoint holds the train state (params, BatchNorm statistics, EMA copies, optimizer state,
queue, step, RNG) and ``meta`` (``meta_record``): the config as JSON and the step. This module
owns that record: it writes it, reads it back, and upgrades the config of a run saved before a
field existed (``OLD_CONFIG_VALUES``), so code reads ``cfg.field`` directly. Restores always go
through an abstract target (``jax.ShapeDtypeStruct`` with shardings) so arrays come back with
their types, shapes and placement, never as lists; ``restore_encoder`` reads only one encoder's
``params`` and ``batch_stats`` (a third of the state), for pretrained loading.

Arrays are written by orbax's ``ArrayHandler`` with one change: an array is split across its
replicas for writing (orbax's "replica-parallel" saving) only when each replica's slice holds
at least ``REPLICA_PARALLEL_MIN_BYTES``. Below that the split costs more than it saves: one
eager slice per replica and array (a ResNet train state has hundreds of small BatchNorm and bias
vectors), compiled on the first save of every process. Measured on 2 CPU cores with the tests'
tiny state on 2 devices: the first save of a process 2.2 s -> 0.6 s, later saves 0.75 s ->
0.55 s. The files written are the same (one ``ocdbt`` tree per item).
"""

from __future__ import annotations

import copy
import json
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from orbax.checkpoint import checkpoint_managers

from leave_one_out import config as config_lib
from leave_one_out import objectives

CHECKPOINT_DIR = "checkpoints"
# Smallest per-replica slice for which an array's write is split across its replicas.
REPLICA_PARALLEL_MIN_BYTES = 256 * 1024

# Config fields added after runs were saved, with the value every run saved before used (not
# today's default, where the default changed with the field): ``read_config`` fills them into a
# saved config that lacks them. A new field whose absence changes what an old run did gets a
# line here (tests/test_checkpoints.py restores a checkpoint written by an old config).
OLD_CONFIG_VALUES = (
  # (added, field, the value of the runs saved before)
  ("2026-11-28", "online", config_lib.online_config().to_dict()),  # monitoring only
  ("2026-11-29", "data.synthetic_light", 0.0),  # evenly lit scenes
  ("2026-12-01", "data.synthetic_hue_jitter", 10.0),  # the generator's default then
  ("2026-12-01", "data.synthetic_hue_bins", 0),
  ("2026-12-01", "augment.rotation.prob", 0.75),  # uniform over the four angles
  ("2026-12-01", "augment.extra_keys", 0),
  ("2026-12-01", "model.zero_init_residual", False),
  ("2026-12-01", "model.key_bn", "global"),  # no shuffle-BN
  ("2026-12-01", "model.bn_groups", 0),
  ("2026-12-01", "train.weight_decay_mask", "no_bn_bias"),  # the only behaviour then
  ("2026-12-06", "init_from", config_lib.init_from_config().to_dict()),  # random init
  ("2026-12-06", "objectives", objectives.default_config().to_dict()),  # every one off
  ("2026-12-06", "augment.shared", ()),  # every view drew every augmentation
)


class CheckpointError(ValueError):
  """A checkpoint exists but cannot be used: unreadable, corrupt, or not matching its config."""


def meta_record(cfg: ml_collections.ConfigDict, step: int) -> dict:
  """What a checkpoint holds besides the state: the config (JSON) and the step."""
  return {"config": json.loads(cfg.to_json()), "step": int(step)}


def upgrade(saved: dict) -> dict:
  """A saved config (JSON form) with the fields it predates filled in (``OLD_CONFIG_VALUES``)."""
  saved = copy.deepcopy(saved)
  for _, field, value in OLD_CONFIG_VALUES:
    *parents, name = field.split(".")
    section = saved
    for parent in parents:
      section = section.setdefault(parent, {})
    section.setdefault(name, copy.deepcopy(value))
  return saved


def read_config(saved: dict) -> ml_collections.ConfigDict:
  """The config of a saved run (a meta record's "config", or an exported file's), upgraded."""
  return config_lib.from_json(upgrade(saved))


def _state_handler() -> ocp.PyTreeCheckpointHandler:
  """orbax's handler for the state item, with ``REPLICA_PARALLEL_MIN_BYTES`` for jax.Arrays."""
  # The store orbax's default ArrayHandler writes per-array metadata with (not public API).
  try:
    from orbax.checkpoint._src.metadata import array_metadata_store  # pylint: disable=all

    store = array_metadata_store.Store()
  except ImportError:  # another orbax layout: the same checkpoint without per-array metadata
    store = None
  arrays = ocp.type_handlers.ArrayHandler(
    array_metadata_store=store, min_slice_bytes_for_replica_parallel=REPLICA_PARALLEL_MIN_BYTES
  )
  scalars = ocp.type_handlers.ScalarHandler()
  registry = ocp.type_handlers.create_type_handler_registry(  # orbax's defaults but for arrays
    (int, scalars),
    (float, scalars),
    (bytes, scalars),
    (np.number, scalars),
    (np.ndarray, ocp.type_handlers.NumpyHandler()),
    (jax.Array, arrays),
    (str, ocp.type_handlers.StringHandler()),
  )
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
  ``async_save``: training goes on while the arrays are written, and ``close()`` blocks until
  the last save is committed. With several processes every call is collective: all processes
  make the same calls in the same order.
  """

  def __init__(
    self,
    workdir: str,
    *,
    keep: int = 3,
    keep_every: int = 0,
    keep_steps=(),
    async_save: bool = True,
  ):
    self.directory = epath.Path(workdir if "://" in str(workdir) else os.path.abspath(workdir))
    self.directory = self.directory / CHECKPOINT_DIR
    options = ocp.CheckpointManagerOptions(
      preservation_policy=preservation_policy(keep, keep_every, keep_steps),
      enable_async_checkpointing=async_save,
      create=True,
    )
    self._manager = ocp.CheckpointManager(
      self.directory,
      options=options,
      item_handlers={"state": _state_handler(), "meta": ocp.JsonCheckpointHandler()},
    )

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state: Any, meta: dict, *, force: bool = False) -> bool:
    """Starts writing ``state`` and ``meta`` for ``step``; returns whether a save started."""
    return self._manager.save(
      int(step),
      args=ocp.args.Composite(state=ocp.args.PyTreeSave(state), meta=ocp.args.JsonSave(meta)),
      force=force,
    )

  def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict]:
    """Restores ``step`` into the structure, dtypes and shardings of ``abstract_state``."""
    restored = self._manager.restore(
      int(step),
      args=ocp.args.Composite(
        state=ocp.args.PyTreeRestore(
          item=abstract_state,
          restore_args=ocp.checkpoint_utils.construct_restore_args(abstract_state),
        ),
        meta=ocp.args.JsonRestore(),
      ),
    )
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
        logging.warning(
          "Checkpoint %s cannot be restored (%s: %s); moving it to %s and trying the previous one.",
          path,
          type(e).__name__,
          str(e)[:300],
          aside,
        )
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
    """The meta record of ``step`` (``meta_record``'s layout; the config as saved)."""
    return self._manager.restore(int(step), args=ocp.args.Composite(meta=ocp.args.JsonRestore()))[
      "meta"
    ]

  def restore_config(self, step: int) -> ml_collections.ConfigDict:
    """The config of ``step``'s run, upgraded (``read_config``)."""
    return read_config(self.restore_meta(step)["config"])

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


# ------------------------------------------------------------------ one encoder, for loading


def restore_encoder(step_dir: epath.Path, encoder: str, abstract: dict, config, mesh: Mesh) -> dict:
  """``{"params", "batch_stats"}`` of one encoder of a saved train state, replicated on mesh.

  Args:
    step_dir: ``workdir/checkpoints/<step>``.
    encoder: "online" (the query encoder) or "ema" (the momentum key encoder).
    abstract: the model's variables as ``jax.ShapeDtypeStruct`` trees (shapes to match).
    config: the run's config (named in errors).
  Raises CheckpointError naming the file and the arrays when the state cannot be read, does not
  match the model, or holds non-finite values.
  """
  prefix = "" if encoder == "online" else "ema_"
  keys = {"params": f"{prefix}params", "batch_stats": f"{prefix}batch_stats"}
  state_dir = step_dir / "state"
  handler = ocp.PyTreeCheckpointHandler()  # reads the "state" item alone, and only part of it
  try:
    try:
      stored = handler.metadata(state_dir)
      stored = {k: stored[v] for k, v in keys.items()}
    except Exception as e:
      raise CheckpointError(
        f"checkpoint {step_dir} is corrupt: its state metadata cannot be read ({brief(e)})"
      ) from e
    check_match(abstract, stored, step_dir, config)
    replicated = NamedSharding(mesh, P())
    target = {
      keys[k]: jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), v
      )
      for k, v in abstract.items()
    }
    try:
      restored = handler.restore(
        state_dir,
        args=ocp.args.PyTreeRestore(
          item=target,
          restore_args=ocp.checkpoint_utils.construct_restore_args(target),
          partial_restore=True,
        ),
      )
    except Exception as e:
      raise CheckpointError(
        f"checkpoint {step_dir} is corrupt: its arrays cannot be read ({brief(e)})"
      ) from e
  finally:
    handler.close()
  variables = {k: restored[v] for k, v in keys.items()}
  paths = [p for p, _ in jax.tree_util.tree_flatten_with_path(variables)[0]]
  finite = jax.device_get(_finite_leaves(variables))
  bad = [path_name(p) for p, ok in zip(paths, finite) if not ok]
  if bad:
    raise CheckpointError(f"checkpoint {step_dir} holds non-finite values in {bad[:5]}")
  return variables


def brief(e: Exception, limit: int = 300) -> str:
  """An exception as one short line, for error messages that wrap it."""
  text = " ".join(str(e).split())
  return f"{type(e).__name__}: {text[:limit]}{'...' if len(text) > limit else ''}"


@jax.jit
def _finite_leaves(tree):
  """bool `[L]`: whether each of the L leaves of ``tree`` is finite everywhere. One program and
  one transfer for the whole tree, not two small programs per leaf shape and a transfer per leaf."""
  return jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)])


def path_name(path) -> str:
  """A pytree path as "params/backbone/conv1/kernel"."""
  return "/".join(str(getattr(k, "key", k)) for k in path)


def check_match(abstract: dict, stored: dict, where, config) -> None:
  """CheckpointError listing arrays missing, unexpected or of another shape than the model's."""
  want = {
    path_name(p): tuple(x.shape) for p, x in jax.tree_util.tree_flatten_with_path(abstract)[0]
  }
  have = {
    path_name(p): tuple(getattr(x, "shape", ()) or ())
    for p, x in jax.tree_util.tree_flatten_with_path(stored)[0]
  }
  problems = [f"missing {k} {want[k]}" for k in sorted(set(want) - set(have))]
  problems += [f"unexpected {k} {have[k]}" for k in sorted(set(have) - set(want))]
  problems += [
    f"{k}: stored {have[k]}, model {want[k]}"
    for k in sorted(set(want) & set(have))
    if have[k] != want[k]
  ]
  if problems:
    m = config.model
    raise CheckpointError(
      f"{where} does not match the model its config describes (architecture={m.architecture}"
      f", width={m.width}, looc_plus_plus={m.looc_plus_plus}, spaces="
      f"{tuple(config.augment.spaces)}): {len(problems)} mismatched arrays, e.g. "
      + "; ".join(problems[:6])
    )
