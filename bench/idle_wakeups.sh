#!/usr/bin/env bash
# bench/idle_wakeups.sh: what an idle supervisor costs (the target: no wake-up at all when
# nothing happens, docs/DESIGN.md §7 and bench/README.md).
#
# usage: bench/idle_wakeups.sh [VIGILD] [SECONDS] [SERVICES]
#   VIGILD    path of vigild (default: $VIGILD, else build/src/daemon/vigild)
#   SECONDS   measuring window (default 20)
#   SERVICES  number of `sleep` services (default 100)
#
# Method: each supervisor runs as PID 1 of a fresh PID namespace (`unshare --pid --fork
# --mount-proc`, so nothing else of the machine is counted and everything dies with it) with
# SERVICES services that are `sleep` processes, no probes, no watchdog, no HTTP endpoint. Once
# every service runs and 2 s have passed (start-up work done), the supervisor's processes are
# read from the host's /proc at the start and the end of the window:
#   voluntary_ctxt_switches (/proc/PID/status): how often it went to sleep, i.e. woke up;
#   nonvoluntary_ctxt_switches: preemptions (the machine's load, not the program's);
#   utime + stime (/proc/PID/stat fields 14-15, clock ticks): CPU time.
# "vigild" is vigild plus its spawner helper (a fork of vigild, when present), summed. It is
# measured plain, with the HTTP endpoint listening (no client), and, for scale, with a tcp
# liveness probe per service at the default period of 10 s (a configured probe is expected to
# cost wake-ups; the probes' timers fire together, so 200 checks cost about 2). s6 is s6-svscan
# plus one s6-supervise per service: the table gives both the sum and s6-svscan alone. An idle
# vigild has no timer armed, so its figures should be exactly 0 (test_wrapper.py checks the
# same in wrapper mode).
# Peers missing on the machine (s6) are installed with apt-get when running as root; without
# them their rows are left out.
set -euo pipefail
cd "$(dirname "$0")/.."

vigild=${1:-${VIGILD:-build/src/daemon/vigild}}
seconds=${2:-20}
services=${3:-100}
if [ ! -x "$vigild" ]; then
    echo "idle_wakeups: no vigild at $vigild (build it first, or pass its path)" >&2
    exit 1
fi
if ! command -v s6-svscan >/dev/null && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null
then
    echo "idle_wakeups: installing s6" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq s6 >/dev/null || true
fi

exec python3 - "$(realpath "$vigild")" "$seconds" "$services" <<'EOF'
import json, os, shutil, signal, subprocess, sys, tempfile, time

vigild, seconds, services = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
tick = os.sysconf("SC_CLK_TCK")
unshare = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]
if os.geteuid() != 0:
    unshare = ["unshare", "-Urpf", "--mount-proc", "--kill-child"]


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def figures(pid):
    """(voluntary, nonvoluntary context switches, utime+stime ticks) of one process."""
    with open(f"/proc/{pid}/status") as f:
        st = dict(line.split(":", 1) for line in f if ":" in line)
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state): utime and stime are fields 14 and 15.
    return (int(st["voluntary_ctxt_switches"]), int(st["nonvoluntary_ctxt_switches"]),
            int(fields[11]) + int(fields[12]))


