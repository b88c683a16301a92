#!/usr/bin/env bash
# A real single-node Slurm cluster, with accounting, on this machine (Debian 12, as root, no systemd).
# For the tests marked `slurm`, the sharding benchmark, and trying the Slurm preset without a cluster.
#
#   bash launchers/slurm_local.sh up       install (apt, first time only), configure, start; idempotent
#   bash launchers/slurm_local.sh status   which of our daemons run; sinfo
#   bash launchers/slurm_local.sh down     cancel all jobs, stop the daemons this script started
#   bash launchers/slurm_local.sh purge    down, then delete the state dir and the config files we wrote
#
# Daemons, started in this order: munged, mariadbd, slurmdbd (accounting: submitit reads job states
# from `sacct`), slurmctld, `slurmd -N localhost`. Everything is named `localhost`, so the machine's
# hostname does not matter; no cgroups (proctrack/linuxproc, task/none). State, spool, logs, the
# database and PID files live under one dir, $SLURM_LOCAL_DIR (default /tmp/mllm_shapx_slurm); only
# the configs clients must find are written to /etc/slurm/ (marked as ours; a foreign one is refused).
# `down` stops only the processes whose PID files are in that dir. Job history survives down/up.
#
# Environment: SLURM_LOCAL_DIR, SLURM_LOCAL_CPUS (CPUs the node advertises, default 8: more concurrent
# array tasks than real cores), SLURM_LOCAL_DB_PORT (MariaDB TCP port on 127.0.0.1, default 16306).
set -euo pipefail

D=${SLURM_LOCAL_DIR:-/tmp/mllm_shapx_slurm}
CPUS=${SLURM_LOCAL_CPUS:-8}
DB_PORT=${SLURM_LOCAL_DB_PORT:-16306}
CLUSTER=localcluster
MARK="# written by mllm_shapx launchers/slurm_local.sh"
ETC=/etc/slurm
PACKAGES=(slurmctld slurmd slurm-client slurmdbd munge mariadb-server mariadb-client)

log() { echo "[slurm_local] $*" >&2; }
die() { log "error: $*"; exit 1; }

