#!/usr/bin/env bash
# One node's part of a grid task; slurm/task.sh runs it in the batch shell (one process per
# run) or under srun, once per task (multi-node / multi-GPU runs):
#     slurm/node_task.sh GRID MODEL INDEX [grid options ...]      (ROOT and PY set by task.sh)
# 1. LOWRES_STAGE=1: copy the shards the run reads (data_format shards) to node-local storage,
#    LOWRES_STAGE_DIR (default $SLURM_TMPDIR, else $TMPDIR, else /tmp, + /lowres-shards-USER),
#    with python -m lowres.data.staging: kept when an identical copy is there already
#    (same index.json, every file of its size; LOWRES_STAGE_VERIFY=1: and its sha256);
#    the run then reads them (--set shard_folder=THE_COPY).
# 2. python -m lowres.grid task GRID --index INDEX ... (through LOWRES_LAUNCH, e.g. torchrun,
#    when set), in the background so that signals reach this shell while it runs.
# 3. On exit (also on SIGTERM: requeue, time limit) removes the node-local copies, unless
#    LOWRES_STAGE_KEEP=1 or another task on the node still uses them (each task holds a
#    shared flock on LOWRES_STAGE_DIR/.in_use while it runs; the last one out cleans up).
set -uo pipefail
: "${ROOT:?set by slurm/task.sh}" "${PY:?set by slurm/task.sh}"
GRID=$1 MODEL=$2 INDEX=$3
shift 3
cd "$ROOT" || exit 2
stamp() { date -u +%FT%TZ; }

extra=()
dest=
if [[ ${LOWRES_STAGE:-0} != 0 ]]; then
  dest=${LOWRES_STAGE_DIR:-${SLURM_TMPDIR:-${TMPDIR:-/tmp}}/lowres-shards-$(id -un)}
  mkdir -p "$dest" || exit 2
  exec {in_use}>>"$dest/.in_use"
  flock -s "$in_use"
  command=$("$PY" -m lowres.grid task "$GRID" --model "$MODEL" --index "$INDEX" --print "$@") \
    || exit 2
  verify=()
  [[ ${LOWRES_STAGE_VERIFY:-0} != 0 ]] && verify=(--verify)
  staged=$("$PY" -m lowres.data.staging --dest "$dest" "${verify[@]}" --command "$command") || exit 2
  if [[ -n $staged ]]; then
    extra=(--set "shard_folder=$staged")
    echo "[$(stamp)] $(hostname): shards staged in $staged"
  fi
fi

cleanup() {
  [[ -n $dest && ${LOWRES_STAGE_KEEP:-0} == 0 ]] || return 0
  if flock -x -n "$in_use"; then  # no other task on this node uses the copies
    find "$dest" -mindepth 1 -maxdepth 1 ! -name .in_use ! -name .stage.lock -exec rm -rf {} +
    echo "[$(stamp)] $(hostname): removed the staged shards in $dest"
  fi
}

launch=()
[[ -n ${LOWRES_LAUNCH:-} ]] && launch=(--launch "$LOWRES_LAUNCH")
trap 'echo "[$(stamp)] $(hostname): SIGTERM, waiting for the run to stop"' TERM
"$PY" -m lowres.grid task "$GRID" --model "$MODEL" --index "$INDEX" "${launch[@]}" "$@" \
  "${extra[@]}" &
child=$!
rc=0
while :; do
  wait "$child"; rc=$?
  kill -0 "$child" 2>/dev/null || break
done
cleanup
exit "$rc"
