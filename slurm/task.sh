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
# Multi-node / multi-GPU (slurm/README.md): with more than one task (sbatch --nodes=N
# --ntasks-per-node=1) or more than one GPU per node (--gres=gpu:G, or LOWRES_NPROC_PER_NODE),
# srun starts slurm/node_task.sh once per task and each starts torchrun (c10d rendezvous on
# the first node, port LOWRES_RDZV_PORT, default 29500 + job id % 2000) with G processes;
# batch_size stays the global batch.  Requeue and resume as for one process.
# Node-local shards: LOWRES_STAGE=1 (see slurm/node_task.sh: LOWRES_STAGE_DIR,
# LOWRES_STAGE_VERIFY, LOWRES_STAGE_KEEP).
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

export ROOT PY
NTASKS=${SLURM_NTASKS:-1}
NPROC=${LOWRES_NPROC_PER_NODE:-${SLURM_GPUS_ON_NODE:-1}}
# In the background so that the trap runs while train.py works (bash defers traps
# until a foreground command returns); `wait` returns early when a signal arrives.
if (( NTASKS > 1 || NPROC > 1 )); then
  head=$(scontrol show hostnames "${SLURM_JOB_NODELIST:-$(hostname)}" | head -n 1)
  port=${LOWRES_RDZV_PORT:-$(( 29500 + ${SLURM_JOB_ID:-0} % 2000 ))}
  export LOWRES_LAUNCH="$(printf %q "$PY") -m torch.distributed.run --nnodes=$NTASKS --nproc_per_node=$NPROC \
--rdzv_backend=c10d --rdzv_endpoint=$head:$port --rdzv_id=${SLURM_JOB_ID:-0}"
  echo "[$(date -u +%FT%TZ)] $NTASKS task(s) x $NPROC process(es), rendezvous $head:$port"
  srun --ntasks="$NTASKS" --cpus-per-task="${SLURM_CPUS_PER_TASK:-1}" --kill-on-bad-exit=1 \
    bash "$ROOT/slurm/node_task.sh" "$GRID" "$MODEL" "$INDEX" "$@" &
else
  bash "$ROOT/slurm/node_task.sh" "$GRID" "$MODEL" "$INDEX" "$@" &
fi
child=$!
rc=0
while :; do
  wait "$child"; rc=$?
  kill -0 "$child" 2>/dev/null || break
done
echo "[$(date -u +%FT%TZ)] task $TASK_ID exit $rc"
exit "$rc"
