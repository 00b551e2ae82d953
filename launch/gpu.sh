#!/usr/bin/env bash
# Local GPU runs: one machine with one or more GPUs, or several machines (one process each).
#
#   launch/gpu.sh setup [--cuda 12|13]   # a Python 3.11-3.13 venv with CUDA-enabled jax [12]
#   launch/gpu.sh train [FLAGS...]       # one process driving every visible GPU
#   launch/gpu.sh debug [FLAGS...]       # one GPU, small batch, NaN checks, logs every step,
#                                        # 20 steps, no end-of-run evaluation
#   launch/gpu.sh node RANK [FLAGS...]   # multi-node: run on each node with its RANK (0..NODES-1)
# train, debug and node need the venv (`setup`) and refuse to run when JAX sees no GPU
# (ALLOW_CPU=1 runs on the CPU anyway), as check does.
#   launch/gpu.sh check [--wheels DIR] [FLAGS...]  # accelerator check -> one Markdown report
#       (REPORT [$WORKDIR/accelerator_check.md]; ALLOW_CPU=1: tiny, on a CPU; --wheels DIR:
#       first pip-install missing dependencies from DIR, offline; FLAGS: see
#       python -m leave_one_out.benchmarks --what=accelerator_check --help)
#   launch/gpu.sh help                   # this text
# (SLURM clusters: launch/slurm.sh.)
#
# Environment variables (defaults in brackets):
#   CONFIG [configs/demo.py]  WORKDIR [/tmp/looc_gpu]  DEBUG_WORKDIR [$WORKDIR-debug]
#   GPUS [all visible; e.g. 0,1]  NODES [1]  COORDINATOR (host:port of node 0, for `node`)
#   VENV [~/looc-venv] (made by `setup`)  PYTHON [$VENV/bin/python; check: else python3]
#   PYTHON_VERSION [3.11]  MEM_FRACTION [0.9]  HEARTBEAT_TIMEOUT [100] seconds before the
#   other nodes give up on a lost node  CACHE_DIR [~/.cache/leave_one_out/jax]
#   ALLOW_CPU [0]  DRY_RUN [0]: print the command, run nothing (and check nothing)
# Extra arguments go to leave_one_out.main (e.g. --config.train.batch_size=512).
set -euo pipefail

SCRIPT=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
REPO=$(dirname "$(dirname "$SCRIPT")")
CONFIG=${CONFIG:-configs/demo.py}
WORKDIR=${WORKDIR:-/tmp/looc_gpu}
DEBUG_WORKDIR=${DEBUG_WORKDIR:-$WORKDIR-debug}
NODES=${NODES:-1}
MEM_FRACTION=${MEM_FRACTION:-0.9}
HEARTBEAT_TIMEOUT=${HEARTBEAT_TIMEOUT:-100}
CACHE_DIR=${CACHE_DIR:-$HOME/.cache/leave_one_out/jax}
VENV=${VENV:-$HOME/looc-venv}
PYTHON_VERSION=${PYTHON_VERSION:-3.11}
PYTHON_SET=${PYTHON:+1}
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$VENV/bin/python" ]]; then PYTHON=$VENV/bin/python; else PYTHON=python3; fi
fi
ALLOW_CPU=${ALLOW_CPU:-0}
DRY_RUN=${DRY_RUN:-0}

run() {
  printf '+'; printf ' %q' "$@"; printf '\n'
  [[ "$DRY_RUN" == 1 ]] || "$@"
}

die() { echo "gpu.sh: $*" >&2; exit 2; }

