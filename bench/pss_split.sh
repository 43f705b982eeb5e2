#!/usr/bin/env bash
# bench/pss_split.sh [VIGILD] [N]: the PSS of vigild and of its spawner helper, each on its own,
# with N `sleep` services (default 1000) in a parallel root, as PID 1 of a fresh PID namespace.
# bench/run's pss row gives their sum; this splits it (the helper is a fork of vigild: what it
# holds privately is what vigild changed after the fork). Needs root (unshare --pid).
set -euo pipefail
vigild=${1:-build-bench/src/daemon/vigild}
n=${2:-1000}
vigild=$(realpath "$vigild")
work=$(mktemp -d /dev/shm/vigil-pss.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir "$work/units"
echo '{"parallel": true}' >"$work/units/root.json"
for i in $(seq 1 "$n"); do
  echo '{"command": ["/bin/sleep", "100000"]}' >"$work/units/s$i.json"
done
timeout -s KILL 120 unshare --pid --fork --mount-proc bash -c '
  "$1" --units "$2/units" --socket "$2/c.sock" >/dev/null 2>&1 &
  for _ in $(seq 1 300); do
    [ "$(pgrep -c -x sleep || true)" -ge "$3" ] && break
    sleep 0.1
  done
  sleep 2 # settled
  for p in $(pgrep -x vigild); do
    role=helper; [ "$p" = "$(pgrep -o -x vigild)" ] && role=vigild
    awk -v role="$role" "/^(Pss|Private_Dirty):/ {v[\$1]=\$2} END {
      printf \"%-7s PSS %6.2f MiB  private dirty %6.2f MiB\\n\", role, v[\"Pss:\"]/1024, v[\"Private_Dirty:\"]/1024 }" \
      "/proc/$p/smaps_rollup"
  done
  kill %1; wait
' bash "$vigild" "$work" "$n"
