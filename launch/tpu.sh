#!/usr/bin/env bash
# Cloud TPU VMs and pod slices: create, set up every worker, train, follow logs, stop, delete.
#
#   launch/tpu.sh create            # the TPU VM / pod slice (QUEUED=1: a queued resource)
#   launch/tpu.sh wait              # QUEUED=1: until the queued resource is ACTIVE
#   launch/tpu.sh setup             # copy this checkout to every worker, run worker_setup.sh
#   launch/tpu.sh train [FLAGS...]  # the same command on all workers, in the background
#   launch/tpu.sh logs              # follow worker 0's log
#   launch/tpu.sh status            # is training running on each worker
#   launch/tpu.sh stop              # SIGTERM; returns once every worker has saved and exited
#   launch/tpu.sh delete            # delete the TPU (refused while training runs; FORCE=1)
#   launch/tpu.sh ssh [CMD]         # run CMD on all workers (or open a shell on worker 0)
#   launch/tpu.sh help              # this text
#
# Every knob is an environment variable (defaults in brackets):
#   TPU_NAME [looc]  ZONE [us-central2-b]  ACCELERATOR [v4-32]  PROJECT [gcloud default]
#   RUNTIME [by ACCELERATOR: v5litepod-* v2-alpha-tpuv5-lite, v5p-* v2-alpha-tpuv5,
#            v6e-* v2-alpha-tpuv6e, else tpu-ubuntu2204-base]
#   SPOT [0]: 1 = spot capacity (cheaper, preemptible: training saves and resumes)
#   QUEUED [1 for v5litepod/v6e, else 0]: create through `queued-resources create`
#   QUEUED_NAME [$TPU_NAME-qr]  the queued resource's name
#   CONFIG [configs/looc_in100_r50.py]  WORKDIR (required for train: gs://bucket/run)
#   TFDS_DATA_DIR (passed to training; gs:// path of prepared tfds data)
#   CACHE_DIR [$WORKDIR/jax_cache] persistent compilation cache
#   REMOTE_DIR [~/leave_one_out]  VENV [~/looc-venv] (made by worker_setup.sh)
#   PYTHON_VERSION [3.11]  LOG [~/looc.log]  PIDFILE [~/looc.pid]
#   STOP_TIMEOUT [900] seconds `stop` waits for the save  FORCE [0]  DRY_RUN [0]: print only
# Extra arguments to `train` go to leave_one_out.main (e.g. --config.train.num_epochs=200).
set -euo pipefail

SCRIPT=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
REPO=$(dirname "$(dirname "$SCRIPT")")
TPU_NAME=${TPU_NAME:-looc}
ZONE=${ZONE:-us-central2-b}
ACCELERATOR=${ACCELERATOR:-v4-32}
case "$ACCELERATOR" in
  v5litepod-*|v5e-*) default_runtime=v2-alpha-tpuv5-lite; default_queued=1 ;;
  v6e-*) default_runtime=v2-alpha-tpuv6e; default_queued=1 ;;
  v5p-*) default_runtime=v2-alpha-tpuv5; default_queued=0 ;;
  *) default_runtime=tpu-ubuntu2204-base; default_queued=0 ;;
esac
RUNTIME=${RUNTIME:-$default_runtime}
QUEUED=${QUEUED:-$default_queued}
QUEUED_NAME=${QUEUED_NAME:-$TPU_NAME-qr}
SPOT=${SPOT:-0}
CONFIG=${CONFIG:-configs/looc_in100_r50.py}
REMOTE_DIR=${REMOTE_DIR:-'~/leave_one_out'}
VENV=${VENV:-'~/looc-venv'}
PYTHON_VERSION=${PYTHON_VERSION:-3.11}
LOG=${LOG:-'~/looc.log'}
PIDFILE=${PIDFILE:-'~/looc.pid'}
STOP_TIMEOUT=${STOP_TIMEOUT:-900}
FORCE=${FORCE:-0}
DRY_RUN=${DRY_RUN:-0}

project_flag=()
[[ -n "${PROJECT:-}" ]] && project_flag=(--project="$PROJECT")
spot_flag=()
[[ "$SPOT" == 1 ]] && spot_flag=(--spot)

run() {  # echo the command; execute it unless DRY_RUN=1
  printf '+'; printf ' %q' "$@"; printf '\n'
  [[ "$DRY_RUN" == 1 ]] || "$@"
}

on_workers() {  # on_workers WORKERS COMMAND: run a shell command on TPU workers over ssh
  run gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" "${project_flag[@]}" \
    --worker="$1" --command="$2"
}

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$SCRIPT"; }

# Shell snippets run on a worker. The training process's pid is in $PIDFILE; a process counts
# as alive unless gone or a zombie (an exited process no init has reaped yet, as in containers).
alive() { echo "ps -o stat= -p $1 2> /dev/null | grep -qv '^Z'"; }
running="test -f $PIDFILE && $(alive "\$(cat $PIDFILE)")"

cmd=${1:-}
[[ -n "$cmd" ]] || { usage >&2; exit 1; }
shift

