#!/usr/bin/env bash
# .ci/slurm/stop.sh [BASE_DIR]: cancel all jobs, then stop exactly the daemons whose pid files we wrote.
BASE=${1:-${SLURM_CI_DIR:-${TMPDIR:-/tmp}/slurm-ci}}
export SLURM_CONF=$BASE/etc/slurm.conf
# slurmstepd (the per-job process) outlives slurmd, so drain jobs first
if ids=$(squeue -h -o %A 2>/dev/null) && [[ -n $ids ]]; then
  scancel $ids
  for _ in $(seq 1 100); do [[ -z $(squeue -h -o %A 2>/dev/null) ]] && break; sleep 0.1; done
fi
for pf in "$BASE/run/slurmd.pid" "$BASE/run/slurmctld.pid" "$BASE/munge/munged.pid"; do
  [[ -s $pf ]] || continue
  pid=$(cat "$pf")
  if kill -TERM "$pid" 2>/dev/null; then
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && { echo "force-killing $pid ($pf)" >&2; kill -KILL "$pid"; }
  fi
  rm -f "$pf"
done
