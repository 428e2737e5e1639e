#!/usr/bin/env bash
# Start a real single-node SLURM cluster on this machine for the integration test (Debian 12, root, no systemd).
#
#   munged -> mariadbd -> slurmdbd -> slurmctld -> slurmd
#
# Installs the Debian packages when missing, writes slurm.conf from `slurmd -C`, starts each daemon that is not
# already running and records it in $STATE/started so that stop-slurm.sh stops exactly those. Accounting
# (slurmdbd + MariaDB on a unix socket) is on because the Snakemake SLURM plugin polls job states with sacct.
#
# Environment: FAKE_GPUS (default 2) gres/gpu entries backed by /dev/null, so `--gpus=N` jobs schedule on a
# machine without GPUs; PARTITION (default debug); WAIT_SECS (default 60) per daemon.
set -euo pipefail

FAKE_GPUS="${FAKE_GPUS:-2}"
PARTITION="${PARTITION:-debug}"
WAIT_SECS="${WAIT_SECS:-60}"
STATE=/run/fangprune-slurm
TAG="# fangprune test cluster"
DB_PASS=fangprune-test-only  # MariaDB listens on its unix socket only

say() { echo "[start-slurm $(date +%T)] $*" >&2; }
fail() { say "ERROR: $*"; exit 1; }
[ "$(id -u)" = 0 ] || fail "needs root"

wait_until() {  # seconds command...
  local end=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$end" ] || return 1
    sleep 0.3
  done
}

running() {  # pidfile process-name: alive and not a zombie
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
  [ "$(awk '{print $3}' "/proc/$pid/stat")" != Z ] && [ "$(cat "/proc/$pid/comm")" = "$2" ]
}

started() { grep -q "^$1 " "$STATE/started" 2>/dev/null || echo "$1 $2 $3" >> "$STATE/started"; }

# 1. packages
want=(munge slurmctld slurmd slurm-client slurmdbd mariadb-server)
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  say "apt-get install ${missing[*]}"
  policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then  # no service starts from postinst scripts: there is no init system
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ "$policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
fi
mkdir -p "$STATE" && touch "$STATE/started"

# 2. munge
install -d -o munge -g munge -m 0755 /run/munge
install -d -o munge -g munge -m 0700 /etc/munge /var/log/munge
install -d -o munge -g munge -m 0711 /var/lib/munge
if [ ! -s /etc/munge/munge.key ]; then
  mungekey --create --keyfile=/etc/munge/munge.key
  chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
fi
if ! running /run/munge/munged.pid munged; then
  runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
  started munged /run/munge/munged.pid munged
fi
munge_works() { munge -n | unmunge; }
wait_until "$WAIT_SECS" munge_works || fail "munged is not answering"

# 3. slurm.conf, sized from this machine
HOST=$(hostname -s)
getent hosts "$HOST" >/dev/null || echo "127.0.0.1 $HOST" >> /etc/hosts
NODE=$(slurmd -C | head -n1 | sed 's/ UpTime=.*//')
MEM=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$NODE")
NODE=$(sed "s/RealMemory=[0-9]*/RealMemory=$((MEM > 2048 ? MEM - 512 : MEM))/" <<<"$NODE")
GRES=""
mkdir -p /etc/slurm
if [ "$FAKE_GPUS" -gt 0 ]; then
  GRES=" Gres=gpu:$FAKE_GPUS"
  # one character device per fake GPU: slurmd checks that Count matches the File list
  devices=(/dev/null /dev/zero /dev/full /dev/random)
  [ "$FAKE_GPUS" -le "${#devices[@]}" ] || fail "FAKE_GPUS must be at most ${#devices[@]}"
  {
    echo "$TAG"
    for ((i = 0; i < FAKE_GPUS; i++)); do echo "NodeName=$HOST Name=gpu File=${devices[$i]}"; done
  } > /etc/slurm/gres.conf
fi
if [ -f /etc/slurm/slurm.conf ] && ! grep -qF "$TAG" /etc/slurm/slurm.conf; then
  cp -a /etc/slurm/slurm.conf "/etc/slurm/slurm.conf.before-fangprune"
fi
cat > /etc/slurm/slurm.conf <<CONF
$TAG
ClusterName=fangprune
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
# no cgroups in this container: track processes through /proc
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
ReturnToService=2
MinJobAge=600
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=5
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageTRES=gres/gpu
$( [ "$FAKE_GPUS" -gt 0 ] && echo GresTypes=gpu )
$NODE$GRES NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
install -d -o slurm -g slurm -m 0755 /run/slurm /var/log/slurm /var/lib/slurm /var/lib/slurm/slurmctld \
  /var/lib/slurm/slurmd

# 4. accounting database and slurmdbd
install -d -o mysql -g root -m 0755 /run/mysqld
[ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
db_up() { mysqladmin --socket=/run/mysqld/mysqld.sock ping; }
if ! db_up >/dev/null 2>&1; then
  nohup /usr/sbin/mariadbd --user=mysql --skip-networking --pid-file=/run/mysqld/mysqld.pid \
    --socket=/run/mysqld/mysqld.sock >> /var/log/slurm/mariadb.log 2>&1 < /dev/null &
  wait_until "$WAIT_SECS" db_up || fail "MariaDB did not start (/var/log/slurm/mariadb.log)"
  started mariadbd /run/mysqld/mysqld.pid mariadbd
fi
mysql --socket=/run/mysqld/mysqld.sock <<SQL
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
SQL
cat > /etc/slurm/slurmdbd.conf <<CONF
$TAG
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=slurm
LogFile=/var/log/slurm/slurmdbd.log
PidFile=/run/slurm/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
CONF
chown slurm:slurm /etc/slurm/slurmdbd.conf && chmod 0600 /etc/slurm/slurmdbd.conf  # slurmdbd insists
if ! running /run/slurm/slurmdbd.pid slurmdbd; then
  /usr/sbin/slurmdbd
  started slurmdbd /run/slurm/slurmdbd.pid slurmdbd
fi
dbd_up() { sacctmgr -n list cluster; }
wait_until "$WAIT_SECS" dbd_up || fail "slurmdbd did not start (/var/log/slurm/slurmdbd.log)"

# 5. controller and node daemon
if running /run/slurm/slurmctld.pid slurmctld; then
  scontrol reconfigure || true
else
  /usr/sbin/slurmctld
  started slurmctld /run/slurm/slurmctld.pid slurmctld
fi
ctld_up() { scontrol ping | grep -q "is UP"; }
wait_until "$WAIT_SECS" ctld_up || fail "slurmctld did not start (/var/log/slurm/slurmctld.log)"
if ! running /run/slurm/slurmd.pid slurmd; then
  /usr/sbin/slurmd
  started slurmd /run/slurm/slurmd.pid slurmd
fi
idle() { [ "$(sinfo -h -n "$HOST" -o %T)" = idle ]; }
if ! wait_until "$WAIT_SECS" idle; then
  scontrol update NodeName="$HOST" State=RESUME || true  # left down by an earlier run
  wait_until "$WAIT_SECS" idle || { sinfo -N -l >&2; fail "node $HOST is not idle"; }
fi
# root's association: what `sbatch -A root` needs
sacctmgr -n list assoc cluster=fangprune user=root format=account | grep -q root \
  || sacctmgr -i add user root account=root cluster=fangprune >/dev/null
say "up: $(sinfo -h -o '%P %D %T %G') (started: $(awk '{print $1}' "$STATE/started" | xargs))"
