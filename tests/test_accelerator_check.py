"""The prepared accelerator check (leave_one_out/benchmarks/accelerator_check.py, gpu.sh check)."""

import os
import subprocess
import sys

import pytest

from leave_one_out.benchmarks import accelerator_check

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ["JAX_COMPILATION_CACHE_DIR"]  # the suite's (conftest.py sets a default)


@pytest.mark.slow
def test_allow_cpu_check_writes_a_report_with_every_section(tmp_path):
  """``ALLOW_CPU=1 launch/gpu.sh check``: every section runs at the tiny size and passes."""
  report = tmp_path / "check.md"
  out = subprocess.run(
    ["bash", os.path.join(ROOT, "launch", "gpu.sh"), "check", f"--workdir={tmp_path / 'w'}"],
    env=dict(os.environ, ALLOW_CPU="1", REPORT=str(report), CACHE_DIR=CACHE),
    capture_output=True,
    text=True,
    timeout=1200,
  )
  assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
  text = report.read_text()
  for name, title in accelerator_check.TITLES.items():
    assert f"## {title}\n\nStatus: **PASS**" in text, name
    assert f"| {title} | PASS |" in text, name
  for expected in [
    "size tiny",
    "bfloat16 vs float32",
    "sharded LooC loss",
    "| looc | 5 |",
    "| moco | 2 |",
    "| supervised | 1 |",
    "not judged (tiny size)",
    "| 32 | 37 | 16 | 5 |",
    "key BatchNorm shuffle",
    "weight decay on all",
  ]:
    assert expected in text, expected
  assert not (tmp_path / "w").exists()  # the recipe run's scratch workdir is removed


def test_refuses_a_cpu_only_host_without_allow_cpu():
  env = {k: v for k, v in os.environ.items() if k != "ALLOW_CPU"}
  out = subprocess.run(
    [
      sys.executable,
      "-m",
      "leave_one_out.benchmarks",
      "--what=accelerator_check",
      "--report=/dev/null",
    ],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert out.returncode == 2 and "ALLOW_CPU=1" in out.stderr, out.stderr[-2000:]


def test_gpu_sh_check_installs_from_wheels_offline_and_passes_flags():
  out = subprocess.run(
    [
      "bash",
      os.path.join(ROOT, "launch", "gpu.sh"),
      "check",
      "--wheels",
      "/opt/w",
      "--sections=devices",
    ],
    env=dict(os.environ, DRY_RUN="1", REPORT="/r/check.md", CACHE_DIR="/c"),
    capture_output=True,
    text=True,
    timeout=30,
  )
  assert out.returncode == 0, out.stderr
  lines = out.stdout.splitlines()
  assert lines[0] == "+ python3 -m pip install --no-index --find-links /opt/w -e ."
  assert lines[1] == (
    "+ python3 -m leave_one_out.benchmarks --what=accelerator_check --report=/r/check.md "
    "--compilation_cache_dir=/c --sections=devices"
  )
  plain = subprocess.run(
    ["bash", os.path.join(ROOT, "launch", "gpu.sh"), "check"],
    env=dict(os.environ, DRY_RUN="1"),
    capture_output=True,
    text=True,
    timeout=30,
  )
  assert "pip install" not in plain.stdout and "accelerator_check" in plain.stdout


def test_a_failing_section_is_reported_and_the_others_still_run(tmp_path, monkeypatch):
  def broken(sizes):
    raise RuntimeError("no such kernel")

  monkeypatch.setitem(accelerator_check.CHECKS, "step_tests", broken)
  report = tmp_path / "r.md"
  status = accelerator_check.run(["step_tests", "devices"], "tiny", str(report))
  text = report.read_text()
  assert status == 1
  assert "Status: **ERROR**" in text and "RuntimeError: no such kernel" in text
  assert "| Devices | PASS |" in text and "| Step tests on the device | ERROR |" in text


def test_recipe_config_is_the_paper_config_on_synthetic_data():
  cfg = accelerator_check.recipe_config(accelerator_check.SIZES["full"])
  assert cfg.data.name == "synthetic" and cfg.data.image_size == 256
  assert cfg.augment.image_size == 224 and cfg.train.num_steps == 50
  assert cfg.model.architecture == "resnet50" and cfg.model.dtype == "bfloat16"
  assert cfg.loss.queue_size == 16_384 and cfg.train.batch_size == 256
  assert cfg.eval_every_steps == 0
  from leave_one_out import config as config_lib  # pylint: disable=import-outside-toplevel

  config_lib.validate(cfg, num_devices=1)