def wait_for(pred, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise SystemExit(f"idle_wakeups: timed out waiting for {what}")


def measure(name, argv, supervisors, settle=2.0):
    """Runs argv as PID 1 of a new namespace; supervisors(init) -> [(label, pid)] to measure
    once every service runs (None until then)."""
    p = subprocess.Popen(unshare + argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, start_new_session=True)
    try:
        init = wait_for(lambda: children(p.pid)[:1], 10, f"{name} to start")[0]
        procs = wait_for(lambda: supervisors(init), 30, f"{name}'s {services} services")
        time.sleep(settle)
        before = {pid: figures(pid) for _, pid in procs}
        time.sleep(seconds)
        after = {pid: figures(pid) for _, pid in procs}
        return [(label, len(pids), *[sum(after[q][i] - before[q][i] for q in pids)
                                     for i in range(3)])
                for label, pids in group(procs)]
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()


def group(procs):
    out = {}
    for label, pid in procs:
        out.setdefault(label, []).append(pid)
    return list(out.items())


work = tempfile.mkdtemp(prefix="vigil-idle-")
rows = []
try:
    # vigild: SERVICES units running `sleep`; then the same with the HTTP endpoint on (no
    # client), and, for scale, with a tcp liveness probe per service at the default period (10s):
    # what a configured probe costs, next to the idle figures.
    def vigil_units(probe):
        units = os.path.join(work, "units-probe" if probe else "units")
        os.mkdir(units)
        for i in range(services):
            unit = {"command": ["sleep", "1000000"]}
            if probe:
                unit["liveness"] = {"tcp": {"port": probe_port}}
            with open(os.path.join(units, f"s{i:03}.json"), "w") as f:
                json.dump(unit, f)
        return units

    import socket
    listener = socket.socket()  # the probes' target: they succeed (a failing one restarts)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    probe_port = listener.getsockname()[1]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        http_port = s.getsockname()[1]

    def vigil_ready(init):
        # vigild and its spawner helper (a fork of vigild that spawns services for it).
        sleeps = [c for c in children(init) if comm(c) == "sleep"]
        helpers = [c for c in children(init) if comm(c) == "vigild"]
        return [("vigild", p) for p in [init] + helpers] if len(sleeps) == services else None
    plain, probed = vigil_units(False), vigil_units(True)
    for label, extra, units in [
            ("vigild", [], plain),
            ("vigild --http (no client)", ["--http", f"127.0.0.1:{http_port}"], plain),
            ("vigild, a tcp liveness probe per service (period 10s)", [], probed)]:
        sock = os.path.join(work, f"ctl{len(rows)}.sock")
        for _, n, vol, nonvol, ticks in measure(
                label, [vigild, "--units", units, "--socket", sock, "--log-level", "warn",
                        *extra], vigil_ready):
            rows.append((label, n, vol, nonvol, ticks))

    # s6: s6-svscan on a scan directory of SERVICES `sleep` services.
    if shutil.which("s6-svscan"):
        scan = os.path.join(work, "scan")
        os.mkdir(scan)
        for i in range(services):
            d = os.path.join(scan, f"s{i:03}")
            os.mkdir(d)
            with open(os.path.join(d, "run"), "w") as f:
                f.write("#!/bin/sh\nexec sleep 1000000\n")
            os.chmod(os.path.join(d, "run"), 0o755)

        def s6_ready(init):
            sups = [c for c in children(init) if comm(c) == "s6-supervise"]
            running = [c for s in sups for c in children(s) if comm(c) == "sleep"]
            if len(sups) != services or len(running) != services:
                return None
            return [("s6-svscan", init)] + [("s6-supervise (all)", s) for s in sups]
        s6 = measure("s6", ["s6-svscan", scan], s6_ready)
        for label, n, vol, nonvol, ticks in s6:
            rows.append((label, n, vol, nonvol, ticks))
        total = [sum(r[i] for r in s6) for i in range(1, 5)]
        rows.append(("s6 total", *total))
finally:
    shutil.rmtree(work, ignore_errors=True)

print(f"Idle supervisor, {services} `sleep` services, over {seconds:g} s "
      f"(kernel {os.uname().release}, {tick} ticks/s)\n")
print("| supervisor | processes | voluntary ctx switches | wake-ups/s | involuntary | CPU ms |")
print("|---|---:|---:|---:|---:|---:|")
for label, n, vol, nonvol, ticks in rows:
    print(f"| {label} | {n} | {vol} | {vol / seconds:.2f} | {nonvol} | {ticks * 1000 // tick} |")
EOF
