"""Launch scripts: their commands (DRY_RUN=1), and their logic run against stand-ins.

`gcloud`, `srun`, `scontrol`, `uv` and the training process are replaced by small local
programs (a fake `gcloud ... ssh --command=CMD` runs CMD here, in $FAKE_DIR as a worker's home;
`describe` answers the state in $FAKE_DIR/tpu_state, as a preempted or suspended TPU would), so
that recover, stop, delete, the SLURM signal forwarding and requeue are exercised for real.
"""

import os
import shutil
import stat
import subprocess
import sys
import time
import zipfile

import jax
import pytest

from tests.helpers import CLI_TINY

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ["tpu.sh", "gpu.sh", "slurm.sh", "worker_setup.sh"]

# Stands in for `python -m leave_one_out.main`: says it started (or resumed, once a checkpoint
# was "committed"), or fails at start-up with FAKE_START_FAIL; on SIGTERM it "saves" for a
# second, writes the marker $FAKE_DIR/committed and the loop's log line, and exits 0.
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
if os.environ.get("FAKE_START_FAIL"):
  print("ValueError: config.data.data_dir must name the image folder root", flush=True)
  sys.exit(1)
if os.path.exists(os.path.join(out, "committed")):
  print("I1206 main.py] Resumed from step 7 in the workdir", flush=True)
else:
  print("I1206 main.py] Starting a new run in the workdir", flush=True)
open(os.path.join(out, "ready"), "w").write("")
time.sleep(float(os.environ.get("FAKE_TRAIN_SECONDS", "60")))
print("finished", flush=True)
"""

# Stands in for gcloud: logs every call; `describe` prints $FAKE_DIR/tpu_state (NOT_FOUND
# when absent), `create` makes it READY (a queued resource ACTIVE), `delete` removes it; `ssh`
# fails unless the TPU is up, else runs --command in $FAKE_DIR; `scp SRC NAME:PATH` copies SRC
# to $FAKE_DIR/PATH.
FAKE_GCLOUD = r"""#!/usr/bin/env bash
printf "%s
" "$*" >> "$FAKE_DIR/gcloud"
state=$FAKE_DIR/tpu_state
case " $* " in
  *" describe "*)
    if [[ -f "$state" ]]; then cat "$state"; exit 0; fi
    echo "ERROR: (gcloud.compute.tpus.describe) NOT_FOUND: Resource was not found" >&2; exit 1 ;;
  *" queued-resources create "*) echo ACTIVE > "$state"; exit 0 ;;
  *" tpu-vm create "*) echo READY > "$state"; exit 0 ;;
  *" delete "*) rm -f "$state"; exit 0 ;;
  *" scp "*) cp "$5" "$FAKE_DIR/${6#*:}"; exit 0 ;;
  *" ssh "*)
    case "$(cat "$state" 2> /dev/null)" in READY|ACTIVE) ;; *)
      echo "ERROR: (gcloud.compute.tpus.tpu-vm.ssh) the TPU is not READY" >&2; exit 1 ;;
    esac ;;
