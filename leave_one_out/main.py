r"""Command line: LooC pretraining.

  python -m leave_one_out.main --config=configs/demo.py --workdir=/tmp/looc_demo \
      [--config.train.num_steps=100 ...]

Runs (or resumes) pretraining in --workdir: checkpoints under workdir/checkpoints, TensorBoard
summaries and metrics.jsonl in workdir; prints a summary table at the end.
"""

import logging as pylogging
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow is only clu's summary writer

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and summaries.")
_WORKDIR_MODE = flags.DEFINE_enum(
    "workdir_mode", "auto", ["auto", "resume", "overwrite"],
    "auto: resume a run with the same config, refuse a different one; resume: continue the run "
    "in --workdir even if the config changed; overwrite: move an existing run aside and start "
    "afresh.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False,
    "Multi-process run: call jax.distributed.initialize(). On Cloud TPU pods and SLURM the "
    "cluster is detected; elsewhere give the three flags below (or JAX's env variables).")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "host:port of process 0, for --distributed off TPU.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes, for --distributed.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process, for --distributed.")
_COMPILATION_CACHE = flags.DEFINE_string(
    "compilation_cache_dir", None,
    "Persistent XLA compilation cache (e.g. ~/.cache/leave_one_out/jax or a gs:// path): "
    "restarts and preempted runs skip recompiling the train step.")
_EVALUATE = flags.DEFINE_bool(
    "evaluate", True,
    "After pretraining on the embedded dataset, run the evaluation suite "
    "(leave_one_out.evaluate with configs/eval/synthetic.py) on the final checkpoint and print "
    "its table. For other datasets run `python -m leave_one_out.evaluate` with their config.")
flags.mark_flags_as_required(["config", "workdir"])


def summary_table(summary: dict) -> str:
  """The end-of-run table: one row per embedding space."""
  lines = [f"LooC pretraining: step {summary['step']}/{summary['num_steps']}",
           "| space | loss | contrastive top-1 | own-view top-1 |", "|---|---|---|---|"]
  for i, name in enumerate(summary["spaces"]):
    loss, top1 = summary.get(f"loss/{name}"), summary.get(f"top1/{name}")
    own = summary.get(f"own_top1/{name}")
    if loss is None:
      lines.append(f"| {name} | - | - | - |")
    else:
      own = f"{100 * own:.1f}%" if i else "(all own keys positive)"
      lines.append(f"| {name} | {loss:.4f} | {100 * top1:.1f}% | {own} |")
  lines.append("top-1: the positive beats every key of the global batch; own-view top-1: among "
               "the image's own keys, the one sharing the space's augmentation scores highest")
  if summary.get("img_per_s"):
    lines.append(f"throughput: {summary['img_per_s']:.0f} img/s")
  return "\n".join(lines)


class _QuietLibraries(pylogging.Filter):
  """Keeps orbax's per-save INFO chatter out of the console (warnings still show)."""

  def filter(self, record):
    return record.levelno >= pylogging.WARNING or "/orbax/" not in record.pathname


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.get_absl_handler().addFilter(_QuietLibraries())
  import jax  # after absl parsed flags, so JAX flags from the command line apply
  from leave_one_out import train
  if _COMPILATION_CACHE.value:
    jax.config.update("jax_compilation_cache_dir", os.path.expanduser(_COMPILATION_CACHE.value))
  if _DISTRIBUTED.value:
    jax.distributed.initialize(coordinator_address=_COORDINATOR.value,
                               num_processes=_NUM_PROCESSES.value,
                               process_id=_PROCESS_ID.value)
  logging.info("JAX process %d/%d, %d local / %d global devices (%s)", jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count(),
               jax.devices()[0].platform)
  from leave_one_out.data import common  # pylint: disable=import-outside-toplevel
  try:
    summary = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value,
                                       workdir_mode=_WORKDIR_MODE.value)
  except common.DataError as e:  # bad data: the message says what to do, no traceback
    logging.error("%s", e)
    sys.exit(1)
  if jax.process_index() == 0:
    print(summary_table(summary), flush=True)
  evaluate_now = _EVALUATE.value and _CONFIG.value.data.name == "synthetic"
  if evaluate_now and not summary.get("preempted") and jax.process_index() == 0:
    from leave_one_out import evaluate  # pylint: disable=import-outside-toplevel
    print(evaluate.format_table(evaluate.run(_WORKDIR.value)), flush=True)


if __name__ == "__main__":
  app.run(main)
