#!/usr/bin/env bash
# Local GPU runs: one machine with one or more GPUs, or several machines (one process each).
#
#   launch/gpu.sh setup                  # install this checkout with CUDA-enabled jax
#   launch/gpu.sh train [FLAGS...]       # one process driving every visible GPU
#   launch/gpu.sh debug [FLAGS...]       # one GPU, small batch, NaN checks, logs every step
#   launch/gpu.sh node RANK [FLAGS...]   # multi-node: run on each node with its RANK (0..NODES-1)
#   launch/gpu.sh check [--wheels DIR] [FLAGS...]  # accelerator check -> one Markdown report
#       (REPORT [$WORKDIR/accelerator_check.md]; ALLOW_CPU=1: tiny, on a CPU; --wheels DIR:
#       first pip-install missing dependencies from DIR, offline; FLAGS: see
#       python -m leave_one_out.accelerator_check --help)
#
# Environment variables (defaults in brackets):
#   CONFIG [configs/demo.py]  WORKDIR [/tmp/looc_gpu]  GPUS [all visible; e.g. 0,1]
#   NODES [1]  COORDINATOR (host:port of node 0, required for `node`)
#   MEM_FRACTION [0.9]  XLA_PYTHON_CLIENT_PREALLOCATE follows JAX's default
#   CACHE_DIR [~/.cache/leave_one_out/jax]  persistent compilation cache
#   DRY_RUN [0]: print the command, run nothing
# Extra arguments go to leave_one_out.main (e.g. --config.train.batch_size=512).
set -euo pipefail

CONFIG=${CONFIG:-configs/demo.py}
WORKDIR=${WORKDIR:-/tmp/looc_gpu}
NODES=${NODES:-1}
MEM_FRACTION=${MEM_FRACTION:-0.9}
CACHE_DIR=${CACHE_DIR:-$HOME/.cache/leave_one_out/jax}
DRY_RUN=${DRY_RUN:-0}
JAX_VERSION=0.10.2
cd "$(dirname "$0")/.."

run() {
  printf '+'; printf ' %q' "$@"; printf '\n'
  [[ "$DRY_RUN" == 1 ]] || "$@"
}

usage() { sed -n '2,22p' "$0"; exit "${1:-0}"; }

cmd=${1:-}
[[ -n "$cmd" ]] || usage 1
shift
export XLA_PYTHON_CLIENT_MEM_FRACTION=$MEM_FRACTION
[[ -n "${GPUS:-}" ]] && export CUDA_VISIBLE_DEVICES=$GPUS

main=(python -m leave_one_out.main "--config=$CONFIG" "--workdir=$WORKDIR"
      "--compilation_cache_dir=$CACHE_DIR")
case "$cmd" in
  setup)
    run pip install -e . "jax[cuda12]==$JAX_VERSION"
    run python -c "import jax; print(jax.devices())"
    ;;
  train)
    run "${main[@]}" "$@"
    ;;
  debug)
    export CUDA_VISIBLE_DEVICES=${GPUS:-0}
    run env JAX_DEBUG_NANS=True "${main[@]}" --config.train.batch_size=32 \
      --config.log_every_steps=1 --config.train.num_steps=20 "$@"
    ;;
  node)
    rank=${1:?usage: launch/gpu.sh node RANK [FLAGS...]}
    shift
    [[ -n "${COORDINATOR:-}" ]] || { echo "COORDINATOR=host:port of node 0 is required" >&2; exit 2; }
    run "${main[@]}" --distributed "--coordinator_address=$COORDINATOR" \
      "--num_processes=$NODES" "--process_id=$rank" "$@"
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
      run pip install --no-index --find-links "$wheels" -e .
    fi
    run python -m leave_one_out.accelerator_check \
      "--report=${REPORT:-$WORKDIR/accelerator_check.md}" "--compilation_cache_dir=$CACHE_DIR" \
      ${flags_[@]+"${flags_[@]}"}
    ;;
  -h|--help|help) usage 0 ;;
  *) echo "unknown command: $cmd" >&2; usage 2 ;;
esac