pid_of() { # pid_of NAME -> the live PID recorded in $D/run/NAME.pid, or nothing
    local f="$D/run/$1.pid" pid
    [[ -s $f ]] || return 0
    pid=$(tr -dc '0-9' <"$f")
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
    return 0
}

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
    local limit=$1 what=$2 t=0
    shift 2
    until "$@" >/dev/null 2>&1; do
        t=$((t + 1))
        ((t <= limit * 5)) || { log "timed out waiting for $what; logs in $D/log"; tail -n 20 "$D"/log/*.log >&2 || true; exit 1; }
        sleep 0.2
    done
}

install_packages() {
    local missing=0 cmd
    for cmd in slurmctld slurmd slurmdbd sbatch sacct munged mariadbd mariadb-install-db; do
        command -v "$cmd" >/dev/null || missing=1
    done
    ((missing)) || return 0
    log "installing ${PACKAGES[*]} (apt, --no-install-recommends)"
    local policy_created=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then # keep the packages' scripts from starting services
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        policy_created=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >"$D/log/apt.log" 2>&1; then
        apt-get update -qq >>"$D/log/apt.log" 2>&1
        apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >>"$D/log/apt.log" 2>&1 \
            || { tail -n 30 "$D/log/apt.log" >&2; ((policy_created)) && rm -f /usr/sbin/policy-rc.d; die "apt-get install failed"; }
    fi
    ((policy_created)) && rm -f /usr/sbin/policy-rc.d
    return 0
}

write_ours() { # write_ours PATH MODE: stdin -> PATH, refusing to overwrite a file we did not write
    local path=$1 mode=$2
    if [[ -e $path ]] && ! grep -qF "$MARK" "$path"; then
        die "$path exists and was not written by this script; is a real Slurm installed here? (not touching it)"
    fi
    mkdir -p "$(dirname "$path")"
    { echo "$MARK (state in $D)"; cat; } >"$path.tmp"
    chmod "$mode" "$path.tmp"
    mv "$path.tmp" "$path"
}

write_configs() {
    local mem_mb
    mem_mb=$(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo)
    write_ours "$ETC/slurm.conf" 644 <<EOF
ClusterName=$CLUSTER
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
MailProg=/bin/true
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/run/slurmctld.pid
SlurmdPidFile=$D/run/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=100000
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
JobRequeue=1
KillWait=10
InactiveLimit=0
MinJobAge=300
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
    write_ours "$ETC/slurmdbd.conf" 600 <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=root
LogFile=$D/log/slurmdbd.log
PidFile=$D/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurm-local
StorageLoc=slurm_acct_db
EOF
}

start_munged() {
    [[ -n $(pid_of munged) ]] && return 0
    if [[ ! -s /etc/munge/munge.key ]]; then
        if command -v mungekey >/dev/null; then mungekey --create --keyfile=/etc/munge/munge.key; else
            dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none; fi
    fi
    chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    install -d -o munge -g munge -m 755 /run/munge
    install -d -o munge -g munge -m 700 "$D/munge"
    runuser -u munge -- munged --pid-file="$D/munge/munged.pid" --log-file="$D/munge/munged.log" \
        --seed-file="$D/munge/munged.seed"
    wait_for 10 munged test -s "$D/munge/munged.pid"
    cp "$D/munge/munged.pid" "$D/run/munged.pid"
    wait_for 10 "munge credentials" bash -c 'munge -n | unmunge'
}

start_mariadbd() {
    [[ -n $(pid_of mariadbd) ]] && return 0
    install -d -o mysql -g mysql -m 750 "$D/mysql"
    if [[ ! -d $D/mysql/mysql ]]; then
        mariadb-install-db --no-defaults --user=mysql --datadir="$D/mysql" --auth-root-authentication-method=socket \
            --skip-test-db >"$D/log/mariadb-install.log" 2>&1 || { tail -n 20 "$D/log/mariadb-install.log" >&2; die "mariadb-install-db failed"; }
    fi
    # mariadbd runs as mysql and writes its PID file itself: that dir must be writable by it.
    install -d -o mysql -g mysql -m 755 "$D/mysqld"
    setsid mariadbd --no-defaults --user=mysql --datadir="$D/mysql" --socket="$D/mysqld/mysqld.sock" \
        --pid-file="$D/mysqld/mariadbd.pid" --port="$DB_PORT" --bind-address=127.0.0.1 --skip-name-resolve \
        --log-error="$D/log/mariadb.log" --innodb-buffer-pool-size=64M </dev/null >/dev/null 2>&1 &
    wait_for 60 mariadbd mariadb --no-defaults -S "$D/mysqld/mysqld.sock" -u root -e 'SELECT 1'
    cp "$D/mysqld/mariadbd.pid" "$D/run/mariadbd.pid"
    mariadb --no-defaults -S "$D/mysqld/mysqld.sock" -u root <<'SQL'
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm-local';
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm-local';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
SQL
}

start_slurmdbd() {
    [[ -n $(pid_of slurmdbd) ]] && return 0
    slurmdbd
    wait_for 30 slurmdbd sacctmgr -n show cluster
    if ! sacctmgr -n -P show cluster format=cluster | grep -qx "$CLUSTER"; then
        sacctmgr -i add cluster "$CLUSTER" >/dev/null
    fi
}

start_slurmctld() {
    [[ -n $(pid_of slurmctld) ]] && return 0
    slurmctld
    wait_for 30 slurmctld scontrol ping
}

start_slurmd() {
    [[ -n $(pid_of slurmd) ]] && return 0
    slurmd -N localhost
    wait_for 30 "an idle node" bash -c 'sinfo -h -N -o %T | grep -qE "^(idle|mixed|allocated)"'
}

up() {
    [[ $(id -u) == 0 ]] || die "run as root"
    local t0=$SECONDS
    mkdir -p "$D"/{state,spool,log,run}
    install_packages
    write_configs
    start_munged
    start_mariadbd
    start_slurmdbd
    start_slurmctld
    start_slurmd
    log "up in $((SECONDS - t0)) s: $(sinfo -h -o '%P %a %D node(s) %c CPUs %T') (state in $D)"
}

stop_pid() { # stop_pid NAME: TERM the recorded PID, wait, KILL if needed
    local name=$1 pid t
    pid=$(pid_of "$name")
    [[ -n $pid ]] || { rm -f "$D/run/$name.pid"; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for ((t = 0; t < 100; t++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then log "$name ($pid) ignored SIGTERM: SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; fi
    rm -f "$D/run/$name.pid"
    log "stopped $name ($pid)"
}

our_stepds() { # slurmstepd processes of our slurmd (they outlive it and ignore SIGTERM): cwd or log under $D
    local proc link
    for proc in /proc/[0-9]*; do
        [[ $(cat "$proc/comm" 2>/dev/null) == slurmstepd ]] || continue
        for link in "$proc/cwd" "$proc"/fd/*; do
            if [[ $(readlink "$link" 2>/dev/null) == "$D"/* ]]; then echo "${proc#/proc/}"; break; fi
        done
    done
    return 0
}

down() {
    [[ -d $D/run ]] || { log "not up (no $D)"; return 0; }
    local t0=$SECONDS t jobs pid
    if [[ -n $(pid_of slurmctld) ]]; then
        jobs=$(squeue -h -o %A 2>/dev/null | sort -u || true)
        if [[ -n $jobs ]]; then
            # shellcheck disable=SC2086
            scancel $jobs 2>/dev/null || true
            for ((t = 0; t < 150; t++)); do [[ -z $(squeue -h -o %A 2>/dev/null) ]] && break; sleep 0.2; done
        fi
    fi
    stop_pid slurmd
    for pid in $(our_stepds); do kill -KILL "$pid" 2>/dev/null || true; done
    stop_pid slurmctld
    stop_pid slurmdbd
    stop_pid mariadbd
    stop_pid munged
    log "down in $((SECONDS - t0)) s"
}

status() {
    local name pid
    for name in munged mariadbd slurmdbd slurmctld slurmd; do
        pid=$(pid_of "$name")
        if [[ -n $pid ]]; then echo "$name: running (pid $pid)"; else echo "$name: stopped"; fi
    done
    if [[ -n $(pid_of slurmctld) ]]; then sinfo; fi
}

purge() {
    down
    local f
    for f in "$ETC/slurm.conf" "$ETC/slurmdbd.conf"; do
        [[ -e $f ]] && grep -qF "$MARK" "$f" && rm -f "$f"
    done
    rm -rf "$D"
    log "purged $D"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    purge) purge ;;
    *) echo "usage: $0 up|down|status|purge" >&2; exit 2 ;;
esac
