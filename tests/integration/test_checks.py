"""`vigilctl checks` and `vigilctl check --run` against a real vigild (PID 1 of a fresh PID
namespace): an http liveness probe against vigil-testsvc's HTTP server (which answers 500 after
a number of requests), a tcp readiness probe, the sd_notify watchdog, a probe that only fails,
and the rows of a stopped unit. Every wait is bounded and scaled by the harness's multiplier."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from daemon import FAST, Daemon  # noqa: E402
from harness import scaled, wait_until  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def row(d: Daemon, unit: str, probe: str) -> dict:
    rows = d.ctl_json("checks", unit)["checks"]
    for r in rows:
        if r["probe"] == probe:
            return r
    raise AssertionError(f"no {unit}/{probe} row in {rows}")


class Checks(unittest.TestCase):
    def test_checks_and_check_run(self):
        web, closed = free_port(), free_port()
        # A listener that accepts and never answers: a check of it lasts its whole timeout.
        mute = socket.socket()
        self.addCleanup(mute.close)
        mute.bind(("127.0.0.1", 0))
        mute.listen(16)
        pings = ["notify", "WATCHDOG=1", "sleep", "100"] * 150
        d = Daemon({}, start=False)
        self.addCleanup(d.close)
        d.write_units({
            # 500 from the 9th request on: liveness (3 in a row) then restarts it.
            "web": {"command": d.svc("web", "--fail-after", "8", "http", str(web), "sleep"),
                    "backoff": FAST,
                    # The delay lets the server of a new incarnation listen first, so that
                    # its checks pass (and the last failure stays the 500) for a while.
                    "liveness": {"http": {"port": web, "path": "/healthz"}, "period": "300ms",
                                 "initial_delay": "1s", "failure_threshold": 3},
                    "readiness": {"tcp": {"port": web}, "period": "300ms"}},
            "dog": {"command": d.svc("dog", *pings, "sleep"), "watchdog": "1s"},
            "bad": {"command": d.svc("bad", "sleep"),
                    "liveness": {"tcp": {"port": closed}, "period": "1h",
                                 "failure_threshold": 1000}},
            "plain": {"command": d.svc("plain", "sleep")},
            "slow": {"command": d.svc("slow", "sleep"),
                     "liveness": {"http": {"port": mute.getsockname()[1]}, "period": "1h",
                                  "initial_delay": "1h", "timeout": "1s",
                                  "failure_threshold": 1000}},
        })
        d.start()
        d.wait_socket()

        # Counts grow while the server answers 200.
        wait_until(lambda: row(d, "web", "liveness")["successes"] >= 2, 10, "liveness checks")
        live = row(d, "web", "liveness")
        self.assertEqual(live["kind"], "http")
        self.assertEqual(live["target"], f"http://127.0.0.1:{web}/healthz")
        self.assertEqual(live["state"], "passing")
        self.assertTrue(live["in_a_row_ok"])
        self.assertGreaterEqual(live["in_a_row"], 2)
        self.assertEqual((live["period_ms"], live["threshold"]), (300, 3))
        self.assertIsNotNone(live["next_ms"])
        self.assertLessEqual(live["next_ms"], 300)
        ready = row(d, "web", "readiness")
        self.assertEqual((ready["kind"], ready["target"]), ("tcp", f"127.0.0.1:{web}"))
        wait_until(lambda: row(d, "web", "readiness")["state"] == "passing", 10, "readiness")
        # A unit with no probe and no watchdog has no rows.
        self.assertEqual(d.ctl_json("checks", "plain")["checks"], [])

        # The watchdog row: keep-alives counted, the time left below the interval.
        wait_until(lambda: row(d, "dog", "watchdog")["successes"] >= 3, 10, "keep-alives")
        dog = row(d, "dog", "watchdog")
        self.assertEqual((dog["kind"], dog["target"], dog["state"]), ("watchdog", None, "passing"))
        self.assertEqual(dog["period_ms"], 1000)
        self.assertLessEqual(dog["next_ms"], 1000)

        # check --run answers at once (the next scheduled check is an hour away) and counts.
        before = row(d, "bad", "liveness")["failures"]
        t0 = time.monotonic()
        r = d.ctl("check", "--run", "bad/liveness")
        self.assertLess(time.monotonic() - t0, scaled(2))
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("bad/liveness: failed", r.stdout)
        self.assertIn("connection refused", r.stdout)
        bad = row(d, "bad", "liveness")
        self.assertEqual(bad["failures"], before + 1)
        self.assertFalse(bad["in_a_row_ok"])
        self.assertIn("connection refused", bad["last_failure"]["message"])
        self.assertEqual(bad["state"], "pending")  # 1000 failures make a verdict
        # web may be between two incarnations by now (liveness restarts it once its server
        # answers 500, from its 9th request on): the check is asked of a running one.
        def readiness_run():
            r = d.ctl("--json", "check", "--run", "web/readiness")
            if r.returncode != 0 and "web is not running" in r.stderr:
                return None
            self.assertEqual(r.returncode, 0, r.stderr)
            return json.loads(r.stdout)
        j = wait_until(readiness_run, 10, "a readiness check of a running web")
        self.assertEqual((j["unit"], j["probe"], j["ok"]), ("web", "readiness", True))
        self.assertIsInstance(j["duration_ms"], int)
        r = d.ctl("check", "--run", "web/livenes")
        self.assertEqual(r.returncode, 4)
        self.assertIn("did you mean 'liveness'", r.stderr)

        # The server answers 500: the failure's message shows, and after liveness restarted
        # the service the last failure is still there while the counters start again.
        wait_until(lambda: len(d.starts()) >= 2 and d.starts().count("web") >= 2, 15,
                   "the restart by liveness")
        live = row(d, "web", "liveness")
        self.assertEqual(live["last_failure"]["message"], "status 500")
        self.assertLess(abs(live["last_failure"]["time"] / 1000 - time.time()), 60)
        self.assertLess(live["successes"], 8)

        # A stopped unit: its rows say off; its probes cannot run.
        self.assertEqual(d.ctl("stop", "bad").returncode, 0)
        wait_until(lambda: row(d, "bad", "liveness")["state"] == "off", 10, "bad's rows off")
        bad = row(d, "bad", "liveness")
        self.assertIsNone(bad["next_ms"])
        self.assertEqual(bad["successes"] + bad["failures"], 0)
        self.assertIsNotNone(bad["last_failure"])
        r = d.ctl("check", "--run", "bad/liveness")
        self.assertEqual(r.returncode, 1)
        self.assertIn("bad is not running: its probes do not run", r.stderr)

        # A client that leaves before its check completes: the answer is dropped, vigild goes on.
        for _ in range(3):
            with socket.socket(socket.AF_UNIX) as c:
                c.connect(d.sock)
                c.sendall(b'{"id":1,"cmd":"check","args":{"unit":"slow","probe":"liveness",'
                          b'"run":true}}\n')
        r = d.ctl("check", "--run", "slow/liveness")  # joins that check, or runs the next
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("timed out after 1000ms", r.stdout)
        self.assertIn(row(d, "slow", "liveness")["failures"], (1, 2))  # 4 requests, at most 2 checks

        # The table, piped: plain, one row per check.
        r = d.ctl("checks")
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.splitlines()
        self.assertTrue(lines[0].startswith("UNIT"), lines)
        self.assertEqual(len(lines), 1 + 5)
        self.assertNotIn("\033", r.stdout)
        self.assertTrue(any("bad" in x and "off" in x and "connection refused" in x
                            for x in lines), lines)

        # A clean exit, with a check still waiting: under ASan, no leak and no error report.
        with socket.socket(socket.AF_UNIX) as c:
            c.connect(d.sock)
            c.sendall(b'{"id":1,"cmd":"check","args":{"unit":"slow","probe":"liveness",'
                      b'"run":true}}\n')
            self.assertEqual(d.ctl("shutdown").returncode, 0)
            self.assertEqual(d.wait_exit(), 0)
        self.assertNotIn("Sanitizer", d.stderr())
        self.assertNotIn("runtime error", d.stderr())


if __name__ == "__main__":
    unittest.main()
