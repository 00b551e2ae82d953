#!/usr/bin/env bash
# Cloud TPU VMs and pod slices: create, set up every worker, train, follow logs, stop, delete.
#
#   launch/tpu.sh create            # the TPU VM / pod slice (QUEUED=1: a queued resource)
#   launch/tpu.sh wait              # until the TPU is READY (a queued resource ACTIVE)
#   launch/tpu.sh setup             # copy the checkout's git-tracked files to every worker,
#                                   # run worker_setup.sh there
#   launch/tpu.sh train [FLAGS...]  # the same command on all workers, in the background;
#                                   # returns once every worker has started (or one failed)
#   launch/tpu.sh recover [FLAGS...]  # after a preemption: delete what is left, create, wait,
#                                   # setup, train; the run resumes from its last checkpoint
#   launch/tpu.sh logs              # follow worker 0's log
#   launch/tpu.sh status            # the TPU's state, training on each worker, the next step
#   launch/tpu.sh stop              # SIGTERM; returns once every worker has saved and exited
#   launch/tpu.sh delete            # delete the TPU (refused while training runs; FORCE=1)
#   launch/tpu.sh ssh [CMD]         # run CMD on all workers (or open a shell on worker 0)
#   launch/tpu.sh help              # this text
#
# Every knob is an environment variable (defaults in brackets):
#   TPU_NAME [looc]  ACCELERATOR [v4-32]  PROJECT [gcloud default]
#   ZONE [by ACCELERATOR: v4 us-central2-b, v5litepod us-west4-a, v5p us-east5-a,
#         v6e us-east5-b, v2/v3 us-central1-b]; `create` refuses a zone Cloud TPU's zone table
#         lists for other TPU generations only (ZONE_CHECK=0 skips that)
#   RUNTIME [by ACCELERATOR: v5litepod-* v2-alpha-tpuv5-lite, v5p-* v2-alpha-tpuv5,
#            v6e-* v2-alpha-tpuv6e, else tpu-ubuntu2204-base]
#   SPOT [0]: 1 = spot capacity (cheaper, preemptible: training saves and resumes, `recover`)
#   QUEUED [1 for v5litepod/v6e, else 0]: create through `queued-resources create`
#   QUEUED_NAME [$TPU_NAME-qr]  the queued resource's name
#   CONFIG [configs/looc_in100_r50.py]  WORKDIR (required for train; gs://bucket/run, and
#     gs:// is required where the slice has more than one worker)
#   TFDS_DATA_DIR (passed to training; gs:// path of prepared tfds data)
#   CACHE_DIR [$WORKDIR/jax_cache] persistent compilation cache
#   REMOTE_DIR [~/leave_one_out]  VENV [~/looc-venv] (made by worker_setup.sh)
#   PYTHON_VERSION [3.11]  LOG [~/looc.log]  PIDFILE [~/looc.pid]
#   START_TIMEOUT [600] seconds `train` waits for "Starting a new run" / "Resumed from step"
#   WAIT_INTERVAL [30] seconds between `wait`'s polls
#   STOP_TIMEOUT [900] seconds `stop` waits for the save  FORCE [0]  DRY_RUN [0]: print only
# Extra arguments to `train` and `recover` go to leave_one_out.main (e.g.
# --config.train.num_epochs=200).
set -euo pipefail

SCRIPT=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
REPO=$(dirname "$(dirname "$SCRIPT")")
TPU_NAME=${TPU_NAME:-looc}
ACCELERATOR=${ACCELERATOR:-v4-32}
generation=${ACCELERATOR%%-*}
size=${ACCELERATOR##*-}
case "$generation" in
  v5litepod|v5e) default_runtime=v2-alpha-tpuv5-lite; default_queued=1; default_zone=us-west4-a ;;
  v6e) default_runtime=v2-alpha-tpuv6e; default_queued=1; default_zone=us-east5-b ;;
  v5p) default_runtime=v2-alpha-tpuv5; default_queued=0; default_zone=us-east5-a ;;
  v4) default_runtime=tpu-ubuntu2204-base; default_queued=0; default_zone=us-central2-b ;;
  *) default_runtime=tpu-ubuntu2204-base; default_queued=0; default_zone=us-central1-b ;;
esac
ZONE=${ZONE:-$default_zone}
ZONE_CHECK=${ZONE_CHECK:-1}
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
START_TIMEOUT=${START_TIMEOUT:-600}
WAIT_INTERVAL=${WAIT_INTERVAL:-30}
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

die() { echo "tpu.sh: $*" >&2; exit 2; }

