"""Launch scripts, checked in dry-run mode (they print the gcloud / python commands)."""

import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _dry(script, *args, **env):
  return subprocess.run(["bash", os.path.join(ROOT, "launch", script), *args],
                        env=dict(os.environ, DRY_RUN="1", **env), capture_output=True,
                        text=True, timeout=30)


def test_tpu_train_runs_the_same_command_on_all_workers():
  out = _dry("tpu.sh", "train", "--config.train.num_epochs=2", WORKDIR="gs://b/run",
             TPU_NAME="pod", ACCELERATOR="v4-32", TFDS_DATA_DIR="gs://b/tfds")
  assert out.returncode == 0, out.stderr
  cmd = out.stdout
  assert "tpu-vm ssh pod" in cmd and "--worker=all" in cmd
  for part in ["leave_one_out.main", "--distributed", "--workdir=gs://b/run",
               "--compilation_cache_dir=gs://b/run/jax_cache", "TFDS_DATA_DIR=gs://b/tfds",
               "--config.train.num_epochs=2", "configs/looc_in100_r50.py"]:
    assert part in cmd.replace("\\", ""), part


@pytest.mark.parametrize("command,expected", [
    ("create", "tpu-vm create looc --zone=us-central2-b --accelerator-type=v4-32"),
    ("setup", "jax[tpu]==0.10.2"),
    ("stop", "pkill -TERM -f leave_one_out.main"),
    ("delete", "tpu-vm delete looc"),
    ("logs", "--worker=0"),
])
def test_tpu_lifecycle_commands(command, expected):
  out = _dry("tpu.sh", command)
  assert out.returncode == 0, out.stderr
  assert expected in out.stdout.replace("\\", "")


def test_tpu_train_needs_a_workdir_and_unknown_commands_fail():
  env = {k: v for k, v in os.environ.items() if k != "WORKDIR"}
  out = subprocess.run(["bash", os.path.join(ROOT, "launch", "tpu.sh"), "train"],
                       env=dict(env, DRY_RUN="1"), capture_output=True, text=True)
  assert out.returncode == 2 and "WORKDIR is required" in out.stderr
  assert _dry("tpu.sh", "explode").returncode == 2


def test_gpu_multinode_passes_the_coordinator():
  out = _dry("gpu.sh", "node", "1", COORDINATOR="node0:1234", NODES="2")
  assert out.returncode == 0, out.stderr
  for part in ["--distributed", "--coordinator_address=node0:1234", "--num_processes=2",
               "--process_id=1"]:
    assert part in out.stdout
  assert _dry("gpu.sh", "node", "1").returncode == 2  # no COORDINATOR
  single = _dry("gpu.sh", "train", "--config.train.num_steps=5")
  assert "leave_one_out.main --config=configs/demo.py" in single.stdout
