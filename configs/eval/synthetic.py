r"""Evaluation on the embedded dataset (leave_one_out.data.synthetic.scenes), sized for a CPU.

Command (from the repository root, after a pretraining run in /tmp/looc_demo):

  python -m leave_one_out.evaluate --workdir=/tmp/looc_demo --config=configs/eval/synthetic.py

This is ``leave_one_out.evaluate.default_config()``, where every field is documented (each
section in its evaluator's module, leave_one_out/evaluate/<section>.py). It evaluates on the
pretraining run's own data (``dataset.data = None``): for a run trained on the embedded dataset
(configs/demo.py, the claims experiment) that is the embedded dataset, rendered as the run
rendered it (its seed, ``data.image_size`` and ``data.synthetic_light``), 2,000 training and
1,000 test images, labels shape (primary), colour and texture. The linear protocols are "fast"
(cached features); ``--config.probe.protocol=moco --config.probe.epochs=10`` runs MoCo's.

Hardware: 2 CPU cores. Expected runtime for the demo model (configs/demo.py: eighth-width
ResNet-10, 24-px views, LooC with spaces colour and rotation): under a minute, most of it
compilation (docs/
evaluation.md shows a table and its timings). Writes <workdir>/evaluation.json and
<workdir>/sensitivity.png and prints one table (rows: feature kinds; columns: tasks).
Override any field on the command line, e.g. ``--config.corruption.enabled=False``.
"""

from leave_one_out import evaluate


def get_config(arg=None):
  del arg
  return evaluate.default_config()
