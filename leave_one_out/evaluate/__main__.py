r"""``python -m leave_one_out.evaluate --workdir=W [--config=configs/eval/<file>.py[:arg]]``.

Evaluates the newest checkpoint of ``--workdir`` (``leave_one_out.evaluate.run``), prints the
table and writes the results next to the checkpoints. ``--config`` is an eval config file
(default: ``leave_one_out.evaluate.default_config()``, the pretraining run's own data with the
fast protocols); any field can be overridden, e.g. ``--config.probe.epochs=2``.
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
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every restore at INFO
  gc.freeze()  # the modules imported so far live as long as the process: not garbage
  try:
    results = evaluate.run(_WORKDIR.value, _CONFIG.value)
  except data_lib.DataError as e:  # bad data: the message says what to do, no traceback
    logging.error("%s", e)
    raise SystemExit(1) from e
  if jax.process_index() == 0:
    print(evaluate.format_table(results), flush=True)
    if epath.Path(_WORKDIR.value).is_dir():
      print(f"results: {epath.Path(_WORKDIR.value) / results['eval_config']['results_file']}")


if __name__ == "__main__":
  app.run(main)
