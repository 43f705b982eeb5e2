"""One benchmark trial, run as the driver inside a fresh PID namespace.

bench/run starts this as
    timeout -s KILL T unshare --pid --fork --mount-proc benchtool init -- python3 trial.py ARGS
so /proc shows only this trial's processes, `benchtool init` (PID 1) reaps orphans, and everything
left when this script ends is SIGKILLed. The result is one JSON object written to --out.

Kinds:
  fleet    start N `sleep` services, time until all N pids exist; then PSS of the supervisor's
           own processes, optionally idle CPU / wake-ups and status-query latency (of one unit,
           and with --status-all of all N too); then a clean stop, timed until no process of the
           trial is left. When a step fails, what the steps before it measured is kept.
  restart  20 services; each, after living > 2 s, is SIGKILLed and the time until its
           replacement has exec'd is measured (benchtool restart polls /proc every 200 us).
  crash    one service that records its spawn time and exits 1; gaps between spawns.
  log      one service writes BYTES of numbered lines through the supervisor to a file;
           throughput, then the file is checked for loss, duplication and order.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import procfs  # noqa: E402
import systems  # noqa: E402

SLEEP_ARG = "100000"


class TrialError(Exception):
    """A trial that could not finish; `partial` holds what was measured before it gave up."""

    def __init__(self, msg, partial=None):
        super().__init__(msg)
        self.partial = partial or {}


def bt(tools, *args, timeout):
    """Runs benchtool; returns (exit code, stdout split in words)."""
    r = subprocess.run([tools["benchtool"], *map(str, args)], capture_output=True, text=True,
                       timeout=timeout)
    return r.returncode, r.stdout.split(), r.stderr


def launch(system, work):
    log = open(os.path.join(work, "supervisor.out"), "wb")
    t0 = time.monotonic_ns()
    proc = subprocess.Popen(system.start_argv(work), stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, cwd=work)
    return proc, t0


def tail_of(path, n=2000):
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - n))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


COMPLAINTS = ("warn", "error", "fail", "fatal", "crit", "too many", "killed", "unable")


def first_complaint(system, path, limit=16 << 20):
    """The first line of the supervisor's output that says something went wrong (why a trial
    failed is usually there, well before the tail), but for what it always says."""
    try:
        with open(path, "rb") as f:
            for raw in f.read(limit).splitlines():
                line = raw.decode(errors="replace").strip()
                if (any(w in line.lower() for w in COMPLAINTS)
                        and not any(b in line for b in system.benign)):
                    return line[:300]
    except OSError:
        pass
    return ""


def wait_count(tools, system, proc, n, pattern, deadline):
    static = str(proc.pid) if system.static_children else ""
    args = ["waitcount", n, pattern, deadline] + ([static] if static else [])
    # A scan of /proc with 20,000 processes can take seconds on a busy machine: the timeout
    # leaves room for the last one, so that what was seen is still reported.
    rc, out, err = bt(tools, *args, timeout=deadline + 60)
    if rc != 0:
        # The most seen at once: a supervisor that gave up may have stopped them all again.
        seen = int(out[2]) if len(out) > 2 else None
        now = int(out[1]) if len(out) > 1 else None
        raise TrialError(f"at most {seen if seen is not None else '?'} of {n} services were up "
                         f"at once within {deadline:g}s ({now} at the end) {err.strip()}",
                         {"start_timeout_s": deadline, "start_seen": seen})
    return int(out[0])


def stop_and_wait(tools, system, proc, work, deadline):
    t1 = time.monotonic_ns()
    system.stop(proc, work)
    rc, out, err = bt(tools, "waitgone", deadline, timeout=deadline + 5)
    try:
        code = proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        code = None
    if rc != 0:
        raise TrialError(f"{out[1] if len(out) > 1 else '?'} processes still alive "
                         f"{deadline}s after the stop (e.g. pid {out[2] if len(out) > 2 else '?'})")
    return (int(out[0]) - t1) / 1e9, code


def time_status(tools, argv, runs, budget):
    """Times `runs` runs of a status command (benchtool timeexec, bounded by `budget` seconds);
    returns (wall times in s, how many exited non-zero, one run's output, cut short)."""
    rc, out, err = bt(tools, "timeexec", runs, budget, "--", *argv, timeout=budget + 60)
    if rc != 0:
        raise TrialError(f"status: {err.strip()}")
    times = [int(x) / 1e9 for x in out[0::2]]
    failed = sum(1 for c in out[1::2] if int(c) != 0)
    one = subprocess.run(argv, capture_output=True, text=True, timeout=budget + 10)
    return times, failed, (one.stdout + one.stderr).strip()[:200]


def fleet(args, tools, system, work):
    n = args.n
    services = [(systems.svc_name(i), ["/bin/sleep", SLEEP_ARG]) for i in range(1, n + 1)]
    system.prepare(work, services)
    proc, t0 = launch(system, work)
    res = {}
    t_all = wait_count(tools, system, proc, n, f"sleep {SLEEP_ARG}", args.deadline)
    res["start_s"] = (t_all - t0) / 1e9
    try:
        fleet_up(args, tools, system, work, proc, res)
    except TrialError as e:
        e.partial = {**res, **e.partial}
        raise
    except (subprocess.TimeoutExpired, OSError, ValueError) as e:
        raise TrialError(str(e), dict(res)) from e
    return res


def fleet_up(args, tools, system, work, proc, res):
    """The steps of a fleet trial once all N services are up; fills `res` as it goes."""
    n = args.n
    time.sleep(args.settle)
    sup = procfs.procs_by_comm(system.comms)
    res["sup_procs"] = len(sup)
    res["pss_kib"] = sum(procfs.pss_kib(p) for p in sup)
    res["rss_kib"] = sum(procfs.rss_kib(p) for p in sup)
    res["threads"] = sum(procfs.thread_count(p) for p in sup)
    res["fds"] = sum(procfs.fd_count(p) for p in sup)
    if args.idle > 0:
        before = procfs.sample(system.comms)
        time.sleep(args.idle)
        after = procfs.sample(system.comms)
        cpu, sw = procfs.sample_delta(before, after)
        res["idle_s"] = args.idle
        res["idle_cpu_s"] = cpu
        res["idle_wakeups"] = sw
    if args.status_runs > 0:
        argv = system.status_argv(work, systems.svc_name((n + 1) // 2))
        res["status_s"], res["status_failures"], res["status_example"] = time_status(
            tools, argv, args.status_runs, args.status_budget)
        all_argv = system.status_all_argv(work, n) if args.status_all else None
        if all_argv:
            res["status_all_s"], res["status_all_failures"], res["status_all_example"] = (
                time_status(tools, all_argv, args.status_runs, args.status_budget))
    res["stop_s"], res["exit_code"] = stop_and_wait(tools, system, proc, work, args.deadline)


def restart(args, tools, system, work):
    count = args.n
    args_of = [str(200000 + i) for i in range(1, count + 1)]
    services = [(systems.svc_name(i), ["/bin/sleep", a]) for i, a in enumerate(args_of, 1)]
    system.prepare(work, services, lenient=True)
    proc, _ = launch(system, work)
    for a in args_of:
        wait_count(tools, system, proc, 1, f"sleep {a}", args.deadline)
    time.sleep(2.2)  # every service has now lived more than 2 s
    lat = []
    for a in args_of:
        rc, out, err = bt(tools, "restart", f"sleep {a}", 10, 200, timeout=15)
        if rc != 0:
            raise TrialError(f"no replacement for 'sleep {a}' within 10 s {err.strip()}")
        lat.append(int(out[0]) / 1e9)
    res = {"restart_s": lat}
    res["stop_s"], res["exit_code"] = stop_and_wait(tools, system, proc, work, args.deadline)
    return res


def crash(args, tools, system, work):
    stamps = os.path.join(work, "spawns")
    services = [("crasher", [tools["benchtool"], "stamp", stamps])]
    system.prepare(work, services, crash=True)
    proc, t0 = launch(system, work)
    time.sleep(args.duration)
    alive = proc.poll() is None
    times = []
    if os.path.exists(stamps):
        with open(stamps) as f:
            times = [int(x) for x in f.read().split()]
    gaps = [(b - a) / 1e9 for a, b in zip(times, times[1:])]
    res = {"spawns": len(times), "gaps_s": gaps, "duration_s": args.duration,
           "first_spawn_s": (times[0] - t0) / 1e9 if times else None,
           "supervisor_alive": alive}
    if alive:
        res["stop_s"], res["exit_code"] = stop_and_wait(tools, system, proc, work, args.deadline)
    else:
        res["exit_code"] = proc.returncode
    return res


def logs(args, tools, system, work):
    outdir = args.log_dir
    os.makedirs(outdir, exist_ok=True)
    stamp = os.path.join(work, "writer.stamp")
    lines = args.bytes // 100
    services = [("writer", [tools["benchtool"], "writer", str(args.bytes), stamp])]
    system.prepare(work, services, log=outdir)
    everything = system.comms | system.logger_comms
    proc, t0 = launch(system, work)
    last = f"#{lines - 1:016d} "
    current = system.log_current(outdir)
    limit = time.monotonic() + args.deadline
    before = None
    t_start = None
    t_done = None
    size_seen = -1
    while time.monotonic() < limit:
        if t_start is None and os.path.exists(stamp):
            with open(stamp) as f:
                words = f.read().split()
            if words:
                t_start = int(words[0])
                before = procfs.sample(everything)
        try:
            size = os.path.getsize(current)
        except OSError:
            size = -1
        if size != size_seen:
            size_seen = size
            if last in tail_of(current, 300):
                t_done = time.monotonic_ns()
                break
        time.sleep(0.005)
    if t_done is None or t_start is None:
        raise TrialError(f"the last line never reached {current} within {args.deadline}s")
    after = procfs.sample(everything)
    cpu, _ = procfs.sample_delta(before or {}, after)
    files = system.log_files(outdir)
    rc, out, err = bt(tools, "check", lines, *files, timeout=300)
    if rc != 0:
        raise TrialError(f"check: {err.strip()}")
    verdict = json.loads(" ".join(out))
    secs = (t_done - t_start) / 1e9
    res = {"log_bytes": lines * 100, "log_s": secs, "log_mb_s": lines * 100 / secs / 1e6,
           "log_cpu_s": cpu, "log_check": verdict, "log_files": len(files),
           "log_ok": verdict["missing"] == 0 and verdict["dup"] == 0 and verdict["bad"] == 0
           and verdict["out_of_order"] == 0}
    res["stop_s"], res["exit_code"] = stop_and_wait(tools, system, proc, work, args.deadline)
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--system", required=True)
    ap.add_argument("--kind", required=True, choices=["fleet", "restart", "crash", "log"])
    ap.add_argument("--tools", required=True, help="JSON: benchtool, vigild, vigilctl paths")
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--deadline", type=float, default=60)
    ap.add_argument("--settle", type=float, default=1.0)
    ap.add_argument("--idle", type=float, default=0)
    ap.add_argument("--status-runs", type=int, default=0)
    ap.add_argument("--status-budget", type=float, default=30)
    ap.add_argument("--status-all", type=int, default=0, help="1: also time status of all units")
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--bytes", type=int, default=128 << 20)
    ap.add_argument("--log-dir", default="")
    args = ap.parse_args()
    tools = json.loads(args.tools)
    system = systems.make(args.system, tools)
    os.makedirs(args.work, exist_ok=True)
    res = {"system": args.system, "kind": args.kind, "n": args.n, "ok": True}
    try:
        res.update({"fleet": fleet, "restart": restart, "crash": crash,
                    "log": logs}[args.kind](args, tools, system, args.work))
    except (TrialError, subprocess.TimeoutExpired, OSError, ValueError) as e:
        res.update(getattr(e, "partial", {}))
        res["ok"] = False
        res["error"] = str(e)
        res["supervisor_output"] = tail_of(os.path.join(args.work, "supervisor.out"), 600)
        res["supervisor_complaint"] = first_complaint(system, os.path.join(args.work, "supervisor.out"))
    with open(args.out, "w") as f:
        json.dump(res, f)
    if args.log_dir:
        shutil.rmtree(args.log_dir, ignore_errors=True)
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    sys.exit(main())
