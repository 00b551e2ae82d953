r"""Command line: LooC pretraining.

  python -m leave_one_out.main --config=configs/demo.py --workdir=/tmp/looc_demo \
      [--config.train.num_steps=100 ...]

Runs (or resumes) pretraining in --workdir: checkpoints under workdir/checkpoints, TensorBoard
summaries and metrics-<step>.jsonl in workdir (leave_one_out.run.logs.read_metrics reads
them), the config as workdir/config.json; prints a summary table at the end, then evaluates the
final checkpoint (datasets rendered in memory: the embedded shapes, the digits, the
photographs). A finished run is not trained again (one line says so).

  python -m leave_one_out.main --config=configs/demo.py --validate_only [--workdir=DIR]

checks the config and the data it names (and whether --workdir's run would resume), and exits.
Ctrl-C (SIGINT) and SIGTERM stop training after the next step with a save and exit 0; a second
Ctrl-C aborts at once. Errors in the config, the data or the workdir are one line (the traceback
with --verbosity=1 or LOOC_TRACEBACK=1).

Several processes (one per host, or per GPU): add --distributed to the same command on each.
Every process takes part in training and in the final evaluation (which runs on each process's
own devices); only process 0 writes logs, summaries and evaluation.json.
"""

import gc
import importlib.util
import logging as pylogging
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # quiet TensorFlow, where tf.data is used

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from leave_one_out import fields
from leave_one_out.data import DataError

_CONFIG = config_flags.DEFINE_config_file(
  "config", None, "Config file (configs/*.py).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and summaries.")
