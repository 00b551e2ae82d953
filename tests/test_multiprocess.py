"""Real multi-host runs: two processes coordinated by jax.distributed on localhost (CPU, gloo).

One uninterrupted two-process run (module fixture, with its end-of-run evaluation) is the
reference for every test: a one-process run with two devices must match it, and runs that are
preempted (SIGTERM) or lose a worker (kill -9) must, once restarted with the same command, end
with exactly its params. Those runs start from the reference's checkpoint at step
``SAVE_EVERY`` (copied into their workdir): the steps before it are the same computation.

Each worker runs ``leave_one_out.main`` through ``tests.cache_every_process``: JAX writes
persistent compilation cache entries from process 0 only, and on CPU each process compiles under
its own key, so process 1 would otherwise compile cold on every launch.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from leave_one_out.run import checkpoints
from leave_one_out.run import logs
from tests.helpers import CLI_TINY
from tests.helpers import final_state

# Its module-scoped fixtures are built once: every test of the file runs in one xdist worker.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("test_multiprocess")]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Signals land at step 6 or later; the preemption notice takes a few steps to reach a common
# sync point (measured: stopped at 9, and at 13 on a fast warm run), and the Ctrl-C test resumes
# and signals again, so the runs need room for two stops.
NUM_STEPS = 24
SAVE_EVERY = 4
HEARTBEAT_S = 10  # --heartbeat_timeout_s: a lost worker is noticed within this (JAX: 100)
RUN = [
  f"--config.train.num_steps={NUM_STEPS}",
  "--config.log_every_steps=1",
  f"--config.checkpoint_every_steps={SAVE_EVERY}",
  "--config.keep_checkpoints=10",
  "--config.async_checkpoints=False",
]
# The end-of-run evaluation (and online kNN at the last step), every protocol on few images.
EVALUATION = [
  f"--config.eval_every_steps={NUM_STEPS}",
  "--evaluate",
  "--eval_config=configs/eval/synthetic.py",
  "--eval_config.dataset.num_train=120",
  "--eval_config.dataset.num_test=60",
  "--eval_config.probe.steps=20",
  "--eval_config.rotation.num_train=20",
  "--eval_config.rotation.num_test=10",
  "--eval_config.fewshot.shots=(2,)",
  "--eval_config.fewshot.trials=1",
  "--eval_config.fewshot.steps=10",
  "--eval_config.corruption.names=('gaussian_noise',)",
  "--eval_config.corruption.severities=(1,)",
  "--eval_config.corruption.num_images=20",
  "--eval_config.sensitivity.num_images=8",
  "--config.online.num_train=60",
  "--config.online.num_test=30",
]


_STARTED = []  # every Worker, so that none outlives a failed test


@pytest.fixture(autouse=True)
def _no_stray_workers():
  yield
  while _STARTED:
    proc = _STARTED.pop().proc
    if proc.poll() is None:
      proc.kill()
      proc.wait()


class Worker:
  """One ``leave_one_out.main`` process; its output goes to a file (a pipe could fill up)."""

  def __init__(self, workdir, log, *, devices, args):
    _STARTED.append(self)
    env = dict(
      os.environ,
      XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
      JAX_COMPILATION_CACHE_DIR=jax.config.jax_compilation_cache_dir or "",
    )
    self.log_path = log
    with open(log, "w") as out:
      self.proc = subprocess.Popen(
        [
          sys.executable,
          "-m",
          "tests.cache_every_process",
          "leave_one_out.main",
          "--config=configs/demo.py",
          f"--workdir={workdir}",
          *CLI_TINY,
          *RUN,
          *args,
        ],
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        text=True,
      )

  def wait(self, timeout=300) -> int:
    return self.proc.wait(timeout=timeout)

  def log(self) -> str:
    with open(self.log_path) as f:
      return f.read()


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _start_pair(workdir, tag, *args):
  port = _free_port()
  return [
    Worker(
      workdir,
      f"{workdir}-{tag}-{i}.log",
      devices=1,
      args=[
        "--distributed",
        f"--coordinator_address=localhost:{port}",
        "--num_processes=2",
        f"--process_id={i}",
        f"--heartbeat_timeout_s={HEARTBEAT_S}",
        "--shutdown_timeout_s=30",
        *args,
      ],
    )
    for i in range(2)
  ]


def _finish(workers, timeout=300):
  for w in workers:
    assert w.wait(timeout) == 0, w.log()[-4000:]


def _from_reference(reference, workdir):
  """A workdir holding the reference's checkpoint at step SAVE_EVERY."""
  shutil.copytree(
    reference[0] / "checkpoints" / str(SAVE_EVERY), workdir / "checkpoints" / str(SAVE_EVERY)
  )
  return workdir


