#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, from Debian's packages, without systemd: for gradbench's
# Slurm tests and for trying `--launcher slurm` on a laptop. Stops only what it started.
#
#   tools/slurm-local.sh start    install slurm-wlm and munge if absent, start munged, slurmctld, slurmd;
#                                 prints the SLURM_CONF to export (clients: sbatch, squeue, submitit)
#   tools/slurm-local.sh stop     stop the daemons this script started; keep the packages
#   tools/slurm-local.sh status   sinfo of the local cluster, or why it is not running
#
# State, logs and the configuration live in $GRADBENCH_SLURM_DIR (default /tmp/gradbench-slurm).
# Needs root (the daemons run as root; munged as the munge user).
set -euo pipefail

DIR=${GRADBENCH_SLURM_DIR:-/tmp/gradbench-slurm}
CONF=$DIR/slurm.conf
export SLURM_CONF=$CONF

die() { echo "slurm-local: $*" >&2; exit 1; }

install_packages() {
    command -v slurmctld >/dev/null && command -v munged >/dev/null && return
    [ "$(id -u)" = 0 ] || die "slurm-wlm and munge are not installed, and installing them needs root"
    echo "slurm-local: installing slurm-wlm and munge (Debian packages)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >/dev/null \
        || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >/dev/null; } \
        || die "apt-get could not install slurm-wlm and munge"
}

write_conf() {
    local host node
    host=$(hostname -s)
    node=$(slurmd -C | head -1)  # NodeName=... CPUs=... RealMemory=..., as slurmd sees this machine
    mkdir -p "$DIR/state" "$DIR/spool"
    cat > "$CONF" <<CONF
ClusterName=gradbench-local
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
# no cgroups, no systemd: plain process tracking
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# serial array tasks start 1 s apart instead of 3
SchedulerParameters=batch_sched_delay=0
ReturnToService=2
MpiDefault=none
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
$node State=UNKNOWN
PartitionName=local Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
}

running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start() {
    [ "$(id -u)" = 0 ] || die "start needs root (slurmd runs jobs as their users)"
    install_packages
    mkdir -p "$DIR"
    if running "$DIR/slurmctld.pid" && running "$DIR/slurmd.pid"; then
        echo "slurm-local: already running; export SLURM_CONF=$CONF" >&2
        return
    fi
    write_conf
    if ! pgrep -x munged >/dev/null; then
        install -d -o munge -g munge -m 0755 /run/munge
        [ -s /etc/munge/munge.key ] || runuser -u munge -- mungekey -c 2>/dev/null \
            || die "no /etc/munge/munge.key, and mungekey could not make one"
        runuser -u munge -- munged
        cp /run/munge/munged.pid "$DIR/munged.started"  # ours to stop
    fi
    slurmctld -f "$CONF"
    slurmd -f "$CONF"
    local deadline=$((SECONDS + 60))
    until sinfo -h -o %T 2>/dev/null | grep -qx idle; do
        [ $SECONDS -lt $deadline ] || die "the node did not become idle within 60 s; see $DIR/slurmctld.log and $DIR/slurmd.log"
        sleep 0.5
    done
    echo "slurm-local: running (node idle); export SLURM_CONF=$CONF" >&2
}

stop() {
    local pidfile pid
    for pidfile in "$DIR/slurmd.pid" "$DIR/slurmctld.pid" "$DIR/munged.started"; do
        if running "$pidfile"; then
            pid=$(cat "$pidfile")
            kill "$pid"
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -9 "$pid" 2>/dev/null || true
        fi
        rm -f "$pidfile"
    done
    echo "slurm-local: stopped" >&2
}

status() {
    running "$DIR/slurmctld.pid" || die "not running (no slurmctld started from $DIR)"
    sinfo
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
