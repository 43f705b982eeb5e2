"""Day one with vigil, with real processes: an ended temporary service stays in view as
"exited" (status, logs, events, start again), and `vigilctl restart` of several units stops
them in reverse start order and starts them in start order, a unit `after` another starting
only once that one is ready again."""

from __future__ import annotations

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from daemon import FAST, Daemon  # noqa: E402
from harness import wait_until  # noqa: E402

EXIT_NOT_RUNNING = 3


class DayOne(unittest.TestCase):
    def setUp(self) -> None:
        d = Daemon({}, start=False)
        self.addCleanup(d.close)
        self.d = d
        d.write_units({
            "root": {"kind": "supervisor", "strategy": "one_for_one", "intensity": 5},
            "migrate": {"command": d.svc("migrate", "lines", "2", "exit", "3"),
                        "restart": "temporary"},
            # web takes 300 ms to stop and reports ready 300 ms after its start.
            "web": {"command": d.svc("web", "term-delay", "300", "sleep", "300", "ready-fd",
                                     "3", "sleep"),
                    "ready": {"fd": 3}, "backoff": FAST},
            "worker": {"command": d.svc("worker", "term-delay", "300", "sleep"),
                       "after": ["web"], "backoff": FAST},
        })
        d.start()
        d.wait_socket()

    def test_an_ended_temporary_service_stays_in_view_and_starts_again(self) -> None:
        d = self.d
        wait_until(lambda: d.status("migrate")["state"] == "exited", 10, "migrate to exit")
        st = d.status("migrate")
        self.assertEqual(st["last_exit"], {"code": 3})
        r = d.ctl("status", "migrate")
        self.assertEqual(r.returncode, EXIT_NOT_RUNNING, r.stderr)
        self.assertIn("exited", r.stdout)
        self.assertIn("exit 3", r.stdout)
        logs = d.ctl("logs", "migrate")
        self.assertEqual(logs.returncode, 0, logs.stderr)
        self.assertTrue(logs.stdout.strip(), "the logs of an ended unit are kept")
        events = d.ctl("events", "migrate")
        self.assertEqual(events.returncode, 0, events.stderr)
        self.assertIn("not restarted", events.stdout)
        # Never restarted by itself; started again on request, as a new incarnation.
        self.assertEqual(d.starts().count("migrate"), 1)
        # start waits until the new run is up (done) or has ended (failed, exit 3): which one
        # it sees depends on how fast the job ends.
        r = d.ctl("start", "migrate")
        self.assertIn(r.returncode, (0, 1), r.stderr)
        if r.returncode == 1:
            self.assertIn("migrate: failed to start: exited with status 3", r.stderr)
        wait_until(lambda: d.starts().count("migrate") == 2, 10, "migrate to start again")
        wait_until(lambda: d.status("migrate")["state"] == "exited", 10, "migrate to exit")
        self.assertEqual(d.status("migrate")["incarnation"], 2)

    def test_restart_of_several_follows_stop_and_start_order(self) -> None:
        d = self.d
        # Running for vigild, and started for its own log (vigil-testsvc writes its start line
        # after the exec, which vigild does not wait for).
        wait_until(lambda: d.status("worker")["state"] == "running"
                   and d.starts().count("worker") == 1, 10, "worker to run")
        before = len(d.events())
        r = d.ctl("restart", "web", "worker")
        self.assertEqual(r.returncode, 0, r.stderr)
        wait_until(lambda: d.status("worker")["state"] == "running"
                   and d.starts().count("worker") == 2, 10, "worker to run again")
        seen = [(k, i) for k, i, _ in d.events()[before:] if k in ("start", "stop")]
        # worker stops first, web only after it; web starts (and gets ready) before worker.
        self.assertEqual(seen, [("stop", "worker"), ("stop", "web"), ("start", "web"),
                                ("start", "worker")])
        self.assertEqual(d.status("web")["restarts"], 0)


if __name__ == "__main__":
    unittest.main()
