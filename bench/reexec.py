#!/usr/bin/env python3
"""bench/reexec.py: how long the control socket goes unanswered while vigild re-executes itself.

usage: bench/reexec.py [--build-dir DIR] [--services N] [--trials K] [--markdown]
  --build-dir  where vigild and vigilctl were built (default build-bench, as bench/run builds
               them; $VIGILD and $VIGILCTL override the two paths)
  --services   services `sleep 100000` under the root supervisor (default 1000)
  --trials     re-execs measured (default 5); the table shows the median and the worst

One vigild, PID 1 of a fresh PID namespace (bench/lib/vigild_ns.py, units on /dev/shm), runs
the services. A client thread in this process asks `status` of one unit over the control socket
in a tight loop: the raw protocol (include/vigil/ctl/protocol.hpp), a new connection per request,
the next request as soon as the answer is in. During a re-exec a stand-in answers such reads
(vigild(8), "RE-EXECUTION"); a second client asks `logs` of one unit (1 line) the same way,
a request the stand-in holds for the new vigild. Meanwhile `vigilctl --json reexec` runs, once
per trial, a second apart.

Figures of each re-exec:
  pause      the longest a status request waited for its answer, among the requests sent from
             just before `vigilctl reexec` started until it returned: the time the control
             socket went unanswered, as a client sees it;
  gap        the longest time between two answers in that window (the pause plus one request);
  held       the longest a `logs` request of that window waited: what a request that is not
             a read of the state (start, stop, logs...) waits during a re-exec;
  vigild     the pause_ms vigild reports itself (from the old image's last turn of its loop to
             the new image's first);
  baseline   the median latency of a status request away from any re-exec, for scale;
  vigilctl   the wall time of the `vigilctl reexec` command;
  unanswered the status requests of the window whose connection was closed or reset without an
             answer, per re-exec (their wait is not in the pause).
The client and vigilctl run on the same cores as vigild: the figures are the machine's.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import threading
import time
from typing import Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench", "lib"))
import vigild_ns  # noqa: E402

UNIT = "s0000"


class Client:
    """status of UNIT, one request per connection, back to back; (sent, answered) in ms."""

    def __init__(self, sock: str, cmd: str = "status", args: Optional[dict] = None) -> None:
        self.sock = sock
        self.samples: list = []
        self.errors: list = []
        self.stop = threading.Event()
        self.request = json.dumps({"id": 1, "cmd": cmd,
                                   "args": args or {"units": [UNIT]}}).encode() + b"\n"
        self.thread = threading.Thread(target=self.run, daemon=True)

    def one(self) -> None:
        sent = time.monotonic() * 1000
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
                c.settimeout(30)
                c.connect(self.sock)
                c.sendall(self.request)
                buf = b""
                while True:
                    chunk = c.recv(65536)
                    if not chunk:
                        self.errors.append((sent, "EOF before the answer"))
                        return
                    buf += chunk
                    for line in buf.split(b"\n")[:-1]:
                        # The answer: a reply, an error, or a stream's end (`logs`).
                        j = json.loads(line)
                        if j.get("id") == 1 and ("result" in j or "error" in j or "end" in j):
                            self.samples.append((sent, time.monotonic() * 1000))
                            return
        except OSError as e:
            self.errors.append((sent, repr(e)))

    def run(self) -> None:
        while not self.stop.is_set():
            self.one()


def wait_running(v: vigild_ns.Vigild, n: int, limit: float = 120) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if v.proc.poll() is not None:
            raise RuntimeError(f"vigild exited {v.proc.returncode}")
        if os.path.exists(v.sock):
            r = v.run_ctl("--json", "status", timeout=30)
            if r.returncode in (0, 3):
                units = json.loads(r.stdout)["units"]
                if sum(u["state"] == "running" for u in units if u["kind"] == "service") == n:
                    return
        time.sleep(0.2)
    raise RuntimeError(f"the {n} services did not all run within {limit:.0f} s")


def one_reexec(v: vigild_ns.Vigild, client: Client, held: Client) -> dict:
    t0 = time.monotonic() * 1000
    r = v.run_ctl("--json", "reexec", timeout=120)
    t1 = time.monotonic() * 1000
    time.sleep(0.2)  # the requests sent before t1 are answered by now
    if r.returncode != 0:
        raise RuntimeError(f"vigilctl reexec: {r.returncode} {r.stdout.strip()} "
                           f"{r.stderr.strip()}")
    answer = json.loads(r.stdout)
    window = [(s, a) for s, a in client.samples if t0 - 50 <= s <= t1]
    if not window:
        raise RuntimeError("no status request was sent during the re-exec")
    answers = sorted(a for s, a in client.samples if t0 - 50 <= a <= t1 + 200)
    gaps = [b - a for a, b in zip(answers, answers[1:])]
    failed = [e for c in (client, held) for s, e in c.errors if t0 - 50 <= s <= t1]
    held_waits = [a - s for s, a in held.samples if t0 - 50 <= s <= t1]
    return {"pause_ms": max(a - s for s, a in window), "gap_ms": max(gaps) if gaps else None,
            "held_ms": max(held_waits) if held_waits else None,
            "vigild_ms": answer.get("pause_ms"), "vigilctl_ms": t1 - t0,
            "requests": len(window), "failed": len(failed), "services": answer.get("services")}


def trial_run(vigild: str, vigilctl: str, services: int, trials: int) -> list:
    units = {"root": {"kind": "supervisor", "intensity": 1000, "period": "10s"}}
    for i in range(services):
        units[f"s{i:04d}"] = {"command": ["sleep", "100000"]}
    v = vigild_ns.Vigild(vigild, vigilctl, units, "vigil-reexec-")
    try:
        wait_running(v, services)
        time.sleep(1.0)
        client = Client(v.sock)
        client.thread.start()
        held = Client(v.sock, "logs", {"unit": UNIT, "lines": 1})
        held.thread.start()
        out = []
        try:
            time.sleep(1.0)
            for i in range(trials):
                out.append(one_reexec(v, client, held))
                print(f"reexec: {i + 1}/{trials}: {json.dumps(out[-1])}", file=sys.stderr)
                time.sleep(1.0)
        finally:
            for c in (client, held):
                c.stop.set()
                c.thread.join(60)
        quiet = [a - s for s, a in client.samples[:200]]
        for r in out:
            r["baseline_ms"] = statistics.median(quiet) if quiet else None
        if client.errors:
            print(f"reexec: {len(client.errors)} status requests got no answer, the first: "
                  f"{client.errors[0]}", file=sys.stderr)
        return out
    finally:
        v.close()


def table(rows: list, services: int) -> str:
    def cell(key: str, digits: int = 1) -> str:
        xs = [r[key] for r in rows if r.get(key) is not None]
        if not xs:
            return "–"
        return f"{statistics.median(xs):.{digits}f} (worst {max(xs):.{digits}f})"
    out = [f"| services | re-execs | pause ms | gap ms | held ms | vigild pause_ms | vigilctl ms "
           f"| status baseline ms | unanswered |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
           f"| {services:,} | {len(rows)} | {cell('pause_ms')} | {cell('gap_ms')} "
           f"| {cell('held_ms')} "
           f"| {cell('vigild_ms')} | {cell('vigilctl_ms')} | {cell('baseline_ms', 2)} "
           f"| {'/'.join(str(r['failed']) for r in rows)} |"]
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build-bench"))
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--markdown", action="store_true", help="only the table")
    args = ap.parse_args()
    if not 1 <= args.trials <= 50 or not 1 <= args.services <= 10000:
        ap.error("--trials is 1..50, --services 1..10000")
    found = vigild_ns.binaries(args.build_dir, "reexec")
    if found is None:
        return 2
    vigild, vigilctl = found
    rows = trial_run(vigild, vigilctl, args.services, args.trials)
    if not args.markdown:
        print(f"{args.trials} re-execs of one vigild with {args.services} services; medians, "
              f"worst in brackets; goal: pause under 20 ms\n")
    print(table(rows, args.services))
    return 0


if __name__ == "__main__":
    sys.exit(main())