def _wait_for_step(workdir, step, workers, timeout=240):
  deadline = time.time() + timeout
  while time.time() < deadline:
    records = logs.read_metrics(workdir)
    if records and records[-1]["step"] >= step:
      return
    for w in workers:
      assert w.proc.poll() is None, w.log()[-4000:]
    time.sleep(0.05)
  raise TimeoutError(f"run did not reach step {step}")


def _assert_same_params(workdir_a, workdir_b, exact=True):
  step_a, a = final_state(workdir_a)
  step_b, b = final_state(workdir_b)
  assert step_a == step_b == NUM_STEPS
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    if exact:
      np.testing.assert_array_equal(x, y)
    else:
      np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """An uninterrupted two-process run with its evaluation: (workdir, [log 0, log 1])."""
  workdir = tmp_path_factory.mktemp("reference") / "run"
  workers = _start_pair(workdir, "ref", *EVALUATION)
  _finish(workers, timeout=500)
  return workdir, [w.log() for w in workers]


def test_demo_with_its_evaluation_finishes_in_two_processes(reference):
  workdir, printed = reference
  assert "JAX process 1/2, 1 local / 2 global devices" in printed[1]
  for log in printed:  # both trained to the end and ran the online kNN
    assert f"step {NUM_STEPS}/{NUM_STEPS}" in log and "online kNN top-1" in log
  assert "LooC evaluation:" in printed[0] and "LooC evaluation:" not in printed[1]  # one table
  assert (workdir / "evaluation.json").exists()
  records = logs.read_metrics(workdir)
  assert [r["step"] for r in records if "loss" in r] == list(range(1, NUM_STEPS + 1))
  assert [r["step"] for r in records if "eval/knn_top1" in r] == [NUM_STEPS]


def test_two_processes_match_one_process(reference, tmp_path):
  workdir, _ = reference
  single = Worker(tmp_path / "single", tmp_path / "single.log", devices=2, args=["--noevaluate"])
  _finish([single])
  losses = lambda d: [r["loss"] for r in logs.read_metrics(d) if "loss" in r]
  np.testing.assert_allclose(losses(workdir), losses(tmp_path / "single"), rtol=1e-5)
  _assert_same_params(workdir, tmp_path / "single", exact=False)


def _stopped_at(log):
  found = re.findall(r"Stopped at step (\d+) on a preemption request", log)
  assert len(found) == 1, log[-4000:]
  return int(found[0])


def _preempt(workers, signal_plan, signum=signal.SIGTERM):
  """Sends ``signum`` per ``signal_plan`` [(worker, seconds after the first signal)]; checks
  that both workers exit 0 having stopped at the same step. Returns that step and each
  worker's seconds from the first signal to its exit."""
  t0, exits = time.time(), {}
  pending = list(signal_plan)
  while len(exits) < len(workers) and time.time() < t0 + 120:
    if pending and time.time() >= t0 + pending[0][1]:
      i, _ = pending.pop(0)
      if workers[i].proc.poll() is None:
        workers[i].proc.send_signal(signum)
    for i, w in enumerate(workers):
      if i not in exits and w.proc.poll() is not None:
        exits[i] = time.time() - t0
    time.sleep(0.02)
  _finish(workers, timeout=1)
  stops = [_stopped_at(w.log()) for w in workers]
  assert stops[0] == stops[1], stops
  return stops[0], [round(exits[i], 1) for i in range(len(workers))]


def _latest_checkpoint(workdir):
  ckpt = checkpoints.Checkpointer(str(workdir), async_save=False)
  step = ckpt.latest_step()
  ckpt.close()
  return step


