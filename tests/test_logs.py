"""What a run writes besides checkpoints (leave_one_out.run.logs): metrics-<step>.jsonl in
bounded segments, written off the caller's thread and read back in order; TensorBoard summaries
written without TensorFlow and read back by TensorBoard's own reader; the one run-log writer."""

import os
import subprocess
import sys
import textwrap
import threading

import pytest
from etils import epath
from tensorboard.backend.event_processing import event_accumulator

from leave_one_out.run import logs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _scalars(logdir):
  """{tag: [(step, value)]} in step order. The accumulator reads a folder's event files in name
  order, and two writers opened within one second by one process differ only in a counter
  suffix compared as text (".9" after ".10"), so file order is not write order there; a step
  written twice still shows twice."""
  acc = event_accumulator.EventAccumulator(str(logdir))
  acc.Reload()
  return {tag: sorted((e.step, e.value) for e in acc.Scalars(tag)) for tag in acc.Tags()["scalars"]}


def test_scalars_and_hparams_round_trip(tmp_path):
  writer = logs.SummaryWriter(str(tmp_path))
  writer.write_hparams({"train.base_lr": 0.03, "data.name": "synthetic", "seed": 0})
  for step in (10, 20):
    writer.write_scalars(step, {"loss": step / 10, "top1/invariant": 0.5})
  writer.close()
  assert _scalars(tmp_path) == {
    "loss": [(10, 1.0), (20, 2.0)],
    "top1/invariant": [(10, 0.5), (20, 0.5)],
  }
  silent = logs.SummaryWriter(str(tmp_path / "other"), enabled=False)
  silent.write_scalars(1, {"loss": 1.0})
  silent.close()
  assert not (tmp_path / "other").exists()  # processes other than 0 write nothing


def test_summaries_need_no_tensorflow(tmp_path):
  """The core install has no TensorFlow: summaries are written all the same."""
  code = textwrap.dedent(f"""
      import sys
      sys.modules["tensorflow"] = None  # any import of TensorFlow now fails
      from leave_one_out.run import logs
      w = logs.SummaryWriter({str(tmp_path)!r})
      w.write_hparams({{"seed": 1}})
      w.write_scalars(3, {{"loss": 0.25}})
      w.close()
      """)
  subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)
  assert _scalars(tmp_path) == {"loss": [(3, 0.25)]}


def _steps(workdir):
  return [r["step"] for r in logs.read_metrics(workdir)]


def test_segments_roll_over_and_read_back_in_step_order(tmp_path):
  writer = logs.JsonlWriter(tmp_path, segment_lines=3)
  for step in range(1, 8):
    writer.write(step, {"loss": 1.0 / step})
  writer.flush()
  names = sorted(os.listdir(tmp_path))
  assert names == ["metrics-000000001.jsonl", "metrics-000000004.jsonl", "metrics-000000007.jsonl"]
  records = logs.read_metrics(tmp_path)
  assert [r["step"] for r in records] == list(range(1, 8))
  assert records[3]["loss"] == pytest.approx(0.25)


def test_object_store_mode_rewrites_only_the_current_segment(tmp_path, monkeypatch):
  """On gs:// the current segment is rewritten from memory: never read, at most N lines."""
  writer = logs.JsonlWriter(tmp_path, segment_lines=2, asynchronous=False)
  writer._remote = True  # pylint: disable=protected-access
  sizes = []
  path_type = type(epath.Path(tmp_path))
  real_write_text = path_type.write_text

  def write_text(path, text, *args, **kwargs):
    sizes.append(len(text.splitlines()))
    return real_write_text(path, text, *args, **kwargs)

  monkeypatch.setattr(path_type, "write_text", write_text)
  monkeypatch.setattr(path_type, "read_text", lambda *a, **k: pytest.fail("read back"))
  real_open = path_type.open
  monkeypatch.setattr(
    path_type,
    "open",
    lambda path, mode="r", *a, **k: (
      pytest.fail("appended") if "a" in mode else real_open(path, mode, *a, **k)
    ),
  )
  for step in range(1, 6):
    writer.write(step, {"loss": float(step)})
  monkeypatch.undo()
  assert sizes == [1, 2, 1, 2, 1]
  assert _steps(tmp_path) == [1, 2, 3, 4, 5]


def test_writes_happen_off_the_calling_thread(tmp_path):
  writer = logs.JsonlWriter(tmp_path)
  threads = []
  original = writer._write  # pylint: disable=protected-access
  writer._write = lambda record: (
    threads.append(threading.current_thread()),  # pylint: disable=protected-access
    original(record),
  )
  writer.write(1, {"loss": 1.0})
  writer.flush()
  assert threads and threads[0] is not threading.main_thread()
  assert _steps(tmp_path) == [1]


def test_a_resumed_run_does_not_log_a_step_twice(tmp_path):
  first = logs.JsonlWriter(tmp_path)
  for step in range(1, 6):
    first.write(step, {"loss": 1.0})
  first.flush()
  # Killed after step 5, resumed from the checkpoint at step 3: steps 4 and 5 run again.
  resumed = logs.JsonlWriter(tmp_path)
  assert not resumed.should_log(5) and resumed.should_log(6)
  for step in range(4, 9):
    resumed.write(step, {"loss": 2.0})
  resumed.flush()
  records = logs.read_metrics(tmp_path)
  assert [r["step"] for r in records] == list(range(1, 9))
  assert [r["loss"] for r in records] == [1.0] * 5 + [2.0] * 3
  assert len(logs.segment_paths(tmp_path)) == 2


def test_reader_skips_a_cut_short_last_line_and_rejects_garbage_elsewhere(tmp_path):
  (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 3.0}\n')  # a legacy file
  (tmp_path / "metrics-000000002.jsonl").write_text('{"step": 2, "loss": 2.0}\n{"step": 3, "lo')
  assert _steps(tmp_path) == [1, 2]
  (tmp_path / "metrics-000000009.jsonl").write_text('{"step": 9}\nnot json\n{"step": 10}\n')
  with pytest.raises(ValueError, match=r"metrics-000000009.jsonl, line 2"):
    logs.read_metrics(tmp_path)


def test_a_failed_background_write_surfaces_at_flush(tmp_path):
  target = tmp_path / "workdir"
  writer = logs.JsonlWriter(target)
  target.write_text("")  # the workdir turned into a file: the write fails in the background
  writer.write(1, {"loss": 1.0})
  with pytest.raises(Exception, match="ASYNCHRONOUSLY"):
    writer.flush()


def test_disabled_writer_writes_nothing(tmp_path):
  writer = logs.JsonlWriter(tmp_path, enabled=False)
  writer.write(1, {"loss": 1.0})
  writer.flush()
  assert os.listdir(tmp_path) == []


def test_run_log_writes_each_step_once_to_both_and_not_again_after_a_resume(tmp_path):
  first = logs.RunLog(tmp_path)
  first.write(1, {"loss": 2.0})
  first.write(2, {"loss": 1.5})
  first.close()
  resumed = logs.RunLog(tmp_path)  # a run killed after step 2 resumes from step 1's save
  resumed.write(2, {"loss": 9.0})  # repeated: not logged again
  resumed.write(3, {"loss": 1.0})
  resumed.close()
  assert [(r["step"], r["loss"]) for r in logs.read_metrics(tmp_path)] == [
    (1, 2.0),
    (2, 1.5),
    (3, 1.0),
  ]
  assert _scalars(tmp_path)["loss"] == [(1, 2.0), (2, 1.5), (3, 1.0)]
