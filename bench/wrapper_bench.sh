#!/usr/bin/env bash
# bench/wrapper_bench.sh: start-up overhead and memory of `vigild -- CMD` against the two
# Debian wrappers it replaces, tini and catatonit, measured in the same run.
#
# usage: bench/wrapper_bench.sh [VIGILD] [RUNS]
#   VIGILD  path of vigild (default: $VIGILD, else build/src/daemon/vigild)
#   RUNS    runs per wrapper (default 200)
# Environment: VIGILD_BEFORE=PATH adds a second vigild (say, a build of the previous commit) as
# "vigild (before)", in the same round robin.
#
# Method:
#  - Time: wall-clock time from posix_spawn() of `WRAPPER -- /bin/true` to waitpid() returning,
#    in Python (time.perf_counter_ns). Runs are interleaved round-robin (direct /bin/true,
#    vigild, tini, catatonit, direct, ...), so machine noise hits every column alike. The
#    table gives the median and the 90th percentile, the overhead over running /bin/true
#    directly, and each wrapper's median relative to vigild's. The minimum is given too: on a
#    busy machine it is the figure least disturbed by other processes. "CPU" is the mean user +
#    system time of the wrapper and its /bin/true (wait4 rusage, 1-4 ms ticks averaged out over
#    the runs): the cost, whatever else runs on the machine.
#  - Memory: "max RSS" is /usr/bin/time's maximum resident set size of `WRAPPER -- /bin/true`
#    (median of 20 runs). It is the larger of the wrapper's and /bin/true's, since the kernel
#    folds a waited-for child into its parent's figure, so the table also gives "own peak RSS":
#    VmHWM of the wrapper process itself, read from /proc while it wraps `sleep 1`, and "own
#    private RSS" (RssAnon): the part not backed by shared files (binary and libraries).
#  - Instructions: the wrapper's own user-space instructions for `WRAPPER -- /bin/true`
#    (valgrind --tool=callgrind, the child not followed), the dynamic loader included: a
#    count that no other load on the machine changes. "-" when valgrind is not installed.
#  - Every wrapper runs in the same mode: not PID 1, registered as a child subreaper
#    (tini needs -s for that; catatonit and vigild do it by themselves).
# Peers missing on the machine are installed with apt-get when running as root.
set -euo pipefail
cd "$(dirname "$0")/.."

vigild=${1:-${VIGILD:-build/src/daemon/vigild}}
runs=${2:-200}
if [ ! -x "$vigild" ]; then
    echo "wrapper_bench: no vigild at $vigild (build it first, or pass its path)" >&2
    exit 1
fi

missing=()
command -v tini >/dev/null || missing+=(tini)
command -v catatonit >/dev/null || missing+=(catatonit)
[ -x /usr/bin/time ] || missing+=(time)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        echo "wrapper_bench: installing ${missing[*]}" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "wrapper_bench: missing ${missing[*]}; install them (apt-get install ${missing[*]})" >&2
        exit 1
    fi
fi

before=${VIGILD_BEFORE:-}
if [ -n "$before" ] && [ ! -x "$before" ]; then
    echo "wrapper_bench: VIGILD_BEFORE=$before is not an executable" >&2
    exit 1
fi

exec python3 - "$(realpath "$vigild")" "$runs" "${before:+$(realpath "$before")}" <<'EOF'
import os, re, shutil, statistics, subprocess, sys, time

vigild, runs, before = sys.argv[1], int(sys.argv[2]), sys.argv[3]
true = "/bin/true"
wrappers = [  # (name, argv prefix); "direct" is the baseline without a wrapper
    ("direct", []),
    ("vigild", [vigild, "--"]),
    ("tini", ["tini", "-s", "--"]),
    ("catatonit", ["catatonit", "--"]),
]
if before:
    wrappers.insert(2, ("vigild (before)", [before, "--"]))
devnull = os.open(os.devnull, os.O_RDWR)
actions = [(os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, devnull, 1),
           (os.POSIX_SPAWN_DUP2, devnull, 2)]

def resolve(argv):
    argv = list(argv)
    if argv and "/" not in argv[0]:
        for d in os.environ.get("PATH", "/usr/bin:/bin").split(":"):
            if os.access(os.path.join(d, argv[0]), os.X_OK):
                argv[0] = os.path.join(d, argv[0])
                break
    return argv

def once(argv):
    t0 = time.perf_counter_ns()
    pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=actions)
    _, status, usage = os.wait4(pid, 0)
    t1 = time.perf_counter_ns()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"wrapper_bench: {argv} failed with status {status}")
    # CPU time of the wrapper and the /bin/true it reaped: unlike wall time, barely touched
    # by other load on the machine.
    return (t1 - t0) / 1000.0, (usage.ru_utime + usage.ru_stime) * 1e6

argvs = {name: resolve(prefix + [true]) for name, prefix in wrappers}
for argv in argvs.values():  # warm the page cache
    for _ in range(5):
        once(argv)
samples = {name: [] for name, _ in wrappers}
cpu = {name: [] for name, _ in wrappers}
for _ in range(runs):
    for name, _ in wrappers:
        wall, used = once(argvs[name])
        samples[name].append(wall)
        cpu[name].append(used)

def max_rss(argv):
    out = []
    for _ in range(20):
        r = subprocess.run(["/usr/bin/time", "-f", "%M", *argv], capture_output=True, text=True)
        out.append(int(r.stderr.strip().splitlines()[-1]))
    return statistics.median(out)

def own_memory(prefix):
    """(VmHWM, RssAnon) in KiB of the wrapper itself while it wraps `sleep 1`."""
    p = subprocess.Popen(resolve(prefix + ["sleep", "1"]), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    fields = {}
    with open(f"/proc/{p.pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.split()[0] if value.split() else ""
    p.wait()
    return int(fields["VmHWM"]), int(fields["RssAnon"])

def p90(xs):
    return statistics.quantiles(xs, n=10)[-1]

def instructions(argv):
    """User-space instructions of argv[0]'s process alone (callgrind), or "-"."""
    if not shutil.which("valgrind"):
        return "-"
    r = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *argv],
                       capture_output=True, text=True)
    m = re.search(r"Collected : (\d+)", r.stderr)
    return f"{int(m.group(1)):,}" if m else "-"

base = statistics.median(samples["direct"])
ref = statistics.median(samples["vigild"])
print(f"Wrapper start-up: `WRAPPER -- /bin/true`, {runs} interleaved runs each, "
      f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end.\n")
print("| wrapper | min (µs) | median (µs) | p90 (µs) | median overhead vs direct (µs) "
      "| median / vigild's | CPU, mean (µs) | instructions | max RSS (KiB) "
      "| own peak RSS (KiB) | own private RSS (KiB) | binary (KiB) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for name, prefix in wrappers:
    xs = samples[name]
    med = statistics.median(xs)
    if name == "direct":
        rss, hwm, anon, size = max_rss([true]), "-", "-", os.path.getsize(true) // 1024
        label = "/bin/true (no wrapper)"
    else:
        rss, (hwm, anon) = max_rss(prefix + [true]), own_memory(prefix)
        size = os.path.getsize(resolve(prefix)[0]) // 1024
        label = f"`{' '.join([name] + prefix[1:])}`"
    print(f"| {label} | {min(xs):.0f} | {med:.0f} | {p90(xs):.0f} | {med - base:+.0f} | {med / ref:.2f} "
          f"| {statistics.mean(cpu[name]):.0f} | {instructions(argvs[name])} | {rss:.0f} | {hwm} "
          f"| {anon} | {size} |")
EOF
