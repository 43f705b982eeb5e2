#!/usr/bin/env bash
# profile_vigild.sh: reproduce one bench/run scenario for vigild alone and show where it goes.
#
#   bench/lib/profile_vigild.sh start|stop|status|status-all|log|pss [N]   (N services, default 1000)
#
# Each scenario runs in a fresh PID namespace (like bench/run's trials) under a time limit:
#   start   perf record (-g, following the forked children: their pre-exec time is charged to
#           comm "vigild") from exec of vigild until N `sleep 100000` pids exist (not the stop)
#   stop    N services up, then perf record -p vigild from SIGTERM until vigild exits
#   status  N services up, then system-wide perf record over 50 `vigilctl status` runs
#   status-all  the same with `vigilctl status` of all N units (20 runs)
#   log     one service writing N MiB (default here 256) of numbered lines to a logs.file on
#           tmpfs; perf record of vigild from its start until the file is complete
#   pss     N services up, then vigild's smaps_rollup and largest mappings; with N <= 500 also a
#           valgrind massif run of the start (peak heap by allocation site)
# Output: the top of `perf report` (flat, by comm and symbol) or the memory breakdown, on stdout.
# Environment: BUILD (default build-bench), BENCHTOOL (default bench/results/.bin/benchtool),
# CALLGRAPH (perf record's call-graph option, default -g: frame pointers; "--call-graph dwarf"
# for a release build, which has none), KEEP=1 keeps the work folder (perf.data) and names it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
scenario=${1:?usage: profile_vigild.sh start|stop|status|status-all|log|pss [N]}
n=${2:-1000}
[ "$scenario" = log ] && n=${2:-256}
build=${BUILD:-$root/build-bench}
benchtool=${BENCHTOOL:-$root/bench/results/.bin/benchtool}
callgraph=${CALLGRAPH:--g}
vigild=$build/src/daemon/vigild
vigilctl=$build/src/cli/vigilctl
[ -x "$benchtool" ] || cc -O2 -o "$benchtool" "$here/benchtool.c"
work=$(mktemp -d /dev/shm/vigil-profile.XXXXXX)
trap 'if [ -n "${KEEP:-}" ]; then echo "kept: $work"; else rm -rf "$work"; fi' EXIT
mkdir -p "$work/units"
if [ "$scenario" = log ]; then
    bytes=$((n << 20))
    printf '{"command": ["%s", "writer", "%s", "%s/stamp"], "logs": {"file": "%s/out.log", "max_size": "1GiB", "keep": 2, "forward": false}}\n' \
        "$benchtool" "$bytes" "$work" "$work" > "$work/units/writer.json"
else
    echo '{"parallel": true}' > "$work/units/root.json" # as bench/run's vigil trials
    unit='{"command": ["/bin/sleep", "100000"]}'
    # As bench/lib/systems.py (MERGED_STREAMS_FROM): one pipe a service from 10,000 on.
    [ "$n" -ge 10000 ] && unit='{"command": ["/bin/sleep", "100000"], "logs": {"stderr": "stdout"}}'
    for i in $(seq -f '%05g' 1 "$n"); do
        echo "$unit" > "$work/units/svc$i.json"
    done
fi

inner="$work/inner.sh"
cat > "$inner" <<EOF
set -u
cd "$work"
up() { "$benchtool" waitcount $n "sleep 100000" 120 > /dev/null; }
case $scenario in
start)
    perf record -q -F 4000 $callgraph -o perf.data -- "$vigild" --units units --socket s.sock > out 2>&1 &
    p=\$!; t0=\$(date +%s%N); up; t1=\$(date +%s%N)
    echo "$n services up in \$(( (t1 - t0) / 1000000 )) ms (under perf)"
    v=\$(pgrep -x vigild); kill -INT \$p; wait \$p; kill -TERM \$v 2>/dev/null; sleep 1 ;;
stop)
    "$vigild" --units units --socket s.sock > out 2>&1 & v=\$!
    up; perf record -q -F 4000 $callgraph -o perf.data -p \$v & p=\$!; sleep 0.5
    t0=\$(date +%s%N); kill -TERM \$v; wait \$v; t1=\$(date +%s%N)
    echo "stop took \$(( (t1 - t0) / 1000000 )) ms"; kill -INT \$p; wait \$p ;;
