"""A run's workdir: one run per directory, and nothing of an old run is deleted.

``prepare`` refuses a workdir that holds a run with another config (unless told to resume it
or to start afresh); ``set_aside`` moves an old run's checkpoints, metrics files and summaries
to ``previous-run-<time>/``.
"""

from __future__ import annotations

import json
import time

import jax
from absl import logging
from etils import epath
from jax.experimental import multihost_utils

from leave_one_out.run import checkpoints
from leave_one_out.run import logs

MODES = ("auto", "resume", "overwrite")
# Fields that may change when a run is resumed; any other difference is a different run.
RESUMABLE_FIELDS = (
  "log_every_steps",
  "checkpoint_every_steps",
  "keep_checkpoints",
  "keep_every_steps",
  "async_checkpoints",
  "eval_every_steps",
  "profile_start_step",
  "profile_num_steps",
  "train.on_nonfinite",
  # monitoring is not the run
  "online.train_split",
  "online.eval_split",
  "online.num_train",
  "online.num_test",
  "online.linear_probe",
)


def config_differences(saved: dict, current: dict, prefix: str = "") -> list[str]:
  """Dotted names of the fields whose values differ between two config dicts (JSON form)."""
  diffs = []
  for key in sorted(set(saved) | set(current)):
    name = f"{prefix}{key}"
    a, b = saved.get(key), current.get(key)
    if isinstance(a, dict) and isinstance(b, dict):
      diffs += config_differences(a, b, name + ".")
    elif a != b and name not in RESUMABLE_FIELDS:
      diffs.append(f"{name}: {a!r} -> {b!r}")
  return diffs


def set_aside(workdir: str, ckpt: checkpoints.Checkpointer | None, why: str) -> None:
  """Moves a run's checkpoints, metrics files and summaries to ``previous-run-<time>/``.

  Nothing is deleted. ``ckpt`` (closed here; every process calls this then) moves its
  checkpoints; None (process 0 only) keeps them in place.
  """
  root = epath.Path(workdir)
  aside = root / f"previous-run-{int(time.time())}"
  logging.warning("%s: moving the existing run's files to %s", why, aside)
  if ckpt is not None:
    ckpt.close()
  if jax.process_index() == 0:
    aside.mkdir(parents=True, exist_ok=True)
    if ckpt is not None and epath.Path(ckpt.directory).exists():
      epath.Path(ckpt.directory).rename(aside / checkpoints.CHECKPOINT_DIR)
    for path in logs.segment_paths(root):
      path.rename(aside / path.name)
    for path in root.glob("events.out.tfevents.*"):
      path.rename(aside / path.name)
  if ckpt is not None and jax.process_count() > 1:  # no process reopens before the move
    multihost_utils.sync_global_devices("leave_one_out: previous run set aside")


def prepare(workdir: str, mode: str, ckpt: checkpoints.Checkpointer, cfg) -> None:
  """Refuses to mix runs: a workdir holding another config needs mode resume or overwrite."""
  if mode not in MODES:
    raise ValueError(f"workdir mode must be one of {MODES}, got {mode!r}")
  latest = ckpt.latest_step()
  if latest is None:
    return
  if mode == "overwrite":
    set_aside(workdir, ckpt, "Overwrite")
    return
  saved = None
  for step in reversed(ckpt.all_steps()):  # unreadable ones are moved aside when restoring
    try:
      saved = json.loads(ckpt.restore_config(step).to_json())
      break
    except Exception:  # pylint: disable=broad-except
      continue
  if saved is None:
    return
  diffs = config_differences(saved, json.loads(cfg.to_json()))
  if diffs and mode == "auto":
    raise ValueError(
      f"{workdir} holds a run (step {latest}) with a different config:\n  "
      + "\n  ".join(diffs)
      + "\nUse another --workdir, or --workdir_mode=resume to continue "
      "that run with the new config, or --workdir_mode=overwrite to start afresh (the old "
      "checkpoints are moved aside, not deleted)."
    )
  if diffs:
    logging.warning("Resuming with a changed config: %s", "; ".join(diffs))