on_workers() {  # on_workers WORKERS COMMAND: run a shell command on TPU workers over ssh
  run gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" "${project_flag[@]}" \
    --worker="$1" --command="$2"
}

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$SCRIPT"; }

# Zones that Cloud TPU's zone table (cloud.google.com/tpu/docs/regions-zones, 2025-09) lists per
# generation. `create` refuses a zone listed for other generations only (v6e in us-central2-b,
# a v4-only zone); a zone missing from the table is allowed with a warning.
zones_of() {
  case "$1" in
    v2) echo "us-central1-a us-central1-b us-central1-c us-central1-f europe-west4-a asia-east1-c" ;;
    v3) echo "us-central1-a us-central1-b us-central1-f europe-west4-a" ;;
    v4) echo "us-central2-b" ;;
    v5litepod|v5e) echo "us-central1-a us-south1-a us-west1-c us-west4-a us-east5-a us-east5-b us-east5-c" ;;
    v5p) echo "us-central1-a us-east5-a us-east5-b us-east5-c us-south1-a" ;;
    v6e) echo "us-central1-b us-east1-d us-east5-a us-east5-b us-east5-c us-east4-a us-east4-b us-west1-c europe-west4-a" ;;
  esac
}

check_zone() {
  [[ "$ZONE_CHECK" == 1 ]] || return 0
  local own others="" g
  own=" $(zones_of "$generation") "
  [[ -n "${own// /}" ]] || return 0  # a generation the table does not know
  [[ "$own" == *" $ZONE "* ]] && return 0
  for g in v2 v3 v4 v5litepod v5p v6e; do
    [[ "$g" == "$generation" ]] && continue
    [[ " $(zones_of "$g") " == *" $ZONE "* ]] && others+=" $g"
  done
  if [[ -n "$others" ]]; then
    die "ZONE=$ZONE offers${others} TPUs, not $generation ($ACCELERATOR); $generation zones:" \
        "$(zones_of "$generation") (ZONE=...; ZONE_CHECK=0 skips this check)"
  fi
  echo "tpu.sh: warning: ZONE=$ZONE is not in the zone table for $generation" \
       "($(zones_of "$generation")); trying it" >&2
}

# Workers (VMs) of the slice: v2/v3/v4/v5p count TensorCores, 8 per VM; v5e/v6e count chips,
# 8 on a one-VM slice (up to -8), 4 per VM above.
num_workers() {
  [[ "$size" =~ ^[0-9]+$ ]] || { echo 1; return; }
  case "$generation" in
    v5litepod|v5e|v6e) if (( size <= 8 )); then echo 1; else echo $(( size / 4 )); fi ;;
    *) if (( size <= 8 )); then echo 1; else echo $(( size / 8 )); fi ;;
  esac
}

# The TPU's state: READY (a queued resource: ACTIVE) when it can run, else gcloud's word for it
# (PREEMPTED, SUSPENDED, CREATING, WAITING_FOR_RESOURCES, ...), or NOT_FOUND.
tpu_state() {
  local out
  if [[ "$QUEUED" == 1 ]]; then
    out=$(gcloud compute tpus queued-resources describe "$QUEUED_NAME" --zone="$ZONE" \
      "${project_flag[@]}" --format='value(state.state)' 2>&1) || out="ERROR $out"
  else
    out=$(gcloud compute tpus tpu-vm describe "$TPU_NAME" --zone="$ZONE" "${project_flag[@]}" \
      --format='value(state)' 2>&1) || out="ERROR $out"
  fi
  case "$out" in
    ERROR*NOT_FOUND*|ERROR*"not found"*|ERROR*"was not found"*) echo NOT_FOUND ;;
    ERROR*) echo "UNKNOWN (${out#ERROR })" ;;
    ACTIVE) echo READY ;;
    *) echo "$out" ;;
  esac
}

# What to do next in each state (status and wait print it).
next_step() {
  case "$1" in
    READY) echo "launch/tpu.sh setup (once), then launch/tpu.sh train" ;;
    NOT_FOUND) echo "launch/tpu.sh recover (or create, wait, setup, train)" ;;
    PREEMPTED|SUSPENDED|SUSPENDING|FAILED|TERMINATED|STOPPED|STOPPING)
      echo "launch/tpu.sh recover: it deletes the TPU, creates it again, sets it up and trains;" \
           "the run resumes from its last checkpoint" ;;
    DELETING) echo "wait until it is gone, then launch/tpu.sh recover" ;;
    UNKNOWN*) echo "check gcloud (auth, PROJECT, ZONE, TPU_NAME)" ;;
    *) echo "launch/tpu.sh wait (it is being created)" ;;
  esac
}

