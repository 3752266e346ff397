#!/usr/bin/env bash
# Real-SLURM end-to-end test of the grid scripts (slurm/*.sbatch), on a throw-away one-node cluster.
#
#   .ci/slurm_e2e.sh [WORK_DIR]        (root; ~3-5 min on 2 cores)
#
# 1. installs slurmctld slurmd slurm-client munge with apt if missing, starts munged +
#    slurmctld + slurmd (.ci/slurm/start.sh, free ports, 2 fake GPUs so --gres=gpu:1 runs);
# 2. builds the small synthetic corpus and its manifests (or reuses E2E_CORPUS and
#    E2E_MANIFESTS), submits a small grid (x-vector naive LR grid on tiny_few, CPU-sized
#    overrides) through the project's real slurm/naive_lr.sbatch, waits (with a timeout),
#    checks every task COMPLETED and every run wrote eval/best/results.json, and collects
#    the runs with python -m lowres.results;
# 3. submits one longer run, requeues it (`scontrol requeue`) once it has saved a checkpoint
#    past step 0, waits, and checks from its train_log.txt that it resumed from that
#    checkpoint (a "resumed_at_step: N" line, N > 0, and no step logged twice) rather than
#    restarting, and that it then finished and was evaluated;
# 4. runs grid point 0 again as one job of 2 tasks (sbatch --ntasks=2: srun starts torchrun
#    per task, c10d rendezvous, gloo on CPU) and compares it with its one-process run of step 2:
#    the same optimiser and validation steps and step-0 validation; not bit-equal (each rank
#    normalises BatchNorm over its 4 of the 8 items, rank 0 logs its half's loss), so train
#    losses within 0.5 and test EERs within 2 points;
# 5. stops the cluster by PID (.ci/slurm/stop.sh) at the end, also on failure (trap).
# Exit 0 = pass, 77 = cannot run here (not root / no apt-get), anything else = failure.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PY=${LOWRES_PYTHON:-$ROOT/.venv/bin/python}
WORK=${1:-$(mktemp -d -t lowres-slurm-e2e.XXXXXX)}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
# Cluster state outside WORK: munged wants o+x on every folder above its socket, and
# pytest's tmp folders are 0700.
BASE=$(mktemp -d /tmp/lowres-slurm.XXXXXX)
chmod 755 "$BASE"
START=$(date +%s)
log() { echo "[e2e $(( $(date +%s) - START ))s] $*"; }
fail() { echo "[e2e] FAIL: $*" >&2; exit 1; }

if [[ $(id -u) != 0 ]]; then echo "[e2e] skip: needs root (SLURM daemons)"; exit 77; fi
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
   || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
  command -v apt-get >/dev/null || { echo "[e2e] skip: no SLURM and no apt-get"; exit 77; }
  log "installing slurmctld slurmd slurm-client munge"
  export DEBIAN_FRONTEND=noninteractive
  pkgs=(slurmctld slurmd slurm-client munge)
  apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${pkgs[@]}"; }
fi

