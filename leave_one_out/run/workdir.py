"""A run's workdir: one run per directory, and nothing of an old run is deleted.

``prepare`` refuses a workdir that holds a run with another config (unless told to resume it
or to start afresh); ``set_aside`` moves every file of an old run (checkpoints, metrics files,
summaries, ``config.json``, evaluation results, profiles) to ``previous-run-<time>/``; only the
older ``previous-run-*`` folders and what is not the run's (``KEEP``: a compilation cache or a
SLURM folder inside the workdir) stay. ``write_config`` keeps ``config.json``, the run's
config as readable JSON, in the workdir.
"""

from __future__ import annotations

import json
import time

import jax
from absl import logging
from etils import epath
from jax.experimental import multihost_utils

from leave_one_out.run import checkpoints

MODES = ("auto", "resume", "overwrite")
CONFIG_FILE = "config.json"
ASIDE_PREFIX = "previous-run-"
# Entries of a workdir that are not the run's and stay when it is set aside: the persistent
# compilation cache launch/tpu.sh and slurm.sh put there, and slurm.sh's job script and logs.
KEEP = ("jax_cache", "slurm")
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


class WorkdirError(ValueError):
  """The workdir holds another run (the message lists the differing fields and the way out)."""


def set_aside(workdir: str, ckpt: checkpoints.Checkpointer | None, why: str) -> None:
  """Moves every file of the run in ``workdir`` to ``previous-run-<time>/`` (module docstring).

  Nothing is deleted. ``ckpt`` (closed here; every process calls this then) moves its
  checkpoints with the rest; None (process 0 only) keeps the checkpoints in place.
  """
  root = epath.Path(workdir)
  aside = root / f"{ASIDE_PREFIX}{int(time.time())}"
  logging.warning("%s: moving the existing run's files to %s", why, aside)
  if ckpt is not None:
    ckpt.close()
  if jax.process_index() == 0:
    aside.mkdir(parents=True, exist_ok=True)
    for path in list(root.iterdir()):
      name = path.name
      if name.startswith(ASIDE_PREFIX) or name in KEEP:
        continue
      if name == checkpoints.CHECKPOINT_DIR and ckpt is None:
        continue
      path.rename(aside / name)
  if ckpt is not None and jax.process_count() > 1:  # no process reopens before the move
    multihost_utils.sync_global_devices("leave_one_out: previous run set aside")


def saved_differences(ckpt: checkpoints.Checkpointer, cfg) -> tuple[int, list[str]] | None:
  """(newest step, the fields in which its run's config differs from ``cfg``), or None when
  the workdir holds no readable checkpoint."""
  latest = ckpt.latest_step()
  if latest is None:
    return None
  for step in reversed(ckpt.all_steps()):  # unreadable ones are moved aside when restoring
    try:
      saved = json.loads(ckpt.restore_config(step).to_json())
      break
    except Exception:  # pylint: disable=broad-except
      continue
  else:
    return None
  return latest, config_differences(saved, json.loads(cfg.to_json()))


def refusal(workdir: str, latest: int, diffs: list[str]) -> WorkdirError:
  return WorkdirError(
    f"{workdir} holds a run (step {latest}) with a different config:\n  "
    + "\n  ".join(diffs)
    + "\nUse another --workdir, or --workdir_mode=resume to continue "
    "that run with the new config, or --workdir_mode=overwrite to start afresh (the old "
    "run's files are moved aside, not deleted)."
  )


def prepare(workdir: str, mode: str, ckpt: checkpoints.Checkpointer, cfg) -> None:
  """Refuses to mix runs: a workdir holding another config needs mode resume or overwrite."""
  if mode not in MODES:
    raise ValueError(f"workdir mode must be one of {MODES}, got {mode!r}")
  if ckpt.latest_step() is None:
    return
  if mode == "overwrite":
    set_aside(workdir, ckpt, "Overwrite")
    return
  found = saved_differences(ckpt, cfg)
  if found is None:
    return
  latest, diffs = found
  if diffs and mode == "auto":
    raise refusal(workdir, latest, diffs)
  if diffs:
    logging.warning("Resuming with a changed config: %s", "; ".join(diffs))


def write_config(workdir: str, cfg) -> None:
  """``workdir/config.json``: the run's config (process 0; rewritten at every start, so a run
  resumed with a changed config shows the config it now runs with)."""
  if jax.process_index() == 0:
    (epath.Path(workdir) / CONFIG_FILE).write_text(cfg.to_json(indent=2, sort_keys=True) + "\n")