status)
    "$vigild" --units units --socket s.sock > out 2>&1 & v=\$!
    up; perf record -q -F 4000 -a $callgraph -o perf.data -- \
        "$benchtool" timeexec 50 30 -- "$vigilctl" --socket s.sock status svc00001 |
        awk '{ s += \$1 } END { printf "mean vigilctl status: %.3f ms\n", s / NR / 1e6 }'
    kill -TERM \$v; wait \$v ;;
status-all)
    "$vigild" --units units --socket s.sock > out 2>&1 & v=\$!
    up; perf record -q -F 4000 -a $callgraph -o perf.data -- \
        "$benchtool" timeexec 20 30 -- "$vigilctl" --socket s.sock status |
        awk '{ s += \$1 } END { printf "mean vigilctl status (all): %.3f ms\n", s / NR / 1e6 }'
    kill -TERM \$v; wait \$v ;;
log)
    perf record -q -F 4000 $callgraph -o perf.data -- "$vigild" --units units --socket s.sock > out 2>&1 &
    want=\$(( ${bytes:-0} / 100 * 100 )); t0=\$(date +%s%N)
    until [ "\$(stat -c %s out.log 2>/dev/null || echo 0)" -ge \$want ]; do sleep 0.01; done
    t1=\$(date +%s%N); echo "\$want bytes in \$(( (t1 - t0) / 1000000 )) ms (from vigild's start)"
    kill -TERM \$(pgrep -x vigild); wait ;;
pss)
    "$vigild" --units units --socket s.sock > out 2>&1 & v=\$!
    up; sleep 1
    echo "== /proc/vigild/smaps_rollup"; grep -E '^(Rss|Pss|Pss_Anon|Pss_File|Private_Dirty)' /proc/\$v/smaps_rollup
    echo "== largest mappings by Pss (KiB)"
    awk '/^[0-9a-f]+-[0-9a-f]+ /{ name = (\$6 == "" ? "[anon]" : \$6) } /^Pss:/{ pss[name] += \$2 }
         END { for (k in pss) print pss[k], k }' /proc/\$v/smaps | sort -rn | head -8
    kill -TERM \$v; wait \$v ;;
esac
EOF
timeout -s KILL 300 unshare --pid --fork --mount-proc "$benchtool" init -- bash "$inner" || true
set +e +o pipefail   # the reports below are cut short with head: SIGPIPE is expected
if [ -f "$work/perf.data" ]; then
    echo "== perf: samples (at 4 kHz: 4000 samples = 1 s on a CPU)"
    perf report -i "$work/perf.data" --stdio 2>/dev/null | grep -m1 '^# Samples'
    echo "== perf: share of samples by command"
    perf report -i "$work/perf.data" --no-children --sort comm --stdio -g none 2>/dev/null |
        grep -E '^ +[0-9]' | head -6
    echo "== perf: top symbols (comm vigild/vigilctl: vigil's own code, incl. pre-exec children)"
    perf report -i "$work/perf.data" --no-children --comms vigild,vigilctl --sort comm,dso,sym \
        --stdio -g none 2>/dev/null | grep -E '^ +[0-9]' | head -30
fi
if [ "$scenario" = pss ] && [ "$n" -le 500 ] && command -v valgrind > /dev/null; then
    echo "== massif: peak heap of vigild starting $n services"
    cat > "$work/massif.sh" <<EOF
cd "$work"
valgrind --tool=massif --massif-out-file=massif.out "$vigild" --units units --socket s2.sock \
    > /dev/null 2>&1 & v=\$!
"$benchtool" waitcount $n "sleep 100000" 120 > /dev/null; sleep 1
kill -TERM \$v; wait \$v
EOF
    timeout -s KILL 300 unshare --pid --fork --mount-proc "$benchtool" init -- bash "$work/massif.sh" || true
    # The last detailed snapshot (services all up), top-level allocation sites only.
    python3 - "$work/massif.out" <<'PY'
import re, sys
snaps = open(sys.argv[1]).read().split("snapshot=")[1:]
detailed = [s for s in snaps if "heap_tree=detailed" in s or "heap_tree=peak" in s]
snap = detailed[-1]
total = int(re.search(r"mem_heap_B=(\d+)", snap).group(1))
print(f"heap in use: {total / 1024:.0f} KiB")
for line in snap.splitlines():
    m = re.match(r"^ n\d+: (\d+) (?:0x[0-9A-F]+: )?(.*)", line)
    if m:
        print(f"{int(m.group(1)) / 1024:10.0f} KiB  {m.group(2)[:150]}")
PY
fi