# Shell snippets run on a worker. The training process's pid is in $PIDFILE; a process counts
# as alive unless gone or a zombie (an exited process no init has reaped yet, as in containers).
alive() { echo "ps -o stat= -p $1 2> /dev/null | grep -qv '^Z'"; }
running="test -f $PIDFILE && $(alive "\$(cat $PIDFILE)")"
started="grep -qE 'Starting a new run|Resumed from step' $LOG 2> /dev/null"

cmd=${1:-}
[[ -n "$cmd" ]] || { usage >&2; exit 1; }
shift

create() {
  check_zone
  if [[ "$QUEUED" == 1 ]]; then
    run gcloud compute tpus queued-resources create "$QUEUED_NAME" --node-id="$TPU_NAME" \
      --zone="$ZONE" "${project_flag[@]}" --accelerator-type="$ACCELERATOR" \
      --runtime-version="$RUNTIME" "${spot_flag[@]}"
    echo "requested; \`launch/tpu.sh wait\` returns once the slice is ACTIVE" >&2
  else
    run gcloud compute tpus tpu-vm create "$TPU_NAME" --zone="$ZONE" "${project_flag[@]}" \
      --accelerator-type="$ACCELERATOR" --version="$RUNTIME" "${spot_flag[@]}"
  fi
}

wait_ready() {
  if [[ "$DRY_RUN" == 1 ]]; then
    if [[ "$QUEUED" == 1 ]]; then
      run gcloud compute tpus queued-resources describe "$QUEUED_NAME" --zone="$ZONE" \
        "${project_flag[@]}" --format='value(state.state)'
    else
      run gcloud compute tpus tpu-vm describe "$TPU_NAME" --zone="$ZONE" \
        "${project_flag[@]}" --format='value(state)'
    fi
    return 0
  fi
  local state
  while true; do
    state=$(tpu_state)
    echo "$(date +%T) $TPU_NAME: $state" >&2
    case "$state" in
      READY) echo "ready; next: $(next_step READY)" >&2; return 0 ;;
      PREEMPTED|SUSPENDED|SUSPENDING|FAILED|TERMINATED|STOPPED|STOPPING|DELETING|NOT_FOUND|UNKNOWN*)
        echo "$TPU_NAME is $state; next: $(next_step "$state")" >&2; return 1 ;;
    esac
    sleep "$WAIT_INTERVAL"
  done
}

setup() {
  local archive=${TMPDIR:-/tmp}/leave_one_out-$TPU_NAME.tar.gz
  [[ "$DRY_RUN" == 1 ]] || archive=$(mktemp "${TMPDIR:-/tmp}/leave_one_out-$TPU_NAME.XXXXXX")
  # Only what git tracks (a venv, data or outputs inside the checkout stay here); a new file
  # goes along once `git add`ed.
  if [[ "$DRY_RUN" == 1 ]]; then
    echo "+ git -C $REPO ls-files | tar -czf $archive -C $REPO --null -T -"
  else
    git -C "$REPO" rev-parse --is-inside-work-tree > /dev/null 2>&1 ||
      die "setup copies the files git tracks, but $REPO is not a git checkout"
    git -C "$REPO" ls-files -z | while IFS= read -r -d '' f; do
      [[ -e "$REPO/$f" ]] && printf '%s\0' "$f"  # a tracked file deleted here is not sent
    done | tar -czf "$archive" -C "$REPO" --null -T -
    echo "setup: $(tar -tzf "$archive" | wc -l) tracked files -> $archive" >&2
  fi
  run gcloud compute tpus tpu-vm scp "$archive" "$TPU_NAME:leave_one_out-setup.tar.gz" \
    --zone="$ZONE" "${project_flag[@]}" --worker=all
  [[ "$DRY_RUN" == 1 ]] || rm -f "$archive"
  on_workers all "mkdir -p $REMOTE_DIR && tar -xzf leave_one_out-setup.tar.gz -C $REMOTE_DIR \
&& bash $REMOTE_DIR/launch/worker_setup.sh --venv $VENV --extra tpu --python $PYTHON_VERSION"
}