free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
cleanup() {
  rc=$?
  if (( rc != 0 )) && [[ -d $WORK/logs ]]; then
    echo "[e2e] --- task logs (tails) ---" >&2
    for f in "$WORK"/logs/*.log; do [[ -f $f ]] && { echo "== $f" >&2; tail -n 15 "$f" >&2; }; done
    tail -n 20 "$BASE"/log/slurmctld.log >&2 2>/dev/null || true
  fi
  [[ -f $BASE/etc/slurm.conf ]] && bash "$ROOT/.ci/slurm/stop.sh" "$BASE" || true
  if (( rc == 0 )); then rm -rf "$BASE"; else echo "[e2e] SLURM state kept in $BASE" >&2; fi
  log "cluster stopped; exit $rc (work dir $WORK)"
}
trap cleanup EXIT

log "starting the one-node cluster in $BASE"
export SLURM_CI_CTLD_PORT=$(free_port) SLURM_CI_SLURMD_PORT=$(free_port) SLURM_CI_GPUS=2
bash "$ROOT/.ci/slurm/start.sh" "$BASE" >/dev/null
export SLURM_CONF=$BASE/etc/slurm.conf
sinfo -h -o "%P %a %D %t %C" | sed 's/^/[e2e] sinfo: /'

CORPUS=${E2E_CORPUS:-$WORK/corpus}
MANIFESTS=${E2E_MANIFESTS:-$WORK/manifests}
if [[ ! -d $CORPUS/voxceleb2 ]]; then
  log "synthetic corpus -> $CORPUS"
  "$PY" -m prepare.synthetic --out "$CORPUS" --preset small --seed 0 >/dev/null
fi
if [[ ! -f $MANIFESTS/tiny_few/train.csv ]]; then
  log "manifests -> $MANIFESTS"
  "$PY" -m prepare.voxceleb --data_folder "$CORPUS" --save_folder "$MANIFESTS" --jobs 2 \
    --few_speakers_per_gender 4 --val_trials_full 400 --val_trials_tiny 200 \
    --val_fraction 0.1 >/dev/null
fi

# CPU-sized overrides appended to every command of the grid (the run folders still encode
# the grid point).  Two tasks at a time on the 2-CPU node: 1 CPU each, 1 thread each.
CPU_SETS=(--set data_folder="$CORPUS" --set manifest_folder="$MANIFESTS" --set device=cpu
          --set precision=fp32 --set batch_size=8 --set crop_seconds=1.0 --set num_workers=0
          --set log_interval=5)
SBATCH_RES=(--cpus-per-task=1 --mem=3G --time=10 --chdir="$ROOT"
            --output="$WORK/logs/%x_%A_%a.log" --export=ALL,OMP_NUM_THREADS=1)
mkdir -p "$WORK/logs"
N_GRID=${E2E_GRID_RUNS:-4}

# ---- 1. a small grid through the real array script ------------------------------------------
GRID_ARGS=(xvector --subset tiny_few --runs_root "$WORK/runs" "${CPU_SETS[@]}"
           --set max_steps=12 --set val_interval=6)
"$PY" -m lowres.grid list naive_lr "${GRID_ARGS[@]:1}" --model xvector | head -n "$N_GRID" \
  | sed 's/^/[e2e] grid: /'
job=$(sbatch --parsable --array=0-$((N_GRID - 1))%2 "${SBATCH_RES[@]}" slurm/naive_lr.sbatch \
      "${GRID_ARGS[@]}")
log "submitted grid as array job $job (tasks 0-$((N_GRID - 1)), 2 at a time)"
timeout "${E2E_GRID_TIMEOUT:-240}" bash "$ROOT/.ci/slurm/wait.sh" "$job" 1 \
  | sed 's/^/[e2e] task /' || fail "grid job $job did not complete (timeout or failed task)"
status=$("$PY" -m lowres.grid list naive_lr "${GRID_ARGS[@]:1}" --model xvector | tail -n 1)
log "$status"
mapfile -t folders < <("$PY" - "$WORK/runs" "$N_GRID" <<'EOF'
import sys
from lowres.study.grids.runs import expand
for run in expand("naive_lr", sys.argv[1], models=["xvector"], subsets=["tiny_few"])[:int(sys.argv[2])]:
    print(run.output_folder)
EOF
)
for f in "${folders[@]}"; do
  [[ -s $f/eval/best/results.json ]] || fail "$f has no eval/best/results.json"
  grep -q '"eer"' "$f/eval/best/results.json" || fail "$f/eval/best/results.json has no EER"
done
log "all $N_GRID grid runs finished and were evaluated"
"$PY" -m lowres.results "$WORK/runs" --out "$WORK/summary" | sed 's/^/[e2e] /'
grep -c '^| x-vector | tiny_few' "$WORK/summary/results.md" >/dev/null \
  || fail "results table lacks the x-vector tiny_few row"

# resubmitting the finished grid runs nothing again
job2=$(sbatch --parsable --array=0-$((N_GRID - 1))%2 "${SBATCH_RES[@]}" slurm/naive_lr.sbatch \
       "${GRID_ARGS[@]}")
timeout 120 bash "$ROOT/.ci/slurm/wait.sh" "$job2" 1 >/dev/null || fail "resubmission $job2 failed"
n_skip=$(cat "$WORK"/logs/naive_lr_"${job2}"_*.log | grep -c "already finished, skipping" || true)
(( n_skip == N_GRID )) || fail "resubmission skipped $n_skip of $N_GRID finished runs"
log "resubmitted array $job2: all $N_GRID finished runs skipped"

# ---- 2. requeue a running task: it must resume from its checkpoint --------------------------
REQ_ARGS=(xvector --subset tiny_few --runs_root "$WORK/requeue" "${CPU_SETS[@]}"
          --set max_steps="${E2E_REQUEUE_STEPS:-120}" --set val_interval=10)
run_dir=$("$PY" -m lowres.grid task naive_lr "${REQ_ARGS[@]:1}" --model xvector --index 4 --print \
          | sed 's/.*--output_folder=//')
rjob=$(sbatch --parsable --array=4 "${SBATCH_RES[@]}" slurm/naive_lr.sbatch "${REQ_ARGS[@]}")
log "submitted $rjob (run folder $run_dir); waiting for a checkpoint past step 0"
ckpt_step() {  # highest step among the complete checkpoints, 0 if none
  local best=0 s f
  for f in "$run_dir"/save/CKPT*/CKPT.yaml; do
    # complete.ckpt is written last: a checkpoint cut short by the requeue is not one
    [[ -f $f && -f ${f%/CKPT.yaml}/complete.ckpt ]] || continue
    s=$(sed -n 's/^step: *\([0-9]*\).*/\1/p' "$f" | head -n 1)
    [[ -n $s ]] && (( s > best )) && best=$s
  done
  echo "$best"
}
for _ in $(seq 1 1200); do
  (( $(ckpt_step) > 0 )) && break
  state=$(squeue -h -j "${rjob}_4" -o %T 2>/dev/null || true)
  [[ -z $state ]] && fail "task ${rjob}_4 ended before it saved a checkpoint past step 0"
  sleep 0.2
