#!/usr/bin/env bash
# A single-node Slurm on this machine, on loopback: slurmctld + slurmd, one partition `local` with all CPUs and most of
# the memory, no cgroups, no accounting database. For tests/test_slurm.py (`make test-slurm`) and for trying the Slurm
# profile on one machine. Needs root: installs Debian's slurm-wlm and munge when missing, writes /etc/slurm/slurm.conf,
# starts munged, slurmctld and slurmd (again when already running: it restarts them), waits until the node is idle.
#   bash workflow/scripts/local_slurm.sh          # up
#   bash workflow/scripts/local_slurm.sh stop     # down
set -euo pipefail

DAEMONS="slurmd slurmctld slurmscriptd munged"
running() {
  for daemon in $DAEMONS; do pgrep -x "$daemon" >/dev/null && return 0; done
  return 1
}
stop() {  # SIGTERM, then up to 30 s for the daemons to save their state and exit, then SIGKILL
  for daemon in $DAEMONS; do pkill -x "$daemon" 2>/dev/null || true; done
  for _ in $(seq 30); do
    running || return 0
    sleep 1
  done
  for daemon in $DAEMONS; do pkill -9 -x "$daemon" 2>/dev/null || true; done
}
down() {  # stopped, and our slurm.conf removed: with it but no controller, every Slurm query (and so every snakemake
  # start, whose Slurm plugin asks scontrol) waits about 10 s for a timeout
  stop
  if grep -qs "^$MARKER" /etc/slurm/slurm.conf; then rm -f /etc/slurm/slurm.conf; fi
}
MARKER="# written by workflow/scripts/local_slurm.sh"
if [ "${1:-up}" = stop ]; then down; exit 0; fi
if [ "$(id -u)" != 0 ]; then echo "local_slurm.sh: needs root (installs packages, writes /etc/slurm)" >&2; exit 2; fi

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
  if ! { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      slurmctld slurmd slurm-client munge >/dev/null; }; then
    echo "local_slurm.sh: could not install slurm-wlm and munge with apt-get (no package mirror?)" >&2
    exit 3  # make test-slurm reports this as a skip: nothing here to test against
  fi
fi
stop

host=$(hostname -s)
cpus=$(nproc)
memory=$(( $(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) - 1024 ))
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge /etc/munge /var/lib/munge /var/log/munge
cat > /etc/slurm/slurm.conf <<CONF
$MARKER (removed by its stop)
ClusterName=iid-local
SlurmctldHost=${host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MpiDefault=none
MinJobAge=600
NodeName=${host} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${memory} State=UNKNOWN
PartitionName=local Nodes=${host} Default=YES MaxTime=INFINITE State=UP
CONF

if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge /run/munge 2>/dev/null || true
chmod 700 /etc/munge && chmod 400 /etc/munge/munge.key
runuser -u munge -- /usr/sbin/munged 2>/dev/null || /usr/sbin/munged --force
slurmctld
slurmd

for _ in $(seq 60); do
  state=$(sinfo -h -n "$host" -o %T 2>/dev/null || true)
  case "$state" in
    idle|mixed|allocated) echo "local_slurm.sh: node $host $state (${cpus} CPUs, ${memory} MB) in partition local"; exit 0 ;;
    down*|drain*) scontrol update nodename="$host" state=resume 2>/dev/null || true ;;
  esac
  sleep 1
done
echo "local_slurm.sh: the node did not come up; see /var/log/slurm/slurmctld.log and slurmd.log" >&2
exit 1
