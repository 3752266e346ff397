# shellcheck shell=bash
# Sourced by slurm/<grid>.sbatch (with GRID set): runs array task $SLURM_ARRAY_TASK_ID of
# the grid, i.e. line number SLURM_ARRAY_TASK_ID (from 0) of
#     python -m lowres.grid list $GRID --model MODEL [options]
# Usage (from the repository root, or via `python -m lowres.grid sbatch GRID`):
#     sbatch --array=0-23%3 slurm/naive_lr.sbatch xvector [--subset S] [--set key=value] ...
# MODEL is optional (default: all models of the grid, in `list` order).
#
# Preemption / time limit: the job is submitted with --requeue and --signal=B:USR1@120.
# On USR1 (120 s before the limit) this shell requeues the task; SLURM then stops
# train.py (SIGTERM) and reruns the same command later, and train.py resumes from its
# last checkpoint in the run folder.  A preempted task (PreemptMode=REQUEUE) or one
# requeued by hand (`scontrol requeue`) resumes the same way.  A finished run
# (OUT/eval/best/results.json) is skipped, so resubmitting a whole array is safe.
#
# Environment: LOWRES_ROOT (repository; default the submit folder), LOWRES_PYTHON
# (default: .venv/bin/python of the repository, else python3), LOWRES_DRY_RUN=1 (print
# the command of this task, run nothing).  sbatch's own variables override the #SBATCH
# defaults: SBATCH_PARTITION, SBATCH_ACCOUNT, SBATCH_TIMELIMIT, SBATCH_GRES,
# SBATCH_CONSTRAINT, SBATCH_MEM_PER_NODE, ... (and command-line options override both).

set -uo pipefail
: "${GRID:?slurm/task.sh is sourced by slurm/<grid>.sbatch, which sets GRID}"
: "${ROOT:?slurm/<grid>.sbatch sets ROOT to the repository}"
cd "$ROOT" || exit 2
PY=${LOWRES_PYTHON:-}
if [[ -z $PY ]]; then
  if [[ -x $ROOT/.venv/bin/python ]]; then PY=$ROOT/.venv/bin/python; else PY=python3; fi
fi
MODEL=all
if [[ $# -gt 0 && $1 != -* ]]; then MODEL=$1; shift; fi
INDEX=${SLURM_ARRAY_TASK_ID:?not an array task: submit with sbatch --array=0-N ...}
TASK_ID=${SLURM_JOB_ID:-none}
[[ -n ${SLURM_ARRAY_JOB_ID:-} ]] && TASK_ID=${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}

echo "[$(date -u +%FT%TZ)] grid=$GRID model=$MODEL index=$INDEX job=$TASK_ID" \
     "restart=${SLURM_RESTART_COUNT:-0} host=$(hostname)"
if [[ -n ${LOWRES_DRY_RUN:-} ]]; then
  exec "$PY" -m lowres.grid task "$GRID" --model "$MODEL" --index "$INDEX" --print "$@"
fi

requeue() {
  echo "[$(date -u +%FT%TZ)] $1 received: requeueing $TASK_ID (resumes from its checkpoint)"
  scontrol requeue "$TASK_ID"
}
trap 'requeue USR1' USR1

# In the background so that the trap runs while train.py works (bash defers traps
# until a foreground command returns); `wait` returns early when a signal arrives.
"$PY" -m lowres.grid task "$GRID" --model "$MODEL" --index "$INDEX" "$@" &
child=$!
rc=0
while :; do
  wait "$child"; rc=$?
  kill -0 "$child" 2>/dev/null || break
done
echo "[$(date -u +%FT%TZ)] task $TASK_ID exit $rc"
exit "$rc"
