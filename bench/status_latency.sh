#!/usr/bin/env bash
# bench/status_latency.sh: latency of one status query with 1,000 services loaded:
# `vigilctl status svc0500` next to runit's `sv status` and s6's `s6-svstat`, in the
# same run. Self-contained (bench/run has its own, broader status benchmark).
#
# usage: bench/status_latency.sh [BUILD_DIR] [UNITS] [RUNS]
#   BUILD_DIR  where vigild and vigilctl were built (default: build; $VIGILD and $VIGILCTL
#              override the two paths)
#   UNITS      services per supervisor (default 1000)
#   RUNS       timed queries per tool (default 50)
#   $VIGILCTL_BASELINE, when set, is another vigilctl (say, one built before a change) timed in
#   the same rounds against the same vigild, as its own row.
#
# Method:
#  - The whole run happens in a fresh PID namespace (unshare --pid --fork --mount-proc
#    --kill-child; with a user namespace when not root): when the script ends, the kernel kills
#    every supervisor and service it started, whatever happened.
#  - Each supervisor gets UNITS services `sleep 100000`: vigild with one JSON unit file each
#    (parent root), runsvdir with one service directory each, s6-svscan likewise (with
#    -c 2N+64: its default limit is 500 service directories). All three
#    run at the same time, and the script waits until every service of each is up (vigilctl
#    --json status; every `sv status` / `s6-svstat` line of the middle service says up).
#  - Timing: Python's subprocess.run (fork/exec + waitpid) around each query, stdout and stderr
#    to /dev/null, clocked with time.perf_counter_ns. The runs are interleaved round-robin
#    (floor, vigilctl, sv, s6-svstat, floor, ...) after 5 warm-up rounds, so machine noise hits
#    every column alike. The "floor" row runs /bin/true the same way: the cost of spawning
#    any program from the timing loop, included in every other row.
#    `vigilctl status` against a socket nobody listens on (exit 7, no round trip) shows how
#    much of vigilctl's time is its own start-up.
#  - Output: a markdown table with the median, the 90th percentile and the minimum of each,
#    the median minus the floor, and each median relative to vigilctl's; then the target
#    that bench/README.md sets (`vigilctl status` median within 1.0 x `sv status`) and whether it is met.
#  - runit and s6 come from Debian (apt-get install -y --no-install-recommends runit s6: the
#    runit package recommends runit-init, which would replace the machine's init; without
#    recommends only the binaries come). Run as root, a missing peer is installed that way;
#    otherwise it is left out of the table and the script says so.
set -euo pipefail
cd "$(dirname "$0")/.."

build=${1:-build}
units=${2:-1000}
runs=${3:-50}
vigild=${VIGILD:-$build/src/daemon/vigild}
vigilctl=${VIGILCTL:-$build/src/cli/vigilctl}

if [[ -z "${VIGIL_STATUS_BENCH_INNER:-}" ]]; then
    for f in "$vigild" "$vigilctl"; do
        [[ -x "$f" ]] || {
            echo "status_latency: $f is not built" \
                 "(ninja -C $build src/daemon/vigild src/cli/vigilctl)" >&2
            exit 2
        }
    done
    if [[ $(id -u) == 0 ]] && ! { command -v runsvdir && command -v sv &&
                                  command -v s6-svscan && command -v s6-svstat; } >/dev/null; then
        echo "status_latency: installing runit and s6 (binaries only, no init)" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends runit s6 >&2 ||
            echo "status_latency: apt-get failed; going on with what is installed" >&2
    fi
    if [[ $(id -u) == 0 ]]; then ns=(unshare --pid --fork --mount-proc --kill-child)
    else ns=(unshare -Urpf --mount-proc --kill-child); fi
    export VIGIL_STATUS_BENCH_INNER=1 VIGILD=$(realpath "$vigild") VIGILCTL=$(realpath "$vigilctl")
    [[ -n "${VIGILCTL_BASELINE:-}" ]] && VIGILCTL_BASELINE=$(realpath "$VIGILCTL_BASELINE")
    exec "${ns[@]}" -- "$0" "$build" "$units" "$runs"
fi

# ---- inside the namespace: this shell is PID 1; its end kills everything below it.
work=$(mktemp -d /dev/shm/vigil-status-bench.XXXXXX 2>/dev/null || mktemp -d)
# As PID 1 of the namespace, kill -1 reaches every other process in it: the supervisors stop
# writing into the work folder before it is removed.
trap 'kill -KILL -1 2>/dev/null || true; sleep 0.2; rm -rf "$work"' EXIT
ulimit -n 65536 2>/dev/null || true

python3 - "$work" "$units" "$runs" <<'PY'
import json, os, shutil, statistics, subprocess, sys, time

work, units, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
vigild, vigilctl = os.environ["VIGILD"], os.environ["VIGILCTL"]
mid = f"svc{units // 2:04d}"
DEVNULL = subprocess.DEVNULL
notes = []


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    notes.append(f"{what}: not ready after {timeout:.0f} s; left out")
    return False


def quiet(argv):
    return subprocess.run(argv, stdin=DEVNULL, capture_output=True, text=True, timeout=60)


def service_dirs(root):
    os.makedirs(root)
    for i in range(units):
        d = os.path.join(root, f"svc{i:04d}")
        os.mkdir(d)
        with open(os.path.join(d, "run"), "w") as f:
            f.write("#!/bin/sh\nexec sleep 100000\n")
        os.chmod(os.path.join(d, "run"), 0o755)


tools = {}  # name -> (argv, description)

