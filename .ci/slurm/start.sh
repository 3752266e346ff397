#!/usr/bin/env bash
# .ci/slurm/start.sh [BASE_DIR] -- throw-away single-node SLURM (munged + slurmctld + slurmd), no
# systemd.
# Run as root. Then: export SLURM_CONF=$BASE/etc/slurm.conf      Stop: .ci/slurm/stop.sh [BASE_DIR]
# Optional env:
#   SLURM_CI_CTLD_PORT / SLURM_CI_SLURMD_PORT   ports (default 6817 / 6818; pick free ones so
#                                               that two clusters on one machine do not meet)
#   SLURM_CI_AUTH=munge|none    munge (default), or none = no authentication at all (auth/none; tested on 22.05)
#   SLURM_CI_PARTITIONS="debug gpu"   partitions over the one node; the first is the default
#   SLURM_CI_GPUS=N             N fake GPUs (gres/gpu on dummy char devices -> CUDA_VISIBLE_DEVICES set)
#   SLURM_CI_CPUS=N SLURM_CI_MEM_MB=M  pretend the node is bigger (config_overrides; oversubscribes)
set -euo pipefail
BASE=${1:-${SLURM_CI_DIR:-${TMPDIR:-/tmp}/slurm-ci}}
AUTH=${SLURM_CI_AUTH:-munge}
PARTS=(${SLURM_CI_PARTITIONS:-debug})
GPUS=${SLURM_CI_GPUS:-0}
CTLD_PORT=${SLURM_CI_CTLD_PORT:-6817}
SLURMD_PORT=${SLURM_CI_SLURMD_PORT:-6818}
HOST=$(hostname -s)
mkdir -p "$BASE"/{etc,state,spool,log,run,munge}
chmod 755 "$BASE/munge"      # munged: socket dir must be o+x and not group/other-writable
conf=$BASE/etc/slurm.conf

if [[ -n ${SLURM_CI_CPUS:-} ]]; then      # fake node size
  NODE="CPUs=$SLURM_CI_CPUS RealMemory=${SLURM_CI_MEM_MB:-$((SLURM_CI_CPUS*4096))}"
  EXTRA="SlurmdParameters=config_overrides"
else                                      # real topology from slurmd, 90% of RAM
  NODE="$(slurmd -C | head -1 | sed -e 's/^NodeName=[^ ]* //' -e 's/ RealMemory=.*//') RealMemory=$(( $(awk '/MemTotal/{print $2}' /proc/meminfo) / 1024 * 9 / 10 ))"
  EXTRA=""
fi

if [[ $AUTH == munge ]]; then
  [[ -f $BASE/munge/munge.key ]] || { dd if=/dev/urandom of="$BASE/munge/munge.key" bs=1024 count=1 status=none; chmod 400 "$BASE/munge/munge.key"; }
  munged --key-file="$BASE/munge/munge.key" --socket="$BASE/munge/munge.socket" \
         --pid-file="$BASE/munge/munged.pid" --log-file="$BASE/log/munged.log" \
         --seed-file="$BASE/munge/munged.seed"            # forks; writes munged.pid
  AUTHCONF="AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$BASE/munge/munge.socket,cred_expire=5"
else
  AUTHCONF="AuthType=auth/none
CredType=cred/none
AuthInfo=cred_expire=5"
fi

if (( GPUS > 0 )); then
  mkdir -p "$BASE/dev"; rm -f "$BASE"/dev/fakegpu*
  for ((i=0; i<GPUS; i++)); do mknod "$BASE/dev/fakegpu$i" c 1 3; done   # clones of /dev/null
  echo "NodeName=$HOST Name=gpu File=$BASE/dev/fakegpu[0-$((GPUS-1))]" > "$BASE/etc/gres.conf"
  EXTRA+=$'\nGresTypes=gpu'; NODE+=" Gres=gpu:$GPUS"
fi

cat > "$conf" <<CONF
ClusterName=ci
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
$AUTHCONF
StateSaveLocation=$BASE/state
SlurmdSpoolDir=$BASE/spool
SlurmctldPidFile=$BASE/run/slurmctld.pid
SlurmdPidFile=$BASE/run/slurmd.pid
SlurmctldLogFile=$BASE/log/slurmctld.log
SlurmdLogFile=$BASE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$BASE/log/jobcomp.txt
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_interval=1,bf_interval=1
EnforcePartLimits=ALL
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
MinJobAge=3600
$EXTRA
NodeName=$HOST NodeAddr=127.0.0.1 $NODE State=UNKNOWN
CONF
def=YES
for p in "${PARTS[@]}"; do
  echo "PartitionName=$p Nodes=ALL Default=$def MaxTime=INFINITE State=UP" >> "$conf"; def=NO
done
export SLURM_CONF=$conf

slurmctld -f "$conf"                 # forks; writes run/slurmctld.pid
slurmd -f "$conf" -N "$HOST"         # forks; writes run/slurmd.pid

st=
for _ in $(seq 1 150); do             # wait (max ~30 s) until the node is schedulable
  st=$(sinfo -h -n "$HOST" -o %t 2>/dev/null | head -1 || true)
  [[ $st == idle ]] && break
  sleep 0.2
done
[[ $st == idle ]] || { echo "SLURM not ready (node state '$st')" >&2; tail -n 20 "$BASE"/log/*.log >&2; exit 1; }
echo "export SLURM_CONF=$conf"
