"""Launch scripts: their commands (DRY_RUN=1), and their logic run against stand-ins.

`gcloud`, `srun`, `scontrol` and the training process are replaced by small local programs
(a fake `gcloud ... ssh --command=CMD` runs CMD here, as one worker would), so that stop,
delete, the SLURM signal forwarding and requeue are exercised for real.
"""

import os
import shutil
import stat
import subprocess
import sys
import time

import jax
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ["tpu.sh", "gpu.sh", "slurm.sh", "worker_setup.sh"]

# Stands in for `python -m leave_one_out.main`: on SIGTERM it "saves" for a second, writes
# the marker $FAKE_DIR/committed and the loop's log line, and exits 0.
FAKE_TRAINER = r"""
import os, signal, sys, time
out = os.environ["FAKE_DIR"]
def stop(*_):
  time.sleep(1.0)
  open(os.path.join(out, "committed"), "w").write("7")
  print("Stopped at step 7 on a preemption request", flush=True)
  sys.exit(0)
signal.signal(signal.SIGTERM, stop)
open(os.path.join(out, "args"), "w").write(" ".join(sys.argv[1:]))
open(os.path.join(out, "ready"), "w").write("")
time.sleep(float(os.environ.get("FAKE_TRAIN_SECONDS", "60")))
print("finished", flush=True)
"""


def _dry(script, *args, **env):
  return subprocess.run(
    ["bash", os.path.join(ROOT, "launch", script), *args],
    env=dict(os.environ, DRY_RUN="1", **env),
    capture_output=True,
    text=True,
    timeout=30,
  )


def _executable(path, text):
  path.write_text(text)
  path.chmod(path.stat().st_mode | stat.S_IEXEC)
  return path


@pytest.fixture
def stand_ins(tmp_path):
  """bin/ with fake gcloud, srun and scontrol; a fake venv whose python is FAKE_TRAINER."""
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  _executable(
    bin_dir / "gcloud",
    '#!/usr/bin/env bash\nprintf "%s\\n" "$*" >> "$FAKE_DIR/gcloud"\n'
    'for a in "$@"; do case "$a" in --command=*) exec bash -c "${a#--command=}";; '
    "esac; done\n",
  )
  _executable(
    bin_dir / "srun", '#!/usr/bin/env bash\nwhile [[ "$1" == --* ]]; do shift; done\nexec "$@"\n'
  )
  _executable(
    bin_dir / "scontrol", '#!/usr/bin/env bash\nprintf "%s\\n" "$*" >> "$FAKE_DIR/scontrol"\n'
  )
  trainer = tmp_path / "trainer.py"
  trainer.write_text(FAKE_TRAINER)
  venv = tmp_path / "venv"
  (venv / "bin").mkdir(parents=True)
  _executable(
    venv / "bin" / "python", f'#!/usr/bin/env bash\nexec {sys.executable} {trainer} "$@"\n'
  )
  env = dict(
    os.environ,
    PATH=f"{bin_dir}:{os.environ['PATH']}",
    FAKE_DIR=str(tmp_path),
    VENV=str(venv),
    REMOTE_DIR=str(tmp_path),
    LOG=str(tmp_path / "train.log"),
    PIDFILE=str(tmp_path / "train.pid"),
    WORKDIR=str(tmp_path / "workdir"),
  )
  return tmp_path, env


def _wait_for(path, timeout=30):
  deadline = time.time() + timeout
  while not path.exists():
    assert time.time() < deadline, f"{path} never appeared"
    time.sleep(0.05)


def _tpu(env, *args, **more):
  return subprocess.run(
    ["bash", os.path.join(ROOT, "launch", "tpu.sh"), *args],
    env=dict(env, **more),
    capture_output=True,
    text=True,
    timeout=60,
  )


# ---------------------------------------------------------------------------------- tpu.sh


