#!/usr/bin/env bash
# ab_stop.sh: the stop of N services, timed for several vigild binaries (and the floor) in turn.
#
#   bench/lib/ab_stop.sh N TRIALS LABEL=VIGILD [LABEL=VIGILD...] [floor=FLOOR]
#
# Each trial starts one system as in bench/run's fleet trials, in a fresh PID namespace: N
# `sleep 100000` services (merged streams from 10,000 on), `"parallel": true`; FLOOR is
# bench/floor (build-bench/bench/floor, built with vigild). Once all N run, it sends SIGTERM and
# times, as bench/run does, until no process of the trial is left alive (benchtool waitgone),
# and counts the CPU time of the supervisor from the signal to its exit (`perf stat -e
# task-clock`). The systems take turns trial by trial, so a change of the machine's speed
# falls on all of them alike. Prints one line a trial (label, wall ms, CPU ms), then the medians.
# Environment: BENCHTOOL (default bench/results/.bin/benchtool, built when missing).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
n=${1:?usage: ab_stop.sh N TRIALS LABEL=VIGILD... [floor=FLOOR]}
trials=${2:?}
shift 2
[ $# -gt 0 ] || { echo "ab_stop.sh: no system to time" >&2; exit 2; }
command -v perf > /dev/null || { echo "ab_stop.sh: needs perf" >&2; exit 2; }
benchtool=${BENCHTOOL:-$here/../results/.bin/benchtool}
[ -x "$benchtool" ] || { mkdir -p "$(dirname "$benchtool")"; cc -O2 -o "$benchtool" "$here/benchtool.c"; }
work=$(mktemp -d /dev/shm/vigil-abstop.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/units"
echo '{"parallel": true}' > "$work/units/root.json"
unit='{"command": ["/bin/sleep", "100000"]}'
[ "$n" -ge 10000 ] && unit='{"command": ["/bin/sleep", "100000"], "logs": {"stderr": "stdout"}}'
for i in $(seq -f '%05g' 1 "$n"); do echo "$unit" > "$work/units/svc$i.json"; done

for spec in "$@"; do
    [ -x "${spec#*=}" ] || { echo "ab_stop.sh: ${spec#*=} is not an executable" >&2; exit 2; }
done

for _ in $(seq "$trials"); do
    for spec in "$@"; do
        label=${spec%%=*} bin=$(readlink -f "${spec#*=}")
        if [ "$label" = floor ]; then
            cmd="'$bin' $n -- /bin/sleep 100000"
        else
            cmd="'$bin' --units '$work/units' --socket '$work/s.sock'"
        fi
        cat > "$work/inner.sh" <<IN
set -u
cd "$work"
ulimit -n 20000
$cmd > out 2>&1 & v=\$!
"$benchtool" waitcount $n "sleep 100000" 120 > /dev/null
sleep 0.3
perf stat -x, -e task-clock -p \$v -o ps.txt & p=\$!
sleep 0.2
"$benchtool" stamp t0 || true
kill -TERM \$v
gone=\$("$benchtool" waitgone 60 \$p)
wait \$v
kill -INT \$p 2> /dev/null; wait \$p
echo "\$(( (\${gone%% *} - \$(cat t0)) / 1000 )) \$(grep task-clock ps.txt | cut -d, -f1)"
rm -f t0 ps.txt
IN
        r=$(timeout -s KILL 300 unshare --pid --fork --mount-proc "$benchtool" init -- bash "$work/inner.sh" | tail -1)
        echo "$label ${r% *} ${r#* }" | awk '{ printf "%s %.1f ms wall, %.1f ms CPU\n", $1, $2 / 1000, $3 }'
    done
done | tee "$work/trials"
awk '{ w[$1] = w[$1] " " $2; c[$1] = c[$1] " " $5 }
     function med(s,   a, k, i, j, x) { k = split(s, a, " ");
         for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] < a[i]) { x = a[i]; a[i] = a[j]; a[j] = x }
         return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2 }
     END { for (l in w) printf "%s: median %.1f ms wall, %.1f ms CPU\n", l, med(w[l]), med(c[l]) }' "$work/trials"