_WORKDIR_MODE = flags.DEFINE_enum(
  "workdir_mode",
  "auto",
  ["auto", "resume", "overwrite"],
  "auto: resume a run with the same config, refuse a different one; resume: continue the run "
  "in --workdir even if the config changed; overwrite: move an existing run aside and start "
  "afresh.",
)
_DISTRIBUTED = flags.DEFINE_bool(
  "distributed",
  False,
  "Multi-process run: call jax.distributed.initialize(). On Cloud TPU pods and SLURM the "
  "cluster is detected; elsewhere give the three flags below (or JAX's env variables).",
)
_COORDINATOR = flags.DEFINE_string(
  "coordinator_address", None, "host:port of process 0, for --distributed off TPU."
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes, for --distributed.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process, for --distributed.")
_LOCAL_DEVICE_IDS = flags.DEFINE_list(
  "local_device_ids",
  None,
  "--distributed: this process's devices, e.g. 0,1,2,3,4,5,6,7 for one process driving a "
  "node's 8 GPUs under SLURM (where JAX otherwise gives each process the one GPU of its "
  "SLURM_LOCALID). Default: JAX's choice.",
)
_HEARTBEAT_TIMEOUT = flags.DEFINE_integer(
  "heartbeat_timeout_s",
  100,
  "--distributed: a process that has sent no heartbeat for this many seconds counts as lost "
  "(a killed worker, a lost VM), and every other process exits non-zero, its log naming the "
  "lost process. The run resumes from its last checkpoint when restarted.",
)
_SHUTDOWN_TIMEOUT = flags.DEFINE_integer(
  "shutdown_timeout_s",
  300,
  "--distributed: how long a process that is exiting (finished, or failed with an error) "
  "waits for the others to exit too; then every process exits non-zero.",
)
_COMPILATION_CACHE = flags.DEFINE_string(
  "compilation_cache_dir",
  None,
  "Persistent XLA compilation cache (e.g. ~/.cache/leave_one_out/jax or a gs:// path): "
  "restarts and preempted runs skip recompiling the train step (with several processes JAX "
  "writes entries from process 0 only).",
)
_EVALUATE = flags.DEFINE_bool(
  "evaluate",
  True,
  "After pretraining on a dataset rendered in memory (the embedded shapes, the digits, the "
  "photographs), run the evaluation suite (leave_one_out.evaluate, with the same network at "
  "random init beside it) on the final checkpoint and print its table. For other datasets run "
  "`python -m leave_one_out.evaluate` with their config.",
)
_EVAL_CONFIG = config_flags.DEFINE_config_file(
  "eval_config",
  None,
  "Config of the final evaluation (configs/eval/synthetic.py layout, e.g. to shrink it: "
  "--eval_config=configs/eval/synthetic.py --eval_config.dataset.num_train=500); default: "
  "leave_one_out.evaluate.default_config() with random_init.enabled.",
  lock_config=True,
)
_VALIDATE_ONLY = flags.DEFINE_bool(
  "validate_only",
  False,
  "Check the config (every field, against this machine's devices), the data it names (listed "
  "or opened: training split, online monitoring's splits) and, with --workdir, whether that "
  "run would resume or be refused; print what was checked and exit. Trains nothing.",
)
_WANDB_PROJECT = flags.DEFINE_string(
  "wandb_project",
  None,
  "Also log every logged step to this Weights & Biases project (needs `pip install wandb`, "
  "optional; process 0; one W&B run per workdir, continued on resume).",
)
_WANDB_ENTITY = flags.DEFINE_string("wandb_entity", None, "--wandb_project: the W&B entity.")
flags.mark_flags_as_required(["config"])


def summary_table(summary: dict) -> str:
  """The end-of-run table: one row per embedding space."""
  lines = [
    f"LooC pretraining: step {summary['step']}/{summary['num_steps']}",
    "| space | loss | contrastive top-1 | own-view top-1 |",
    "|---|---|---|---|",
  ]
  for i, name in enumerate(summary["spaces"]):
    loss, top1 = summary.get(f"loss/{name}"), summary.get(f"top1/{name}")
    own = summary.get(f"own_top1/{name}")
    if loss is None:
      lines.append(f"| {name} | - | - | - |")
    else:
      own = f"{100 * own:.1f}%" if i else "(all own keys positive)"
      lines.append(f"| {name} | {loss:.4f} | {100 * top1:.1f}% | {own} |")
  lines.append(
    "top-1: the positive beats every key of the global batch; own-view top-1: among "
    "the image's own keys, the one sharing the space's augmentation scores highest"
  )
  if summary.get("img_per_s"):
    lines.append(f"throughput: {summary['img_per_s']:.0f} img/s")
  return "\n".join(lines)


def _local_device_ids():
  if not _LOCAL_DEVICE_IDS.value:
    return None
  try:
    return [int(i) for i in _LOCAL_DEVICE_IDS.value]
  except ValueError:
    raise app.UsageError(
      f"--local_device_ids must be integers, got {','.join(_LOCAL_DEVICE_IDS.value)}"
    ) from None


class _QuietLibraries(pylogging.Filter):
  """Keeps orbax's per-save INFO chatter out of the console (warnings still show)."""

  def filter(self, record):
    return record.levelno >= pylogging.WARNING or "/orbax/" not in record.pathname


def _finished_line(summary: dict) -> str:
  """What a rerun of a finished run prints instead of a table of an interval it did not train."""
  line = (
    f"LooC pretraining: the run in {_WORKDIR.value} is finished (step {summary['step']}/"
    f"{summary['num_steps']}); nothing was trained."
  )
  if summary.get("loss") is None:
    return line
  return line + " Its last logged interval:\n" + summary_table(summary)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not _WORKDIR.value and not _VALIDATE_ONLY.value:
    raise app.UsageError("--workdir is required (except with --validate_only)")
  if _WANDB_PROJECT.value and importlib.util.find_spec("wandb") is None:
    fields.exit_with(ImportError("--wandb_project needs the wandb package: pip install wandb"))
  logging.get_absl_handler().addFilter(_QuietLibraries())
  # After absl parsed the flags, so JAX flags from the command line apply.
  import jax  # pylint: disable=import-outside-toplevel

  from leave_one_out import evaluate  # pylint: disable=import-outside-toplevel
  from leave_one_out import sharding  # pylint: disable=import-outside-toplevel
  from leave_one_out.run import loop  # pylint: disable=import-outside-toplevel

  gc.freeze()  # the modules imported so far live as long as the process: not garbage
  if _COMPILATION_CACHE.value:
    jax.config.update("jax_compilation_cache_dir", os.path.expanduser(_COMPILATION_CACHE.value))
  if _DISTRIBUTED.value:
    jax.distributed.initialize(
      coordinator_address=_COORDINATOR.value,
      num_processes=_NUM_PROCESSES.value,
      process_id=_PROCESS_ID.value,
      local_device_ids=_local_device_ids(),
      heartbeat_timeout_seconds=_HEARTBEAT_TIMEOUT.value,
      shutdown_timeout_seconds=_SHUTDOWN_TIMEOUT.value,
    )
  logging.info(
    "JAX process %d/%d, %d local / %d global devices (%s)",
    jax.process_index(),
    jax.process_count(),
    jax.local_device_count(),
    jax.device_count(),
    jax.devices()[0].platform,
  )
  user_errors = (DataError, fields.ConfigError, loop.workdir_lib.WorkdirError)
  user_errors += (loop.checkpoints.CheckpointError,)
  if _VALIDATE_ONLY.value:
    try:
      checked = loop.check(_CONFIG.value, _WORKDIR.value, _WORKDIR_MODE.value)
    except user_errors as e:  # what a run would stop with: one line
      fields.exit_with(e, code=1)
    if jax.process_index() == 0:
      print("\n".join(["validate_only: OK"] + [f"  {line}" for line in checked]), flush=True)
    return
  wandb = {"project": _WANDB_PROJECT.value, "entity": _WANDB_ENTITY.value}
  try:
    summary = loop.pretrain(
      _CONFIG.value,
      _WORKDIR.value,
      workdir_mode=_WORKDIR_MODE.value,
      wandb=wandb if _WANDB_PROJECT.value else None,
    )
  except user_errors as e:  # the message says what to fix: one line, no traceback
    fields.exit_with(e, code=1)
  except jax.errors.JaxRuntimeError:
    if jax.process_count() > 1:  # the usual cause: a peer died in the middle of a collective
      logging.error(
        "Process %d: a computation across processes failed, most likely because another "
        "process was lost (JAX's log names it once --heartbeat_timeout_s=%d passes). The last "
        "committed checkpoint is intact: run the same command on every host to resume.",
        jax.process_index(),
        _HEARTBEAT_TIMEOUT.value,
      )
    raise
  if jax.process_index() == 0:
    finished = summary.get("finished_before")
    print(_finished_line(summary) if finished else summary_table(summary), flush=True)
  evaluate_now = _EVALUATE.value and evaluate.dataset.rendered(_CONFIG.value.data)
  if evaluate_now and not summary.get("preempted"):
    eval_cfg = _EVAL_CONFIG.value
    if eval_cfg is None:  # the defaults, with the same network at random init beside it
      eval_cfg = evaluate.default_config()
      eval_cfg.random_init.enabled = True
    # Every process evaluates on its own devices (no collective across processes, so none
    # waits on another); process 0 writes evaluation.json and prints the table.
    results = evaluate.run(_WORKDIR.value, eval_cfg, mesh=sharding.make_mesh(jax.local_devices()))
    if jax.process_index() == 0:
      print(evaluate.format_table(results), flush=True)
  if jax.process_count() > 1:
    # Processes finish at different times (process 1 compiles what process 0 found in the
    # compilation cache); meet here so that none waits past --shutdown_timeout_s at exit.
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel

    multihost_utils.sync_global_devices("leave_one_out.main: done")


if __name__ == "__main__":
  app.run(main, flags_parser=fields.parse_flags)
