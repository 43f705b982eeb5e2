"""Health with real processes and real clients: liveness probes (http, tcp, exec),
the readiness protocols (Debian's systemd-notify on the per-unit NOTIFY_SOCKET, the ready fd, a
log line), foreign notifications, the watchdog, start timeouts, and the HTTP endpoint read with
plain HTTP clients and checked by promtool.

vigild runs as PID 1 of a fresh PID namespace. `unshare --pid` keeps the host's network, so
probe targets and HTTP clients use 127.0.0.1 and free ports picked by binding port 0. Verdicts
come from the kernel (/proc), from what HTTP servers saw, and from the services' own log
(testsvc start/stop/mark lines carry CLOCK_MONOTONIC milliseconds, the clock of Python's
time.monotonic(), so the test's own timestamps compare with them)."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from daemon import FAST, Daemon, cmdline  # noqa: E402
from harness import holds_for, scaled, wait_until  # noqa: E402

SYSTEMD_NOTIFY = shutil.which("systemd-notify")
PROMTOOL = shutil.which("promtool")
CURL = shutil.which("curl")


def _libsystemd() -> Optional[str]:
    try:
        import ctypes
        ctypes.CDLL("libsystemd.so.0")
        return "libsystemd.so.0"
    except OSError:
        return None


LIBSYSTEMD = _libsystemd()


def free_port() -> int:
    """A TCP port nobody listens on right now (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mono_ms() -> int:
    """CLOCK_MONOTONIC in ms, the clock of testsvc's log lines."""
    return int(time.monotonic() * 1000)


class HealthServer:
    """127.0.0.1:<port> answering GET with the statuses of `script` in turn, then `then`
    (which a test may change under `lock`). Every request is recorded as (monotonic ms at
    arrival, status)."""

    def __init__(self, script: list, then: int = 200) -> None:
        self.script = list(script)
        self.then = then
        self.seen: list = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                with outer.lock:
                    n = len(outer.seen)
                    status = outer.script[n] if n < len(outer.script) else outer.then
                    outer.seen.append((mono_ms(), status))
                body = b"ok\n" if status == 200 else b"failing\n"
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(body)))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # a prober that gave up (timeout, stop) closed the connection

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def requests(self) -> list:
        with self.lock:
            return list(self.seen)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def http_get(port: int, path: str, method: str = "GET", timeout: float = 5):
    """(status, headers dict with lower-case names, body str) from vigild's endpoint."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=scaled(timeout))
    try:
        c.request(method, path)
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read().decode()
    finally:
        c.close()


def raw_exchange(port: int, data: bytes, timeout: float = 5) -> bytes:
    """Sends raw bytes and reads until the server closes (or the timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=scaled(timeout)) as s:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before reading everything
        out = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
        except ConnectionResetError:
            pass
        return out


def status_line(resp: bytes) -> str:
    return resp.split(b"\r\n", 1)[0].decode("latin-1")


def shape(v):
    """The structure of a JSON value: key sets of objects, element shapes of arrays, type names
    of scalars (null and numbers are one kind: a pid or a backoff may come and go)."""
    if isinstance(v, dict):
        return {k: shape(x) for k, x in v.items()}
    if isinstance(v, list):
        return [shape(x) for x in v]
    if v is None or isinstance(v, (int, float)) and not isinstance(v, bool):
        return "number-or-null"
    return type(v).__name__


