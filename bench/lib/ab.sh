#!/usr/bin/env bash
# ab.sh: the start or the stop of N services, timed for several vigild binaries (and the floor)
# in turn.
#
#   bench/lib/ab.sh start|stop N TRIALS LABEL=VIGILD [LABEL=VIGILD...] [floor=FLOOR...]
#
# Each trial starts one system as in bench/run's fleet trials, in a fresh PID namespace: N
# `sleep 100000` services (merged streams from 10,000 on), `"parallel": true`; FLOOR is
# bench/floor (build-bench/bench/floor, built with vigild). A label that starts with "floor"
# runs a floor, and "+setsid" or "+cgroup" in it add floor's option of that name (the cgroups
# go under this shell's own cgroup2 folder): `floor+setsid+cgroup=build-bench/bench/floor`.
# Timed as bench/run times them:
#   start  from just before the exec of the supervisor until N services run (benchtool
#          waitcount); its CPU is that of the supervisor's own processes (vigild and its spawner
#          helper, every thread: /proc/PID/task/*/schedstat) at that moment;
#   stop   once all N run, from SIGTERM until no process of the trial is left alive (benchtool
#          waitgone); its CPU is the supervisor's from the signal to its exit (`perf stat -e
#          task-clock`).
# The systems take turns trial by trial, so a change of the machine's speed falls on all of
# them alike. Prints one line a trial (label, wall ms, CPU ms), then the medians.
# Environment: BENCHTOOL (default bench/results/.bin/benchtool, built when missing).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
usage="usage: ab.sh start|stop N TRIALS LABEL=VIGILD... [floor=FLOOR]"
phase=${1:?$usage}
n=${2:?$usage}
trials=${3:?$usage}
shift 3
case $phase in start|stop) ;; *) echo "$usage" >&2; exit 2 ;; esac
[ $# -gt 0 ] || { echo "ab.sh: no system to time" >&2; exit 2; }
[ "$phase" = start ] || command -v perf > /dev/null || { echo "ab.sh: needs perf" >&2; exit 2; }
benchtool=${BENCHTOOL:-$here/../results/.bin/benchtool}
[ -x "$benchtool" ] || { mkdir -p "$(dirname "$benchtool")"; cc -O2 -o "$benchtool" "$here/benchtool.c"; }
work=$(mktemp -d /dev/shm/vigil-ab.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/units"
echo '{"parallel": true}' > "$work/units/root.json"
unit='{"command": ["/bin/sleep", "100000"]}'
[ "$n" -ge 10000 ] && unit='{"command": ["/bin/sleep", "100000"], "logs": {"stderr": "stdout"}}'
for i in $(seq -f '%05g' 1 "$n"); do echo "$unit" > "$work/units/svc$i.json"; done

for spec in "$@"; do
    [ -x "${spec#*=}" ] || { echo "ab.sh: ${spec#*=} is not an executable" >&2; exit 2; }
done
# floor --cgroup's folder: in this shell's own cgroup on the cgroup2 mount.
cgroup_dir=$(awk '{ for (i = 7; i < NF; i++) if ($i == "-") { if ($(i + 1) == "cgroup2") { print $5; exit } break } }' /proc/self/mountinfo)$(sed -n 's/^0:://p' /proc/self/cgroup)
cgroup_dir=${cgroup_dir%/}/vigil-ab-floor.$$

# The CPU time, in ns, of process $1 and of its children that are not services (every thread).
cpu_of_tree='cpu_of_tree() {
    local t=0 p f
    for p in $1 $(cat /proc/$1/task/*/children 2> /dev/null); do
        [ "$(cat /proc/$p/comm 2> /dev/null)" = sleep ] && continue
        for f in /proc/$p/task/*/schedstat; do
            read -r c _ < "$f" 2> /dev/null && t=$((t + c))
        done
    done
    echo $t
}'

for _ in $(seq "$trials"); do
    for spec in "$@"; do
        label=${spec%%=*} bin=$(readlink -f "${spec#*=}")
        if [[ $label == floor* ]]; then
            opts=""
            [[ $label == *+setsid* ]] && opts+=" --setsid"
            [[ $label == *+cgroup* ]] && opts+=" --cgroup '$cgroup_dir'"
            cmd="'$bin'$opts $n -- /bin/sleep 100000"
        else
            cmd="'$bin' --units '$work/units' --socket '$work/s.sock'"
        fi
        if [ "$phase" = start ]; then
            body="$cpu_of_tree
\"$benchtool\" stamp t0 || true
$cmd > out 2>&1 & v=\$!
up=\$(\"$benchtool\" waitcount $n \"sleep 100000\" 120)
cpu=\$(cpu_of_tree \$v)
kill -TERM \$v; wait \$v
echo \"\$(( (\${up%% *} - \$(cat t0)) / 1000 )) \$(( cpu / 1000000 ))\""
        else
            body="$cmd > out 2>&1 & v=\$!
\"$benchtool\" waitcount $n \"sleep 100000\" 120 > /dev/null
sleep 0.3
perf stat -x, -e task-clock -p \$v -o ps.txt & p=\$!
sleep 0.2
\"$benchtool\" stamp t0 || true
kill -TERM \$v
gone=\$(\"$benchtool\" waitgone 60 \$p)
wait \$v
kill -INT \$p 2> /dev/null; wait \$p
echo \"\$(( (\${gone%% *} - \$(cat t0)) / 1000 )) \$(grep task-clock ps.txt | cut -d, -f1)\""
        fi
        cat > "$work/inner.sh" <<IN
set -u
cd "$work"
ulimit -n 20000
$body
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
