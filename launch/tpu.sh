#!/usr/bin/env bash
# Cloud TPU VMs and pod slices: create, set up every worker, train, follow logs, stop, delete.
#
#   launch/tpu.sh create            # a TPU VM / pod slice (spot with SPOT=1)
#   launch/tpu.sh setup             # copy this checkout to every worker and install it
#   launch/tpu.sh train [FLAGS...]  # same command on all workers, in the background
#   launch/tpu.sh logs              # follow worker 0's log
#   launch/tpu.sh status            # is training running on each worker
#   launch/tpu.sh stop              # SIGTERM: every worker saves a checkpoint and exits
#   launch/tpu.sh delete            # delete the TPU (the gs:// workdir stays)
#   launch/tpu.sh ssh [CMD]         # run CMD on all workers (or open a shell on worker 0)
#
# Every knob is an environment variable (defaults in brackets):
#   TPU_NAME [looc]  ZONE [us-central2-b]  ACCELERATOR [v4-32]  PROJECT [gcloud default]
#   RUNTIME [tpu-ubuntu2204-base]  SPOT [0]
#   CONFIG [configs/looc_in100_r50.py]  WORKDIR (required for train: gs://bucket/run)
#   TFDS_DATA_DIR (passed to training; gs:// path of prepared tfds data)
#   CACHE_DIR [$WORKDIR/jax_cache] persistent compilation cache
#   REMOTE_DIR [~/leave_one_out]  LOG [~/looc.log]  DRY_RUN [0]: print commands, run nothing
# Extra arguments to `train` go to leave_one_out.main (e.g. --config.train.num_epochs=200).
set -euo pipefail

TPU_NAME=${TPU_NAME:-looc}
ZONE=${ZONE:-us-central2-b}
ACCELERATOR=${ACCELERATOR:-v4-32}
RUNTIME=${RUNTIME:-tpu-ubuntu2204-base}
SPOT=${SPOT:-0}
CONFIG=${CONFIG:-configs/looc_in100_r50.py}
REMOTE_DIR=${REMOTE_DIR:-'~/leave_one_out'}
LOG=${LOG:-'~/looc.log'}
DRY_RUN=${DRY_RUN:-0}
JAX_VERSION=0.10.2

project_flag=()
[[ -n "${PROJECT:-}" ]] && project_flag=(--project="$PROJECT")

run() {  # echo the command; execute it unless DRY_RUN=1
  printf '+'; printf ' %q' "$@"; printf '\n'
  [[ "$DRY_RUN" == 1 ]] || "$@"
}

on_workers() {  # on_workers WORKERS COMMAND: run a shell command on TPU workers over ssh
  run gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" "${project_flag[@]}" \
    --worker="$1" --command="$2"
}

usage() { sed -n '2,25p' "$0"; exit "${1:-0}"; }

cmd=${1:-}
[[ -n "$cmd" ]] || usage 1
shift

case "$cmd" in
  create)
    spot=(); [[ "$SPOT" == 1 ]] && spot=(--spot)
    run gcloud compute tpus tpu-vm create "$TPU_NAME" --zone="$ZONE" "${project_flag[@]}" \
      --accelerator-type="$ACCELERATOR" --version="$RUNTIME" "${spot[@]}"
    ;;
  setup)
    repo=$(cd "$(dirname "$0")/.." && pwd)
    archive=${TMPDIR:-/tmp}/leave_one_out-$TPU_NAME.tar.gz
    run tar -czf "$archive" -C "$repo" --exclude=.git --exclude='*.egg-info' \
      --exclude=__pycache__ .
    run gcloud compute tpus tpu-vm scp "$archive" "$TPU_NAME:/tmp/leave_one_out.tar.gz" \
      --zone="$ZONE" "${project_flag[@]}" --worker=all
    on_workers all "mkdir -p $REMOTE_DIR && tar -xzf /tmp/leave_one_out.tar.gz -C $REMOTE_DIR \
&& cd $REMOTE_DIR && pip install -q -e . 'jax[tpu]==$JAX_VERSION' \
&& python -c 'import jax; print(jax.process_index(), jax.local_device_count(), jax.device_count())'"
    ;;
  train)
    [[ -n "${WORKDIR:-}" ]] || { echo "WORKDIR is required (e.g. gs://bucket/looc_in100)" >&2; exit 2; }
    cache=${CACHE_DIR:-$WORKDIR/jax_cache}
    data_env=""
    [[ -n "${TFDS_DATA_DIR:-}" ]] && data_env="TFDS_DATA_DIR=$TFDS_DATA_DIR "
    extra=$(printf ' %q' "$@")
    on_workers all "cd $REMOTE_DIR && ${data_env}nohup python -m leave_one_out.main --distributed \
--config=$CONFIG --workdir=$WORKDIR --compilation_cache_dir=$cache$extra > $LOG 2>&1 &"
    ;;
  logs)
    on_workers 0 "tail -n 100 -f $LOG"
    ;;
  status)
    on_workers all "pgrep -fa leave_one_out.main || echo 'not running'; tail -n 2 $LOG 2>/dev/null"
    ;;
  stop)
    on_workers all "pkill -TERM -f leave_one_out.main || true"
    ;;
  delete)
    run gcloud compute tpus tpu-vm delete "$TPU_NAME" --zone="$ZONE" "${project_flag[@]}" --quiet
    ;;
  ssh)
    if [[ $# -gt 0 ]]; then on_workers all "$*"; else
      run gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" "${project_flag[@]}" --worker=0
    fi
    ;;
  -h|--help|help) usage 0 ;;
  *) echo "unknown command: $cmd" >&2; usage 2 ;;
esac
