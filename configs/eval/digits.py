r"""Evaluation of a run trained on the digits (leave_one_out.data.digits), sized for a CPU.

Command (from the repository root, after the demo in /tmp/looc_demo):

  python -m leave_one_out.evaluate --workdir=/tmp/looc_demo --config=configs/eval/digits.py

The demo's end-of-run evaluation: ``leave_one_out.evaluate.default_config()`` (every field is
documented in its evaluator's module, leave_one_out/evaluate/<section>.py) with the same network
at random init beside the trained one (``random_init``: BatchNorm statistics calibrated on
training views, the fast linear probe of the digit on both). It evaluates on the run's own data
(``dataset.data = None``): 2,000 renderings of the train split's source images and 1,000 of the
test split's, rendered from the run's seed; labels digit (primary), hue and digit x hue (120
classes); the 4-way rotation probe; kNN, few-shot and corruptions on the digit; the
augmentation-sensitivity matrix. Writes <workdir>/evaluation.json and <workdir>/sensitivity.png
and prints one table. Override any field on the command line, e.g.
``--config.corruption.enabled=False``.
"""

from leave_one_out import evaluate


def get_config(arg=None):
  del arg
  c = evaluate.default_config()
  c.random_init.enabled = True
  return c
