"""Commands that wait (vigilctl(1): start, stop, restart, reload, shutdown return once the change
is done): checked against /proc when vigilctl returns, not against what vigilctl prints.

Each test runs its own small vigild as PID 1 of a PID namespace (daemon.Daemon). Every wait is
bounded and scaled by VIGIL_TEST_TIMEOUT_MULTIPLIER."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from daemon import FAST, Daemon  # noqa: E402
from harness import scaled, wait_until  # noqa: E402

EXIT_ERROR, EXIT_INTERRUPTED = 1, 130


def ready_after(d: Daemon, ident: str, ms: int, *modes: str) -> dict:
    """A testsvc unit that reports ready on fd 3 `ms` milliseconds after it starts."""
    return {"command": d.svc(ident, *modes, "sleep", str(ms), "ready-fd", "3", "sleep"),
            "ready": {"fd": 3}, "backoff": FAST}


def gone(pid: int) -> bool:
    """The process has ended (no /proc entry, or a zombie its parent has not reaped)."""
    info = harness.proc_info(pid)
    return info is None or info.state in ("Z", "X")


class Wait(unittest.TestCase):
    def daemon(self, units: dict) -> Daemon:
        d = Daemon(units)
        self.addCleanup(d.close)
        d.wait_socket()
        return d

    def timed(self, d: Daemon, *args: str, timeout: float = 10):
        t0 = time.monotonic()
        r = d.ctl(*args, timeout=timeout)
        return r, time.monotonic() - t0

    def test_restart_returns_once_the_new_run_is_ready(self):
        d = Daemon({}, start=False)
        self.addCleanup(d.close)
        d.write_units({"web": ready_after(d, "web", 300)})
        d.start()
        d.wait_socket()
        old = d.wait_pid("web")
        wait_until(lambda: d.status("web")["ready"], 10, "web ready")
        r, took = self.timed(d, "restart", "web")
        self.assertEqual(r.returncode, 0, r.stderr)
        # When vigilctl returns: the old process is gone, a new one runs and is ready.
        self.assertTrue(gone(old), f"old pid {old} still runs")
        new = d.main_pid("web")
        self.assertIsNotNone(new)
        self.assertNotEqual(new, old)
        st = d.status("web")
        self.assertTrue(st["ready"])
        self.assertEqual(st["state"], "running")
        self.assertGreaterEqual(took, 0.3)  # it waited for the readiness delay
        self.assertEqual(r.stdout, "web: restarting\n")  # piped: what it printed before

    def test_stop_returns_once_the_process_is_gone(self):
        d = Daemon({}, start=False)
        self.addCleanup(d.close)
        d.write_units({"slow": ready_after(d, "slow", 0, "term-delay", "300")})
        d.start()
        d.wait_socket()
        pid = d.wait_pid("slow")
        wait_until(lambda: d.status("slow")["ready"], 10, "slow ready")
        r, took = self.timed(d, "stop", "slow")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(gone(pid), f"pid {pid} still runs after stop returned")
        self.assertGreaterEqual(took, 0.25)  # SIGTERM took 300 ms
        self.assertEqual(d.status("slow")["state"], "stopped")

    def test_start_of_a_misspelt_command_fails_with_the_exec_error(self):
        # A unit that cannot spawn at boot fails the tree's start (OTP): so it is stopped,
        # misspelt and reloaded (a stopped unit stays stopped, and reload is done at once).
        d = Daemon({}, start=False)
        self.addCleanup(d.close)
        d.write_units({"bad": ready_after(d, "bad", 0)})
        d.start()
        d.wait_socket()
        wait_until(lambda: d.status("bad")["ready"], 10, "bad ready")
        self.assertEqual(d.ctl("stop", "bad").returncode, 0)
        d.write_units({"bad": {"command": ["/nonexistent/pyhton3"],
                               "backoff": {"initial": "1h", "max": "1h", "jitter": 0}}})
        r = d.ctl("reload")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(d.status("bad")["state"], "stopped")
        r, took = self.timed(d, "start", "bad")
        self.assertEqual(r.returncode, EXIT_ERROR, r.stderr)
        self.assertIn("vigilctl: bad: failed to start: ", r.stderr)
        self.assertIn("pyhton3: No such file or directory", r.stderr)
        self.assertIn("; see: vigilctl status bad; vigilctl logs bad\n", r.stderr)
        self.assertLess(took, scaled(5))

    def test_no_wait_returns_before_the_change(self):
        d = Daemon({}, start=False)
        self.addCleanup(d.close)
        d.write_units({"web": ready_after(d, "web", 1500)})
        d.start()
        d.wait_socket()
        wait_until(lambda: d.status("web")["ready"], 10, "web ready")
        inc = d.status("web")["incarnation"]
        r = d.ctl("restart", "--no-wait", "web")
        self.assertEqual(r.returncode, 0, r.stderr)
        st = d.status("web")
        # Right after: the new run (if it began at all) is not ready for 1.5 s yet.
        self.assertFalse(st["incarnation"] > inc and st["ready"], st)
        # And waiting, with --json: the answer as before, once it is ready.
        r = d.ctl("--json", "restart", "web")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["results"][0]["unit"], "web")
        self.assertTrue(d.status("web")["ready"])

    def test_timeout_after_the_command_limits_the_wait(self):
        d = self.daemon({"never": {"command": d_svc_never(), "ready": {"fd": 3},
                                   "backoff": FAST}})
        r, took = self.timed(d, "restart", "--timeout", "1", "never")
        self.assertEqual(r.returncode, EXIT_ERROR, r.stderr)
        self.assertGreaterEqual(took, 0.9)
        self.assertLess(took, scaled(5))
        self.assertIn("never: still restarting after 1s (state starting, waiting for readiness)",
                      r.stderr)
        self.assertIn("vigild goes on with the change", r.stderr)

    def test_ctrl_c_stops_waiting_only(self):
        d = self.daemon({"never": {"command": d_svc_never(), "ready": {"fd": 3},
                                   "backoff": FAST}})
        p = subprocess.Popen([harness.vigilctl(), "--socket", d.sock, "restart", "never"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        try:
            # vigilctl catches SIGINT once it waits (the kernel shows it: SigCgt).
            wait_until(lambda: catches_sigint(p.pid), 10, "vigilctl to wait")
            p.send_signal(signal.SIGINT)
            _, err = p.communicate(timeout=scaled(5))
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.assertEqual(p.returncode, EXIT_INTERRUPTED, err)
        self.assertIn("stopped waiting; vigild goes on with the change", err)
        # It does: the restart goes on without vigilctl.
        wait_until(lambda: d.status("never")["incarnation"] >= 2, 10, "the new run")

    def test_shutdown_returns_once_vigild_is_gone(self):
        d = Daemon({}, start=False)
        self.addCleanup(d.close)
        d.write_units({"slow": ready_after(d, "slow", 0, "term-delay", "300")})
        d.start()
        d.wait_socket()
        wait_until(lambda: d.status("slow")["ready"], 10, "slow ready")
        vigild = d.ns.init_pid
        r, took = self.timed(d, "shutdown")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(gone(vigild), "vigild still runs after shutdown returned")
        self.assertGreaterEqual(took, 0.25)  # slow took 300 ms to stop


def catches_sigint(pid: int) -> bool:
    try:
        status = harness.read_text(f"/proc/{pid}/status")
    except OSError:
        return False
    for line in status.splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGINT - 1)))
    return False


def d_svc_never() -> list:
    """A service that never reports readiness (no fd 3 write)."""
    return [harness.testsvc(), "--id", "never", "sleep"]


if __name__ == "__main__":
    unittest.main()
