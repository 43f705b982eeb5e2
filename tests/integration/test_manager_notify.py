"""vigild's own sd_notify to its service manager (systemd Type=notify), with the test as the
manager: it binds a unix datagram socket (a path, or an abstract name), runs the real vigild
(PID 1 of a fresh PID namespace) with NOTIFY_SOCKET and WATCHDOG_USEC, and checks what arrives
against what the kernel shows: READY=1 only once the services run and are ready (/proc and the
services' own log), RELOADING=1 then READY=1 around a reload, applied or refused, STOPPING=1
while the services still run at shutdown, WATCHDOG=1 at half of WATCHDOG_USEC and none while
vigild is stopped (SIGSTOP), every datagram from vigild's own pid (NotifyAccess=main), and no
trace of the manager's variables in a service's /proc/PID/environ. The receiving side is
validated with the real client first: it must decode what systemd-notify sends."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import unittest
from typing import Callable, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from daemon import FAST, Daemon, cmdline  # noqa: E402
from harness import scaled, wait_until  # noqa: E402

MANAGER_VARS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID",
                "LISTEN_FDNAMES")


def mono_ms() -> float:
    """CLOCK_MONOTONIC in milliseconds, the clock of vigil-testsvc's log lines."""
    return time.monotonic_ns() / 1e6


class Message:
    def __init__(self, at_ms: float, pid: Optional[int], data: bytes) -> None:
        self.at_ms = at_ms  # when the manager took it (CLOCK_MONOTONIC)
        self.pid = pid      # the sender (SCM_CREDENTIALS, in the manager's PID namespace)
        self.data = data
        self.fields: dict = {}
        for line in data.decode("utf-8", "replace").split("\n"):
            key, eq, value = line.partition("=")
            if eq:
                self.fields[key] = value

    @property
    def head(self) -> str:
        return self.data.split(b"\n", 1)[0].decode("utf-8", "replace")

    def __repr__(self) -> str:
        return f"<{self.at_ms:.0f}ms pid {self.pid} {self.data!r}>"


class Manager:
    """The service manager's end: a datagram socket with SO_PASSCRED (as systemd's), read by a
    thread that timestamps every datagram. `address` is a path, or '@name' (abstract).
    `on_message` runs in that thread as each datagram arrives (to look at /proc right then)."""

    def __init__(self, address: str, on_message: Optional[Callable[[Message], None]] = None):
        self.address = address
        self.on_message = on_message
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.settimeout(0.05)
        self.messages: list = []
        self.errors: list = []
        self.lock = threading.Lock()
        self.done = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        creds = struct.calcsize("iII")
        while not self.done:
            try:
                data, anc, _, _ = self.sock.recvmsg(8192, socket.CMSG_SPACE(creds))
            except socket.timeout:
                continue
            except OSError:
                return
            pid = None
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("iII", payload[:creds])[0]
            msg = Message(mono_ms(), pid, data)
            if self.on_message:
                try:
                    self.on_message(msg)
                except Exception as e:  # reported by the test, not lost in the thread
                    self.errors.append(e)
            with self.lock:
                self.messages.append(msg)

    def all(self) -> list:
        with self.lock:
            return list(self.messages)

    def heads(self, pings: bool = False) -> list:
        return [m.head for m in self.all() if pings or m.head != "WATCHDOG=1"]

    def pings(self) -> list:
        return [m for m in self.all() if m.head == "WATCHDOG=1"]

    def wait_heads(self, heads: list, timeout: float = 10) -> list:
        """Waits until the non-ping heads are exactly `heads` (fails on anything else)."""
        def match():
            have = self.heads()
            if have != heads[:len(have)]:
                raise AssertionError(f"the manager got {have}, expected {heads}")
            return have == heads
        wait_until(match, timeout, f"{heads} (have {self.heads()})")
        return [m for m in self.all() if m.head != "WATCHDOG=1"]

    def close(self) -> None:
        self.done = True
        self.thread.join(scaled(2))
        self.sock.close()
        if not self.address.startswith("@"):
            try:
                os.unlink(self.address)
            except FileNotFoundError:
                pass


def environ_of(pid: int) -> dict:
    with open(f"/proc/{pid}/environ", "rb") as f:
        pairs = [e.partition(b"=") for e in f.read().split(b"\0") if e]
    return {k.decode(): v.decode("utf-8", "replace") for k, _, v in pairs}