# vigild: one unit file per service, socket in the work folder.
udir = os.path.join(work, "units")
os.mkdir(udir)
for i in range(units):
    with open(os.path.join(udir, f"svc{i:04d}.json"), "w") as f:
        json.dump({"command": ["sleep", "100000"]}, f)
sock = os.path.join(work, "run", "control.sock")
subprocess.Popen([vigild, "--units", udir, "--socket", sock, "--log-level", "error"],
                 stdin=DEVNULL, stdout=DEVNULL, stderr=DEVNULL)


def vigil_up():
    r = quiet([vigilctl, "--socket", sock, "--json", "status"])
    if r.returncode != 0:
        return False
    states = [u["state"] for u in json.loads(r.stdout)["units"]]
    return len(states) == units and all(s == "running" for s in states)


if wait_for(vigil_up, 60, "vigild"):
    tools["vigilctl"] = ([vigilctl, "--socket", sock, "status", mid],
                         f"`vigilctl status {mid}`")
    if os.environ.get("VIGILCTL_BASELINE"):
        tools["vigilctl-baseline"] = ([os.environ["VIGILCTL_BASELINE"], "--socket", sock,
                                       "status", mid], f"baseline `vigilctl status {mid}`")

# runit: runsvdir over UNITS service directories.
if shutil.which("runsvdir") and shutil.which("sv"):
    sdir = os.path.join(work, "runit")
    service_dirs(sdir)
    subprocess.Popen(["runsvdir", "-P", sdir], stdin=DEVNULL, stdout=DEVNULL, stderr=DEVNULL)

    def runit_up():
        r = quiet(["sv", "status"] + [os.path.join(sdir, f"svc{i:04d}")
                                      for i in range(0, units, max(1, units // 50))] +
                  [os.path.join(sdir, mid)])
        return r.returncode == 0 and all(l.startswith("run:") for l in r.stdout.splitlines())
    if wait_for(runit_up, 120, "runit"):
        tools["sv"] = (["sv", "status", os.path.join(sdir, mid)], f"`sv status DIR/{mid}`")
else:
    notes.append("runit (runsvdir, sv) is not installed; left out")

# s6: s6-svscan over UNITS service directories.
if shutil.which("s6-svscan") and shutil.which("s6-svstat"):
    cdir = os.path.join(work, "s6")
    service_dirs(cdir)
    # -c: s6-svscan 2.11 supervises at most 500 service directories by default.
    subprocess.Popen(["s6-svscan", "-c", str(2 * units + 64), cdir], stdin=DEVNULL,
                     stdout=DEVNULL, stderr=DEVNULL)

    def s6_up():
        for i in list(range(0, units, max(1, units // 50))) + [units // 2]:
            r = quiet(["s6-svstat", os.path.join(cdir, f"svc{i:04d}")])
            if r.returncode != 0 or not r.stdout.startswith("up"):
                return False
        return True
    if wait_for(s6_up, 120, "s6"):
        tools["s6-svstat"] = (["s6-svstat", os.path.join(cdir, mid)],
                              f"`s6-svstat DIR/{mid}`")
else:
    notes.append("s6 (s6-svscan, s6-svstat) is not installed; left out")

if "vigilctl" not in tools:
    print("status_latency: vigild did not come up", file=sys.stderr)
    sys.exit(1)

# vigilctl's own start-up without a round trip (the same command line against a socket
# nobody listens on: exit 7): the part of its latency that is not vigild's.
tools["vigilctl-startup"] = ([vigilctl, "--socket", os.path.join(work, "none.sock"), "status",
                              mid], "`vigilctl status` (no vigild: start-up)")
expect = {"vigilctl-startup": 7}
order = [("floor", (["/bin/true"], "`/bin/true` (spawn floor)"))] + list(tools.items())
for name, (argv, _) in order:  # each must succeed before it is timed
    r = quiet(argv)
    if r.returncode != expect.get(name, 0):
        print(f"status_latency: {argv} failed ({r.returncode}): {r.stderr}", file=sys.stderr)
        sys.exit(1)

times = {name: [] for name, _ in order}
for rnd in range(runs + 5):
    for name, (argv, _) in order:
        t0 = time.perf_counter_ns()
        rc = subprocess.run(argv, stdin=DEVNULL, stdout=DEVNULL, stderr=DEVNULL).returncode
        dt = time.perf_counter_ns() - t0
        if rc != expect.get(name, 0):
            print(f"status_latency: {argv} failed with {rc}", file=sys.stderr)
            sys.exit(1)
        if rnd >= 5:
            times[name].append(dt / 1e6)


def p90(xs):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(0.9 * (len(xs) - 1))))]


floor = statistics.median(times["floor"])
ref = statistics.median(times["vigilctl"])
print(f"status latency, {units} services each, {runs} runs (interleaved), "
      f"{os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
print("| command | median ms | p90 ms | min ms | median − floor ms | median / vigilctl |")
print("|---|---:|---:|---:|---:|---:|")
for name, (argv, desc) in order:
    xs = times[name]
    med = statistics.median(xs)
    net = "—" if name == "floor" else f"{med - floor:.2f}"
    print(f"| {desc} | {med:.2f} | {p90(xs):.2f} | {min(xs):.2f} | {net} | {med / ref:.2f} |")
if "sv" in times:
    ratio = ref / statistics.median(times["sv"])
    print(f"\n`vigilctl status` / `sv status` (medians): {ratio:.3f} "
          f"(target ≤ 1.00: {'met' if ratio <= 1.0 else 'NOT met'})")
for n in notes:
    print(f"\nnote: {n}")
PY
