# A one-node Slurm cluster on this machine, for tests: sourced by tests/slurm_test.sh.
#
# slurm_install  installs Debian's slurm-wlm and munge if they are missing (root + apt-get only);
# slurm_start D  configures and starts munged, slurmctld and slurmd with every file under the
#                folder D (sockets, state, spool, logs, pid files) on two free ports; returns 1
#                (after stopping what it started) if the node is not idle within a minute;
# slurm_stop     stops every daemon slurm_start started (by its pid), and nothing else;
# slurm_wait S ID...  waits up to S seconds until none of the jobs ID is pending or running.
#
# What was seen working here (Debian 12, slurm-wlm 22.05, as root): munged runs as the munge
# user with its socket in a folder owned by munge and readable by all; slurm.conf names that
# socket (AuthInfo), SlurmUser=root, proctrack/linuxproc, task/none, select/cons_tres with
# CR_CPU, and the node with its CPU count. Clients find the cluster through SLURM_CONF.

SLURM_PIDS=()

slurm_install() {
    local need=()
    for c in munged slurmctld slurmd sbatch; do
        command -v "$c" >/dev/null 2>&1 || need+=("$c")
    done
    [ ${#need[@]} -eq 0 ] && return 0
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "missing ${need[*]} and cannot install them (needs root and apt-get)" >&2
        return 1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends slurm-wlm munge \
        >"${SLURM_LOG:-/dev/null}" 2>&1 || { echo "apt-get install slurm-wlm munge failed" >&2; return 1; }
}

# A TCP port nobody listens on (from a range unlikely to be used), or the empty string.
_free_port() {
    local p
    for _ in $(seq 50); do
        p=$((20000 + RANDOM % 20000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return
        fi
    done
}

slurm_start() {
    local d="$1" host cpus ctld_port d_port
    host="$(hostname)"
    cpus="$(nproc)"
    mkdir -p "$d/munge" "$d/state" "$d/spool" "$d/log"
    # munged (as the munge user) must reach its folder: D and the folders above it need x for all
    chmod 755 "$d"
    if [ "$(id -u)" != 0 ]; then
        echo "a test cluster needs root here (munged runs as the munge user, slurmd as root)" >&2
        return 1
    fi
    [ -r /etc/munge/munge.key ] || { echo "/etc/munge/munge.key missing" >&2; return 1; }
    chown munge:munge "$d/munge" && chmod 755 "$d/munge"
    runuser -u munge -- munged --socket="$d/munge/munge.socket" --pid-file="$d/munge/munged.pid" \
        --log-file="$d/munge/munged.log" --seed-file="$d/munge/munged.seed" || {
        echo "munged did not start: $(tail -n 2 "$d/munge/munged.log" 2>/dev/null)" >&2
        return 1
    }
    SLURM_PIDS+=("$(cat "$d/munge/munged.pid")")
    ctld_port="$(_free_port)"
    d_port="$(_free_port)"
    [ -n "$ctld_port" ] && [ -n "$d_port" ] && [ "$ctld_port" != "$d_port" ] || {
        echo "no free ports" >&2
        slurm_stop
        return 1
    }
    cat >"$d/slurm.conf" <<EOF
ClusterName=granularity-test
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$ctld_port
SlurmdPort=$d_port
AuthType=auth/munge
AuthInfo=socket=$d/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$d/state
SlurmdSpoolDir=$d/spool
SlurmctldPidFile=$d/slurmctld.pid
SlurmdPidFile=$d/slurmd.pid
SlurmctldLogFile=$d/log/slurmctld.log
SlurmdLogFile=$d/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
MinJobAge=3600
NodeName=$host CPUs=$cpus State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    export SLURM_CONF="$d/slurm.conf"
    slurmctld -f "$SLURM_CONF" || { echo "slurmctld did not start" >&2; slurm_stop; return 1; }
    _slurm_adopt "$d/slurmctld.pid"
    slurmd -f "$SLURM_CONF" || { echo "slurmd did not start" >&2; slurm_stop; return 1; }
    _slurm_adopt "$d/slurmd.pid"
    local t
    for t in $(seq 60); do
        if [ "$(sinfo -h -o %t 2>/dev/null)" = "idle" ]; then
            echo "slurm: one node ($host, $cpus CPUs) idle after ${t} s; config $SLURM_CONF"
            return 0
        fi
        sleep 1
    done
    echo "the node is not idle after 60 s: $(tail -n 3 "$d/log/slurmctld.log" 2>/dev/null)" >&2
    slurm_stop
    return 1
}

# Record the pid a daemon wrote to its pid file (it forks before writing it).
_slurm_adopt() {
    local f="$1"
    for _ in $(seq 50); do
        if [ -s "$f" ]; then
            SLURM_PIDS+=("$(cat "$f")")
            return
        fi
        sleep 0.1
    done
}

slurm_stop() {
    local p i
    # the slurm daemons first (they use munged), then munged
    for ((i = ${#SLURM_PIDS[@]} - 1; i >= 0; i--)); do
        p="${SLURM_PIDS[$i]}"
        kill "$p" 2>/dev/null || continue
        for _ in $(seq 100); do
            kill -0 "$p" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$p" 2>/dev/null && kill -9 "$p" 2>/dev/null
    done
    SLURM_PIDS=()
}

slurm_wait() {
    local limit="$1" t ids
    shift
    ids="$(IFS=,; echo "$*")"
    for ((t = 0; t < limit; t += 2)); do
        if [ -z "$(squeue -h -j "$ids" -t PENDING,RUNNING,CONFIGURING,COMPLETING 2>/dev/null)" ]; then
            return 0
        fi
        sleep 2
    done
    echo "jobs $ids still queued after $limit s:" >&2
    squeue -j "$ids" >&2
    return 1
}

# The state of job ID (e.g. COMPLETED, FAILED, CANCELLED; every task of an array job).
slurm_states() {
    scontrol show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p' | sort -u | tr '\n' ' '
}