# train, debug, node: a Python with the package (the venv of `setup`) whose JAX sees a GPU.
require_gpu() {
  [[ "$DRY_RUN" == 1 ]] && return 0
  if [[ -z "$PYTHON_SET" && ! -x "$VENV/bin/python" ]]; then
    die "no venv at $VENV: run \`launch/gpu.sh setup\` first (or set VENV or PYTHON)"
  fi
  local backend
  if ! backend=$("$PYTHON" -c 'import leave_one_out, jax; print(jax.default_backend())' 2>&1); then
    die "$PYTHON cannot run leave_one_out ($(tail -n 1 <<< "$backend")): run" \
        "\`launch/gpu.sh setup\` (it makes $VENV)"
  fi
  backend=$(tail -n 1 <<< "$backend")
  if [[ "$backend" != gpu && "$ALLOW_CPU" != 1 ]]; then
    die "JAX sees no GPU (backend: $backend; CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-unset})." \
        "Is the venv's jax built for CUDA (\`launch/gpu.sh setup --cuda 12|13\`) and a GPU" \
        "visible (nvidia-smi)? ALLOW_CPU=1 runs on the CPU anyway."
  fi
}

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$SCRIPT"; }

cmd=${1:-}
[[ -n "$cmd" ]] || { usage >&2; exit 1; }
shift
cd "$REPO"
export XLA_PYTHON_CLIENT_MEM_FRACTION=$MEM_FRACTION
[[ -n "${GPUS:-}" ]] && export CUDA_VISIBLE_DEVICES=$GPUS

main=("$PYTHON" -m leave_one_out.main "--config=$CONFIG" "--compilation_cache_dir=$CACHE_DIR")
case "$cmd" in
  setup)
    cuda=12
    while [[ $# -gt 0 ]]; do
      case "$1" in
        --cuda) cuda=${2:-}; shift 2 || shift ;;
        --cuda=*) cuda=${1#--cuda=}; shift ;;
        *) die "setup takes --cuda 12|13, got $1" ;;
      esac
    done
    case "$cuda" in 12|13) ;; *) die "--cuda must be 12 or 13, got ${cuda:-nothing}" ;; esac
    run bash "$REPO/launch/worker_setup.sh" --venv "$VENV" --extra "cuda$cuda" \
      --python "$PYTHON_VERSION"
    ;;
  train)
    require_gpu
    run "${main[@]}" "--workdir=$WORKDIR" "$@"
    ;;
  debug)  # its own workdir: a debug run is a different config from `train`'s
    export CUDA_VISIBLE_DEVICES=${GPUS:-0}
    require_gpu
    run env JAX_DEBUG_NANS=True "${main[@]}" "--workdir=$DEBUG_WORKDIR" --noevaluate \
      --config.train.batch_size=32 --config.log_every_steps=1 --config.train.num_steps=20 "$@"
    ;;
  node)
    rank=${1:?usage: launch/gpu.sh node RANK [FLAGS...]}
    shift
    [[ -n "${COORDINATOR:-}" ]] || { echo "COORDINATOR=host:port of node 0 is required" >&2; exit 2; }
    require_gpu
    run "${main[@]}" "--workdir=$WORKDIR" --distributed "--coordinator_address=$COORDINATOR" \
      "--num_processes=$NODES" "--process_id=$rank" "--heartbeat_timeout_s=$HEARTBEAT_TIMEOUT" "$@"
    ;;
  check)
    wheels=""
    flags_=()
    while [[ $# -gt 0 ]]; do
      case "$1" in
        --wheels) wheels=${2:?usage: launch/gpu.sh check --wheels DIR}; shift 2 ;;
        --wheels=*) wheels=${1#--wheels=}; shift ;;
        *) flags_+=("$1"); shift ;;
      esac
    done
    if [[ -n "$wheels" ]]; then  # no network: whatever is missing comes from the folder
      run "$PYTHON" -m pip install --no-index --find-links "$wheels" -e .
    fi
    run "$PYTHON" -m leave_one_out.benchmarks --what=accelerator_check \
      "--report=${REPORT:-$WORKDIR/accelerator_check.md}" "--compilation_cache_dir=$CACHE_DIR" \
      ${flags_[@]+"${flags_[@]}"}
    ;;
  -h|--help|help) usage ;;
  *) echo "unknown command: $cmd" >&2; usage >&2; exit 2 ;;
esac
