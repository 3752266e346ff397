#!/usr/bin/env bash
# .ci/slurm/wait.sh JOBID [POLL_SECONDS]: block until every task of JOBID has left the queue
# (fixed-interval poll, unlike sbatch --wait's 2/8/32 s back-off), print one line per task
# "<jobid>[_<task>] <STATE> <exit:signal>", exit 0 only if every task is COMPLETED.
# Needs the finished job records still in slurmctld (MinJobAge large; no accounting needed).
# Wrap in `timeout` in CI: a job whose dependency can never be met stays PENDING forever.
id=$1; poll=${2:-1}; errs=0
while :; do
  if out=$(squeue -h -j "$id" -o %i 2>&1); then [[ -z $out ]] && break; errs=0
  elif [[ $out == *"Invalid job id"* ]]; then break
  elif (( ++errs > 5 )); then echo "squeue keeps failing: $out" >&2; exit 2; fi
  sleep "$poll"
done
scontrol -o show job "$id" | awk '
  { for (i=1;i<=NF;i++){ split($i,kv,"="); f[kv[1]]=substr($i,length(kv[1])+2) }
    t = (f["ArrayTaskId"]!="") ? f["ArrayJobId"] "_" f["ArrayTaskId"] : f["JobId"]
    print t, f["JobState"], f["ExitCode"]; if (f["JobState"]!="COMPLETED") bad=1; delete f }
  END { exit bad }'
