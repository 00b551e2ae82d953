"""Fault injection: preemption, kill -9, corrupt checkpoints, non-finite losses, workdir safety.

What a user can rely on (README, "Reliability"): each test below is one guarantee.
"""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from leave_one_out.run import checkpoints
from leave_one_out.run import logs
from leave_one_out.run import loop
from tests import helpers
from tests.helpers import final_state as _final_params
from tests.helpers import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI_TINY = ["--config.log_every_steps=1", "--config.async_checkpoints=False", *helpers.CLI_TINY]
# The length of every CLI run below (the train step depends on it: one compile serves them
# all). A signal once step 5 (SIGTERM) or 25 (kill -9) is logged lands with 45 or 25 to go.
RUN_STEPS = 50


def _start(workdir, steps, every, *extra):
  env = dict(
    os.environ,
    XLA_FLAGS="--xla_force_host_platform_device_count=2",
    JAX_COMPILATION_CACHE_DIR=jax.config.jax_compilation_cache_dir or "",
  )
  return subprocess.Popen(
    [
      sys.executable,
      "-m",
      "leave_one_out.main",
      "--config=configs/demo.py",
      f"--workdir={workdir}",
      f"--config.train.num_steps={steps}",
      f"--config.checkpoint_every_steps={every}",
      *CLI_TINY,
      *extra,
    ],
    cwd=ROOT,
    env=env,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )


def _wait_for_step(workdir, step, proc, timeout=240):
  deadline = time.time() + timeout
  while time.time() < deadline:
    if logs.last_logged_step(workdir) >= step:
      return
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    time.sleep(0.05)
  raise TimeoutError(f"run did not reach step {step}")


@pytest.mark.slow
def test_ctrl_c_saves_and_the_resumed_run_matches_an_uninterrupted_one(tmp_path):
  """SIGINT (Ctrl-C) as SIGTERM: a save at the next step, exit 0, an exact resume."""
  steps = RUN_STEPS
  straight = _start(tmp_path / "straight", steps, every=1000)
  out, err = straight.communicate(timeout=300)
  assert straight.returncode == 0, err[-3000:]

  run = _start(tmp_path / "preempted", steps, every=1000)
  _wait_for_step(tmp_path / "preempted", 5, run)
  run.send_signal(signal.SIGINT)
  _, err = run.communicate(timeout=120)
  assert run.returncode == 0, err[-3000:]
  assert "Interrupted (Ctrl-C): saving a checkpoint" in err and "preemption request" in err
  assert "KeyboardInterrupt" not in err
  stopped_at, _ = _final_params(tmp_path / "preempted")
  assert 5 <= stopped_at < steps  # saved at the step it was interrupted, not at the end

  resumed = _start(tmp_path / "preempted", steps, every=1000)
  _, err = resumed.communicate(timeout=300)
  assert resumed.returncode == 0, err[-3000:]
  assert f"Resumed from step {stopped_at}" in err
  step_a, a = _final_params(tmp_path / "straight")
  step_b, b = _final_params(tmp_path / "preempted")
  assert step_a == step_b == steps
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)


@pytest.mark.slow
def test_kill9_loses_at_most_the_steps_since_the_last_save(tmp_path):
  run = _start(tmp_path, RUN_STEPS, every=10)
  _wait_for_step(tmp_path, 25, run)
  run.kill()
  run.communicate()
  ckpt = checkpoints.Checkpointer(str(tmp_path), async_save=False)
  last = ckpt.latest_step()
  ckpt.close()
  assert last is not None and last % 10 == 0 and last >= 20
  logged = logs.last_logged_step(tmp_path)
  assert logged - last < 10 + 2  # lost: only the steps since the last periodic save
  # Restarting resumes from `last`; the steps it repeats are not logged a second time.
  assert logged < RUN_STEPS
  resumed = _start(tmp_path, RUN_STEPS, 10, "--workdir_mode=resume")
  _, err = resumed.communicate(timeout=300)
  assert resumed.returncode == 0, err[-3000:]
  assert f"Resumed from step {last} " in err
  steps = [r["step"] for r in logs.read_metrics(tmp_path)]
  assert steps == list(range(1, RUN_STEPS + 1))


def _train(cfg, workdir, **kw):
  return loop.pretrain(cfg, str(workdir), **kw)


