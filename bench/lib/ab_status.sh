#!/usr/bin/env bash
# ab_status.sh: two vigilctl binaries, in turn, on `status` of every unit of one vigild.
#
#   bench/lib/ab_status.sh VIGILD N RUNS CTL_A CTL_B
#
# Starts VIGILD as PID 1 of a fresh PID namespace with N `sleep` services (merged streams, as
# bench/run's vigil trials from 10,000 on), waits until all N run, then times RUNS runs of
# `CTL status` for A and for B, alternating, each until its output is read (every row
# checked there). Prints the median and the minimum of each, in ms. The interleaving keeps a
# change of the machine's speed out of the comparison (bench/README.md, "Status of all").
set -euo pipefail
vigild=${1:?usage: ab_status.sh VIGILD N RUNS CTL_A CTL_B}
n=${2:?} runs=${3:?} a=${4:?} b=${5:?}
work=$(mktemp -d /dev/shm/vigil-ab.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/units"
echo '{"parallel": true}' > "$work/units/root.json"
for i in $(seq -f '%05g' 1 "$n"); do
    echo '{"command": ["/bin/sleep", "100000"], "logs": {"stderr": "stdout"}}' \
        > "$work/units/svc$i.json"
done
cat > "$work/inner.sh" <<IN
set -u
cd "$work"
ulimit -n 20000
"$vigild" --units units --socket s.sock > out 2>&1 &
for i in \$(seq 600); do [ "\$(pgrep -cx sleep)" -ge $n ] && break; sleep 0.1; done
sleep 2
python3 - <<PY
import statistics, subprocess, time
res = {"A": [], "B": []}
for _ in range($runs):
    for k, ctl in (("A", "$a"), ("B", "$b")):
        t = time.perf_counter()
        p = subprocess.run([ctl, "--socket", "s.sock", "status"], stdout=subprocess.PIPE)
        res[k].append((time.perf_counter() - t) * 1000)
        assert p.stdout.count(b"\n") > $n, p.stdout[:200]
for k, v in res.items():
    print(f"{k} median {statistics.median(v):.1f} ms min {min(v):.1f}")
PY
kill -TERM %1
wait
IN
timeout 600 unshare --pid --fork --mount-proc bash "$work/inner.sh"
