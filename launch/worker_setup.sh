#!/usr/bin/env bash
# Worker-side setup: a Python 3.11-3.13 virtual environment with this checkout installed.
#
#   launch/worker_setup.sh [--venv DIR] [--extra EXTRA] [--python VERSION] [--check]
#
# launch/tpu.sh setup runs it on every TPU VM worker, launch/gpu.sh setup on a GPU host, and
# tests/test_launch.py on a CPU machine. The default TPU image (tpu-ubuntu2204-base) ships
# Python 3.10 only, too old for jax 0.10.2; uv makes the environment with a Python 3.11-3.13 it
# finds on the machine (else uv downloads one). Every later command runs DIR/bin/python.
#
#   --venv DIR        the environment [~/looc-venv]; an existing one is reused and updated
#   --extra EXTRA     the package extra: tpu (TPU VMs), cuda12 or cuda13 (GPU hosts), test,
#                     none [none]
#   --python VERSION  3.11, 3.12 or 3.13 [3.11]
#   --check           then print JAX's devices and train 3 steps of a tiny configs/demo.py
#   --find-uv         only print the uv it would use (installing it if missing), then stop
#   help, --help      this text
# Environment: UV (the uv executable; default: on PATH, else ~/.local/bin/uv, else UV_HOME's,
# else installed from the package index with pip: into the active venv when one is active,
# else into a private venv UV_HOME [~/.cache/leave_one_out/uv]; nothing but the package index
# is contacted), DRY_RUN=1 (print the commands, run nothing).
set -euo pipefail

SCRIPT=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
REPO=$(dirname "$(dirname "$SCRIPT")")
DRY_RUN=${DRY_RUN:-0}
VENV=~/looc-venv
EXTRA=none
PYTHON_VERSION=3.11
CHECK=0
FIND_UV=0

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$SCRIPT"; }

run() {  # echo the command; execute it unless DRY_RUN=1
  printf '+'; printf ' %q' "$@"; printf '\n'
  [[ "$DRY_RUN" == 1 ]] || "$@"
}

die() { echo "worker_setup.sh: $*" >&2; exit 2; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --venv) VENV=${2:?--venv needs a directory}; shift 2 ;;
    --extra) EXTRA=${2:?--extra needs a value}; shift 2 ;;
    --python) PYTHON_VERSION=${2:?--python needs a version}; shift 2 ;;
    --check) CHECK=1; shift ;;
    --find-uv) FIND_UV=1; shift ;;
    -h|--help|help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
case "$EXTRA" in tpu|cuda12|cuda13|test|none) ;; *) die "--extra must be tpu, cuda12, cuda13, test or none, got $EXTRA" ;; esac
case "$PYTHON_VERSION" in 3.11|3.12|3.13) ;; *) die "--python must be 3.11, 3.12 or 3.13, got $PYTHON_VERSION" ;; esac

UV_HOME=${UV_HOME:-$HOME/.cache/leave_one_out/uv}

install_uv() {  # install_uv: uv from the package index with pip; prints its path (no curl)
  local python=${VIRTUAL_ENV:+$VIRTUAL_ENV/bin/python}
  [[ -x "$python" ]] || python=$(command -v python3 || command -v python || true)
  [[ -n "$python" ]] || die "uv not found and no python3 to install it with; set UV=/path/to/uv"
  if "$python" -c 'import sys; sys.exit(sys.prefix == sys.base_prefix)' 2> /dev/null &&
      "$python" -m pip --version > /dev/null 2>&1; then
    local bin
    bin=$("$python" -c 'import os, sys; print(os.path.join(sys.prefix, "bin"))')
    echo "uv not found: installing it into the active venv ($bin/uv)" >&2
    "$python" -m pip install --quiet uv >&2 && [[ -x "$bin/uv" ]] && { echo "$bin/uv"; return; }
  fi
  echo "uv not found: installing it into a private venv, $UV_HOME" >&2
  if "$python" -m venv "$UV_HOME" >&2 && "$UV_HOME/bin/python" -m pip install --quiet uv >&2 &&
      [[ -x "$UV_HOME/bin/uv" ]]; then
    echo "$UV_HOME/bin/uv"; return
  fi
  # No ensurepip (Debian's python3 without python3-venv): pip puts uv in a folder of its own.
  rm -rf "$UV_HOME"
  "$python" -m pip install --quiet --target "$UV_HOME" uv >&2 && [[ -x "$UV_HOME/bin/uv" ]] ||
    die "could not install uv with $python -m pip (is the package index reachable?); install \
uv and set UV=/path/to/uv"
  echo "$UV_HOME/bin/uv"
}

find_uv() {
  if [[ -n "${UV:-}" ]]; then echo "$UV"; return; fi
  if command -v uv > /dev/null; then command -v uv; return; fi
  local candidate
  for candidate in ~/.local/bin/uv "$UV_HOME/bin/uv"; do
    if [[ -x "$candidate" ]]; then echo "$candidate"; return; fi
  done
  if [[ "$DRY_RUN" == 1 ]]; then echo uv; return; fi
  install_uv
}

uv=$(find_uv)
if [[ "$FIND_UV" == 1 ]]; then echo "$uv"; exit 0; fi
spec=$REPO
[[ "$EXTRA" == none ]] || spec="$REPO[$EXTRA]"
run "$uv" venv --quiet --allow-existing --python "$PYTHON_VERSION" "$VENV"
run "$uv" pip install --quiet --python "$VENV/bin/python" -e "$spec"
run "$VENV/bin/python" -c "import sys; v = sys.version_info[:2]; assert (3, 11) <= v <= (3, 13), \
f'Python {sys.version} in $VENV: need 3.11-3.13'; import jax, leave_one_out; \
print('python', sys.version.split()[0], '| jax', jax.__version__, '|', jax.devices())"

if [[ "$CHECK" == 1 ]]; then
  workdir=$(mktemp -d "${TMPDIR:-/tmp}/looc_setup_check.XXXXXX")
  (cd "$REPO" && run "$VENV/bin/python" -m leave_one_out.main --config=configs/demo.py \
    "--workdir=$workdir" --noevaluate --config.train.num_steps=3 --config.log_every_steps=1 \
    --config.train.batch_size=16 --config.data.num_train=64 --config.data.image_size=20 \
    --config.augment.image_size=16 "--config.augment.texture.freq=(2.0,6.0)" \
    --config.model.width=4 --config.model.head_hidden=16 --config.model.embedding_dim=8)
  [[ "$DRY_RUN" == 1 ]] || rm -rf "$workdir"
fi
echo "ready: $VENV/bin/python"