esac
for a in "$@"; do case "$a" in --command=*) cd "$FAKE_DIR" && exec bash -c "${a#--command=}";; esac; done
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
  """bin/ with fake gcloud, srun, scontrol and uv; a fake venv whose python runs FAKE_TRAINER
  (and real Python for ``-c``, as worker_setup.sh's import check needs); a READY TPU."""
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  _executable(bin_dir / "gcloud", FAKE_GCLOUD)
  _executable(
    bin_dir / "srun", '#!/usr/bin/env bash\nwhile [[ "$1" == --* ]]; do shift; done\nexec "$@"\n'
  )
  _executable(
    bin_dir / "scontrol", '#!/usr/bin/env bash\nprintf "%s\\n" "$*" >> "$FAKE_DIR/scontrol"\n'
  )
  uv = _executable(bin_dir / "uv", '#!/usr/bin/env bash\nprintf "%s\\n" "$*" >> "$FAKE_DIR/uv"\n')
  trainer = tmp_path / "trainer.py"
  trainer.write_text(FAKE_TRAINER)
  venv = tmp_path / "venv"
  (venv / "bin").mkdir(parents=True)
  _executable(
    venv / "bin" / "python",
    f'#!/usr/bin/env bash\nif [[ "$1" == -c ]]; then exec {sys.executable} "$@"; fi\n'
    f'exec {sys.executable} {trainer} "$@"\n',
  )
  (tmp_path / "tpu_state").write_text("READY\n")
  (tmp_path / "remote").mkdir()
  env = dict(
    os.environ,
    PATH=f"{bin_dir}:{os.environ['PATH']}",
    FAKE_DIR=str(tmp_path),
    VENV=str(venv),
    UV=str(uv),
    REMOTE_DIR=str(tmp_path / "remote"),
    LOG=str(tmp_path / "train.log"),
    PIDFILE=str(tmp_path / "train.pid"),
    WORKDIR=str(tmp_path / "workdir"),
    ACCELERATOR="v4-8",  # one worker: a local workdir is allowed
    WAIT_INTERVAL="0.1",
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
      "queued-resources create looc-qr --node-id=looc --zone=us-east5-b "
      "--accelerator-type=v6e-16 --runtime-version=v2-alpha-tpuv6e --spot",
    ),
    (
      "create",
      {"ACCELERATOR": "v5litepod-8", "QUEUED": "0"},
      "tpu-vm create looc --zone=us-west4-a --accelerator-type=v5litepod-8 "
      "--version=v2-alpha-tpuv5-lite",
    ),
    ("wait", {"ACCELERATOR": "v5litepod-8"}, "queued-resources describe looc-qr"),
    ("setup", {}, "launch/worker_setup.sh --venv ~/looc-venv --extra tpu --python 3.11"),
    ("setup", {}, "git -C"),  # only the tracked files go to the workers
    ("wait", {}, "tpu-vm describe looc"),
    ("delete", {"FORCE": "1"}, "tpu-vm delete looc --zone=us-central2-b --quiet"),
    (
      "delete",
      {"FORCE": "1", "ACCELERATOR": "v6e-8"},
      "queued-resources delete looc-qr --zone=us-east5-b --force --quiet",
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


def test_tpu_create_refuses_a_zone_that_offers_another_generation():
  refused = _dry("tpu.sh", "create", ACCELERATOR="v6e-8", ZONE="us-central2-b")
  assert refused.returncode == 2
  assert "ZONE=us-central2-b offers v4 TPUs, not v6e" in refused.stderr
  assert "us-east5-b" in refused.stderr and "gcloud" not in refused.stdout
  unknown = _dry("tpu.sh", "create", ACCELERATOR="v6e-8", ZONE="asia-northeast1-b")
  assert unknown.returncode == 0 and "warning" in unknown.stderr  # not in the table: tried
  skipped = _dry("tpu.sh", "create", ACCELERATOR="v6e-8", ZONE="us-central2-b", ZONE_CHECK="0")
  assert skipped.returncode == 0 and "--zone=us-central2-b" in skipped.stdout


@pytest.mark.parametrize(
  "accelerator,workers", [("v4-32", 4), ("v5p-16", 2), ("v6e-16", 4), ("v5litepod-64", 16)]
)
def test_tpu_train_on_several_workers_needs_a_gs_workdir(accelerator, workers):
  out = _dry("tpu.sh", "train", WORKDIR="/home/me/run", ACCELERATOR=accelerator)
  assert out.returncode == 2
  assert f"{accelerator} has {workers} workers" in out.stderr and "gs://" in out.stderr
  for one_worker in ("v4-8", "v6e-8", "v5litepod-4"):
    assert _dry("tpu.sh", "train", WORKDIR="/home/me/run", ACCELERATOR=one_worker).returncode == 0


def test_tpu_train_reports_a_start_up_failure_with_its_log(stand_ins):
  tmp, env = stand_ins
  out = _tpu(env, "train", FAKE_START_FAIL="1")
  assert out.returncode == 1
  assert "training exited during start-up" in out.stderr
  assert "config.data.data_dir must name the image folder root" in out.stderr
  started = _tpu(env, "train")
  assert started.returncode == 0, started.stderr
  assert ": started (pid" in started.stdout and "Starting a new run" in started.stdout
  _tpu(env, "stop")


def test_tpu_setup_copies_only_the_tracked_files(stand_ins):
  tmp, env = stand_ins
  repo = tmp / "checkout"
  (repo / "launch").mkdir(parents=True)
  for name in ("tpu.sh", "worker_setup.sh"):
    shutil.copy(os.path.join(ROOT, "launch", name), repo / "launch" / name)
  (repo / "train.py").write_text("tracked\n")
  git = lambda *a: subprocess.run(["git", "-C", str(repo), *a], check=True, capture_output=True)
  git("init", "-q")
  git("add", "launch", "train.py")
  (repo / ".venv" / "lib").mkdir(parents=True)  # a venv, data and outputs: never sent
  (repo / ".venv" / "lib" / "big.so").write_bytes(b"0" * 1000)
  (repo / "data.jpg").write_bytes(b"jpeg")
  out = subprocess.run(
    ["bash", str(repo / "launch" / "tpu.sh"), "setup"],
    env=env,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert out.returncode == 0, out.stderr[-3000:]
  sent = sorted(
    os.path.relpath(os.path.join(d, f), tmp / "remote")
    for d, _, files in os.walk(tmp / "remote")
    for f in files
  )
  assert sent == ["launch/tpu.sh", "launch/worker_setup.sh", "train.py"]
  assert "remote[tpu]" in (tmp / "uv").read_text()  # worker_setup.sh ran on the "worker"
  assert "ready:" in out.stdout


def _state(tmp, state):
  (tmp / "tpu_state").write_text(state + "\n")


@pytest.mark.parametrize(
  "accelerator,lost,deleted",
  [
    ("v4-8", "PREEMPTED", "tpu-vm delete looc"),
    ("v5litepod-8", "SUSPENDED", "queued-resources delete looc-qr"),
  ],
)
def test_tpu_recover_after_a_preemption_resumes_the_run(stand_ins, accelerator, lost, deleted):
  tmp, env = stand_ins
  env["ACCELERATOR"] = accelerator
  assert _tpu(env, "train").returncode == 0
  _wait_for(tmp / "ready")
  assert _tpu(env, "stop").returncode == 0  # the run saved step 7
  _state(tmp, lost)  # the TPU was preempted

  status = _tpu(env, "status")
  assert status.returncode == 1
  assert f"looc ({accelerator}, zone " in status.stdout and lost in status.stdout
  assert "next: launch/tpu.sh recover" in status.stdout
  waited = _tpu(env, "wait")
  assert waited.returncode == 1 and "next: launch/tpu.sh recover" in waited.stderr
  calls = len((tmp / "gcloud").read_text().splitlines())

  recovered = _tpu(env, "recover", "--config.train.num_epochs=2")
  assert recovered.returncode == 0, recovered.stderr[-3000:]
  made = [c for c in (tmp / "gcloud").read_text().splitlines()[calls:] if "ssh" not in c]
  verbs = [next(v for v in ("describe", "delete", "create", "scp") if v in c) for c in made]
  assert verbs == ["describe", "delete", "create", "describe", "scp"], made
  assert deleted in made[1]
  assert "Resumed from step 7" in recovered.stdout  # train reported the resumed start
  assert "--config.train.num_epochs=2" in (tmp / "args").read_text()
  up = _tpu(env, "status")
  assert up.returncode == 0 and ": training (pid" in up.stdout
  _tpu(env, "stop")


def test_tpu_delete_of_a_preempted_tpu_does_not_need_the_workers(stand_ins):
  tmp, env = stand_ins
  _state(tmp, "PREEMPTED")
  deleted = _tpu(env, "delete")
  assert deleted.returncode == 0, deleted.stderr
  assert not (tmp / "tpu_state").exists()
  gone = _tpu(env, "delete")
  assert gone.returncode == 0 and "nothing to delete" in gone.stderr


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
  assert "--noevaluate" in debug.stdout  # a debug run trains; it does not evaluate
  train = _dry("gpu.sh", "train", WORKDIR="/runs/a")
  assert "--workdir=/runs/a" in train.stdout
  setup = _dry("gpu.sh", "setup", VENV="/envs/looc")
  assert "launch/worker_setup.sh --venv /envs/looc --extra cuda12" in setup.stdout
  cuda13 = _dry("gpu.sh", "setup", "--cuda", "13", VENV="/envs/looc")
  assert "--extra cuda13" in cuda13.stdout
  bad = _dry("gpu.sh", "setup", "--cuda", "11")
  assert bad.returncode == 2 and "--cuda must be 12 or 13" in bad.stderr


def _gpu(*args, **env):
  return subprocess.run(
    ["bash", os.path.join(ROOT, "launch", "gpu.sh"), *args],
    env=dict(os.environ, **env),
    capture_output=True,
    text=True,
    timeout=300,
  )


def test_gpu_train_without_a_venv_names_setup(tmp_path):
  out = _gpu("train", VENV=str(tmp_path / "missing"))
  assert out.returncode == 2 and "run `launch/gpu.sh setup` first" in out.stderr
  broken = tmp_path / "broken" / "bin"  # a venv without the package
  broken.mkdir(parents=True)
  _executable(broken / "python", f'#!/usr/bin/env bash\nexec {sys.executable} -I -S "$@"\n')
  out = _gpu("debug", VENV=str(tmp_path / "broken"))
  assert out.returncode == 2 and "cannot run leave_one_out" in out.stderr
  assert "launch/gpu.sh setup" in out.stderr


@pytest.mark.slow
def test_gpu_train_and_debug_refuse_a_cpu_unless_allowed_and_debug_does_not_evaluate(tmp_path):
  """This machine has no GPU: train and debug refuse, as check does; ALLOW_CPU=1 runs."""
  env = dict(
    PYTHON=sys.executable,
    WORKDIR=str(tmp_path / "run"),
    CACHE_DIR=jax.config.jax_compilation_cache_dir or str(tmp_path / "cache"),
    XLA_FLAGS="--xla_force_host_platform_device_count=1",
  )
  for command in ("train", "debug"):
    refused = _gpu(command, **env)
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "JAX sees no GPU (backend: cpu" in refused.stderr and "ALLOW_CPU=1" in refused.stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "run-debug").exists()
  ran = _gpu("debug", *CLI_TINY, "--config.train.num_steps=2", ALLOW_CPU="1", **env)
  assert ran.returncode == 0, ran.stderr[-3000:]
  assert "LooC pretraining: step 2/2" in ran.stdout
  assert "LooC evaluation" not in ran.stdout  # trained, not evaluated
  assert (tmp_path / "run-debug" / "checkpoints" / "2").is_dir()


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


def _uv_wheel(folder):
  """A wheel named uv whose `uv` script says it is a stand-in: pip installs it offline."""
  folder.mkdir()
  path = folder / "uv-0.0.1-py3-none-any.whl"
  files = {
    "uv-0.0.1.data/scripts/uv": "#!/bin/sh\necho 'uv 0.0.1 (stand-in)'\n",
    "uv-0.0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: uv\nVersion: 0.0.1\n",
    "uv-0.0.1.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
    "Tag: py3-none-any\n",
  }
  with zipfile.ZipFile(path, "w") as z:
    for name, text in files.items():
      info = zipfile.ZipInfo(name)
      info.external_attr = (stat.S_IFREG | 0o755) << 16  # pip keeps an executable mode
      z.writestr(info, text)
    z.writestr("uv-0.0.1.dist-info/RECORD", "".join(f"{n},,\n" for n in files) + "RECORD,,\n")
  return folder


def _no_uv_env(tmp_path, wheels, path_first=()):
  """A new machine: no uv on PATH or in ~/.local/bin, the package index = ``wheels`` only, and
  a `curl` that fails the test if called (uv's installer script is never fetched)."""
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  _executable(bin_dir / "curl", '#!/bin/sh\necho "$@" >> "$(dirname "$0")/curl.called"\nexit 1\n')
  path = [str(p) for p in path_first] + [str(bin_dir)]
  path += [d for d in os.environ["PATH"].split(":") if d and not os.path.exists(f"{d}/uv")]
  env = {k: v for k, v in os.environ.items() if k not in ("UV", "VIRTUAL_ENV", "PYTHONHOME")}
  env.update(
    PATH=":".join(path),
    HOME=str(tmp_path / "home"),
    PIP_NO_INDEX="1",
    PIP_FIND_LINKS=str(wheels),
    PIP_DISABLE_PIP_VERSION_CHECK="1",
  )
  return env, bin_dir


def _find_uv(env):
  return subprocess.run(
    ["bash", os.path.join(ROOT, "launch", "worker_setup.sh"), "--find-uv"],
    env=env,
    capture_output=True,
    text=True,
    timeout=240,
  )


def test_worker_setup_installs_uv_into_the_active_venv_with_pip(tmp_path):
  active = tmp_path / "active"
  subprocess.run([sys.executable, "-m", "venv", str(active)], check=True, timeout=240)
  env, bin_dir = _no_uv_env(tmp_path, _uv_wheel(tmp_path / "wheels"), [active / "bin"])
  env["VIRTUAL_ENV"] = str(active)
  out = _find_uv(env)
  assert out.returncode == 0, out.stderr
  uv = out.stdout.strip().splitlines()[-1]
  assert uv == f"{active}/bin/uv" and "into the active venv" in out.stderr
  assert subprocess.run([uv], capture_output=True, text=True).stdout == "uv 0.0.1 (stand-in)\n"
  assert not (bin_dir / "curl.called").exists()
  assert _find_uv(env).stdout.strip() == uv  # found on PATH the next time


def test_worker_setup_outside_a_venv_installs_uv_into_a_private_venv(tmp_path):
  base = tmp_path / "base"  # python3 = the interpreter this venv (if any) was made from
  base.mkdir()
  os.symlink(getattr(sys, "_base_executable", sys.executable), base / "python3")
  env, bin_dir = _no_uv_env(tmp_path, _uv_wheel(tmp_path / "wheels"), [base])
  out = _find_uv(env)
  assert out.returncode == 0, out.stderr
  uv = out.stdout.strip().splitlines()[-1]
  assert uv == f"{tmp_path}/home/.cache/leave_one_out/uv/bin/uv", out.stderr
  assert subprocess.run([uv], capture_output=True, text=True).stdout == "uv 0.0.1 (stand-in)\n"
  assert not (bin_dir / "curl.called").exists()


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
