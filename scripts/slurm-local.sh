#!/usr/bin/env bash
# A real one-node Slurm cluster on 127.0.0.1, for the tests (tests/slurm_cli.rs) and for trying the
# sbatch scripts of scripts/slurm/ by hand. Everything lives under DIR: the munge key and socket,
# slurm.conf, the controller's state, the node's spool, logs and pid files.
#
#   scripts/slurm-local.sh start DIR   install (once, as root: Debian's slurm-wlm and munge), start
#                                      munged, slurmctld and slurmd, wait until the node is idle;
#                                      prints the SLURM_CONF to export
#   scripts/slurm-local.sh stop DIR    cancel every job, stop the daemons (bounded waits)
#
# Exit code 3 from start: Slurm is not installed and cannot be (not root, or no apt-get); the
# message says why, so that a test can say it is skipped instead of passing silently.
set -euo pipefail

cmd="${1:?usage: slurm-local.sh start|stop DIR}"
dir="$(mkdir -p "${2:?usage: slurm-local.sh start|stop DIR}" && cd "$2" && pwd)"
conf="$dir/slurm.conf"

install() {
    command -v slurmctld >/dev/null && command -v munged >/dev/null && return 0
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
        echo "slurm-local: slurm-wlm and munge are not installed, and only root with apt-get installs them here" >&2
        exit 3
    fi
    echo "slurm-local: installing slurm-wlm and munge with apt-get (once per machine)" >&2
    export DEBIAN_FRONTEND=noninteractive
    log="$(mktemp)"
    if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends slurm-wlm munge; } >"$log" 2>&1; then
        cat "$log" >&2
        echo "slurm-local: apt-get install slurm-wlm munge failed (log above)" >&2
        exit 3
    fi
    rm -f "$log"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Waits up to $1 seconds for the command after it to succeed.
wait_for() {
    local limit=$1 start=$SECONDS
    shift
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS - start > limit)); then return 1; fi
        sleep 0.5
    done
}

write_conf() {
    cat >"$conf" <<EOF
ClusterName=flipstream-test
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/builtin
# a job whose dependency can never be met fails instead of waiting forever
SchedulerParameters=kill_invalid_depend
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
KillWait=5
NodeName=localhost NodeAddr=127.0.0.1 CPUs=8 State=UNKNOWN
PartitionName=test Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
}

start() {
    install
    stop_daemons
    rm -rf "$dir/state" "$dir/spool" "$dir/munge"
    mkdir -p "$dir/munge" "$dir/state" "$dir/spool" "$dir/log"
    chmod 700 "$dir/munge"
    dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "$dir/munge/munge.key"
    munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
        --pid-file="$dir/munge/munged.pid" --log-file="$dir/log/munged.log" \
        --seed-file="$dir/munge/munged.seed"
    wait_for 10 test -S "$dir/munge/munge.socket" || { echo "slurm-local: munged did not start" >&2; exit 1; }
    write_conf
    export SLURM_CONF="$conf"
    slurmctld -f "$conf"
    slurmd -f "$conf" -N localhost
    if ! wait_for 30 bash -c "sinfo -h -N -o '%t' | grep -Eq '^(idle|mix|alloc)'"; then
        scontrol update nodename=localhost state=resume >/dev/null 2>&1 || true
        if ! wait_for 15 bash -c "sinfo -h -N -o '%t' | grep -Eq '^(idle|mix|alloc)'"; then
            echo "slurm-local: the node did not come up; logs in $dir/log" >&2
            tail -n 20 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
            exit 1
        fi
    fi
    echo "SLURM_CONF=$conf"
}

# Stops whichever daemons of this DIR run (pid files), waiting up to 10 s for each.
stop_daemons() {
    for pidfile in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munge/munged.pid"; do
        [ -f "$pidfile" ] || continue
        pid="$(cat "$pidfile")"
        if kill "$pid" 2>/dev/null; then
            wait_for 10 bash -c "! kill -0 $pid" || kill -9 "$pid" 2>/dev/null || true
        fi
        rm -f "$pidfile"
    done
}

stop() {
    if [ -f "$conf" ]; then
        SLURM_CONF="$conf" scancel --full --quiet --user "$(id -un)" 2>/dev/null || true
    fi
    stop_daemons
}

case "$cmd" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: slurm-local.sh start|stop DIR" >&2; exit 2 ;;
esac
