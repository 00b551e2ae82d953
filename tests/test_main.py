"""The command line: a short run end to end, its outputs, and config errors."""

import os
import subprocess
import sys

import jax
import pytest

from leave_one_out.run import logs
from tests.helpers import CLI_TINY

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = [
  "--config.train.num_steps=4",
  "--config.log_every_steps=2",
  "--config.checkpoint_every_steps=2",
  *CLI_TINY,
]


def _main(workdir, *extra):
  env = dict(
    os.environ,
    XLA_FLAGS="--xla_force_host_platform_device_count=2",
    JAX_COMPILATION_CACHE_DIR=jax.config.jax_compilation_cache_dir or "",
  )
  return subprocess.run(
    [
      sys.executable,
      "-m",
      "leave_one_out.main",
      "--config=configs/demo.py",
      f"--workdir={workdir}",
      *TINY,
      *extra,
    ],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )


@pytest.mark.slow
def test_cli_trains_logs_checkpoints_and_resumes(tmp_path):
  run = _main(tmp_path)
  assert run.returncode == 0, run.stderr[-3000:]
  assert "| invariant |" in run.stdout and "| rotation |" in run.stdout
  assert "step 4/4" in run.stderr  # console progress
  logged = logs.read_metrics(tmp_path)
  assert [m["step"] for m in logged] == [2, 4]
  assert {"loss", "loss/color", "top1/rotation", "img_per_s", "lr"} <= set(logged[-1])
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(tmp_path))
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2", "4"]
  # Running it again finds the finished run and trains no further.
  again = _main(tmp_path)
  assert again.returncode == 0, again.stderr[-3000:]
  assert "Resumed from step 4" in again.stderr
  # A different config in the same workdir is refused, naming the field.
  other = _main(tmp_path, "--config.loss.temperature=0.5")
  assert other.returncode != 0
  assert "loss.temperature: 0.2 -> 0.5" in other.stderr


@pytest.mark.parametrize(
  "flag,message",
  [
    ("--config.train.batchsize=8", "batchsize"),
    ("--config.loss.temperature=-1", "config.loss.temperature must be a number > 0"),
    ("--config.augment.spaces=('colour',)", "colour"),
    ("--config.train.optimizer=adam", "config.train.optimizer must be one of"),
  ],
)
def test_bad_config_is_an_error_naming_the_field(tmp_path, flag, message):
  run = _main(tmp_path, flag)
  assert run.returncode != 0
  assert message in run.stderr
  assert not os.path.exists(tmp_path / "checkpoints")
