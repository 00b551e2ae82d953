#!/usr/bin/env bash
# The core install a user gets from `pip install .`: not editable, no TensorFlow.
# Checks that the README's quick start works from the repository root after it: the package
# imports, the demo trains and evaluates on the embedded dataset, and pretrained params load and
# export. Usage: .ci/install_check.sh [VENV_DIR]  (default: a temporary directory)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-$(mktemp -d)/venv}
work=$(mktemp -d)
python3 -m venv "$venv"
py="$venv/bin/python -P"  # -P: the installed package, not this checkout (cwd not on sys.path)
$py -m pip install -q --upgrade pip
lock=()
[[ -f requirements-lock.txt ]] && lock=(-c requirements-lock.txt)
$py -m pip install -q "${lock[@]}" .
# Not editable: the package comes from the venv's site-packages, not from this checkout.
$py - <<'PY'
import importlib.util, os, sys
import leave_one_out
where = os.path.dirname(leave_one_out.__file__)
assert "site-packages" in where, f"expected a non-editable install, got {where}"
assert importlib.util.find_spec("tensorflow") is None, "the core install must not pull TensorFlow"
print(f"leave_one_out {leave_one_out.__version__} from {where}; no TensorFlow")
PY
# The README's demo command, shortened: a few steps, then the end-of-run evaluation.
$py -m leave_one_out.main --config=configs/demo.py --workdir="$work/demo" \
  --config.train.num_steps=4 --config.log_every_steps=2 --config.checkpoint_every_steps=4 \
  --config.train.batch_size=32 --config.data.num_train=256 \
  --config.model.width=4 --config.model.head_hidden=16 --config.model.embedding_dim=8
$py - "$work/demo" <<'PY'
import sys
import numpy as np
import leave_one_out
from leave_one_out.data import synthetic as source
model, variables, config = leave_one_out.load_pretrained(sys.argv[1])
images = np.zeros((4, 48, 48, 3), np.uint8)
f = leave_one_out.extract_features(model, variables, images, image_size=config.augment.image_size)
assert f.shape[0] == 4 and np.isfinite(f).all()
print("pretrained params load and give features", f.shape)
PY
$py -m leave_one_out.pretrained --workdir="$work/demo" --out="$work/looc.msgpack"
# A tfds or folder dataset without the [data] extra: a clear error naming it, no traceback.
if $py -m leave_one_out.main --config=configs/demo.py --workdir="$work/folder" \
    --config.data.name=folder --config.data.data_dir="$work" --noevaluate 2> "$work/err.txt"; then
  echo "expected the folder source to fail without TensorFlow" >&2; exit 1
fi
grep -q "leave_one_out\[data\]" "$work/err.txt" || { cat "$work/err.txt" >&2; exit 1; }
echo "install check passed"
