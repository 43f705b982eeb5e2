"""Rolling restarts and draining with real processes (vigilctl(1) restart --rolling,
vigil.unit(5) update, max_unavailable, stop.drain): an instanced testsvc unit under a vigild
running as PID 1 of a PID namespace (daemon.Daemon). While `vigilctl restart --rolling web`
runs, the test polls /proc (which instances have a live process) and status (which are ready)
and checks that the roll never has more than max_unavailable of them down or not ready, that
every pid is replaced in instance order, that a new instance that fails stops the roll with the
other pids unchanged, and that a drain delays the stop signal (the service's own log has the
time it got SIGTERM, on the same CLOCK_MONOTONIC as the test).

Every wait is bounded and scaled by VIGIL_TEST_TIMEOUT_MULTIPLIER."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from daemon import Daemon  # noqa: E402
from harness import scaled, wait_until  # noqa: E402

EXIT_ERROR = 1
N = 3


def instanced(d: Daemon, n: int, ready_ms: int, **fields) -> dict:
    """`n` instances of a testsvc that reports ready on fd 3 `ready_ms` after it starts and
    logs as web<i> (VIGIL_INSTANCE). A file fail<i> in the daemon's folder makes the next run
    of instance i exit with status 1 before it is ready."""
    argv = " ".join(d.svc("web$VIGIL_INSTANCE", "sleep", str(ready_ms), "ready-fd", "3",
                          "sleep")).replace("--id web$VIGIL_INSTANCE", '--id "web$VIGIL_INSTANCE"')
    script = (f'if [ -e {d.dir}/fail"$VIGIL_INSTANCE" ]; then exit 1; fi; exec {argv}')
    unit = {"command": ["sh", "-c", script], "ready": {"fd": 3}, "instances": n,
            # One failure must not loop: the restart after it waits long enough.
            "backoff": {"initial": "30s", "max": "30s", "jitter": 0}}
    unit.update(fields)
    return unit


def mono_ms() -> int:
    return int(time.monotonic() * 1000)


class Rolling(unittest.TestCase):
    def daemon(self, units: dict) -> Daemon:
        d = Daemon(units)
        self.addCleanup(d.close)
        d.wait_socket()
        return d

    def pids(self, d: Daemon) -> dict:
        return {i: d.main_pid(f"web{i}") for i in range(1, N + 1)}

    def all_ready(self, d: Daemon) -> bool:
        units = d.ctl_json("status", "web")["units"]
        return len(units) == N and all(u["ready"] for u in units)

    def roll_and_watch(self, d: Daemon, *args: str) -> tuple:
        """Runs `vigilctl restart --rolling ARGS web` and, until it exits, polls /proc and
        status. Returns (process, the most instances seen down or not ready at once, the
        first pid seen for each instance after its old one)."""
        before = self.pids(d)
        p = subprocess.Popen([harness.vigilctl(), "--socket", d.sock, "restart", "--rolling",
                              *args, "web"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: p.poll() is None and p.kill())
        worst, order = 0, []
        deadline = time.monotonic() + scaled(20)
        while p.poll() is None and time.monotonic() < deadline:
            now = self.pids(d)  # /proc first: a drain keeps the old process while not ready
            down = {i for i, pid in now.items() if pid is None}
            for i, pid in now.items():
                if pid is not None and pid != before[i] and i not in order:
                    order.append(i)
            st = json.loads(d.ctl("--json", "status", "web").stdout or "{}")
            for u in st.get("units", []):
                if not u["ready"]:
                    down.add(int(u["name"].split("@")[1]))
            worst = max(worst, len(down))
        out, err = p.communicate(timeout=scaled(5))
        return p.returncode, out, err, worst, order, before

    def test_roll_replaces_every_pid_in_order_one_down_at_a_time(self):
        d = Daemon({}, start=False)
        self.addCleanup(d.close)
        d.write_units({"web": instanced(d, N, 200, stop={"drain": "300ms"})})
        d.start()
        d.wait_socket()
        wait_until(lambda: self.all_ready(d), 10, "every instance ready")
        code, out, err, worst, order, before = self.roll_and_watch(d)
        self.assertEqual(code, 0, err)
        self.assertLessEqual(worst, 1, "more than max_unavailable down or not ready at once")
        self.assertEqual(worst, 1, "the polls never saw an instance being replaced")
        self.assertEqual(order, [1, 2, 3], "instances replaced out of order")
        after = self.pids(d)
        for i in range(1, N + 1):
            self.assertIsNotNone(after[i])
            self.assertNotEqual(after[i], before[i], f"web@{i} kept its pid")
            self.assertTrue(harness.proc_info(before[i]) is None or
                            harness.proc_info(before[i]).state in ("Z", "X"))
        # The old ones were stopped in order too (their own log says when they got SIGTERM).
        self.assertEqual([s for s in d.stops() if s.startswith("web")], ["web1", "web2", "web3"])
        st = d.ctl_json("status", "web")["units"]
        self.assertTrue(all(u["roll"]["state"] == "done" for u in st))
        self.assertEqual(st[0]["roll"]["done"], N)
        self.assertTrue(all(u["restarts"] == 0 for u in st))  # a roll is not counted
        events = d.ctl("events", "web").stdout
        self.assertEqual(events.count("rolling restart of web: step "), N)
        self.assertIn("rolling restart of web done: 3/3", events)

    def test_max_unavailable_two(self):
        d = Daemon({}, start=False)
        self.addCleanup(d.close)
        # Two instances are down together while the new ones get ready: 300 ms, longer under
        # a sanitizer (scaled), where each poll's vigilctl takes a good part of that.
        ready_ms = int(300 * harness.timeout_multiplier())
        d.write_units({"web": instanced(d, N, ready_ms)})
        d.start()
        d.wait_socket()
        wait_until(lambda: self.all_ready(d), 10, "every instance ready")
        code, out, err, worst, order, before = self.roll_and_watch(d, "--max-unavailable", "2")
        self.assertEqual(code, 0, err)
        self.assertLessEqual(worst, 2)
        self.assertEqual(worst, 2, "the polls never saw two instances replaced at once")
        self.assertEqual(sorted(order[:2]), [1, 2])
        self.assertEqual(order[2:], [3])
        # Beyond the instances: refused before anything is touched.
        r = d.ctl("restart", "--rolling", "--max-unavailable", "4", "web")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("1 to 3", r.stderr)

    def test_a_failing_new_instance_stops_the_roll_and_leaves_the_rest(self):
        d = Daemon({}, start=False)
        self.addCleanup(d.close)
        d.write_units({"web": instanced(d, N, 100)})
        d.start()
        d.wait_socket()
        wait_until(lambda: self.all_ready(d), 10, "every instance ready")
        open(os.path.join(d.dir, "fail2"), "w").close()
        code, out, err, worst, order, before = self.roll_and_watch(d)
        self.assertEqual(code, EXIT_ERROR)
        self.assertIn("rolling restart stopped at web@2", err)
        self.assertIn("exited with status 1 before it was ready", err)
        self.assertIn("vigilctl restart --rolling web", err)
        after = self.pids(d)
        self.assertNotEqual(after[1], before[1])
        self.assertIsNone(after[2])  # failed; its restart waits for its backoff
        self.assertEqual(after[3], before[3], "the roll touched web@3 after a failure")
        self.assertNotIn("web3", d.stops())
        st = d.status("web@2")
        self.assertEqual(st["roll"]["state"], "stopped")
        self.assertEqual(st["roll"]["at"], "web@2")
        self.assertEqual(st["state"], "backoff")  # its restart policy goes on

    def test_drain_delays_the_stop_signal(self):
        d = Daemon({}, start=False)
        self.addCleanup(d.close)
        d.write_units({"web": instanced(d, 1, 0, stop={"drain": "1s"})})
        d.start()
        d.wait_socket()
        wait_until(lambda: d.status("web@1")["ready"], 10, "web@1 ready")
        pid = d.main_pid("web1")
        t0 = mono_ms()
        p = subprocess.Popen([harness.vigilctl(), "--socket", d.sock, "stop", "web@1"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: p.poll() is None and p.kill())
        st = wait_until(lambda: (s := d.status("web@1"))["state"] == "stopping" and s, 5,
                        "web@1 stopping")
        self.assertFalse(st["ready"])
        self.assertIsNotNone(st["drain_ms"])
        self.assertIn("draining", d.ctl("status").stdout)
        self.assertIsNotNone(harness.proc_info(pid))  # still there, draining
        _, err = p.communicate(timeout=scaled(10))
        self.assertEqual(p.returncode, 0, err)
        with open(d.log) as f:
            stops = [line.split() for line in f if line.startswith("stop web1 ")]
        self.assertEqual(len(stops), 1, stops)
        self.assertEqual(stops[0][2], "SIGTERM")
        self.assertGreaterEqual(int(stops[0][3]) - t0, 1000, "SIGTERM came before the drain")


if __name__ == "__main__":
    unittest.main()