def test_tpu_train_runs_the_same_command_on_all_workers():
  out = _dry(
    "tpu.sh",
    "train",
    "--config.train.num_epochs=2",
    WORKDIR="gs://b/run",
    TPU_NAME="pod",
    ACCELERATOR="v4-32",
    TFDS_DATA_DIR="gs://b/tfds",
  )
  assert out.returncode == 0, out.stderr
  cmd = out.stdout.replace("\\", "")
  assert "tpu-vm ssh pod" in cmd and "--worker=all" in cmd
  for part in [
    "~/looc-venv/bin/python -m leave_one_out.main",
    "--distributed",
    "--workdir=gs://b/run",
    "--compilation_cache_dir=gs://b/run/jax_cache",
    "TFDS_DATA_DIR=gs://b/tfds",
    "--config.train.num_epochs=2",
    "configs/looc_in100_r50.py",
    "echo $! > ~/looc.pid",
  ]:
    assert part in cmd, part


@pytest.mark.parametrize(
  "command,env,expected",
  [
    (
      "create",
      {},
      "tpu-vm create looc --zone=us-central2-b --accelerator-type=v4-32 "
      "--version=tpu-ubuntu2204-base",
    ),
    (
      "create",
      {"ACCELERATOR": "v6e-16", "SPOT": "1"},
      "queued-resources create looc-qr --node-id=looc --zone=us-central2-b "
      "--accelerator-type=v6e-16 --runtime-version=v2-alpha-tpuv6e --spot",
    ),
    (
      "create",
      {"ACCELERATOR": "v5litepod-8", "QUEUED": "0"},
      "tpu-vm create looc --zone=us-central2-b --accelerator-type=v5litepod-8 "
      "--version=v2-alpha-tpuv5-lite",
    ),
    ("wait", {"ACCELERATOR": "v5litepod-8"}, "queued-resources describe looc-qr"),
    ("setup", {}, "launch/worker_setup.sh --venv ~/looc-venv --extra tpu --python 3.11"),
    ("delete", {"FORCE": "1"}, "tpu-vm delete looc --zone=us-central2-b --quiet"),
    (
      "delete",
      {"FORCE": "1", "ACCELERATOR": "v6e-8"},
      "queued-resources delete looc-qr --zone=us-central2-b --force --quiet",
    ),
    ("logs", {}, "--worker=0"),
  ],
)
def test_tpu_lifecycle_commands(command, env, expected):
  out = _dry("tpu.sh", command, **env)
  assert out.returncode == 0, out.stderr
  assert expected in out.stdout.replace("\\", "")


def test_tpu_train_needs_a_workdir_and_unknown_commands_fail():
  env = {k: v for k, v in os.environ.items() if k != "WORKDIR"}
  out = subprocess.run(
    ["bash", os.path.join(ROOT, "launch", "tpu.sh"), "train"],
    env=dict(env, DRY_RUN="1"),
    capture_output=True,
    text=True,
  )
  assert out.returncode == 2 and "WORKDIR is required" in out.stderr
  assert _dry("tpu.sh", "explode").returncode == 2


def test_tpu_stop_returns_after_the_save_and_delete_refuses_while_training(stand_ins):
  tmp, env = stand_ins
  assert _tpu(env, "train", "--config.train.num_epochs=2").returncode == 0
  _wait_for(tmp / "ready")
  assert "--distributed" in (tmp / "args").read_text()
  again = _tpu(env, "train")
  assert again.returncode == 3 and "already training" in again.stderr
  refused = _tpu(env, "delete")
  assert refused.returncode == 3 and "launch/tpu.sh stop" in refused.stderr
  assert "tpu-vm delete" not in (tmp / "gcloud").read_text()

  stopped = _tpu(env, "stop")
  assert stopped.returncode == 0, stopped.stderr
  assert (tmp / "committed").exists()  # stop returned only after the save
  assert "Stopped at step 7" in stopped.stdout
  deleted = _tpu(env, "delete")
  assert deleted.returncode == 0, deleted.stderr
  assert "tpu-vm delete looc" in (tmp / "gcloud").read_text()


