"""TensorBoard summaries: written without TensorFlow, read back by TensorBoard's own reader."""

import os
import subprocess
import sys
import textwrap

from tensorboard.backend.event_processing import event_accumulator

from leave_one_out import summaries

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _scalars(logdir):
  acc = event_accumulator.EventAccumulator(str(logdir))
  acc.Reload()
  return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_scalars_and_hparams_round_trip(tmp_path):
  writer = summaries.SummaryWriter(str(tmp_path))
  writer.write_hparams({"train.base_lr": 0.03, "data.name": "synthetic", "seed": 0})
  for step in (10, 20):
    writer.write_scalars(step, {"loss": step / 10, "top1/invariant": 0.5})
  writer.close()
  assert _scalars(tmp_path) == {"loss": [(10, 1.0), (20, 2.0)],
                                "top1/invariant": [(10, 0.5), (20, 0.5)]}
  silent = summaries.SummaryWriter(str(tmp_path / "other"), enabled=False)
  silent.write_scalars(1, {"loss": 1.0})
  silent.close()
  assert not (tmp_path / "other").exists()  # processes other than 0 write nothing


def test_summaries_need_no_tensorflow(tmp_path):
  """The core install has no TensorFlow: summaries are written all the same."""
  code = textwrap.dedent(f"""
      import sys
      sys.modules["tensorflow"] = None  # any import of TensorFlow now fails
      from leave_one_out import summaries
      w = summaries.SummaryWriter({str(tmp_path)!r})
      w.write_hparams({{"seed": 1}})
      w.write_scalars(3, {{"loss": 0.25}})
      w.close()
      """)
  subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)
  assert _scalars(tmp_path) == {"loss": [(3, 0.25)]}