case "$cmd" in
  create)
    if [[ "$QUEUED" == 1 ]]; then
      run gcloud compute tpus queued-resources create "$QUEUED_NAME" --node-id="$TPU_NAME" \
        --zone="$ZONE" "${project_flag[@]}" --accelerator-type="$ACCELERATOR" \
        --runtime-version="$RUNTIME" "${spot_flag[@]}"
      echo "requested; \`launch/tpu.sh wait\` returns once the slice is ACTIVE" >&2
    else
      run gcloud compute tpus tpu-vm create "$TPU_NAME" --zone="$ZONE" "${project_flag[@]}" \
        --accelerator-type="$ACCELERATOR" --version="$RUNTIME" "${spot_flag[@]}"
    fi
    ;;
  wait)
    [[ "$QUEUED" == 1 ]] || { echo "wait: only for QUEUED=1 (tpu-vm create returns when ready)" >&2; exit 2; }
    describe=(gcloud compute tpus queued-resources describe "$QUEUED_NAME" --zone="$ZONE"
              "${project_flag[@]}" --format='value(state.state)')
    if [[ "$DRY_RUN" == 1 ]]; then run "${describe[@]}"; exit 0; fi
    while true; do
      state=$("${describe[@]}")
      echo "$(date +%T) $QUEUED_NAME: $state" >&2
      case "$state" in
        ACTIVE) exit 0 ;;
        FAILED|SUSPENDED|DELETING) exit 1 ;;
      esac
      sleep 30
    done
    ;;
  setup)
    archive=${TMPDIR:-/tmp}/leave_one_out-$TPU_NAME.tar.gz
    run tar -czf "$archive" -C "$REPO" --exclude=.git --exclude='*.egg-info' \
      --exclude=__pycache__ .
    run gcloud compute tpus tpu-vm scp "$archive" "$TPU_NAME:/tmp/leave_one_out.tar.gz" \
      --zone="$ZONE" "${project_flag[@]}" --worker=all
    on_workers all "mkdir -p $REMOTE_DIR && tar -xzf /tmp/leave_one_out.tar.gz -C $REMOTE_DIR \
&& bash $REMOTE_DIR/launch/worker_setup.sh --venv $VENV --extra tpu --python $PYTHON_VERSION"
    ;;
  train)
    [[ -n "${WORKDIR:-}" ]] || { echo "WORKDIR is required (e.g. gs://bucket/looc_in100)" >&2; exit 2; }
    cache=${CACHE_DIR:-$WORKDIR/jax_cache}
    data_env=""
    [[ -n "${TFDS_DATA_DIR:-}" ]] && data_env="TFDS_DATA_DIR=$TFDS_DATA_DIR "
    extra=""
    [[ $# -eq 0 ]] || extra=$(printf ' %q' "$@")
    on_workers all "if $running; then echo \"already training (pid \$(cat $PIDFILE))\" >&2; \
exit 3; fi; cd $REMOTE_DIR || exit 1; ${data_env}nohup $VENV/bin/python -m leave_one_out.main \
--distributed --config=$CONFIG --workdir=$WORKDIR --compilation_cache_dir=$cache$extra \
> $LOG 2>&1 < /dev/null & echo \$! > $PIDFILE"
    ;;
  logs)
    on_workers 0 "tail -n 100 -f $LOG"
    ;;
  status)
    on_workers all "if $running; then echo \"\$(hostname): training (pid \$(cat $PIDFILE))\"; \
else echo \"\$(hostname): not running\"; fi; tail -n 2 $LOG 2> /dev/null"
    ;;
  stop)
    # Every worker: SIGTERM to the training process, then wait for it to exit. It exits once
    # the checkpoint of the step all processes agreed on is committed.
    on_workers all "if $running; then pid=\$(cat $PIDFILE); kill -TERM \$pid; \
for _ in \$(seq $STOP_TIMEOUT); do $(alive '$pid') || break; sleep 1; done; \
if $(alive '$pid'); then echo \"\$(hostname): still running after $STOP_TIMEOUT s\" >&2; \
exit 1; fi; echo \"\$(hostname): stopped\"; grep -h 'Stopped at step' $LOG | tail -n 1; \
else echo \"\$(hostname): not running\"; fi"
    ;;
  delete)
    if [[ "$FORCE" != 1 ]]; then
      # Refuse while any worker trains: deleting it now could lose the save in progress.
      check="if $running; then echo \"training on \$(hostname)\"; fi"
      if [[ "$DRY_RUN" == 1 ]]; then on_workers all "$check"; busy=""; else
        if ! busy=$(gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" \
            "${project_flag[@]}" --worker=all --command="$check"); then
          echo "could not ask the workers whether training runs; FORCE=1 deletes without" \
               "asking" >&2
          exit 3
        fi
      fi
      if [[ -n "$busy" ]]; then
        echo "$busy" >&2
        echo "training is still running: \`launch/tpu.sh stop\` first (it waits for the" \
             "checkpoint), or FORCE=1 to delete anyway" >&2
        exit 3
      fi
    fi
    if [[ "$QUEUED" == 1 ]]; then
      run gcloud compute tpus queued-resources delete "$QUEUED_NAME" --zone="$ZONE" \
        "${project_flag[@]}" --force --quiet
    else
      run gcloud compute tpus tpu-vm delete "$TPU_NAME" --zone="$ZONE" "${project_flag[@]}" --quiet
    fi
    ;;
  ssh)
    if [[ $# -gt 0 ]]; then on_workers all "$*"; else
      run gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" "${project_flag[@]}" --worker=0
    fi
    ;;
  -h|--help|help) usage ;;
  *) echo "unknown command: $cmd" >&2; usage >&2; exit 2 ;;
esac
