r"""``python -m leave_one_out.evaluate --workdir=W [--config=configs/eval/<file>.py[:arg]]``.

Evaluates the newest checkpoint of ``--workdir`` (``leave_one_out.evaluate.run``), prints the
table and writes the results next to the checkpoints. ``--config`` is an eval config file
(default: ``leave_one_out.evaluate.default_config()``, the pretraining run's own data with the
fast protocols); any field can be overridden, e.g. ``--config.probe.epochs=2``. Progress (the
MoCo protocol's epochs, the data read) is logged as it goes; errors in the config, the data or
the checkpoint are one line (the traceback with --verbosity=1 or LOOC_TRACEBACK=1).
"""

import gc

import jax
from absl import app
from absl import flags
from absl import logging
from etils import epath
from ml_collections import config_flags

from leave_one_out import data as data_lib
from leave_one_out import evaluate
from leave_one_out import fields
from leave_one_out.run import checkpoints
from leave_one_out.run import logs

_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir (or checkpoint directory).")
_CONFIG = config_flags.DEFINE_config_file(
  "config",
  None,
  "Eval config file (configs/eval/*.py); default: leave_one_out.evaluate.default_config().",
  lock_config=True,
)
flags.mark_flags_as_required(["workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.get_absl_handler().addFilter(logs.QuietLibraries())  # orbax logs every restore
  gc.freeze()  # the modules imported so far live as long as the process: not garbage
  try:
    results = evaluate.run(_WORKDIR.value, _CONFIG.value)
  except (data_lib.DataError, fields.ConfigError, checkpoints.CheckpointError) as e:
    fields.exit_with(e, code=1)  # the message says what to fix: one line, no traceback
  if jax.process_index() == 0:
    print(evaluate.format_table(results), flush=True)
    if epath.Path(_WORKDIR.value).is_dir():
      print(f"results: {epath.Path(_WORKDIR.value) / results['results_file']}")


if __name__ == "__main__":
  app.run(main, flags_parser=fields.parse_flags)