class Health(unittest.TestCase):
    def daemon(self, build, http: bool = False, inspect: bool = True) -> Daemon:
        """build(d) returns the units. With http, vigild serves on a free port (self.port)."""
        args: tuple = ()
        if http:
            self.port = free_port()
            args = ("--http", f"127.0.0.1:{self.port}")
        d = Daemon({}, args=args, start=False)
        self.addCleanup(d.close)
        d.write_units(build(d))
        d.start(inspect=inspect)
        if http:
            wait_until(lambda: self._answers(), 10, "vigild's HTTP endpoint")
        return d

    def _answers(self) -> bool:
        try:
            return http_get(self.port, "/healthz", timeout=1)[0] == 200
        except OSError:
            return False

    @staticmethod
    def notify_socket(d: Daemon, unit: str) -> str:
        # A sibling of the control socket's 0700 folder (<dir>/run), so that services running
        # as another user can reach it.
        return os.path.join(d.dir, "run-notify", unit + ".sock")

    @staticmethod
    def gate(d: Daemon, name: str) -> str:
        return os.path.join(d.dir, name)

    def gated(self, d: Daemon, ident: str, gate: str, *modes: str) -> list:
        """A service that waits (in sh) for the file `gate`, then execs testsvc with modes."""
        argv = " ".join(f"'{a}'" for a in d.svc(ident, *modes))
        return ["sh", "-c", f"while [ ! -e '{gate}' ]; do sleep 0.02; done; exec {argv}"]

    @staticmethod
    def log_lines(d: Daemon) -> list:
        with open(d.log) as f:
            return [line.split() for line in f if line.strip()]

    def event_ms(self, d: Daemon, kind: str, ident: str, arg: Optional[str] = None) -> list:
        """Timestamps (ms) of the testsvc log lines `kind ident [arg] ms`."""
        out = []
        for p in self.log_lines(d):
            if len(p) >= 4 and p[0] == kind and p[1] == ident and (arg is None or p[2] == arg):
                out.append(int(p[-1]))
        return out

    # ---- liveness probes ---------------------------------------------------------------------

    def test_http_liveness_restarts_after_exactly_failure_threshold_failures(self):
        srv = HealthServer([200, 200, 500, 500, 500])  # then healthy again
        self.addCleanup(srv.close)
        d = self.daemon(lambda d: {"web": {
            "command": d.svc("web", "sleep"), "backoff": FAST,
            "liveness": {"http": {"port": srv.port, "path": "/healthz"}, "initial_delay": "200ms",
                         "period": "100ms", "timeout": "1s", "failure_threshold": 3}}})
        d.wait_starts(2, timeout=10)
        stop_ms = self.event_ms(d, "stop", "web")[0]
        restart_ms = self.event_ms(d, "start", "web")[1]
        before = [s for t, s in srv.requests() if t <= stop_ms]
        self.assertEqual(before, [200, 200, 500, 500, 500])
        # Probes stop while the unit stops and restarts; the new run waits its initial delay.
        self.assertEqual([s for t, s in srv.requests() if stop_ms < t < restart_ms], [])
        self.assertEqual(d.events("stop")[0], ("stop", "web", "SIGTERM"))
        # Healthy again: no further restart.
        self.assertTrue(holds_for(lambda: d.starts() == ["web", "web"], 0.5))
        self.assertIn(f"liveness http 127.0.0.1:{srv.port}/healthz: status 500, 3 times",
                      d.stderr())

    def test_http_liveness_on_a_service_that_turns_unhealthy(self):
        port = free_port()
        d = self.daemon(lambda d: {
            # Each run fails after its 5th check: keep vigild from giving up on a slow machine.
            "root": {"kind": "supervisor", "intensity": 100, "period": "1m"},
            "web": {
            "command": d.svc("web", "--fail-after", "2", "http", str(port), "sleep"),
            "backoff": FAST,
            "liveness": {"http": {"port": port, "path": "/healthz"}, "initial_delay": "200ms",
                         "period": "100ms", "failure_threshold": 3}}})
        d.wait_starts(2, timeout=10)
        first = self.event_ms(d, "start", "web")[0]
        stop = self.event_ms(d, "stop", "web")[0]
        # 2 good checks then 3 bad ones, a period apart after the initial delay: the 5th check
        # is 200 + 4 * 100 ms after the start at the earliest. vigild counts from its spawn,
        # the service logs its start after its exec: 20 ms for that, scaled (a sanitizer
        # build's testsvc takes longer to reach main()).
        self.assertGreaterEqual(stop - first, 600 - 20 * harness.timeout_multiplier())
        self.assertIn(f"liveness http 127.0.0.1:{port}/healthz: status 500, 3 times", d.stderr())
        # The new run serves again (its counter restarted with it): /healthz is 200 once more.
        wait_until(lambda: self.event_ms(d, "http", "web", str(port))[1:], 5, "the new listener")

    def test_tcp_probe_on_a_closed_port_fails_and_on_an_open_port_holds(self):
        closed = free_port()
        listener = socket.socket()
        self.addCleanup(listener.close)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        opened = listener.getsockname()[1]
        d = self.daemon(lambda d: {
            "root": {"kind": "supervisor", "intensity": 100, "period": "1m"},
            "closed": {"command": d.svc("closed", "sleep"), "backoff": FAST,
                       "liveness": {"tcp": {"port": closed}, "period": "100ms",
                                    "failure_threshold": 2}},
            "open": {"command": d.svc("open", "sleep"), "backoff": FAST,
                     "liveness": {"tcp": {"port": opened}, "period": "100ms",
                                  "failure_threshold": 1}},
        })
        d.wait_starts(2)
        open_pid = d.wait_pid("open")
        first = d.wait_pid("closed")
        d.wait_pid("closed", other_than=first)
        self.assertRegex(d.stderr(), rf"liveness tcp 127\.0\.0\.1:{closed}: [^\n]*, 2 times")
        self.assertEqual(d.main_pid("open"), open_pid)
        self.assertEqual(d.starts().count("open"), 1)

    def test_probes_pause_while_the_unit_backs_off(self):
        srv = HealthServer([])
        self.addCleanup(srv.close)
        d = self.daemon(lambda d: {"c": {
            "command": d.svc("c", "sleep", "500", "exit", "1"),
            "backoff": {"initial": "1500ms", "max": "1500ms", "jitter": 0},
            "liveness": {"http": {"port": srv.port, "path": "/healthz"}, "period": "50ms",
                         "initial_delay": "100ms"}}})
        d.wait_starts(2, timeout=10)
        exited = self.event_ms(d, "exit", "c")[0]
        started, restarted = self.event_ms(d, "start", "c")[:2]
        # The backoff spaces starts (it counts from the start of the run that ended): c ran
        # 500 ms, so it waits about 1 s after its exit.
        self.assertGreaterEqual(restarted - started, 1400)
        self.assertGreaterEqual(restarted - exited, 800)
        times = [t for t, _ in srv.requests()]
        self.assertTrue([t for t in times if t < exited], "probed while running")
        # Nothing between the exit and the next start (a check in flight at the exit may land
        # a few ms after it).
        self.assertEqual([t for t in times if exited + 100 < t < restarted], [])

    def test_startup_probe_holds_liveness_until_it_succeeds(self):
        srv = HealthServer([500] * 1000)  # liveness would fail at once
        self.addCleanup(srv.close)
        d = self.daemon(lambda d: {"s": {
            "command": d.svc("s", "sleep"),
            "startup": {"exec": ["test", "-e", self.gate(d, "started")], "period": "50ms",
                        "failure_threshold": 1000},
            "liveness": {"http": {"port": srv.port, "path": "/healthz"}, "period": "50ms",
                         "failure_threshold": 2}}})
        d.wait_starts(1)
        self.assertTrue(holds_for(lambda: not srv.requests(), 0.6), "liveness held back")
        open(self.gate(d, "started"), "w").close()
        gate_ms = mono_ms()
        d.wait_starts(2, timeout=10)
        self.assertGreaterEqual(srv.requests()[0][0], gate_ms - 60)
        self.assertIn(f"liveness http 127.0.0.1:{srv.port}/healthz: status 500, 2 times",
                      d.stderr())

    def test_hanging_exec_probe_is_killed_at_its_timeout(self):
        d = self.daemon(lambda d: {
            "root": {"kind": "supervisor", "intensity": 100, "period": "1m"},
            "h": {
            "command": d.svc("h", "sleep"), "backoff": FAST,
            "liveness": {"exec": ["sh", "-c", "sleep 100 & sleep 100"], "period": "100ms",
                         "timeout": "600ms", "failure_threshold": 2}}})
        d.wait_starts(1)
        seen: dict = {}  # host pid of each `sleep 100` -> [first seen, last seen]
        most_at_once = 0
        end = time.monotonic() + scaled(15)
        while time.monotonic() < end and (len(seen) < 6 or d.starts().count("h") < 2):
            now = time.monotonic()
            alive = [p.pid for p in d.processes()
                     if p.state != "Z" and cmdline(p.pid) == ["sleep", "100"]]
            most_at_once = max(most_at_once, len(alive))
            for pid in alive:
                seen.setdefault(pid, [now, now])[1] = now
            time.sleep(0.02)
        self.assertGreaterEqual(len(seen), 6, "checks ran one after the other")
        # One check at a time; a check is its shell's two sleeps (foreground and background,
        # both killed with the check's process group).
        self.assertLessEqual(most_at_once, 2, "never two checks at once")
        for pid, (a, b) in seen.items():
            self.assertLess(b - a, scaled(0.6 + 0.4), f"sleep {pid} outlived the 600ms timeout")
        # Two timed-out checks are a liveness failure: the service was restarted.
        self.assertGreaterEqual(d.starts().count("h"), 2)
        self.assertIn("liveness exec sh -c sleep 100 & sleep 100: timed out after 600ms, 2 times",
                      d.stderr())
        # Stopping the unit stops its probes: no check is left behind, nothing unreaped.
        self.assertEqual(d.ctl("stop", "h").returncode, 0)
        d.wait_gone("h")
        vigild = cmdline(d.ns.init_pid)  # vigild, and its spawner helper (a fork of it)
        wait_until(lambda: all(cmdline(p.pid) == vigild for p in d.processes()), 3,
                   "no process but vigild's")

    # ---- readiness ---------------------------------------------------------------------------

    def check_released_after(self, d: Daemon, ready_mark: str) -> None:
        """`b` (after `a`) starts only after `a` logged `mark a <ready_mark>`, and `a` is ready."""
        d.wait_starts(2, timeout=10)
        self.assertEqual(d.starts(), ["a", "b"])
        marked = self.event_ms(d, "mark", "a", ready_mark)
        self.assertEqual(len(marked), 1, self.log_lines(d))
        b_start = self.event_ms(d, "start", "b")[0]
        a_start = self.event_ms(d, "start", "a")[0]
        self.assertGreaterEqual(b_start, marked[0])
        self.assertGreaterEqual(b_start - a_start, 300)
        self.assertTrue(d.status("a")["ready"])
        self.assertEqual(d.starts().count("a"), 1)

    @unittest.skipIf(SYSTEMD_NOTIFY is None, "no systemd-notify (Debian package systemd)")
    def test_systemd_notify_ready_makes_the_unit_ready_and_releases_its_dependent(self):
        def units(d):
            mark = " ".join(d.svc("a", "sleep", "300", "mark", "notifying"))
            return {
                "a": {"command": ["sh", "-c", f"{mark}; systemd-notify --ready; exec sleep 1000"],
                      "ready": {"notify": True, "timeout": "10s"}},
                "b": {"command": d.svc("b", "sleep"), "after": ["a"]},
            }
        d = self.daemon(units)
        self.check_released_after(d, "notifying")
        # systemd-notify follows READY=1 with a BARRIER=1 datagram carrying a pipe end, and
        # exits once vigild closed it: vigild checks the sender before closing it, so the
        # barrier is attributed too and nothing is refused.
        self.assertNotIn("refused", d.stderr())

    @unittest.skipIf(LIBSYSTEMD is None, "no libsystemd.so.0 (Debian package libsystemd0)")
    def test_libsystemd_sd_notify_and_sd_watchdog_enabled(self):
        # A program linked with libsystemd (Python's ctypes here): sd_watchdog_enabled() must
        # see vigild's WATCHDOG_USEC, sd_notify() READY=1 and WATCHDOG=1 must be accepted.
        program = (
            "import ctypes, sys, time\n"
            "sd = ctypes.CDLL('libsystemd.so.0')\n"
            "usec = ctypes.c_uint64(0)\n"
            "print('enabled', sd.sd_watchdog_enabled(0, ctypes.byref(usec)), usec.value,"
            " flush=True)\n"
            "assert sd.sd_notify(0, b'READY=1\\nSTATUS=serving\\nWATCHDOG=1') > 0\n"
            "for _ in range(12):\n"
            "    time.sleep(0.1)\n"
            "    assert sd.sd_notify(0, b'WATCHDOG=1') > 0\n"
            "print('silent', flush=True)\n"
            "time.sleep(1000)\n")
        d = self.daemon(lambda d: {
            "root": {"kind": "supervisor", "intensity": 100, "period": "1m"},
            "a": {"command": [sys.executable, "-c", program], "backoff": FAST,
                  "ready": {"notify": True, "timeout": "10s"}, "watchdog": "1500ms"},
            "b": {"command": d.svc("b", "sleep"), "after": ["a"]},
        })
        d.wait_starts(1, timeout=10)
        # a's output reaches vigild's stdout through a pipe and the forwarder, which may lag
        # behind its READY=1 (a datagram) under load: wait for it rather than read it once.
        wait_until(lambda: "a | enabled" in d.stdout(), 5, "a's first line")
        self.assertIn("a | enabled 1 1500000", d.stdout())
        ready = re.compile(r"a\[\d+\]: ready, pid")  # the journal has its own queue too
        wait_until(lambda: ready.search(d.stderr()), 5, "the journal line of a's readiness")
        # 1.2 s of WATCHDOG=1 every 100 ms, then silence: the watchdog fires once, after.
        wait_until(lambda: "no WATCHDOG=1 within 1s500ms" in d.stderr(), 10, "the watchdog")
        out = wait_until(lambda: d.stdout().count("a | enabled") >= 2 and d.stdout(), 10,
                         "the restarted run")
        self.assertIn("a | silent", out, f"stdout: {out}\nstderr: {d.stderr()}")
        self.assertLess(out.index("a | silent"), out.rindex("a | enabled"))
        self.assertEqual(out.count("a | silent"), 1)
        self.assertNotIn("refused", d.stderr())

    def test_ready_fd_makes_the_unit_ready_and_releases_its_dependent(self):
        d = self.daemon(lambda d: {
            "a": {"command": d.svc("a", "sleep", "300", "mark", "ready", "ready-fd", "3", "sleep"),
                  "ready": {"fd": 3, "timeout": "10s"}},
            "b": {"command": d.svc("b", "sleep"), "after": ["a"]},
        })
        self.check_released_after(d, "ready")

    def test_ready_log_line_makes_the_unit_ready_and_releases_its_dependent(self):
        d = self.daemon(lambda d: {
            "a": {"command": d.svc("a", "lines", "1", "booting", "sleep", "300", "mark", "ready",
                                   "lines", "1", "Serving HTTP", "sleep"),
                  "ready": {"log": "^Serving HTTP", "timeout": "10s"}},
            "b": {"command": d.svc("b", "sleep"), "after": ["a"]},
        })
        self.check_released_after(d, "ready")

    def test_notification_from_a_foreign_process_is_refused(self):
        # `f` (a sibling service, started first) and this test process (outside the namespace)
        # send READY=1 to m's socket; only m's own READY=1, once the gate file exists, counts.
        def units(d):
            sock = self.notify_socket(d, "m")
            send = " ".join(d.svc("f", "notify", "READY=1", "mark", "sent", "sleep"))
            return {
                "f": {"command": ["sh", "-c", f"while [ ! -S '{sock}' ]; do sleep 0.02; done; "
                                  f"NOTIFY_SOCKET='{sock}' exec {send}"]},
                "m": {"command": self.gated(d, "m", self.gate(d, "go"), "notify-ready", "sleep"),
                      "ready": {"notify": True, "timeout": "30s"}, "after": ["f"]},
                "z": {"command": d.svc("z", "sleep"), "after": ["m"]},
            }
        d = self.daemon(units)
        sock = self.notify_socket(d, "m")
        wait_until(lambda: self.event_ms(d, "mark", "f", "sent"), 5, "f's READY=1")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(b"READY=1\nSTATUS=forged", sock)
        if SYSTEMD_NOTIFY:
            subprocess.run([SYSTEMD_NOTIFY, "--ready"], env={**os.environ, "NOTIFY_SOCKET": sock},
                           timeout=scaled(5), check=False)
        refusals = 3 if SYSTEMD_NOTIFY else 2
        wait_until(lambda: d.stderr().count("m: refused a notification from pid") >= refusals, 5,
                   f"{refusals} refusals logged, stderr: {d.stderr()}")
        self.assertTrue(holds_for(lambda: "z" not in d.starts(), 0.5))
        self.assertFalse(d.status("m")["ready"])
        self.assertEqual(d.status("m")["state"], "starting")
        # The service's own READY=1 is accepted.
        open(self.gate(d, "go"), "w").close()
        d.wait_starts(3)
        self.assertEqual(d.starts(), ["f", "m", "z"])
        self.assertTrue(d.status("m")["ready"])

    def test_start_timeout_is_a_start_failure(self):
        d = self.daemon(lambda d: {"s": {"command": d.svc("s", "sleep"),
                                         "ready": {"notify": True, "timeout": "500ms"}}},
                        inspect=False)
        t0 = time.monotonic()
        self.assertEqual(d.wait_exit(10), 3)
        self.assertGreaterEqual(time.monotonic() - t0, 0.45)
        self.assertEqual(d.starts(), ["s"])
        self.assertEqual(d.stops(), [])  # SIGKILL: testsvc could not log a stop line
        self.assertIn("did not start within 500ms", d.stderr())

    # ---- watchdog ----------------------------------------------------------------------------

    def test_missed_watchdog_restarts_the_service_with_the_watchdog_reason(self):
        pings = ["notify", "WATCHDOG=1", "sleep", "100"] * 15
        d = self.daemon(lambda d: {"w": {
            "command": d.svc("w", *pings, "mark", "silent", "sleep"), "backoff": FAST,
            "watchdog": "500ms"}})
        pid = d.wait_pid("w")
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
        self.assertEqual(env.get(b"WATCHDOG_USEC"), b"500000")
        self.assertEqual(env.get(b"NOTIFY_SOCKET"), self.notify_socket(d, "w").encode())
        d.wait_starts(2, timeout=10)
        silent = self.event_ms(d, "mark", "w", "silent")[0]
        restarted = self.event_ms(d, "start", "w")[1]
        # 1.5 s of pings every 100 ms kept it alive; silence for 500 ms did not.
        self.assertGreater(restarted, silent)
        self.assertGreaterEqual(restarted - silent, 400)
        self.assertIn("no WATCHDOG=1 within 500ms", d.stderr())
        self.assertIn("watchdog", d.stderr())

    def test_watchdog_counts_from_ready(self):
        # As systemd (service_enter_start_post -> service_reset_watchdog): a service that
        # declares readiness gets its first watchdog interval from READY=1, not from the spawn,
        # so a daemon slower to start than its interval is not killed right after it is ready.
        pings = ["notify", "WATCHDOG=1", "sleep", "200"] * 8
        d = self.daemon(lambda d: {"w": {
            "command": d.svc("w", "sleep", "600", "notify", "READY=1", "sleep", "700", *pings,
                             "mark", "done", "sleep"),
            "ready": {"notify": True, "timeout": "10s"}, "watchdog": "1s", "backoff": FAST}})
        # READY=1 at 0.6 s, first WATCHDOG=1 at 1.3 s: within 1 s of READY=1.
        wait_until(lambda: self.event_ms(d, "mark", "w", "done") or "watchdog failure"
                   in d.stderr(), 10, "the pings or the watchdog")
        self.assertNotIn("watchdog failure", d.stderr())
        self.assertEqual(d.starts(), ["w"])

    def test_watchdog_usec_from_the_service_changes_the_interval(self):
        d = self.daemon(lambda d: {"w": {
            "command": d.svc("w", "notify", "WATCHDOG_USEC=2000000", "sleep", "1200",
                             "notify", "WATCHDOG=1", "sleep", "1200", "mark", "done", "sleep"),
            "watchdog": "500ms", "backoff": FAST}})
        wait_until(lambda: self.event_ms(d, "mark", "w", "done"), 10, "1.2 s pauses survived")
        self.assertNotIn("watchdog failure", d.stderr())
        done = self.event_ms(d, "mark", "w", "done")[0]
        d.wait_starts(2, timeout=10)
        restarted = self.event_ms(d, "start", "w")[1]
        self.assertGreaterEqual(restarted - done, 700)  # 2 s after the last WATCHDOG=1
        self.assertIn("watchdog failure", d.stderr())

    def test_watchdog_failure_names_the_interval_the_service_set(self):
        # (was a bug, now fixed) src/daemon/shell.cpp act(const core::StartProbes&): the Watchdog's expiry
        # callback captures the unit's configured interval (`d = *u.watchdog`) for its message,
        # so after the service moved the interval with WATCHDOG_USEC= (on_notify ->
        # Watchdog::set_interval) the failure still says "no WATCHDOG=1 within 500ms" although
        # it fired after the 1000 ms the service asked for. The message should use the
        # watchdog's current interval.
        d = self.daemon(lambda d: {"w": {
            "command": d.svc("w", "notify", "WATCHDOG_USEC=1000000", "sleep"),
            "watchdog": "500ms", "backoff": FAST}})
        wait_until(lambda: "watchdog failure" in d.stderr(), 10, "the watchdog")
        self.assertIn("no WATCHDOG=1 within 1s", d.stderr())

    # ---- the HTTP endpoint -------------------------------------------------------------------

    def test_readyz_flips_from_503_to_200_as_a_dependency_becomes_ready(self):
        d = self.daemon(lambda d: {
            "db": {"command": self.gated(d, "db", self.gate(d, "go"), "notify-ready", "sleep"),
                   "ready": {"notify": True, "timeout": "30s"}},
            "web": {"command": d.svc("web", "sleep"), "after": ["db"]},
        }, http=True)
        self.assertEqual(http_get(self.port, "/healthz")[0], 200)
        status, headers, body = http_get(self.port, "/readyz")
        self.assertEqual(status, 503)
        verdict = json.loads(body)
        self.assertIs(verdict["ready"], False)
        self.assertIn("db", verdict["not_ready"])
        self.assertIn("web", verdict["not_ready"])
        open(self.gate(d, "go"), "w").close()

        def ready():
            st, _, b = http_get(self.port, "/readyz")
            return st == 200 and json.loads(b)
        self.assertEqual(wait_until(ready, 10, "/readyz 200"), {"ready": True, "not_ready": []})
        self.assertEqual(d.wait_starts(2), ["db", "web"])

    def test_readyz_ignores_a_unit_stopped_on_purpose(self):
        d = self.daemon(lambda d: {"web": {"command": d.svc("web", "sleep")},
                                   "batch": {"command": d.svc("batch", "sleep")}}, http=True)
        d.wait_starts(2)
        wait_until(lambda: http_get(self.port, "/readyz")[0] == 200, 5, "/readyz 200")
        self.assertEqual(d.ctl("stop", "batch").returncode, 0)
        d.wait_gone("batch")
        st, _, body = http_get(self.port, "/readyz")
        self.assertEqual((st, json.loads(body)), (200, {"ready": True, "not_ready": []}))
        os.kill(d.wait_pid("web"), 9)  # down until restarted: briefly not ready, then ready
        wait_until(lambda: http_get(self.port, "/readyz")[0] == 200 and d.starts().count("web")
                   == 2, 5, "web back")

    @unittest.skipIf(CURL is None, "no curl")
    def test_curl(self):
        d = self.daemon(lambda d: {"web": {"command": d.svc("web", "sleep")}}, http=True)
        d.wait_starts(1)
        base = f"http://127.0.0.1:{self.port}"

        def curl(*args):
            r = subprocess.run([CURL, "-sS", *args], capture_output=True, text=True,
                               timeout=scaled(10))
            self.assertEqual(r.returncode, 0, r.stderr)
            return r.stdout
        # One curl, four URLs: the connection is kept alive and reused (-v says so).
        r = subprocess.run([CURL, "-sSv", "-o", "/dev/null", "-o", "/dev/null", "-o",
                            "/dev/null", "-o", "/dev/null", f"{base}/healthz", f"{base}/readyz",
                            f"{base}/metrics", f"{base}/status"], capture_output=True, text=True,
                           timeout=scaled(10))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr.count("Re-using existing connection"), 3, r.stderr)
        self.assertEqual(r.stderr.count("< HTTP/1.1 200"), 4, r.stderr)
        self.assertEqual(curl("-o", "/dev/null", "-w", "%{http_code}", f"{base}/healthz"),
                         "200")
        self.assertEqual(curl("--http1.0", "-o", "/dev/null", "-w", "%{http_code}",
                              f"{base}/readyz"), "200")
        head = curl("-I", f"{base}/metrics")
        self.assertTrue(head.startswith("HTTP/1.1 200"), head)
        length = int(re.search(r"(?im)^content-length: (\d+)", head).group(1))
        self.assertAlmostEqual(length, len(curl(f"{base}/metrics").encode()), delta=64)
        self.assertEqual(curl("-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
                              f"{base}/healthz"), "405")
        self.assertIn('vigil_unit_up{unit="web"} 1', curl(f"{base}/metrics"))
        self.assertEqual([u["name"] for u in json.loads(curl(f"{base}/status"))["units"]],
                         ["web"])

    def test_metrics_pass_promtool_and_report_each_unit(self):
        closed = free_port()
        d = self.daemon(lambda d: {
            "web": {"command": d.svc("web", "sleep")},
            "flaky": {"command": d.svc("flaky", "exit", "7"),
                      "backoff": {"initial": "1h", "max": "1h", "jitter": 0}},
            "probed": {"command": d.svc("probed", "sleep"),
                       "liveness": {"tcp": {"port": closed}, "period": "100ms",
                                    "failure_threshold": 1000}},
        }, http=True)
        d.wait_starts(3)
        wait_until(lambda: d.status("flaky")["state"] == "backoff", 5, "flaky in backoff")
        time.sleep(0.3)  # a few failed probe checks
        status, headers, text = http_get(self.port, "/metrics")
        self.assertEqual(status, 200)
        self.assertTrue(headers["content-type"].startswith("text/plain; version=0.0.4"), headers)
        if PROMTOOL:
            r = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                               text=True, timeout=scaled(20))
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

        types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
        self.assertEqual(types, {
            "vigil_build_info": "gauge", "process_resident_memory_bytes": "gauge",
            "process_open_fds": "gauge", "vigil_units": "gauge", "vigil_unit_up": "gauge",
            "vigil_unit_ready": "gauge", "vigil_unit_restarts_total": "counter",
            "vigil_unit_last_exit_code": "gauge", "vigil_unit_probe_failures_total": "counter",
            "vigil_unit_uptime_seconds": "gauge", "vigil_unit_state": "gauge"})
        samples = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                samples[name] = float(value)
        self.assertEqual(samples['vigil_unit_up{unit="web"}'], 1)
        self.assertEqual(samples['vigil_unit_up{unit="flaky"}'], 0)
        self.assertEqual(samples['vigil_unit_last_exit_code{unit="flaky"}'], 7)
        self.assertNotIn('vigil_unit_last_exit_code{unit="web"}', samples)
        self.assertEqual(samples['vigil_unit_state{unit="flaky",state="backoff"}'], 1)
        self.assertEqual(samples['vigil_unit_state{unit="flaky",state="running"}'], 0)
        self.assertEqual(samples['vigil_unit_state{unit="web",state="running"}'], 1)
        self.assertEqual(samples['vigil_units{state="running"}'], 2)  # web, probed
        self.assertEqual(samples['vigil_units{state="backoff"}'], 1)
        self.assertGreaterEqual(samples['vigil_unit_probe_failures_total{unit="probed"}'], 2)
        self.assertEqual(samples['vigil_unit_probe_failures_total{unit="web"}'], 0)
        self.assertGreater(samples['vigil_unit_uptime_seconds{unit="web"}'], 0)
        self.assertEqual(samples['vigil_unit_uptime_seconds{unit="flaky"}'], 0)
        self.assertEqual([k for k in samples if k.startswith("vigil_build_info{")],
                         [f'vigil_build_info{{version="{self.version()}"}}'])
        # vigild's own figures, against the kernel's.
        pid = d.ns.init_pid
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        self.assertLessEqual(abs(samples["process_open_fds"] - fds), 2)
        with open(f"/proc/{pid}/statm") as f:
            rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        self.assertLess(abs(samples["process_resident_memory_bytes"] - rss), 1 << 20)

    def test_vigild_8_documents_every_path_and_metric_family(self):
        d = self.daemon(lambda d: {"web": {"command": d.svc("web", "exit", "3"),
                                           "backoff": {"initial": "1h", "max": "1h", "jitter": 0},
                                           "liveness": {"tcp": {"port": free_port()}}}},
                        http=True)
        wait_until(lambda: d.status("web")["last_exit"], 5, "web to exit")
        man = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "man",
                           "vigild.8")
        with open(man) as f:
            text = f.read()
        section = text[text.index(".SH HTTP ENDPOINT"):text.index(".SH FILES")]
        _, _, metrics = http_get(self.port, "/metrics")
        families = re.findall(r"^# TYPE (\S+) (\S+)$", metrics, re.M)
        self.assertEqual(len(families), 11)
        for name, kind in families:
            labels = sorted(set(re.findall(rf"^{name}\{{(.*)\}} ", metrics, re.M)))
            keys = ",".join(re.findall(r"(\w+)=", labels[0])) if labels else ""
            documented = name + ("{" + keys + "}" if keys else "")
            self.assertRegex(section, rf"\.B {re.escape(documented)}\n{kind}\b",
                             f"{documented} ({kind}) is not documented")
        for path in ("/healthz", "/readyz", "/metrics", "/status"):
            self.assertIn(f".B GET {path}\n", section)

    @staticmethod
    def version() -> str:
        out = subprocess.run([harness.vigild(), "--version"], capture_output=True, text=True,
                             timeout=scaled(5)).stdout
        return out.split()[-1]

    def test_status_is_the_json_of_vigilctl_status(self):
        d = self.daemon(lambda d: {
            "web": {"command": d.svc("web", "sleep")},
            "flaky": {"command": d.svc("flaky", "exit", "7"),
                      "backoff": {"initial": "1h", "max": "1h", "jitter": 0}},
        }, http=True)
        d.wait_starts(2)
        wait_until(lambda: d.status("flaky")["state"] == "backoff", 5, "flaky in backoff")
        status, headers, body = http_get(self.port, "/status")
        self.assertEqual(status, 200)
        self.assertTrue(headers["content-type"].startswith("application/json"), headers)
        over_http = json.loads(body)
        over_ctl = d.ctl_json("status")
        self.assertEqual(shape(over_http), shape(over_ctl))
        for name in ("web", "flaky"):
            a = next(u for u in over_http["units"] if u["name"] == name)
            b = next(u for u in over_ctl["units"] if u["name"] == name)
            for k in ("state", "pid", "restarts", "last_exit", "ready", "parent", "kind"):
                self.assertEqual(a[k], b[k], f"{name}.{k}")
        web = next(u for u in over_http["units"] if u["name"] == "web")
        self.assertEqual(web["pid"], harness.proc_info(d.wait_pid("web")).inner_pid)

    def test_malformed_requests_get_4xx_and_vigild_keeps_serving(self):
        d = self.daemon(lambda d: {"web": {"command": d.svc("web", "sleep")}}, http=True)
        port = self.port
        web = d.wait_pid("web")
        # A client that connects and says nothing must not hold the others up.
        idle = socket.create_connection(("127.0.0.1", port))
        self.addCleanup(idle.close)
        self.assertEqual(status_line(raw_exchange(port, b"garbage\r\n\r\n"))[9:12], "400")
        self.assertEqual(status_line(raw_exchange(port, b"\x00\xff\x16\x03\x01binary\r\n\r\n"))
                         [9:12], "400")
        big = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
        self.assertEqual(status_line(raw_exchange(port, big))[9:12], "431")
        many = b"GET /healthz HTTP/1.1\r\n" + b"".join(
            b"X-%d: y\r\n" % i for i in range(2000)) + b"\r\n"
        self.assertEqual(status_line(raw_exchange(port, many))[9:12], "431")
        self.assertEqual(http_get(port, "/healthz", method="DELETE")[0], 405)
        self.assertEqual(http_get(port, "/nope")[0], 404)
        # A request cut short, then a burst of garbage.
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"GET /heal")
        for _ in range(50):
            self.assertEqual(status_line(raw_exchange(port, b"GET / HTTP/9.9\r\n\x01\r\n\r\n"))
                             [9:12], "400")
        # Keep-alive with two pipelined requests: both answered, in order.
        both = raw_exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                                  b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        self.assertEqual(re.findall(rb"HTTP/1\.1 (\d{3})", both), [b"200", b"404"])
        self.assertEqual(http_get(port, "/healthz")[0], 200)
        self.assertEqual(d.main_pid("web"), web, "the service ran on, untouched")
        self.assertIsNone(d.ns.popen.poll(), "vigild still runs")

    def test_readiness_probe_drives_readyz_and_vigil_unit_ready(self):
        srv = HealthServer([])
        self.addCleanup(srv.close)
        d = self.daemon(lambda d: {"api": {
            "command": d.svc("api", "sleep"),
            "readiness": {"http": {"port": srv.port, "path": "/healthz"}, "period": "100ms",
                          "failure_threshold": 2, "success_threshold": 2}}}, http=True)

        def verdict():
            st, _, body = http_get(self.port, "/readyz")
            _, _, metrics = http_get(self.port, "/metrics")
            up = re.search(r'^vigil_unit_ready\{unit="api"\} (\S+)$', metrics, re.M).group(1)
            return st, json.loads(body)["not_ready"], up
        self.assertEqual(wait_until(lambda: verdict()[0] == 200 and verdict(), 5, "ready"),
                         (200, [], "1"))
        pid = d.wait_pid("api")
        with srv.lock:
            srv.then = 500
        self.assertEqual(wait_until(lambda: verdict()[0] == 503 and verdict(), 5, "not ready"),
                         (503, ["api"], "0"))
        with srv.lock:
            srv.then = 200
        self.assertEqual(wait_until(lambda: verdict()[0] == 200 and verdict(), 5, "ready again"),
                         (200, [], "1"))
        # Readiness never restarts anything.
        self.assertEqual(d.main_pid("api"), pid)
        self.assertEqual(d.starts(), ["api"])

    def test_since_of_a_unit_that_never_ran_is_not_the_machine_uptime(self):
        # (was a bug, now fixed) a unit that has not changed state since vigild loaded it reports since_ms equal
        # to the monotonic clock (the machine's uptime, e.g. 5086469 for 84 minutes) in
        # `vigilctl status --json` and /status: core::ChildStatus::since stays TimePoint{}
        # (epoch 0 of the monotonic clock) until the first state change, and
        # src/ctl/shapes.cpp status_json() computes now - since. It should start at the time
        # the unit was added (vigild's start or the reload).
        d = self.daemon(lambda d: {
            "db": {"command": d.svc("db", "sleep"), "ready": {"notify": True}},
            "web": {"command": d.svc("web", "sleep"), "after": ["db"]},
        })
        started = time.monotonic()
        d.wait_starts(1)
        web = d.status("web")
        self.assertEqual(web["state"], "stopped")
        self.assertLessEqual(web["since_ms"], (time.monotonic() - started) * 1000 + 1000)

    # ---- MAINPID= and services running as another user -------------------------------------

    def sleeper(self, d: Daemon, seconds: str) -> int:
        """Host pid of the `sleep <seconds>` process in vigild's namespace."""
        return wait_until(lambda: next((p.pid for p in d.processes()
                                        if cmdline(p.pid) == ["sleep", seconds]
                                        and p.state != "Z"), None), 5, f"sleep {seconds}")

    @unittest.skipIf(SYSTEMD_NOTIFY is None, "no systemd-notify (Debian package systemd)")
    def test_mainpid_moves_the_main_process(self):
        # The forking-daemon pattern: the launcher names another of its processes MAINPID= and
        # exits. Its exit is not the service's; the new main process's end is, with its status.
        d = self.daemon(lambda d: {
            "root": {"kind": "supervisor", "intensity": 100, "period": "1m"},
            "a": {"command": ["sh", "-c", "sleep 1000 & systemd-notify --ready MAINPID=$!; exit 0"],
                  "backoff": FAST, "ready": {"notify": True, "timeout": "10s"}}})
        d.wait_socket()
        wait_until(lambda: d.status("a")["ready"], 5, "a ready")
        self.assertTrue(holds_for(lambda: d.status("a")["state"] == "running"
                                  and d.status("a")["restarts"] == 0, 0.5))
        pid = d.status("a")["pid"]
        sleeps = [p for p in d.processes() if cmdline(p.pid) == ["sleep", "1000"]]
        self.assertEqual([p.inner_pid for p in sleeps], [pid])
        self.assertRegex(d.stderr(), rf"a\[\d+\]: main process is now pid {pid} \(MAINPID=; was \d+\)")
        tree = d.ctl_json("tree")
        self.assertEqual(tree["root"]["children"][0]["pid"], pid)
        # Its end is the service's end: killed by SIGKILL, restarted.
        harness.kill_quietly(sleeps[0].pid, 9)
        wait_until(lambda: d.status("a")["restarts"] == 1 and d.status("a")["ready"], 10,
                   "a restarted")
        self.assertEqual(d.status("a")["last_exit"], {"signal": "SIGKILL", "signo": 9})
        self.assertNotEqual(d.status("a")["pid"], pid)
        self.assertNotIn("refused", d.stderr())

    @unittest.skipIf(SYSTEMD_NOTIFY is None, "no systemd-notify (Debian package systemd)")
    def test_mainpid_sent_just_before_the_launcher_exits(self):
        # --no-block: no barrier, so the launcher's exit may reach vigild before the datagram
        # is read; vigild reads the socket before it acts on the exit, as systemd does.
        d = self.daemon(lambda d: {
            "root": {"kind": "supervisor", "intensity": 100, "period": "1m"},
            **{f"a{i}": {"command": ["sh", "-c", "sleep 1000 & systemd-notify --no-block "
                                     "--ready MAINPID=$!; exit 0"],
                         "ready": {"notify": True, "timeout": "10s"}} for i in range(5)}})
        d.wait_socket()
        for i in range(5):
            wait_until(lambda: d.status(f"a{i}")["ready"], 5, f"a{i} ready")
        self.assertTrue(holds_for(lambda: all(d.status(f"a{i}")["state"] == "running"
                                              and d.status(f"a{i}")["restarts"] == 0
                                              for i in range(5)), 0.5), d.stderr())
        sleeps = sorted(p.inner_pid for p in d.processes() if cmdline(p.pid) == ["sleep", "1000"])
        self.assertEqual(sorted(d.status(f"a{i}")["pid"] for i in range(5)), sleeps)

    @unittest.skipIf(SYSTEMD_NOTIFY is None, "no systemd-notify (Debian package systemd)")
    def test_mainpid_whose_parent_still_runs_ends_through_its_pidfd(self):
        # The new main process stays the launcher's child (not vigild's): its end is seen through
        # a pidfd, with its status when still readable, and the launcher goes with the group.
        d = self.daemon(lambda d: {
            "root": {"kind": "supervisor", "intensity": 100, "period": "1m"},
            "a": {"command": ["sh", "-c", "sleep 1001 & systemd-notify --ready MAINPID=$!; "
                              "wait $!; exec sleep 1002"],
                  "backoff": FAST, "ready": {"notify": True, "timeout": "10s"}}})
        d.wait_socket()
        wait_until(lambda: d.status("a")["ready"], 5, "a ready")
        main = self.sleeper(d, "1001")
        self.assertEqual(d.status("a")["pid"], harness.proc_info(main).inner_pid)
        harness.kill_quietly(main, 15)
        wait_until(lambda: d.status("a")["restarts"] == 1, 10, "a restarted")
        self.assertIn(d.status("a")["last_exit"],
                      [{"signal": "SIGTERM", "signo": 15}, {"code": 0}], d.stderr())
        # The old launcher (which may have gone on to `sleep 1002`) went with its incarnation;
        # the new one waits for its own `sleep 1001`.
        wait_until(lambda: d.status("a")["ready"], 5, "a ready again")
        self.assertTrue(holds_for(lambda: not any(cmdline(p.pid) == ["sleep", "1002"]
                                                  for p in d.processes() if p.state != "Z"), 0.3))
        self.assertEqual(d.status("a")["restarts"], 1)

    @unittest.skipIf(SYSTEMD_NOTIFY is None, "no systemd-notify (Debian package systemd)")
    def test_mainpid_outside_the_service_is_ignored(self):
        d = self.daemon(lambda d: {
            "a": {"command": ["sh", "-c", "systemd-notify --ready MAINPID=1; exec sleep 1000"],
                  "ready": {"notify": True, "timeout": "10s"}}})
        d.wait_socket()
        wait_until(lambda: d.status("a")["ready"], 5, "a ready")
        # The journal reaches stderr through its own queue: the line may land after the status.
        ignored = re.compile(r"a\[\d+\]: ignored MAINPID=1: that is vigild itself")
        wait_until(lambda: ignored.search(d.stderr()), 5, "the journal line of MAINPID=1")
        self.assertEqual(d.status("a")["pid"], harness.proc_info(self.sleeper(d, "1000")).inner_pid)

    @unittest.skipIf(SYSTEMD_NOTIFY is None or os.geteuid() != 0,
                     "needs systemd-notify and root (to run the service as nobody)")
    def test_an_unprivileged_service_can_reach_its_notify_socket(self):
        # The control socket's folder is 0700; the notify sockets live in a sibling folder of
        # mode 0711 and are 0666, the sender's credentials being the check.
        def units(d):
            os.chmod(d.dir, 0o755)  # the test's own temporary folder must not be what blocks
            return {
                "a": {"command": ["sh", "-c", "sleep 0.3; systemd-notify --ready; exec sleep 1000"],
                      "user": "nobody", "ready": {"notify": True, "timeout": "3s"}},
                "b": {"command": d.svc("b", "sleep"), "after": ["a"]},
            }
        d = self.daemon(units, inspect=False)
        wait_until(lambda: d.starts() == ["b"], 5, f"b to start; output: {d.stdout()}")
        self.assertNotIn("refused", d.stderr())
        self.assertEqual(os.stat(os.path.dirname(self.notify_socket(d, "a"))).st_mode & 0o7777,
                         0o711)
        self.assertEqual(os.stat(os.path.join(d.dir, "run")).st_mode & 0o7777, 0o700)


if __name__ == "__main__":
    unittest.main()