done
step_at_requeue=$(ckpt_step)
(( step_at_requeue > 0 )) || fail "no checkpoint past step 0 within 240 s"
scontrol requeue "${rjob}_4"
log "requeued ${rjob}_4 with a checkpoint at step $step_at_requeue"
timeout "${E2E_REQUEUE_TIMEOUT:-240}" bash "$ROOT/.ci/slurm/wait.sh" "$rjob" 1 \
  | sed 's/^/[e2e] task /' || fail "requeued job $rjob did not complete"
restarts=$(scontrol -o show job "${rjob}_4" | sed -n 's/.*Restarts=\([0-9]*\).*/\1/p')
(( restarts >= 1 )) || fail "job ${rjob}_4 was not restarted (Restarts=$restarts)"
tlog=$run_dir/train_log.txt
resumed=$(sed -n 's/.*resumed_at_step: *\([0-9]*\).*/\1/p' "$tlog" | head -n 1)
[[ -n $resumed ]] || fail "$tlog has no resumed_at_step line: the task restarted from scratch"
(( resumed >= step_at_requeue )) \
  || fail "resumed at step $resumed, but a checkpoint at step $step_at_requeue existed"
# Training lines ("step: N, lr: ... - train loss: ...") up to the resumed step must each appear
# once: a restart from scratch would log them again (work after the checkpoint is redone).
dups=$("$PY" - "$tlog" "$resumed" <<'EOF'
import collections, re, sys
steps = [int(m.group(1)) for line in open(sys.argv[1])
         if (m := re.match(r"step: *(\d+),", line)) and "train" in line]
print(" ".join(str(s) for s, n in collections.Counter(steps).items()
               if n > 1 and s <= int(sys.argv[2])))
EOF
)
[[ -z $dups ]] || fail "steps up to $resumed logged twice ($dups): training was repeated"
[[ -s $run_dir/eval/best/results.json ]] || fail "requeued run has no eval/best/results.json"
grep -q "restart=1" "$WORK"/logs/naive_lr_"${rjob}"_4.log || fail "task log shows no restart=1"
log "requeued task resumed at step $resumed (checkpoint at $step_at_requeue) and finished"

# ---- 3. grid point 0 as one job of 2 tasks (srun + torchrun per task, c10d, gloo on CPU) -----
DDP_ARGS=(xvector --subset tiny_few --runs_root "$WORK/ddp" "${CPU_SETS[@]}"
          --set max_steps=12 --set val_interval=6 --set distributed_backend=gloo)
djob=$(sbatch --parsable --array=0 --ntasks=2 "${SBATCH_RES[@]}" slurm/naive_lr.sbatch \
       "${DDP_ARGS[@]}")
log "submitted grid point 0 as $djob with 2 tasks"
timeout "${E2E_DDP_TIMEOUT:-240}" bash "$ROOT/.ci/slurm/wait.sh" "$djob" 1 \
  | sed 's/^/[e2e] task /' || fail "2-task job $djob did not complete"
grep -q "2 task(s) x 1 process(es), rendezvous" "$WORK"/logs/naive_lr_"${djob}"_0.log \
  || fail "job $djob did not take the multi-task launch"
"$PY" - "${folders[0]}" "$WORK/ddp/${folders[0]#"$WORK/runs/"}" <<'EOF' \
  | sed 's/^/[e2e] /' || fail "the 2-task run differs from the one-process run"
import json, re, sys
from pathlib import Path
one, two = map(Path, sys.argv[1:])
def log(run):
    lines = (run / "train_log.txt").read_text().splitlines()
    ends = [m.group(0) for line in lines if (m := re.match(r"epoch: \d+, step: \d+", line))]
    loss = {int(m.group(1)): float(m.group(2)) for line in lines
            if (m := re.match(r"step: (\d+),.*train loss: ([\d.]+)", line))}
    step0 = next(line for line in lines if line.startswith("epoch: 0,"))
    return ends, loss, step0.split("valid EER%: ")[1]
def eers(run):
    results = json.loads((run / "eval" / "best" / "results.json").read_text())
    return {name: test["eer"] for name, test in results["test_sets"].items()}
assert "world_size=2" in (two / "command.txt").read_text()
(ends1, loss1, val1), (ends2, loss2, val2) = log(one), log(two)
assert ends1 == ends2 and ends1[-1].endswith("step: 12"), (ends1, ends2)
assert val1 == val2, (val1, val2)  # the same model and validation data at step 0
assert loss1.keys() == loss2.keys(), (loss1, loss2)
assert all(abs(loss1[s] - loss2[s]) < 0.5 for s in loss1), (loss1, loss2)
eer1, eer2 = eers(one), eers(two)
assert eer1.keys() == eer2.keys() and all(abs(eer1[k] - eer2[k]) < 0.02 for k in eer1)
print(f"1 process / 2 tasks: steps {ends2}, train loss {loss1} / {loss2}, EER {eer1} / {eer2}")
EOF
log "the 2-task run of grid point 0 matches its one-process run (steps, validations, losses, EER)"
log "PASS"
