#!/usr/bin/env bash
# Stop the daemons that start-slurm.sh started (newest first), by PID file; daemons it found running stay up.
set -uo pipefail
STATE=/run/fangprune-slurm
[ -s "$STATE/started" ] || exit 0
alive() { [ -r "/proc/$1/stat" ] && [ "$(awk '{print $3}' "/proc/$1/stat")" != Z ]; }
rc=0
while read -r name pidfile comm; do
  pid=$(cat "$pidfile" 2>/dev/null) || continue
  alive "$pid" && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$comm" ] || continue
  kill -TERM "$pid"
  for _ in $(seq 150); do alive "$pid" || break; sleep 0.2; done
  if alive "$pid"; then kill -KILL "$pid"; rc=1; fi
  echo "[stop-slurm] stopped $name ($pid)" >&2
done < <(tac "$STATE/started")
rm -f "$STATE/started"
exit "$rc"