def _resume_to_the_end(reference, workdir, from_step):
  resumed = _start_pair(workdir, f"from-{from_step}", "--noevaluate")
  _finish(resumed)
  for w in resumed:
    assert f"Resumed from step {from_step} " in w.log()
  _assert_same_params(reference[0], workdir)
  steps = [r["step"] for r in logs.read_metrics(workdir) if "loss" in r]
  assert steps == list(range(SAVE_EVERY + 1, NUM_STEPS + 1))  # no step logged twice


def test_ctrl_c_to_one_worker_then_sigterm_to_both_2s_apart_each_stop_both_at_one_step(
  reference, tmp_path
):
  """Ctrl-C in worker 0's terminal (SIGINT, turned into JAX's preemption notice): both stop
  at one step. Resumed, then SIGTERM to both workers 2 s apart: again one step for both."""
  workdir = _from_reference(reference, tmp_path / "run")
  workers = _start_pair(workdir, "run", "--noevaluate")
  _wait_for_step(workdir, SAVE_EVERY + 2, workers)
  first, exits = _preempt(workers, [(0, 0.0)], signal.SIGINT)
  print(
    f"SIGINT to worker 0 only: both stopped at step {first}; seconds from the signal to each "
    f"worker's exit: {exits}"
  )
  assert "Interrupted (Ctrl-C)" in workers[0].log() and "KeyboardInterrupt" not in workers[0].log()
  assert SAVE_EVERY + 2 <= first < NUM_STEPS and _latest_checkpoint(workdir) == first
  workers = _start_pair(workdir, f"from-{first}", "--noevaluate")
  _wait_for_step(workdir, first + 1, workers)
  stop, exits = _preempt(workers, [(0, 0.0), (1, 2.0)])
  print(
    f"SIGTERM to worker 0, 2 s later to worker 1: both stopped at step {stop}; seconds "
    f"from the first signal to each worker's exit: {exits}"
  )
  assert first < stop < NUM_STEPS and _latest_checkpoint(workdir) == stop
  _resume_to_the_end(reference, workdir, stop)


def test_lost_worker_and_a_one_worker_preemption_both_resume_to_the_same_result(
  reference, tmp_path
):
  workdir = _from_reference(reference, tmp_path / "run")
  workers = _start_pair(workdir, "run", "--noevaluate")
  _wait_for_step(workdir, 2 * SAVE_EVERY + 2, workers)
  t0 = time.time()
  workers[1].proc.kill()
  survivor = workers[0].wait(timeout=HEARTBEAT_S + 60)
  detected = time.time() - t0
  print(
    f"kill -9 of worker 1: worker 0 exited with {survivor} after {detected:.1f} s "
    f"(--heartbeat_timeout_s={HEARTBEAT_S})"
  )
  assert survivor != 0 and detected < HEARTBEAT_S + 15
  log = workers[0].log()  # JAX names the lost process (heartbeats, or the shutdown barrier)
  assert re.search(r"stopped sending heartbeats\):\s*1\b|Task 1 heartbeat timeout", log), log[
    -3000:
  ]
  last_good = _latest_checkpoint(workdir)
  assert last_good is not None and last_good % SAVE_EVERY == 0 and last_good >= 2 * SAVE_EVERY

  # The same command on both resumes from the last good checkpoint. SIGTERM to one worker as
  # soon as both have restored (while they compile): both stop at the same early step.
  workers = _start_pair(workdir, "restarted", "--noevaluate")
  deadline = time.time() + 240
  while not all(f"Resumed from step {last_good} " in w.log() for w in workers):
    assert time.time() < deadline and all(w.proc.poll() is None for w in workers), workers[0].log()[
      -3000:
    ]
    time.sleep(0.05)
  stop, exits = _preempt(workers, [(1, 0.0)])
  print(
    f"SIGTERM to worker 1 only (while compiling): both stopped at step {stop}; seconds "
    f"from the signal to each worker's exit: {exits}"
  )
  assert last_good < stop < NUM_STEPS and _latest_checkpoint(workdir) == stop
  _resume_to_the_end(reference, workdir, stop)
