"""Zero-downtime restarts, proven with load: a real vigild (PID 1 of a fresh PID namespace,
daemon.Daemon) runs an instanced web unit (4 instances of tests/integration/lb/server.py)
while tests/integration/lb/loadgen.py sends requests through it, each on a new connection, and
counts refused connections, reset connections and failed requests separately, each with its
time.

Scenarios, each under load: a rolling restart (`vigilctl restart --rolling web`), a crash of
one instance (SIGSEGV to its pid), SIGKILL of all four instances at once, and a reload that
changes the unit (it has "update": "rolling").

Two variants of the same unit:
- WithListen: the unit has `listen`: vigild holds the socket, shared by every instance
  (LISTEN_FDS), so connections wait in its queue while instances come and go. Asserted: no
  connection is ever refused; no request fails through the rolling restart or the reload; under
  the crash and the SIGKILL only the requests in flight on the killed processes may fail (at
  most one per client: each client has one request in flight), all at the time of the kill;
  the kernel shows every instance's fd 3 is one socket, which vigild holds too.
- WithoutListen: the same unit without `listen`: each instance binds the port itself with
  SO_REUSEPORT, the usual way before socket passing. Asserted: the SIGKILL of every instance
  refuses connections (nothing listens until one is back), so the test can tell the variants
  apart and fails if `listen` stops making the difference. The other numbers are printed.
- SocketActivate: the server alone under systemd-socket-activate(1), a real manager side of
  the LISTEN_FDS protocol (skipped when systemd's tool is not installed).

Each scenario prints one line: its counts, requests per second and latency percentiles.

Features: the test needs vigild's `listen`, `update` and `stop.drain` fields and vigilctl's
`restart --rolling`, and fails without them. VIGIL_ZD_ALLOW_MISSING=1 runs what the binaries
under test support and skips the rest (for a baseline against an older vigild).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "lb"))
import harness  # noqa: E402
from daemon import FAST, Daemon, cmdline  # noqa: E402
from harness import scaled, wait_until  # noqa: E402
from loadgen import LoadGen  # noqa: E402

SERVER = os.path.join(HERE, "lb", "server.py")
INSTANCES = 4
CLIENTS = 8
REQUEST_DELAY = 0.02   # seconds of work per request: requests are in flight when a kill comes
READY_DELAY = 0.2      # seconds of start-up before an instance accepts and says READY=1
SETTLE = 0.3           # seconds of load before and after each scenario's action


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def web_unit(port: int, listen: bool, generation: int, features: set) -> dict:
    """The instanced unit; `features` drops what the vigild under test lacks (see Features)."""
    unit = {
        "command": [sys.executable, SERVER, "--port", str(port), "--delay", str(REQUEST_DELAY),
                    "--ready-delay", str(READY_DELAY)],
        "instances": INSTANCES,
        "env": {"GENERATION": str(generation), "PYTHONUNBUFFERED": "1"},
        "ready": {"notify": True, "timeout": "20s"},
        "stop": {"timeout": "10s"},
        "backoff": FAST,
    }
    if "update" in features:
        unit["update"] = "rolling"
    if "drain" in features:
        unit["stop"]["drain"] = "100ms"
    if listen:
        unit["listen"] = [{"tcp": f"127.0.0.1:{port}", "name": "http"}]
    return unit


# Restarts the scenarios cause (a crash, four SIGKILLs) must not make root give up.
ROOT = {"strategy": "one_for_one", "intensity": 100, "period": "10s"}


class Features:
    """What the binaries under test support, probed once: `vigild --check` on units with each
    new field, `vigilctl restart --help` for --rolling."""

    _cache: set | None = None

    @classmethod
    def get(cls) -> set:
        if cls._cache is None:
            cls._cache = cls._probe()
        return cls._cache

    @staticmethod
    def _checks(unit: dict) -> bool:
        d = Daemon({"web": unit}, start=False)
        try:
            r = subprocess.run([harness.vigild(), "--check", "--units", d.units_dir],
                               capture_output=True, text=True, timeout=scaled(10))
            return r.returncode == 0
        finally:
            d.close()

    @classmethod
    def _probe(cls) -> set:
        have = set()
        base = web_unit(1, False, 1, set())
        for name, extra in (("update", {"update": "rolling"}),
                            ("drain", {"stop": {"timeout": "10s", "drain": "100ms"}}),
                            ("listen", {"listen": [{"tcp": "127.0.0.1:1"}]})):
            if cls._checks({**base, **extra}):
                have.add(name)
        r = subprocess.run([harness.vigilctl(), "restart", "--help"], capture_output=True,
                           text=True, timeout=scaled(10))
        if "--rolling" in r.stdout + r.stderr:
            have.add("rolling")
        return have


def need(test: unittest.TestCase, *names: str) -> None:
    missing = [n for n in names if n not in Features.get()]
    if not missing:
        return
    what = ", ".join(missing)
    if os.environ.get("VIGIL_ZD_ALLOW_MISSING") == "1":
        test.skipTest(f"the binaries under test lack {what} (VIGIL_ZD_ALLOW_MISSING=1)")
    test.fail(f"the binaries under test lack {what}: vigild's listen, update and stop.drain "
              f"fields and vigilctl restart --rolling are what this test proves")


def environ_of(pid: int) -> dict:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            raw = f.read()
    except OSError:
        return {}
    out = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            out[key.decode()] = value.decode("utf-8", "replace")
    return out


def listening(port: int) -> bool:
    """Whether the kernel shows a TCP socket listening on 127.0.0.1:port (/proc/net/tcp)."""
    want = f"0100007F:{port:04X}"
    for line in harness.read_text("/proc/net/tcp").splitlines()[1:]:
        fields = line.split()
        if len(fields) > 3 and fields[1] == want and fields[3] == "0A":
            return True
    return False


def socket_inode(pid: int, fd: int) -> str | None:
    try:
        link = os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        return None
    return link if link.startswith("socket:") else None


class ZeroDowntime(unittest.TestCase):
    """One vigild for the class; every scenario starts from four ready instances."""

    LISTEN = True
    NEEDS: tuple = ()
    results: list = []

    @classmethod
    def setUpClass(cls) -> None:
        cls.port = free_port()
        cls.generation = 1
        cls.d = None
        missing = [n for n in cls.NEEDS if n not in Features.get()]
        if missing:
            return  # each test fails (or skips) through need()
        cls.d = Daemon({"root": ROOT, "web": cls.unit()})
        cls.results = []
        cls.d.wait_socket(20)

    @classmethod
    def tearDownClass(cls) -> None:
        if cls.d is not None:
            cls.d.close()
        if cls.results:
            print(f"\n{cls.__name__}: {CLIENTS} clients, {INSTANCES} instances, "
                  f"{REQUEST_DELAY * 1000:.0f} ms per request", file=sys.stderr)
            for line in cls.results:
                print("  " + line, file=sys.stderr)

    @classmethod
    def unit(cls) -> dict:
        return web_unit(cls.port, cls.LISTEN, cls.generation, Features.get())

    def setUp(self) -> None:
        need(self, *self.NEEDS)

    # -- what the kernel shows ----------------------------------------------------------------

    def servers(self) -> dict:
        """instance number -> host pid of the live server processes (children of vigild)."""
        out = {}
        for p in self.d.ns.processes():
            if p.ppid == self.d.ns.init_pid and p.state != "Z" and SERVER in cmdline(p.pid):
                instance = environ_of(p.pid).get("VIGIL_INSTANCE")
                if instance is not None:
                    out[int(instance)] = p.pid
        return out

    def all_ready(self, replaced: set = frozenset()) -> dict:
        """Waits until vigild says every instance runs and is ready, and the kernel shows one
        server process per instance, of the current generation, none of them in `replaced`;
        returns instance -> host pid."""
        def ready():
            units = self.d.ctl_json("status", "web")["units"]
            if len(units) != INSTANCES or not all(u["state"] == "running" and u["ready"]
                                                  for u in units):
                return None
            pids = self.servers()
            if len(pids) != INSTANCES or replaced & set(pids.values()):
                return None
            inner = {harness.proc_info(pid).inner_pid for pid in pids.values()
                     if harness.proc_info(pid)}
            if inner != {u["pid"] for u in units}:
                return None
            gens = {environ_of(pid).get("GENERATION") for pid in pids.values()}
            return pids if gens == {str(self.generation)} else None
        return wait_until(ready, 20, "every instance running, ready and replaced")

    # -- a scenario ---------------------------------------------------------------------------

    def under_load(self, name: str, action) -> tuple:
        """Runs `action` under load, SETTLE seconds of load before and after it. Returns
        (report, t0, t1): the action ran from t0 to t1 (monotonic), and ends only once every
        instance is back."""
        self.all_ready()
        gen = LoadGen(self.port, clients=CLIENTS, timeout=scaled(5), max_seconds=scaled(60))
        gen.start()
        try:
            time.sleep(SETTLE)
            t0 = time.monotonic()
            action()
            t1 = time.monotonic()
            time.sleep(SETTLE)
        finally:
            report = gen.stop()
        s = report.summary()
        during = report.summary(t0, t1)
        line = (f"{name:<16} {s['ok']:5} ok {s['refused']:4} refused {s['reset']:3} reset "
                f"{s['failed']:3} failed | {s['rps']:6.1f} req/s p50 {s['p50_ms']} ms p99 "
                f"{s['p99_ms']} ms | during the action ({during['seconds']:.2f} s): "
                f"{during['rps']:.1f} req/s p99 {during['p99_ms']} ms")
        type(self).results.append(line)
        print(f"\n  {line}", file=sys.stderr)
        for f in s["failures"][:8]:
            print(f"    +{f['t']:.3f}s {f['kind']}: {f['detail']}", file=sys.stderr)
        self.assertGreater(report.counts(t1, float("inf"))["ok"], 0,
                           f"{name}: no request succeeded after the action")
        self.assertGreater(report.counts(float("-inf"), t0)["ok"], 0,
                           f"{name}: no request succeeded before the action")
        return report, t0, t1

    def rolling_restart(self) -> None:
        old = set(self.all_ready().values())
        r = self.d.ctl("restart", "--rolling", "web", timeout=60)
        self.assertEqual(r.returncode, 0, f"vigilctl restart --rolling: {r.stdout}{r.stderr}")
        self.all_ready(replaced=old)

    def crash_one(self) -> float:
        pids = self.all_ready()
        victim = pids[2]
        t = time.monotonic()
        os.kill(victim, signal.SIGSEGV)
        new = self.all_ready(replaced={victim})
        self.assertEqual({i: p for i, p in new.items() if i != 2},
                         {i: p for i, p in pids.items() if i != 2},
                         "a crash of one instance touched the others")
        return t

    def kill_all(self) -> float:
        pids = self.all_ready()
        t = time.monotonic()
        for pid in pids.values():
            os.kill(pid, signal.SIGKILL)
        self.all_ready(replaced=set(pids.values()))
        return t

    def reload_changed(self) -> None:
        old = set(self.all_ready().values())
        type(self).generation += 1
        self.d.write_units({"root": ROOT, "web": self.unit()})
        r = self.d.ctl("reload", timeout=60)
        self.assertEqual(r.returncode, 0, f"vigilctl reload: {r.stdout}{r.stderr}")
        self.all_ready(replaced=old)


class WithListen(ZeroDowntime):
    LISTEN = True
    NEEDS = ("listen", "update", "drain")

    def assert_clean(self, report, what: str) -> None:
        failures = report.failures()
        self.assertEqual(failures, [], f"{what}: {len(failures)} requests failed under load")

    def assert_only_in_flight(self, report, t_kill: float, t1: float, what: str) -> None:
        c = report.counts()
        self.assertEqual(c["refused"], 0, f"{what}: connections refused")
        lost = report.failures()
        print(f"    {what}: {len(lost)} requests in flight on the killed processes failed "
              f"(bound: {CLIENTS}, one per client)", file=sys.stderr)
        self.assertLessEqual(len(lost), CLIENTS, f"{what}: more failures than requests in flight")
        for o in lost:
            self.assertEqual(o.kind, "reset", f"{what}: a request failed otherwise: {o}")
            self.assertTrue(t_kill <= o.t <= t1, f"{what}: a failure away from the kill: {o}")

    def test_socket_is_vigilds_and_shared(self) -> None:
        """The kernel's view: every instance's fd 3 is the same listening socket, and vigild
        (the namespace's init) holds it too; LISTEN_PID is each instance's own pid."""
        pids = self.all_ready()
        inodes = {i: socket_inode(pid, 3) for i, pid in pids.items()}
        self.assertEqual(len(set(inodes.values())), 1, f"fd 3 of the instances: {inodes}")
        inode = inodes[1]
        self.assertIsNotNone(inode)
        init_fds = os.listdir(f"/proc/{self.d.ns.init_pid}/fd")
        held = {socket_inode(self.d.ns.init_pid, int(fd)) for fd in init_fds}
        self.assertIn(inode, held, "vigild does not hold the instances' socket")
        for pid in pids.values():
            env = environ_of(pid)  # as exec'd: the server removes them from its own copy
            self.assertEqual((env.get("LISTEN_FDS"), env.get("LISTEN_FDNAMES")), ("1", "http"))
            self.assertEqual(env.get("LISTEN_PID"), str(harness.proc_info(pid).inner_pid))

    def test_rolling_restart(self) -> None:
        need(self, "rolling")
        report, _, _ = self.under_load("rolling restart", self.rolling_restart)
        self.assert_clean(report, "rolling restart")

    def test_reload_rolling(self) -> None:
        report, _, _ = self.under_load("reload (rolling)", self.reload_changed)
        self.assert_clean(report, "reload with update rolling")

    def test_crash_one(self) -> None:
        kill = []
        report, _, t1 = self.under_load("crash (SIGSEGV)", lambda: kill.append(self.crash_one()))
        self.assert_only_in_flight(report, kill[0], t1, "crash of one instance")

    def test_sigkill_all(self) -> None:
        kill = []
        report, _, t1 = self.under_load("SIGKILL all", lambda: kill.append(self.kill_all()))
        self.assert_only_in_flight(report, kill[0], t1, "SIGKILL of every instance")


class WithoutListen(ZeroDowntime):
    """The baseline: the same unit without listen. Its numbers are printed; the SIGKILL case
    must refuse connections, or the comparison proves nothing."""

    LISTEN = False
    NEEDS = ()

    def test_rolling_restart(self) -> None:
        need(self, "rolling")
        self.under_load("rolling restart", self.rolling_restart)

    def test_reload(self) -> None:
        self.under_load("reload" + (" (rolling)" if "update" in Features.get() else ""),
                        self.reload_changed)

    def test_crash_one(self) -> None:
        self.under_load("crash (SIGSEGV)", self.crash_one)

    def test_sigkill_all(self) -> None:
        report, t0, t1 = self.under_load("SIGKILL all", self.kill_all)
        refused = report.counts(t0, t1)["refused"]
        self.assertGreater(refused, 0, "SIGKILL of every self-bound instance refused nothing: "
                                       "the baseline no longer shows what listen prevents")


class SocketActivate(unittest.TestCase):
    """The server under systemd-socket-activate(1): it takes fd 3 when LISTEN_PID is its pid."""

    def test_passed_socket(self) -> None:
        tool = shutil.which("systemd-socket-activate")
        if tool is None:
            self.skipTest("systemd-socket-activate is not installed (Debian: systemd)")
        port = free_port()
        with harness.Run([tool, "-l", f"127.0.0.1:{port}", "-E", "VIGIL_INSTANCE=7",
                          sys.executable, SERVER]) as run:
            # It listens, then execs the server on the first connection; the exec keeps the
            # pid, which is the LISTEN_PID it sets.
            wait_until(lambda: listening(port), 10, f"systemd-socket-activate on port {port}")
            gen = LoadGen(port, clients=2, timeout=scaled(5), max_seconds=scaled(20)).start()
            wait_until(lambda: SERVER in cmdline(run.pid), 10, "the server to be exec'd")
            time.sleep(0.3)
            report = gen.stop()
            self.assertEqual(report.failures(), [])
            self.assertEqual(report.pids(), {str(run.pid)})
            self.assertTrue(all(o.detail.startswith("instance=7 ") for o in report.outcomes))
            self.assertIsNotNone(socket_inode(run.pid, 3))
            run.signal(signal.SIGTERM)
            self.assertEqual(run.wait(10), 0)
            self.assertIn(b"passed (LISTEN_FDS)", bytes(run.stdout))


if __name__ == "__main__":
    unittest.main()