def clean_env(**extra: str) -> dict:
    """The test's environment without a manager of its own, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in MANAGER_VARS}
    env.update(extra)
    return env


class ManagerNotify(unittest.TestCase):
    def setUp(self) -> None:
        self.d = Daemon({}, start=False)
        self.addCleanup(self.d.close)

    def manager(self, abstract: bool, on_message=None) -> Manager:
        if abstract:
            address = f"@vigil-test-manager-{os.getpid()}-{id(self)}"
        else:
            address = os.path.join(self.d.dir, "manager.sock")
        m = Manager(address, on_message)
        self.addCleanup(m.close)
        self.addCleanup(lambda: self.assertEqual(m.errors, []))
        return m

    def start(self, units: dict, m: Manager, **env: str) -> None:
        self.d.write_units(units)
        argv = [harness.vigild(), "--units", self.d.units_dir, "--socket", self.d.sock]
        self.d.ns = harness.PidNamespace(
            argv, env=clean_env(NOTIFY_SOCKET=m.address, **env))

    def ready_svc(self, ident: str, delay_ms: int = 0, **fields) -> dict:
        """A testsvc that logs `mark ID ready` then writes its ready fd, after delay_ms."""
        modes = (["sleep", str(delay_ms)] if delay_ms else []) + ["mark", "ready",
                                                                  "ready-fd", "3", "sleep"]
        unit = {"command": self.d.svc(ident, *modes), "ready": {"fd": 3}, "backoff": FAST}
        unit.update(fields)
        return unit

    def mark_ms(self, ident: str, text: str) -> float:
        with open(self.d.log) as f:
            for line in f:
                parts = line.split()
                if parts[:3] == ["mark", ident, text]:
                    return float(parts[3])
        raise AssertionError(f"no `mark {ident} {text}` in the services' log")

    def start_ms(self, ident: str) -> float:
        with open(self.d.log) as f:
            for line in f:
                parts = line.split()
                if parts[:2] == ["start", ident]:
                    return float(parts[3])
        raise AssertionError(f"no start of {ident} in the services' log")

    def service_pids(self, ident: str) -> list:
        """Live processes of this test's service `ident`, found by argv alone."""
        out = []
        for p in harness.all_processes():
            argv = cmdline(p.pid)
            if p.state != "Z" and self.d.log in argv and argv[argv.index("--id") + 1:][:1] == [
                    ident]:
                out.append(p.pid)
        return out

    def assert_from_vigild(self, m: Manager) -> None:
        for msg in m.all():
            self.assertEqual(msg.pid, self.d.ns.init_pid, f"{msg} is not from vigild")

    # -- the receiving side, checked with the real client --------------------------------------

    def test_the_manager_decodes_systemd_notify(self) -> None:
        notify = shutil.which("systemd-notify")
        if notify is None:
            self.skipTest("systemd-notify is not installed")
        for abstract in (False, True):
            m = self.manager(abstract)
            r = subprocess.run([notify, "--ready", "--status=x y"], env=clean_env(
                NOTIFY_SOCKET=m.address), capture_output=True, timeout=scaled(10))
            self.assertEqual(r.returncode, 0, r.stderr)
            msg = wait_until(lambda: m.all(), 5, "systemd-notify's datagram")[0]
            self.assertEqual(msg.fields.get("READY"), "1", msg)
            self.assertEqual(msg.fields.get("STATUS"), "x y", msg)
            self.assertIsNotNone(msg.pid)

    # -- vigild ------------------------------------------------------------------------------

    def test_ready_once_the_tree_is_up_and_no_trace_in_services(self) -> None:
        seen: dict = {}

        def on_message(msg: Message) -> None:
            # /proc as READY=1 arrives (perhaps before PidNamespace found vigild: by argv).
            if msg.head == "READY=1" and "procs" not in seen:
                seen["procs"] = {i: self.service_pids(i) for i in ("slow", "next", "talker")}

        m = self.manager(abstract=False, on_message=on_message)
        units = {
            "slow": self.ready_svc("slow", 700),
            "next": {"command": self.d.svc("next", "sleep"), "after": ["slow"],
                     "backoff": FAST},
            "talker": {"command": self.d.svc("talker", "notify-ready", "sleep"),
                       "ready": {"notify": True}, "after": ["next"], "backoff": FAST},
        }
        self.start(units, m, WATCHDOG_USEC="2000000", WATCHDOG_PID="1", LISTEN_FDS="1",
                   LISTEN_PID="1", LISTEN_FDNAMES="x")
        ready = m.wait_heads(["READY=1"], 15)[0]
        self.assertEqual(ready.fields.get("STATUS"), "3 services running")
        # Not before the slow service was ready, nor before the last one started.
        self.assertGreaterEqual(ready.at_ms, self.mark_ms("slow", "ready"))
        self.assertGreaterEqual(ready.at_ms, self.start_ms("talker"))
        for ident, pids in seen["procs"].items():
            self.assertEqual(pids, [self.d.main_pid(ident)], f"{ident} as READY=1 arrived")
        # A service's environment has nothing of vigild's manager; the one that notifies has
        # vigild's own socket for it.
        for ident in ("slow", "next", "talker"):
            env = environ_of(self.d.main_pid(ident))
            for var in MANAGER_VARS:
                if var == "NOTIFY_SOCKET" and ident == "talker":
                    continue
                self.assertFalse(var in env, f"{ident} inherited {var}={env.get(var)}")
        talker = environ_of(self.d.main_pid("talker"))["NOTIFY_SOCKET"]
        self.assertNotEqual(talker, m.address)
        self.assertTrue(talker.endswith("talker.sock"), talker)
        # READY=1 once; and only vigild itself spoke.
        time.sleep(0.2)
        self.assertEqual(m.heads(), ["READY=1"])
        self.assert_from_vigild(m)

    def test_reload_applied_and_refused(self) -> None:
        m = self.manager(abstract=True)
        self.start({"a": self.ready_svc("a")}, m)
        m.wait_heads(["READY=1"])
        # vigilctl reload: RELOADING=1 with the time it began, then READY=1.
        self.d.write_units({"a": self.ready_svc("a"), "b": self.ready_svc("b")})
        before = time.monotonic_ns() // 1000
        r = self.d.ctl("reload")
        after = time.monotonic_ns() // 1000
        self.assertEqual(r.returncode, 0, r.stderr)
        got = m.wait_heads(["READY=1", "RELOADING=1", "READY=1"])
        usec = int(got[1].fields["MONOTONIC_USEC"])
        self.assertTrue(before <= usec <= after, (before, usec, after))
        # b may still be starting as the reload is done: the summary says what runs.
        self.assertIn(got[2].fields.get("STATUS"), ("1 of 2 services running",
                                                   "2 services running"))
        self.assertIsNotNone(self.d.wait_pid("b"))
        # A refused reload (SIGHUP, a broken unit) also ends with READY=1; the tree is kept.
        pids = (self.d.main_pid("a"), self.d.main_pid("b"))
        with open(os.path.join(self.d.units_dir, "a.json"), "w") as f:
            f.write('{"command": ')
        self.d.ns.signal_init(signal.SIGHUP)
        m.wait_heads(["READY=1", "RELOADING=1", "READY=1", "RELOADING=1", "READY=1"])
        wait_until(lambda: "refused" in self.d.stderr(), 5, "the refusal in vigild's journal")
        self.assertEqual((self.d.main_pid("a"), self.d.main_pid("b")), pids)
        self.assert_from_vigild(m)

    def test_reexec_reloading_then_ready_and_the_watchdog_goes_on(self) -> None:
        # A re-exec is a reload to the manager: RELOADING=1, then READY=1 from the new binary,
        # which takes NOTIFY_SOCKET and WATCHDOG_USEC back (they left vigild's environment at
        # start) and pings on, from the same pid (PID 1 of the namespace); the services keep
        # their pids and still see none of the manager's variables.
        m = self.manager(abstract=False)
        self.start({"a": self.ready_svc("a")}, m, WATCHDOG_USEC="600000", WATCHDOG_PID="1")
        m.wait_heads(["READY=1"])
        pid = self.d.wait_pid("a")
        before = time.monotonic_ns() // 1000
        r = self.d.ctl("reexec", timeout=20)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("re-executed", r.stdout)
        got = m.wait_heads(["READY=1", "RELOADING=1", "READY=1"])
        self.assertGreaterEqual(int(got[1].fields["MONOTONIC_USEC"]), before)
        self.assertEqual(got[2].fields.get("STATUS"), "1 service running")
        pings = len(m.pings())
        wait_until(lambda: len(m.pings()) >= pings + 2, 5, "pings from the new binary")
        self.assertEqual(self.d.main_pid("a"), pid)
        self.assertNotIn("NOTIFY_SOCKET", environ_of(pid))
        self.assertNotIn("VIGIL_REEXEC_STATE", environ_of(pid))
        self.assert_from_vigild(m)

    def test_stopping_while_the_services_still_run(self) -> None:
        seen: dict = {}

        def on_message(msg: Message) -> None:
            if msg.head == "STOPPING=1":
                seen["alive"] = self.d.main_pid("a")

        m = self.manager(abstract=True, on_message=on_message)
        delay = str(int(1500 * harness.timeout_multiplier()))  # ms the service takes to stop
        self.start({"a": {"command": self.d.svc("a", "term-delay", delay, "mark", "armed",
                                                "sleep"),
                          "stop": {"timeout": "10s"}}}, m)
        m.wait_heads(["READY=1"])
        pid = self.d.wait_pid("a")
        # Its SIGTERM handler is in place (a service signalled before would die at once).
        wait_until(lambda: ("mark", "a", "armed") in self.d.events(), 10, "a to be armed")
        self.d.ns.signal_init(signal.SIGTERM)
        m.wait_heads(["READY=1", "STOPPING=1"])
        self.assertEqual(seen.get("alive"), pid, "STOPPING=1 came after the service was gone")
        self.assertEqual(self.d.wait_exit(20), 0)
        self.assertEqual(m.heads(), ["READY=1", "STOPPING=1"])
        self.assert_from_vigild(m)

    def test_watchdog_pings_at_half_the_interval_and_stop_with_the_loop(self) -> None:
        m = self.manager(abstract=False)
        self.start({"a": self.ready_svc("a")}, m, WATCHDOG_USEC="600000", WATCHDOG_PID="1")
        m.wait_heads(["READY=1"])
        wait_until(lambda: len(m.pings()) >= 2, 5, "two pings")
        first = len(m.pings())
        time.sleep(2.4)
        pings = m.pings()
        count = len(pings) - first
        # Every 300 ms: 8 in 2.4 s; a loaded machine may delay some, never add any (a late
        # ping may be followed by an early one: the next is armed from the loop's time).
        low = 4 if harness.timeout_multiplier() == 1 else 2
        self.assertTrue(low <= count <= 9, f"{count} pings in 2.4 s: {pings}")
        gaps = [b.at_ms - a.at_ms for a, b in zip(pings, pings[1:])]
        self.assertLess(max(gaps), 600 * harness.timeout_multiplier(), gaps)  # in time
        # vigild stopped: its loop does not turn, and no ping goes out.
        self.d.ns.signal_init(signal.SIGSTOP)
        wait_until(lambda: harness.state_of(self.d.ns.init_pid) == "T", 5, "vigild stopped")
        time.sleep(scaled(0.2))  # a ping sent just before the stop has been taken by now
        before = len(m.pings())
        time.sleep(1.5)  # five intervals
        self.assertEqual(len(m.pings()), before, "pings while vigild was stopped")
        self.d.ns.signal_init(signal.SIGCONT)
        wait_until(lambda: len(m.pings()) > before, 5, "pings again after SIGCONT")
        self.assert_from_vigild(m)

    def test_a_watchdog_for_another_pid_is_not_pinged(self) -> None:
        m = self.manager(abstract=True)
        self.start({"a": self.ready_svc("a")}, m, WATCHDOG_USEC="200000", WATCHDOG_PID="2")
        m.wait_heads(["READY=1"])
        time.sleep(0.5)
        self.assertEqual(m.pings(), [])
        wait_until(lambda: "WATCHDOG_PID=2 is not vigild's pid (1)" in self.d.stderr(), 5,
                   "the warning")

    def test_a_manager_that_does_not_listen_is_logged_once(self) -> None:
        address = f"@vigil-test-nobody-{os.getpid()}"
        self.d.write_units({"a": self.ready_svc("a")})
        argv = [harness.vigild(), "--units", self.d.units_dir, "--socket", self.d.sock]
        self.d.ns = harness.PidNamespace(argv, env=clean_env(
            NOTIFY_SOCKET=address, WATCHDOG_USEC="100000"))
        self.d.wait_pid("a")
        wait_until(lambda: "cannot notify the service manager" in self.d.stderr(), 5,
                   "the first failure in vigild's journal")
        time.sleep(0.5)  # five more refused pings
        self.assertIsNone(self.d.ns.popen.poll(), "vigild ended")
        self.assertEqual(self.d.stderr().count("cannot notify the service manager"), 1,
                         self.d.stderr())
        self.d.ns.signal_init(signal.SIGTERM)
        self.assertEqual(self.d.wait_exit(20), 0)

    def test_wrapper_mode_passes_the_variables_on_and_sends_nothing(self) -> None:
        m = self.manager(abstract=True)
        env = clean_env(NOTIFY_SOCKET=m.address, WATCHDOG_USEC="100000", WATCHDOG_PID="1",
                        LISTEN_FDS="1", LISTEN_PID="1")
        with harness.Run([harness.vigild(), "--", "/usr/bin/env"], env=env) as run:
            self.assertEqual(run.wait(10), 0)
            out = bytes(run.stdout).decode()
        for line in (f"NOTIFY_SOCKET={m.address}", "WATCHDOG_USEC=100000", "WATCHDOG_PID=1",
                     "LISTEN_FDS=1", "LISTEN_PID=1"):
            self.assertIn(line, out.splitlines())
        time.sleep(0.3)  # anything vigild sent has arrived by now
        self.assertEqual(m.all(), [])


if __name__ == "__main__":
    unittest.main()