def test_tpu_delete_with_force_does_not_ask_the_workers(stand_ins):
  tmp, env = stand_ins
  assert _tpu(env, "train").returncode == 0
  _wait_for(tmp / "ready")
  assert (tmp / "args").read_text().endswith("/jax_cache")  # no flags: no empty argument
  deleted = _tpu(env, "delete", FORCE="1")
  assert deleted.returncode == 0, deleted.stderr
  calls = (tmp / "gcloud").read_text().splitlines()
  assert calls[-1].startswith("compute tpus tpu-vm delete looc")
  assert not any("ssh" in c for c in calls[1:])  # only `train` ssh'd
  _tpu(env, "stop")


# ---------------------------------------------------------------------------------- gpu.sh


def test_gpu_multinode_passes_the_coordinator():
  out = _dry("gpu.sh", "node", "1", COORDINATOR="node0:1234", NODES="2", HEARTBEAT_TIMEOUT="30")
  assert out.returncode == 0, out.stderr
  for part in [
    "--distributed",
    "--coordinator_address=node0:1234",
    "--num_processes=2",
    "--process_id=1",
    "--heartbeat_timeout_s=30",
  ]:
    assert part in out.stdout
  assert _dry("gpu.sh", "node", "1").returncode == 2  # no COORDINATOR
  single = _dry("gpu.sh", "train", "--config.train.num_steps=5")
  assert "-m leave_one_out.main --config=configs/demo.py" in single.stdout


def test_gpu_debug_uses_its_own_workdir_and_setup_uses_worker_setup():
  debug = _dry("gpu.sh", "debug", WORKDIR="/runs/a")
  assert "--workdir=/runs/a-debug" in debug.stdout and "--workdir=/runs/a " not in debug.stdout
  train = _dry("gpu.sh", "train", WORKDIR="/runs/a")
  assert "--workdir=/runs/a" in train.stdout
  setup = _dry("gpu.sh", "setup", VENV="/envs/looc")
  assert "launch/worker_setup.sh --venv /envs/looc --extra cuda12" in setup.stdout


# ------------------------------------------------------------------------------- slurm.sh


def test_slurm_script_one_process_per_gpu_and_per_node():
  per_gpu = _dry(
    "slurm.sh",
    "script",
    "--config.train.num_epochs=2",
    WORKDIR="/shared/run",
    NODES="4",
    GPUS_PER_NODE="8",
    PARTITION="gpu",
    SIGNAL_SECONDS="120",
  )
  assert per_gpu.returncode == 0, per_gpu.stderr
  text = per_gpu.stdout
  for line in [
    "#SBATCH --nodes=4",
    "#SBATCH --ntasks-per-node=8",
    "#SBATCH --gres=gpu:8",
    "#SBATCH --signal=B:TERM@120",
    "#SBATCH --requeue",
    "#SBATCH --partition=gpu",
    "#SBATCH --output=/shared/run/slurm/%x-%j.out",
  ]:
    assert line in text.splitlines(), line
  srun = next(l for l in text.splitlines() if l.startswith("srun "))
  for part in [
    "-m leave_one_out.main --distributed",
    "--workdir=/shared/run",
    "--config.train.num_epochs=2",
    "--heartbeat_timeout_s=100",
  ]:
    assert part in srun, part
  assert "--local_device_ids" not in srun  # JAX gives each process its SLURM_LOCALID GPU
  assert "--coordinator_address" not in srun  # jax.distributed reads SLURM's environment

  per_node = _dry(
    "slurm.sh",
    "script",
    WORKDIR="/shared/run",
    NODES="2",
    GPUS_PER_NODE="4",
    PROCESS_PER="node",
    CPUS_PER_GPU="6",
  ).stdout
  assert "#SBATCH --ntasks-per-node=1" in per_node and "#SBATCH --cpus-per-task=24" in per_node
  assert "--local_device_ids=0\\,1\\,2\\,3" in per_node

  submit = _dry("slurm.sh", "submit", WORKDIR="/shared/run")
  assert submit.stdout.startswith("#!/usr/bin/env bash")
  assert "+ sbatch /shared/run/slurm/looc.sbatch" in submit.stdout
  no_workdir = {k: v for k, v in os.environ.items() if k != "WORKDIR"}
  out = subprocess.run(
    ["bash", os.path.join(ROOT, "launch", "slurm.sh"), "script"],
    env=no_workdir,
    capture_output=True,
    text=True,
  )
  assert out.returncode == 2 and "WORKDIR is required" in out.stderr
  assert _dry("slurm.sh", "script", WORKDIR="/x", PROCESS_PER="socket").returncode == 2


