#!/usr/bin/env bash
# One-node SLURM on loopback from Debian packages, for tests and CI.  Run as root.
#   bash .ci/slurm.sh start|stop|status
# No systemd needed: daemons are started directly and tracked by their pid files.  Re-running
# `start` only checks; slurmctld/slurmd are restarted only when slurm.conf changed.
# Settings: SLURM_CPUS (default nproc), SLURM_MEM_MB (default what `slurmd -C` finds),
# SLURM_WAIT (seconds allowed for each wait, default 60).
set -Eeuo pipefail
trap 'die "line $LINENO failed: $BASH_COMMAND"' ERR
CONF=/etc/slurm/slurm.conf LOGS=/var/log/slurm WAIT=${SLURM_WAIT:-60}
MUNGE_PID=/run/munge/munged.pid CTLD_PID=/run/slurm/slurmctld.pid SLURMD_PID=/run/slurm/slurmd.pid

log() { echo "[slurm] $*"; }
die() {
  log "ERROR: $*"
  for f in $LOGS/slurmctld.log $LOGS/slurmd.log /var/log/munge/munged.log; do
    [ -f "$f" ] && { log "--- tail $f"; tail -n 15 "$f"; }
  done
  exit 1
} >&2
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1fs", b - a }'; }
retry() { local end=$((SECONDS + WAIT)); until "$@" &>/dev/null; do ((SECONDS < end)) || return 1; sleep 0.2; done; }
# zombies count as dead: PID 1 in containers may reap late, and kill -0 succeeds on zombies
dead() { ! kill -0 "$1" 2>/dev/null || grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }
# a pid file is stale unless its pid is a live process named like the file (munged.pid -> munged)
running() { local p; p=$(cat "$1" 2>/dev/null) && [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$(basename "$1" .pid)" ] && ! dead "$p"; }
munge_ok() { munge -n | unmunge; }
ctld_up() { scontrol ping | grep -q UP; }
node_idle() {
  local st; st=$(sinfo -h -N -o %T | head -n 1)
  [[ $st =~ ^(down|drain) ]] && scontrol update nodename="$(hostname -s)" state=resume
  [[ $st =~ ^(idle|mixed|allocated)$ ]]
}
job_state() { scontrol show job "$1" -o | grep -o 'JobState=[A-Z_]*' | cut -d= -f2; }
job_ended() { [[ ! $(job_state "$1") =~ ^(PENDING|CONFIGURING|RUNNING|COMPLETING)$ ]]; }

start_daemon() { # name pidfile command...; the daemons fork and write their pid file
  running "$2" && return
  rm -f "$2"; "${@:3}" || die "$1 did not start"; log "started $1"
}
stop_daemon() { # name pidfile
  if running "$2"; then
    local pid; pid=$(cat "$2"); kill "$pid" || true
    retry dead "$pid" || { log "$1 ignored SIGTERM, sending SIGKILL"; kill -9 "$pid"; }
    log "stopped $1 (pid $pid)"
  fi
  rm -f "$2"
}

install_packages() {
  local missing=() p
  for p in munge slurmctld slurmd slurm-client; do
    dpkg-query -W -f='${Status}' $p 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  local t=$EPOCHREALTIME; log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive # postinst cannot start services without systemd: harmless
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
    &>/tmp/slurm-apt.log || { tail -n 30 /tmp/slurm-apt.log >&2; die "apt-get failed"; }
  log "installed in $(since "$t")"
}

write_conf() { # sets CHANGED=1 when slurm.conf was (re)written
  local host cpus mem addr
  host=$(hostname -s)
  # slurmctld and slurmd bind to the address that gethostname() resolves to (NoInAddrAny below)
  addr=$(getent ahostsv4 "$(hostname)" | awk 'NR == 1 { print $1 }') || true
  if [[ $addr != 127.* ]]; then
    log "$(hostname) resolves to '${addr:-nothing}': adding '127.0.0.1 $(hostname)' as first line of /etc/hosts"
    printf '127.0.0.1 %s\n%s\n' "$(hostname)" "$(cat /etc/hosts)" >/etc/hosts # in place: may be a bind mount
  fi
  cpus=${SLURM_CPUS:-$(nproc)}
  mem=${SLURM_MEM_MB:-$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')}
  mkdir -p /var/spool/slurmctld /var/spool/slurmd $LOGS /run/slurm
  chown slurm:slurm /var/spool/slurmctld $LOGS /run/slurm
  cat >$CONF.new <<EOF
# Written by .ci/slurm.sh: one node, loopback only, munge auth, no cgroups, accounting or mail.
ClusterName=ci
SlurmctldHost=$host(127.0.0.1)
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES DefaultTime=00:10:00 MaxTime=02:00:00 State=UP
# bind every daemon (and srun) to the hostname's address, 127.0.0.1, not 0.0.0.0
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
SlurmUser=slurm
MailProg=/bin/true
StateSaveLocation=/var/spool/slurmctld
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
ProctrackType=proctrack/linuxproc
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmctldTimeout=10
SlurmdTimeout=10
KillWait=5
MinJobAge=300
MaxJobCount=10000
# the default batch_sched_delay=3 holds back batch jobs for up to 3 s
SchedulerParameters=batch_sched_delay=0
EOF
  if cmp -s $CONF.new $CONF; then rm $CONF.new; return; fi
  mv $CONF.new $CONF; CHANGED=1; log "wrote $CONF (node $host: CPUs=$cpus RealMemory=${mem}MB)"
}

start() {
  local t0=$EPOCHREALTIME t job state CHANGED=0
  install_packages
  write_conf
  if ((CHANGED)); then stop_daemon slurmd $SLURMD_PID; stop_daemon slurmctld $CTLD_PID; fi
  [ -s /etc/munge/munge.key ] || mungekey --create
  chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
  install -d -o munge -g munge /run/munge # systemd's RuntimeDirectory= would do this
  start_daemon munged $MUNGE_PID runuser -u munge -- /usr/sbin/munged --force
  retry munge_ok || die "munge -n | unmunge fails"
  start_daemon slurmctld $CTLD_PID /usr/sbin/slurmctld
  retry ctld_up || die "slurmctld not answering after ${WAIT}s"
  start_daemon slurmd $SLURMD_PID /usr/sbin/slurmd
  retry node_idle || die "node not idle after ${WAIT}s: $(sinfo -h -N -o '%N %T %E' 2>&1)"
  t=$EPOCHREALTIME # sbatch --wait polls every 2-10 s; polling scontrol is faster
  job=$(sbatch --parsable -J slurm.sh-check -t 1 -o /dev/null --wrap true) || die "sbatch failed"
  retry job_ended "$job" || die "job $job still queued after ${WAIT}s: $(squeue -h -j "$job" 2>&1)"
  state=$(job_state "$job") || true
  [ "$state" = COMPLETED ] || die "job $job (sbatch --wrap true) ended ${state:-?}"
  log "sbatch --wrap true completed in $(since "$t")"
  log "ready in $(since "$t0"): $(sinfo -h -N -o '%N partition=%P %T cpus=%c mem=%mMB')"
}

status() {
  local rc=0 d
  for d in munged:$MUNGE_PID slurmctld:$CTLD_PID slurmd:$SLURMD_PID; do
    if running "${d#*:}"; then log "${d%:*} running (pid $(cat "${d#*:}"))"; else log "${d%:*} not running"; rc=1; fi
  done
  command -v sinfo >/dev/null && { sinfo -N || true; }
  exit $rc # (return 1 would trip the ERR trap)
}

[ "$(id -u)" = 0 ] || die "must run as root"
case ${1:-} in
  start) start ;;
  stop) stop_daemon slurmd $SLURMD_PID; stop_daemon slurmctld $CTLD_PID; stop_daemon munged $MUNGE_PID ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
