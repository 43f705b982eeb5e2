#!/usr/bin/env python3
"""bench/rolling.py: requests per second and latency while 4 instances restart, next to the
same load with no restart.

usage: bench/rolling.py [--build-dir DIR] [--trials K] [--clients N] [--delay S]
                        [--ready-delay S] [--steady S] [--only listen|nolisten] [--markdown]
  --build-dir  where vigild and vigilctl were built (default build-bench, as bench/run builds
               them; $VIGILD and $VIGILCTL override the two paths)
  --trials     runs of each scenario (default 3); the table shows medians
  --clients    concurrent clients of the load (default 16), one request at a time each, on a
               new connection per request (tests/integration/lb/loadgen.py)
  --delay      seconds of work per request in the server (default 0.005)
  --ready-delay  seconds from an instance's start to its READY=1 and first accept (0.5)
  --steady     seconds of load without a restart (default 5)

The service: 4 instances of tests/integration/lb/server.py (an instanced unit, "ready":
{"notify": true}, "stop": {"drain": "200ms"}). Two units, each in its own vigild (PID 1 of a
fresh PID namespace, units on /dev/shm):
  listen     the unit has "listen": [{"tcp": "127.0.0.1:PORT"}] and "update": "rolling": vigild
             holds the socket, every instance accepts from it (LISTEN_FDS);
  nolisten   the same unit without listen: each instance binds the port itself with
             SO_REUSEPORT (the usual set-up without socket passing).
Scenarios on each: `steady` (load, no restart, --steady seconds); `rolling` (`vigilctl restart
--rolling web` under load: one instance at a time, each stopped (drain, SIGTERM, in-flight
requests finished) then started and ready before the next); `all-at-once` (`vigilctl restart
web`: the four stop, then start). The figures of a restart are over the command's own run,
from its start until it returned (every instance back and ready).

The load generator runs in this process, on the same 2 cores as vigild and the servers: the
throughput is that of the whole machine, not of the servers alone.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration", "lb"))
sys.path.insert(0, os.path.join(ROOT, "bench", "lib"))
from loadgen import LoadGen  # noqa: E402
import vigild_ns  # noqa: E402

SERVER = os.path.join(ROOT, "tests", "integration", "lb", "server.py")
INSTANCES = 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def web_unit(args: argparse.Namespace, port: int, listen: bool) -> dict:
    unit = {
        "command": [sys.executable, SERVER, "--port", str(port), "--delay", str(args.delay),
                    "--ready-delay", str(args.ready_delay), "--max-conns", "256"],
        "instances": INSTANCES,
        "ready": {"notify": True, "timeout": "30s"},
        "stop": {"timeout": "10s", "drain": "200ms"},
        "update": "rolling",
        "backoff": {"initial": "10ms", "max": "10ms", "jitter": 0},
    }
    if listen:
        unit["listen"] = [{"tcp": f"127.0.0.1:{port}"}]
    return unit


class Vigild(vigild_ns.Vigild):
    def __init__(self, vigild: str, vigilctl: str, units: dict) -> None:
        super().__init__(vigild, vigilctl, units, "vigil-rolling-", stderr=subprocess.PIPE)

    def ctl(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return self.run_ctl(*args, timeout=timeout)

    def wait_ready(self, limit: float = 60) -> None:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vigild exited {self.proc.returncode}: "
                                   f"{self.proc.stderr.read().decode()[-400:]}")
            if os.path.exists(self.sock):
                r = self.ctl("--json", "status", "web", timeout=10)
                if r.returncode in (0, 3):
                    units = json.loads(r.stdout)["units"]
                    if len(units) == INSTANCES and all(u["state"] == "running" and u["ready"]
                                                       for u in units):
                        return
            time.sleep(0.05)
        raise RuntimeError(f"the {INSTANCES} instances were not ready within {limit:.0f} s")



def measure(args: argparse.Namespace, v: Vigild, port: int, command: list | None) -> dict:
    """Load, then `vigilctl COMMAND` (or --steady seconds of nothing); the figures of the
    window from the command's start until it returned."""
    gen = LoadGen(port, clients=args.clients, timeout=10, max_seconds=300).start()
    try:
        time.sleep(0.5)
        t0 = time.monotonic()
        if command is None:
            time.sleep(args.steady)
        else:
            r = v.ctl(*command)
            if r.returncode != 0:
                raise RuntimeError(f"vigilctl {' '.join(command)}: {r.stderr.strip()}")
        t1 = time.monotonic()
        time.sleep(0.5)
    finally:
        report = gen.stop()
    out = report.summary(t0, t1)
    out.update(report.counts())  # failures over the whole run: a late reset counts too
    return out


def trial(args: argparse.Namespace, vigild: str, vigilctl: str, listen: bool) -> dict:
    port = free_port()
    root = {"kind": "supervisor", "intensity": 1000, "period": "10s"}
    v = Vigild(vigild, vigilctl, {"root": root, "web": web_unit(args, port, listen)})
    try:
        v.wait_ready()
        time.sleep(0.5)
        return {"steady": measure(args, v, port, None),
                "rolling": measure(args, v, port, ["restart", "--rolling", "web"]),
                "all-at-once": measure(args, v, port, ["restart", "web"])}
    finally:
        v.close()


def med(rows: list, key: str):
    xs = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(xs) if xs else None


def table(results: dict, args: argparse.Namespace) -> str:
    out = ["| unit | scenario | seconds | req/s | p50 ms | p99 ms | max ms | refused | reset "
           "| failed |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    names = {"listen": "listen (vigild's socket)", "nolisten": "no listen (SO_REUSEPORT)"}
    for variant, trials in results.items():
        for scenario in ("steady", "rolling", "all-at-once"):
            rows = [t[scenario] for t in trials]
            cells = [names[variant], scenario]
            for key, fmt in (("seconds", "{:.2f}"), ("rps", "{:.0f}"), ("p50_ms", "{:.1f}"),
                             ("p99_ms", "{:.1f}"), ("max_ms", "{:.0f}")):
                m = med(rows, key)
                cells.append("–" if m is None else fmt.format(m))
            for key in ("refused", "reset", "failed"):
                cells.append("/".join(str(r[key]) for r in rows))
            out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build-bench"))
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--delay", type=float, default=0.005)
    ap.add_argument("--ready-delay", type=float, default=0.5)
    ap.add_argument("--steady", type=float, default=5.0)
    ap.add_argument("--only", choices=("listen", "nolisten"))
    ap.add_argument("--markdown", action="store_true", help="only the table")
    args = ap.parse_args()
    if not 1 <= args.trials <= 20 or not 1 <= args.clients <= 256:
        ap.error("--trials is 1..20, --clients 1..256")
    found = vigild_ns.binaries(args.build_dir, "rolling")
    if found is None:
        return 2
    vigild, vigilctl = found
    variants = [args.only] if args.only else ["listen", "nolisten"]
    results = {v: [] for v in variants}
    for i in range(args.trials):
        for variant in variants:  # round robin: load drift hits both alike
            print(f"rolling: trial {i + 1}/{args.trials}, {variant}", file=sys.stderr)
            results[variant].append(trial(args, vigild, vigilctl, variant == "listen"))
    if not args.markdown:
        print(f"{args.trials} trials, {args.clients} clients, {args.delay * 1000:g} ms per "
              f"request, ready {args.ready_delay:g} s after start, drain 200ms; medians "
              f"(refused/reset/failed: each trial)\n")
    print(table(results, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