def _sbatch_job(env, tmp):
  script = tmp / "job.sbatch"
  made = subprocess.run(
    ["bash", os.path.join(ROOT, "launch", "slurm.sh"), "script"],
    env=dict(env, PYTHON=str(tmp / "venv" / "bin" / "python")),
    capture_output=True,
    text=True,
    check=True,
  )
  script.write_text(made.stdout)
  return subprocess.Popen(
    ["bash", str(script)],
    env=dict(env, SLURM_JOB_ID="42"),
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
  )


def test_slurm_job_forwards_sigterm_and_requeues_itself(stand_ins):
  tmp, env = stand_ins
  job = _sbatch_job(env, tmp)
  _wait_for(tmp / "ready")
  job.terminate()  # SLURM's --signal=B:TERM@... reaches the batch script
  out, _ = job.communicate(timeout=30)
  assert job.returncode == 0, out
  assert (tmp / "committed").exists(), out  # the training process got SIGTERM and saved
  assert (tmp / "scontrol").read_text().split() == ["requeue", "42"]


def test_slurm_job_that_finishes_is_not_requeued(stand_ins):
  tmp, env = stand_ins
  job = _sbatch_job(dict(env, FAKE_TRAIN_SECONDS="0"), tmp)
  out, _ = job.communicate(timeout=30)
  assert job.returncode == 0 and "finished" in out, out
  assert not (tmp / "scontrol").exists()


# ------------------------------------------------------------------------------ all scripts


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_prints_the_usage_only(script):
  # By a relative path, from the launch directory: the scripts cd to the repository root.
  out = subprocess.run(
    ["bash", f"./{script}", "help"],
    capture_output=True,
    text=True,
    timeout=30,
    cwd=os.path.join(ROOT, "launch"),
  )
  assert out.returncode == 0, out.stderr
  with open(os.path.join(ROOT, "launch", script)) as f:
    header = []
    for line in f.read().splitlines()[1:]:
      if not line.startswith("#"):
        break
      header.append(line[2:] if line.startswith("# ") else line[1:])
  assert out.stdout.splitlines() == header
  assert "+ " not in out.stdout and out.stderr == ""  # no command ran


@pytest.mark.parametrize("args", [["--python", "3.10"], ["--extra", "rocm"], ["--bogus"]])
def test_worker_setup_rejects_bad_arguments(args):
  out = _dry("worker_setup.sh", *args)
  assert out.returncode == 2 and "worker_setup.sh:" in out.stderr


@pytest.mark.slow
def test_worker_setup_makes_a_fresh_venv_that_trains(tmp_path):
  """The script a TPU worker runs, here: a new venv, install with an extra, 3 training steps.

  Needs uv (installed for the user if missing) and the package index, or a warm uv cache.
  """
  env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=jax.config.jax_compilation_cache_dir or "")
  env.pop("XLA_FLAGS", None)
  if shutil.which("uv"):
    env["UV"] = shutil.which("uv")
  t0 = time.time()
  out = subprocess.run(
    [
      "bash",
      os.path.join(ROOT, "launch", "worker_setup.sh"),
      "--venv",
      str(tmp_path / "venv"),
      "--extra",
      "test",
      "--check",
    ],
    env=env,
    capture_output=True,
    text=True,
    timeout=900,
  )
  print(f"worker_setup.sh --extra test --check: {time.time() - t0:.0f} s")
  assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
  assert "python 3.1" in out.stdout and "jax 0.10.2" in out.stdout
  assert "LooC pretraining: step 3/3" in out.stdout
  assert f"ready: {tmp_path / 'venv'}/bin/python" in out.stdout
  version = subprocess.run(
    [str(tmp_path / "venv" / "bin" / "python"), "-c", "import sys; print(sys.version_info[:2])"],
    capture_output=True,
    text=True,
    check=True,
  ).stdout
  assert version.strip() in ("(3, 11)", "(3, 12)", "(3, 13)")
