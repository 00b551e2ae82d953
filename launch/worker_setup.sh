#!/usr/bin/env bash
# Worker-side setup: a Python 3.11-3.13 virtual environment with this checkout installed.
#
#   launch/worker_setup.sh [--venv DIR] [--extra EXTRA] [--python VERSION] [--check]
#
# launch/tpu.sh setup runs it on every TPU VM worker, launch/gpu.sh setup on a GPU host, and
# tests/test_launch.py on a CPU machine. The default TPU image (tpu-ubuntu2204-base) ships
# Python 3.10 only, too old for jax 0.10.2; uv (installed for the user when missing) makes the
# environment with a Python it finds on the machine or downloads. Every later command runs
# DIR/bin/python.
#
#   --venv DIR        the environment [~/looc-venv]; an existing one is reused and updated
#   --extra EXTRA     the package extra: tpu (TPU VMs), cuda12 (GPU hosts), test, none [none]
#   --python VERSION  3.11, 3.12 or 3.13 [3.11]
#   --check           then print JAX's devices and train 3 steps of a tiny configs/demo.py
#   help, --help      this text
# Environment: UV (the uv executable; default: on PATH, else ~/.local/bin/uv, else installed
# with pip --user or uv's installer), DRY_RUN=1 (print the commands, run nothing).
set -euo pipefail

SCRIPT=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
REPO=$(dirname "$(dirname "$SCRIPT")")
DRY_RUN=${DRY_RUN:-0}
VENV=~/looc-venv
EXTRA=none
PYTHON_VERSION=3.11
CHECK=0

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
    -h|--help|help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
case "$EXTRA" in tpu|cuda12|test|none) ;; *) die "--extra must be tpu, cuda12, test or none, got $EXTRA" ;; esac
case "$PYTHON_VERSION" in 3.11|3.12|3.13) ;; *) die "--python must be 3.11, 3.12 or 3.13, got $PYTHON_VERSION" ;; esac

find_uv() {
  if [[ -n "${UV:-}" ]]; then echo "$UV"; return; fi
  if command -v uv > /dev/null; then command -v uv; return; fi
  if [[ -x ~/.local/bin/uv ]]; then echo ~/.local/bin/uv; return; fi
  echo "uv not found: installing it for this user" >&2
  if [[ "$DRY_RUN" == 1 ]]; then echo uv; return; fi
  if python3 -m pip install --user --quiet uv >&2 && [[ -x ~/.local/bin/uv ]]; then
    echo ~/.local/bin/uv; return
  fi
  curl -LsSf https://astral.sh/uv/install.sh | sh >&2
  echo ~/.local/bin/uv
}

uv=$(find_uv)
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
