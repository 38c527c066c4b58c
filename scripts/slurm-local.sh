#!/usr/bin/env bash
# A real single-node Slurm on this machine, for the distributed-run tests: Debian's slurmctld +
# slurmd + munge as plain background processes (no systemd), state under $SLURM_LOCAL_DIR.
#   scripts/slurm-local.sh start   install if needed, configure, start, wait until the node is idle
#   scripts/slurm-local.sh stop    stop the daemons (by their pid files)
set -euo pipefail
dir=${SLURM_LOCAL_DIR:-/tmp/incubator-slurm}
conf=/etc/slurm/slurm.conf
host=$(hostname -s)

stop() {
    for pid in "$dir/slurmd.pid" "$dir/slurmctld.pid"; do
        [ -f "$pid" ] && kill "$(cat "$pid")" 2>/dev/null || true
    done
    sleep 1
}

start() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "starting a local Slurm needs root (it installs packages and runs slurmd)" >&2
        exit 1
    fi
    if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            slurmctld slurmd slurm-client munge >/dev/null
    fi
    # munge: Slurm 22.05 authenticates with it
    mkdir -p /etc/munge /var/lib/munge /run/munge /var/log/munge
    [ -f /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
    chown -R munge:munge /etc/munge /var/lib/munge /run/munge /var/log/munge
    chmod 0700 /etc/munge; chmod 0600 /etc/munge/munge.key
    if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        su -s /bin/sh munge -c "munged --force" || runuser -u munge -- munged --force
        sleep 1
        munge -n | unmunge >/dev/null
    fi

    if [ -f "$conf" ] && ! head -1 "$conf" | grep -q "written by incubator's slurm-local.sh"; then
        echo "$conf exists and is not ours: this machine has its own Slurm; not touching it" >&2
        exit 1
    fi
    stop
    mkdir -p "$dir/state" "$dir/spool" /etc/slurm
    topology=$(slurmd -C | head -1 | sed 's/^NodeName=[^ ]* //; s/ UpTime=.*//')
    cat > "$conf" <<CONF
# written by incubator's slurm-local.sh: a single-node test cluster
ClusterName=incubator-local
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# A requeued job may start again once its old credential expires (default 120 s); the tests
# requeue jobs and should not wait that long, nor force an early start (Slurm kills a job
# started with a revoked credential)
AuthInfo=cred_expire=10
NodeName=$host NodeAddr=127.0.0.1 $topology State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/jobcomp.txt
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
MailProg=/bin/true
MinJobAge=600
DependencyParameters=kill_invalid_depend
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
SchedulerParameters=sched_interval=1
CONF
    slurmctld
    slurmd -N "$host"
    for _ in $(seq 60); do
        state=$(sinfo -h -o %t 2>/dev/null | head -1 || true)
        if [ "$state" = "idle" ]; then
            echo "local Slurm is up: node $host idle ($conf, state in $dir)"
            return 0
        fi
        sleep 0.5
    done
    echo "local Slurm did not come up; see $dir/slurmctld.log and $dir/slurmd.log" >&2
    exit 1
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
