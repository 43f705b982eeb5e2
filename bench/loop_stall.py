#!/usr/bin/env python3
"""bench/loop_stall.py: the longest stall of vigild's event loop in two scenarios.

usage: bench/loop_stall.py [BUILD_DIR] [UNITS] [TRIALS]
  BUILD_DIR  where vigild and vigilctl were built (default: build-bench, as bench/run builds it;
             $VIGILD and $VIGILCTL override the two paths)
  UNITS      services in the start scenario (default 1000)
  TRIALS     runs of each scenario (default 3); the table shows the median and the worst

What vigild measures (the `loop_stall_max_ms` of `vigilctl --json version`): at each turn of
its libuv loop, the time since the previous turn minus the time spent waiting in epoll
(uv_metrics_idle_time), that is how long the turn's callbacks ran without the loop taking any
other event. The figure is the longest since vigild started; a control request, a child's exit
or a probe that came in during that turn waited at most that long.

Scenarios, each in a fresh PID namespace (unshare --pid --fork --mount-proc --kill-child, with a
user namespace when not root), vigild as its PID 1, units and logs on /dev/shm:
  start      UNITS services `sleep 100000` under the root supervisor; stall read once every
             one runs (vigilctl --json status shows UNITS running).
  log-block  one service writing lines as fast as it can into a log file that is a FIFO whose
             reader never reads (vigild's writes block: the log writer must absorb it, not the
             loop), beside 100 services `sleep 100000` and a service crashing every 100 ms;
             stall read 15 s after everything runs (past the 10 s log-congestion notice).
  baseline   the log-block scenario without the blocked FIFO (the chatty service logs to a
             regular file): what the same load costs when nothing blocks.
vigil has no peer in this table: runit, s6 and supervisord expose no loop figure.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench", "lib"))
import vigild_ns  # noqa: E402


class Vigild(vigild_ns.Vigild):
    def __init__(self, vigild: str, vigilctl: str, units: dict) -> None:
        super().__init__(vigild, vigilctl, units, "vigil-stall-")

    def ctl(self, *args: str) -> dict:
        r = self.run_ctl("--json", "--timeout", "10", *args, timeout=30)
        if r.returncode != 0:
            raise RuntimeError(f"vigilctl {' '.join(args)}: {r.stderr.strip()}")
        return json.loads(r.stdout)

    def wait_running(self, count: int, limit: float = 120) -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < limit:
            if os.path.exists(self.sock):
                try:
                    st = self.ctl("status")
                    units = st["units"] if isinstance(st, dict) else st
                    if sum(1 for u in units if u.get("state") == "running") >= count:
                        return time.monotonic() - t0
                except (RuntimeError, json.JSONDecodeError, KeyError):
                    pass
            time.sleep(0.05)
        raise RuntimeError(f"{count} services did not all run within {limit:.0f} s")

    def stall_ms(self) -> float:
        return float(self.ctl("version")["loop_stall_max_ms"])



def scenario_start(vigild: str, vigilctl: str, n: int) -> dict:
    units = {f"svc{i:05d}": {"command": ["sleep", "100000"]} for i in range(n)}
    v = Vigild(vigild, vigilctl, units)
    try:
        took = v.wait_running(n)
        return {"stall_ms": v.stall_ms(), "seconds": took}
    finally:
        v.close()


def scenario_log(vigild: str, vigilctl: str, blocked: bool) -> dict:
    work = tempfile.mkdtemp(prefix="vigil-stall-log-", dir="/dev/shm")
    target = os.path.join(work, "chatty.log")
    reader = None
    if blocked:
        os.mkfifo(target, 0o644)
        reader = os.open(target, os.O_RDONLY | os.O_NONBLOCK)  # opened, never read
    units = {f"idle{i:03d}": {"command": ["sleep", "100000"]} for i in range(100)}
    units["chatty"] = {"command": ["sh", "-c", "yes 'a line of forty bytes, give or take...'"],
                       "logs": {"file": target}}
    units["crasher"] = {"command": ["sh", "-c", "sleep 0.1; exit 1"],
                        "backoff": {"initial": "0ms"}}
    units["root"] = {"kind": "supervisor", "intensity": 100000, "period": "1s"}
    v = Vigild(vigild, vigilctl, units)
    try:
        v.wait_running(101)
        time.sleep(15)
        return {"stall_ms": v.stall_ms()}
    finally:
        v.close()
        if reader is not None:
            os.close(reader)
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    build = sys.argv[1] if len(sys.argv) > 1 else "build-bench"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    trials = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    found = vigild_ns.binaries(build, "loop_stall")
    if found is None:
        return 2
    vigild, vigilctl = found
    rows = []
    for name, run in ((f"start {n} services", lambda: scenario_start(vigild, vigilctl, n)),
                      ("log-block (a log file that takes nothing)",
                       lambda: scenario_log(vigild, vigilctl, True)),
                      ("baseline (the same, the log file a regular file)",
                       lambda: scenario_log(vigild, vigilctl, False))):
        got = [run() for _ in range(trials)]
        stalls = [g["stall_ms"] for g in got]
        rows.append((name, statistics.median(stalls), max(stalls)))
        print(f"loop_stall: {name}: {', '.join(f'{s:.1f}' for s in stalls)} ms",
              file=sys.stderr)
    print(f"| scenario ({trials} trials) | longest loop stall, median | worst |")
    print("|---|---:|---:|")
    for name, med, worst in rows:
        print(f"| {name} | {med:.1f} ms | {worst:.1f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