@pytest.mark.slow
def test_corrupt_latest_checkpoint_falls_back_to_the_previous_one(tmp_path):
  cfg = tiny_config(steps=6)  # as the non-finite and early-SIGTERM tests: one compiled step
  _train(cfg, tmp_path, stop_at=4)
  # Truncate every data file of the newest checkpoint (a write cut short).
  for dirpath, _, files in os.walk(tmp_path / "checkpoints" / "4"):
    for name in files:
      with open(os.path.join(dirpath, name), "r+b") as f:
        f.truncate(max(0, os.path.getsize(os.path.join(dirpath, name)) // 3))
  summary = loop.pretrain(tiny_config(steps=6), str(tmp_path), workdir_mode="resume")
  assert summary["step"] == 6
  kept = os.listdir(tmp_path / "checkpoints")
  assert any(name.startswith("corrupt-4-") for name in kept)  # moved aside, not deleted
  assert "6" in kept and "2" in kept


def test_uncommitted_checkpoint_is_ignored(tmp_path):
  _train(tiny_config(steps=6), tmp_path, stop_at=2)  # the 6-step program of its neighbours
  # An interrupted async save leaves a temporary directory without orbax's commit.
  os.makedirs(tmp_path / "checkpoints" / "3.orbax-checkpoint-tmp-123")
  summary = _train(tiny_config(steps=6), tmp_path, workdir_mode="resume")
  assert summary["step"] == 6


@pytest.mark.slow
def test_nonfinite_loss_stops_with_the_step_named_and_keeps_the_checkpoint(tmp_path):
  cfg = tiny_config(steps=6)
  _train(cfg, tmp_path, stop_at=2)
  bad = tiny_config(steps=6)
  bad.loss.temperature = 1e-30  # logits overflow to inf: non-finite loss
  with pytest.raises(FloatingPointError, match=r"step 4.*invariant"):
    _train(bad, tmp_path, workdir_mode="resume")
  ckpt = checkpoints.Checkpointer(str(tmp_path), async_save=False)
  assert ckpt.latest_step() == 2
  ckpt.close()
  skip = tiny_config(steps=6)
  skip.loss.temperature = 1e-30
  skip.train.on_nonfinite = "skip"
  summary = _train(skip, tmp_path, workdir_mode="resume")
  assert summary["step"] == 6 and summary["nonfinite"] == 2  # last interval: steps 5 and 6


@pytest.mark.slow
def test_workdir_with_another_config_is_refused_unless_told(tmp_path):
  # Every run below is the 6-step program of its neighbours (the seed is not in the program).
  _train(tiny_config(steps=6), tmp_path, stop_at=2)
  old_run = sorted(os.listdir(tmp_path))
  assert "config.json" in old_run and "checkpoints" in old_run
  (tmp_path / "evaluation.json").write_text("{}")  # what evaluating the old run wrote
  (tmp_path / "sensitivity.png").write_bytes(b"png")
  (tmp_path / "jax_cache").mkdir()  # a compilation cache: not the run's, it stays
  other = tiny_config(steps=6)
  other.seed = 1
  with pytest.raises(ValueError, match="seed: 0 -> 1"):
    _train(other, tmp_path)
  summary = _train(other, tmp_path, workdir_mode="overwrite", stop_at=2)
  assert summary["step"] == 2
  aside = [name for name in os.listdir(tmp_path) if name.startswith("previous-run-")]
  assert len(aside) == 1
  moved = sorted(os.listdir(tmp_path / aside[0]))
  assert moved == sorted(old_run + ["evaluation.json", "sensitivity.png"])  # every file
  assert not (tmp_path / "evaluation.json").exists() and (tmp_path / "jax_cache").is_dir()
  with open(tmp_path / "config.json") as f:
    assert json.load(f)["seed"] == 1  # the new run's config
  # Cadence fields may change on resume; config.json shows the config the run goes on with.
  cadence = tiny_config(steps=6)
  cadence.seed = 1
  cadence.log_every_steps = 1
  assert _train(cadence, tmp_path)["step"] == 6
  with open(tmp_path / "config.json") as f:
    assert json.load(f)["log_every_steps"] == 1


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_before_the_first_step_stops_after_it_with_a_save(tmp_path, monkeypatch, signum):
  """A notice or Ctrl-C while the run restores or compiles (one process): one step, a save,
  a clean stop."""
  _train(tiny_config(steps=6), tmp_path, stop_at=2)
  create = loop.data.create_train_source

  def create_and_get_notice(cfg):
    os.kill(os.getpid(), signum)  # handled by the loop's handler, not the default
    return create(cfg)

  monkeypatch.setattr(loop.data, "create_train_source", create_and_get_notice)
  before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
  summary = _train(tiny_config(steps=6), tmp_path)
  assert summary["preempted"] and summary["step"] == 3
  ckpt = checkpoints.Checkpointer(str(tmp_path), async_save=False)
  assert ckpt.latest_step() == 3
  ckpt.close()
  for s, handler in before.items():  # the loop's handlers are gone again
    assert signal.getsignal(s) == handler


SECOND_CTRL_C = """
import os, signal, sys, time
from leave_one_out.run import loop
with loop._Preemption(one_process=True) as stop:
  os.kill(os.getpid(), signal.SIGINT)  # the first Ctrl-C: a request to save and stop
  print("requested" if stop.requested else "ignored", flush=True)
  time.sleep(60)  # a long step or compile; the second Ctrl-C must not wait for it
print("not aborted", flush=True)
"""


def test_a_second_ctrl_c_aborts_at_once(tmp_path):
  proc = subprocess.Popen(
    [sys.executable, "-c", SECOND_CTRL_C],
    cwd=ROOT,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )
  assert proc.stdout.readline().strip() == "requested"
  t0 = time.time()
  proc.send_signal(signal.SIGINT)
  out, err = proc.communicate(timeout=30)
  assert proc.returncode == -signal.SIGINT, err[-2000:]  # killed by the signal itself
  assert time.time() - t0 < 5 and "not aborted" not in out
  assert "press Ctrl-C again to abort at once" in err