train() {
  [[ -n "${WORKDIR:-}" ]] || { echo "WORKDIR is required (e.g. gs://bucket/looc_in100)" >&2; exit 2; }
  local workers
  workers=$(num_workers)
  if (( workers > 1 )) && [[ "$WORKDIR" != gs://* ]]; then
    die "WORKDIR=$WORKDIR is local, but $ACCELERATOR has $workers workers that must share one" \
        "workdir (each would write its own disk): use a gs:// path"
  fi
  local cache=${CACHE_DIR:-$WORKDIR/jax_cache} data_env="" extra=""
  [[ -n "${TFDS_DATA_DIR:-}" ]] && data_env="TFDS_DATA_DIR=$TFDS_DATA_DIR "
  [[ $# -eq 0 ]] || extra=$(printf ' %q' "$@")
  # Start the process, then wait until it has restored or started its run (config, data and
  # checkpoint checked) or has exited: a start-up error is reported here, with its log.
  on_workers all "if $running; then echo \"already training (pid \$(cat $PIDFILE))\" >&2; \
exit 3; fi; cd $REMOTE_DIR || exit 1; ${data_env}nohup $VENV/bin/python -m leave_one_out.main \
--distributed --config=$CONFIG --workdir=$WORKDIR --compilation_cache_dir=$cache$extra \
> $LOG 2>&1 < /dev/null & echo \$! > $PIDFILE; pid=\$!; \
for _ in \$(seq $START_TIMEOUT); do $started && break; $(alive '$pid') || break; sleep 1; done; \
if $started; then echo \"\$(hostname): started (pid \$pid): \$(grep -hE 'Starting a new run|Resumed from step' $LOG | tail -n 1)\"; \
elif $(alive '$pid'); then echo \"\$(hostname): still starting after $START_TIMEOUT s (pid \$pid); follow it with launch/tpu.sh logs\"; \
else echo \"\$(hostname): training exited during start-up; the end of $LOG:\" >&2; tail -n 20 $LOG >&2; exit 1; fi"
}

not_ready() {  # not_ready STATE: the message for a command that needs a READY TPU
  echo "$TPU_NAME is $1 (zone $ZONE); next: $(next_step "$1")" >&2
  exit 1
}

delete() {  # delete [STATE]: the TPU's state when the caller knows it
  local state=${1:-READY}
  [[ -n "${1:-}" || "$DRY_RUN" == 1 ]] || state=$(tpu_state)
  if [[ "$state" == NOT_FOUND ]]; then echo "$TPU_NAME: nothing to delete" >&2; return 0; fi
  if [[ "$FORCE" != 1 && "$state" == READY ]]; then
    # Refuse while any worker trains: deleting it now could lose the save in progress. A TPU
    # that is not READY (preempted, suspended) runs nothing: no need to ask.
    local check="if $running; then echo \"training on \$(hostname)\"; fi" busy=""
    if [[ "$DRY_RUN" == 1 ]]; then on_workers all "$check"; else
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
}

case "$cmd" in
  create) create ;;
  wait) wait_ready ;;
  setup) setup ;;
  train) train "$@" ;;
  recover)
    [[ -n "${WORKDIR:-}" ]] || { echo "WORKDIR is required (the run to resume)" >&2; exit 2; }
    state=READY
    [[ "$DRY_RUN" == 1 ]] || state=$(tpu_state)
    echo "recover: $TPU_NAME is $state" >&2
    case "$state" in
      READY) ;;  # up: set up again (cheap when the venv is there) and train
      UNKNOWN*) not_ready "$state" ;;
      NOT_FOUND) create; wait_ready ;;
      PREEMPTED|SUSPENDED|SUSPENDING|FAILED|TERMINATED|STOPPED|STOPPING)
        FORCE=1 delete "$state"; create; wait_ready ;;
      *) wait_ready ;;  # being created
    esac
    setup
    train "$@"
    ;;
  logs)
    on_workers 0 "tail -n 100 -f $LOG"
    ;;
  status)
    if [[ "$DRY_RUN" != 1 ]]; then
      state=$(tpu_state)
      echo "$TPU_NAME ($ACCELERATOR, zone $ZONE): $state"
      [[ "$state" == READY ]] || { echo "next: $(next_step "$state")"; exit 1; }
    fi
    on_workers all "if $running; then echo \"\$(hostname): training (pid \$(cat $PIDFILE))\"; \
else echo \"\$(hostname): not running; next: launch/tpu.sh train (resumes from the last \
checkpoint of WORKDIR)\"; fi; tail -n 2 $LOG 2> /dev/null"
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
  delete) delete ;;
  ssh)
    if [[ $# -gt 0 ]]; then on_workers all "$*"; else
      run gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" "${project_flag[@]}" --worker=0
    fi
    ;;
  -h|--help|help) usage ;;
  *) echo "unknown command: $cmd" >&2; usage >&2; exit 2 ;;
esac
