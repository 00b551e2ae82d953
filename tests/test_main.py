"""The command line: a short run end to end, its outputs, and config errors."""

import json
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


# Stands in for the optional wandb package: records what the run logs, one JSON line per call.
FAKE_WANDB = """
import json, os
def _record(**kw):
  with open(os.environ["FAKE_WANDB_LOG"], "a") as f:
    f.write(json.dumps(kw, default=str) + "\\n")
class _Run:
  def log(self, data, step=None):
    _record(call="log", step=step, data=data)
  def finish(self):
    _record(call="finish")
def init(**kw):
  _record(call="init", **{k: v for k, v in kw.items() if k != "config"}, config_keys=len(kw["config"]))
  return _Run()
"""


def _main(workdir, *extra, **env_extra):
  env = dict(
    os.environ,
    XLA_FLAGS="--xla_force_host_platform_device_count=2",
    JAX_COMPILATION_CACHE_DIR=jax.config.jax_compilation_cache_dir or "",
    **env_extra,
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
  fake = tmp_path / "fake_packages" / "wandb"
  fake.mkdir(parents=True)
  (fake / "__init__.py").write_text(FAKE_WANDB)
  run = _main(
    tmp_path / "run",
    "--wandb_project=looc-tests",
    PYTHONPATH=f"{ROOT}:{fake.parent}",
    FAKE_WANDB_LOG=str(tmp_path / "wandb.jsonl"),
  )
  workdir = tmp_path / "run"
  assert run.returncode == 0, run.stderr[-3000:]
  assert "| invariant |" in run.stdout and "| rotation |" in run.stdout
  assert "step 4/4" in run.stderr  # console progress
  assert "progress: step | epoch | loss" in run.stderr  # the legend, once
  assert "'color 3.967/23%/56%' = that space's loss 3.967, top-1 23%" in run.stderr
  logged = logs.read_metrics(workdir)
  assert [m["step"] for m in logged] == [2, 4]
  assert {"loss", "loss/color", "top1/rotation", "img_per_s", "lr"} <= set(logged[-1])
  assert logged[-1]["data_skipped"] == 0
  events = [f for f in os.listdir(workdir) if f.startswith("events.out.tfevents")]
  assert len(events) == 1
  assert sorted(os.listdir(workdir / "checkpoints")) == ["2", "4"]
  with open(workdir / "config.json") as f:
    assert json.load(f)["train"]["num_steps"] == 4  # the run's config, readable
  # The optional W&B logger got the same records (here: a stand-in for the wandb package).
  with open(tmp_path / "wandb.jsonl") as f:
    calls = [json.loads(line) for line in f]
  assert calls[0]["call"] == "init" and calls[0]["project"] == "looc-tests"
  assert (
    calls[0]["name"] == "run" and calls[0]["resume"] == "allow" and calls[0]["config_keys"] > 50
  )
  assert [c["step"] for c in calls if c["call"] == "log"] == [2, 4]
  assert calls[-1] == {"call": "finish"}

  # Running it again finds the finished run: one clear line, nothing trained or written.
  again = _main(workdir)
  assert again.returncode == 0, again.stderr[-3000:]
  assert "Resumed from step 4" in again.stderr
  assert f"the run in {workdir} is finished (step 4/4); nothing was trained" in again.stdout
  assert "| - |" not in again.stdout and "| color | 4." in again.stdout  # its last interval
  assert [f for f in os.listdir(workdir) if f.startswith("events.out")] == events
  assert [m["step"] for m in logs.read_metrics(workdir)] == [2, 4]
  # A different config in the same workdir is refused, naming the field, in one line.
  other = _main(workdir, "--config.loss.temperature=0.5")
  assert other.returncode == 1
  assert "loss.temperature: 0.2 -> 0.5" in other.stderr and "Traceback" not in other.stderr

  # The training curves of the run, as a picture.
  curves = subprocess.run(
    [sys.executable, "-m", "leave_one_out.visualize", f"--curves={workdir}"],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert curves.returncode == 0, curves.stderr[-3000:]
  assert "spaces ['invariant', 'color', 'rotation']" in curves.stdout
  with open(workdir / "curves.png", "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_wandb_without_the_package_is_a_one_line_error(tmp_path):
  run = _main(tmp_path, "--wandb_project=x", PYTHONPATH=ROOT)  # no wandb here
  assert run.returncode == 2
  assert "--wandb_project needs the wandb package: pip install wandb" in run.stderr
  assert "Traceback" not in run.stderr and not os.path.exists(tmp_path / "checkpoints")


@pytest.mark.parametrize(
  "flag,message",
  [
    ("--config.train.batchsize=8", "no such config field 'batchsize'. Did you mean \"batch_size\""),
    ("--config.loss.temperature=-1", "config.loss.temperature must be a number > 0"),
    ("--config.augment.spaces=('colour',)", "colour"),
    ("--config.train.optimizer=adam", "config.train.optimizer must be one of"),
  ],
)
def test_bad_config_is_a_one_line_error_naming_the_field(tmp_path, flag, message):
  run = _main(tmp_path, flag)
  assert run.returncode != 0
  assert message in run.stderr
  assert "Traceback" not in run.stderr
  errors = [line for line in run.stderr.splitlines() if "error:" in line]
  assert len(errors) == 1 and message in errors[0]
  assert not os.path.exists(tmp_path / "checkpoints")


def test_the_traceback_of_a_config_error_with_verbosity_or_the_switch(tmp_path):
  verbose = _main(tmp_path, "--config.train.batchsize=8", "--verbosity=1")
  assert verbose.returncode != 0 and "Traceback" in verbose.stderr
  switch = _main(tmp_path, "--config.train.batchsize=8", LOOC_TRACEBACK="1")
  assert switch.returncode != 0 and "Traceback" in switch.stderr


def test_validate_only_checks_config_data_and_workdir_and_trains_nothing(tmp_path):
  ok = _main(tmp_path / "new", "--validate_only")
  assert ok.returncode == 0, ok.stderr[-3000:]
  assert "validate_only: OK" in ok.stdout and "training data: InMemorySource(64 images" in ok.stdout
  assert f"workdir: {tmp_path / 'new'} holds no run" in ok.stdout
  assert not os.path.exists(tmp_path / "new")
  missing = _main(
    tmp_path / "folder",
    "--validate_only",
    "--config.data.name=folder",
    f"--config.data.data_dir={tmp_path / 'no_such_folder'}",
  )
  assert missing.returncode == 1 and "Traceback" not in missing.stderr
  assert f"image folder root {tmp_path / 'no_such_folder'} does not exist" in missing.stderr
