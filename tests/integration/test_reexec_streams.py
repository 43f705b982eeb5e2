"""vigilctl's streams across `vigilctl reexec`: a `logs -f` and an `events -f` started before two
re-execs of vigild (PID 1 of a fresh PID namespace) go on after them, with every log line once
(sequence numbers and the writer's own numbering both without a gap or a repeat) and no event
twice; vigild stays PID 1 with the same host pid, and a service keeps its pid (/proc)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from daemon import Daemon, cmdline  # noqa: E402
from harness import wait_until  # noqa: E402

WRITER = ["/bin/sh", "-c", "i=0; while :; do i=$((i+1)); echo \"n $i\"; sleep 0.005; done"]


class ReexecStreams(unittest.TestCase):
    def follow(self, d: Daemon, *args: str) -> subprocess.Popen:
        p = subprocess.Popen([harness.vigilctl(), "--socket", d.sock, *args],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(p.kill)
        return p

    @staticmethod
    def last_line(d: Daemon) -> int:
        """The number of the writer's last line in its log, 0 before the first."""
        r = d.ctl("logs", "w")
        lines = [ln for ln in r.stdout.splitlines() if ln.split()[-2:-1] == ["n"]]
        return int(lines[-1].split()[-1]) if lines else 0

    def test_follow_streams_go_on_across_reexecs(self) -> None:
        with Daemon({"w": {"command": WRITER}, "s": {"command": ["/bin/sleep", "1000"]}}) as d:
            d.wait_socket()
            wait_until(lambda: d.status("w")["state"] == "running", 10, "w running")
            init = d.ns.init_pid
            sleeper = d.status("s")["pid"]
            before = [p.pid for p in d.processes()
                      if p.ppid == init and cmdline(p.pid)[:1] == ["/bin/sleep"]]
            first = self.last_line(d)
            logs = self.follow(d, "logs", "-f", "--json", "w")
            events = self.follow(d, "events", "-f", "--json")
            time.sleep(harness.scaled(0.3))
            for n in (1, 2):
                r = d.ctl("reexec", timeout=30)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertIn(f"(re-exec {n})", r.stdout)
                time.sleep(harness.scaled(0.3))
            self.assertEqual(d.status("s")["pid"], sleeper)  # kept across both re-execs
            sleepers = [p.pid for p in d.processes()
                        if p.ppid == init and cmdline(p.pid)[:1] == ["/bin/sleep"]]
            self.assertEqual(sleepers, before, "the sleeper is the same process, in /proc")
            r = d.ctl("restart", "s")
            self.assertEqual(r.returncode, 0, r.stderr)
            time.sleep(harness.scaled(0.3))
            self.assertEqual(d.ns.init_pid, init)
            with open(f"/proc/{init}/status") as f:  # still PID 1 of its namespace
                nspid = [ln.split()[-1] for ln in f if ln.startswith("NSpid:")]
            self.assertEqual(nspid, ["1"])
            # The writer's pace is the machine's (a process per line): the stream runs until it
            # has written 60 lines more, however long the re-execs took.
            wait_until(lambda: self.last_line(d) >= first + 60, 20, "60 lines more from w")
            d.ctl("shutdown", timeout=30)
            out, err = logs.communicate(timeout=harness.scaled(20))
            items = [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]
            self.assertGreater(len(items), 50, err)
            seqs = [i["seq"] for i in items]
            nums = [int(i["line"].split()[1]) for i in items]
            self.assertEqual(seqs, list(range(seqs[0], seqs[0] + len(seqs))), "seq gaps")
            self.assertEqual(nums, list(range(nums[0], nums[0] + len(nums))), "line gaps")
            eout, _ = events.communicate(timeout=harness.scaled(20))
            records = [ln for ln in eout.splitlines() if ln.startswith("{")]
            self.assertEqual(len(records), len(set(records)), "an event twice")
            kinds = [(json.loads(ln)["unit"], json.loads(ln)["kind"]) for ln in records]
            self.assertIn(("s", "stopping"), kinds)  # the restart after the re-execs


if __name__ == "__main__":
    unittest.main()
