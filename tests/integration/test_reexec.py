"""`vigilctl reexec`: vigild replaces its own program (execve, same pid) and no service notices.

One vigild, PID 1 of a fresh PID namespace, runs 200 services and is re-executed three times in
a row while they work. The services are chosen so that each thing vigild must carry over is
in use at the moment of each exec:

- line writers (w*, stdout to a log file, the ring and vigild's stdout): continuous numbered
  lines, some written half a line at a time with a pause in the middle, so whole and partial
  lines are in the pipes and in vigild's carry buffers during each exec;
- crashers (c*): exit at once, backoff without jitter (initial = max), so they spend almost all
  their time in backoff and the next start is due at a known time: previous start + delay;
- slow stoppers (slow*): ignore SIGTERM; one is stopped (`--no-wait`) just before each exec, so
  a stop timeout is running across it and SIGKILL is due at SIGTERM + timeout;
- a never-ready service (nr: after its first incarnation, notify readiness never comes): a
  start timeout is always running;
- MAINPID= hand-overs (m*): the launcher forks the real worker, names it MAINPID= and exits;
- an instanced unit (inst@1..4), probed services (exec, http and tcp liveness probes), a notify
  service that keeps sending STATUS=, a ready-fd service, a service with a held `listen`
  socket; the rest (filler) sleep.

Afterwards, from /proc, the services' own logs and vigild's sinks (never only vigild's word):
every pid is unchanged (same host pid, same start time, still running the same program) and
vigild kept its pid; every numbered line is in the log file, the ring and vigild's stdout
exactly once, in order; every backoff, stop timeout and start timeout that was running across
an exec fired on time, timed by the services' CLOCK_MONOTONIC stamps and by pidfds polled from
here: within 50 ms (scaled under ASan) plus the worst error of the same deadlines away from
any exec in the same run (allowed_error: a loaded machine's jitter); the event history after the execs continues the one
before (same records, none lost or doubled; when records carry "seq", it has no gap); restart
counts carried on; probes kept their counters and go on; the notify socket, the held listen
socket, vigild's HTTP listener and control socket still work; vigild's long-lived descriptor
count is the same before and after each exec and its RSS comparable (see RSS_TOLERANCE); a
control request sent while each exec ran was answered, not refused.

The failure paths: the binary vigild was started from is missing (vigild goes on, vigilctl
exits 1 and says why; putting the file back makes the next reexec work, and SIGRTMIN+1 does the
same as the command), and, when the build provides it (VIGILD_NEXTVERSION, or
vigild-nextversion beside vigild), a binary that cannot read the state: the old services are
stopped and the tree starts fresh under the same pid.

Environment: VIGILD, VIGILCTL, TESTSVC (meson), VIGIL_TEST_TIMEOUT_MULTIPLIER (waits and
timing tolerances scale with it), VIGILD_NEXTVERSION (optional).
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import socket
import sys
import threading
import time
import unittest
from typing import Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from daemon import Daemon, cmdline  # noqa: E402
from harness import scaled, start_time, uses_asan, vm_rss_kib, wait_until  # noqa: E402

PYTHON = sys.executable
REEXECS = 3
N_SERVICES = 200
# Deadlines: how far a deadline may fire from its due time. 50 ms on a quiet machine; the
# sanitizer build is slower at everything, so the allowance grows with the multiplier.
TOLERANCE_MS = 50 * harness.timeout_multiplier()
# RSS after the execs against before: a new image rebuilds the same state in a fresh heap, so
# it should come out about the same or smaller (no fragmentation yet). 25% plus 2 MiB allows for
# the allocator's arenas being laid out differently and for the rings, which are filled again
# as lines come; anything above that is state the exec duplicated or leaked.
RSS_TOLERANCE = (1.25, 2048)
# The deadlines must be longer than an exec takes (tens of ms; about a second for an ASan
# build, whose image is large): they grow with the multiplier.
_M = harness.timeout_multiplier()
CRASH_DELAYS_MS = [round(d * _M) for d in (700, 830, 960, 1090, 1220)]
SLOW_TIMEOUT_MS = round(1500 * _M)
NEVER_READY_MS = round(1000 * _M)
WHOLE_WRITERS, PARTIAL_WRITERS = 6, 4
SEQ_LINE = re.compile(r"^(w\d+) seq=(\d+)$")
FWD = re.compile(r"^(w\d+) [|!] (.*)$")

# A writer of numbered lines "NAME seq=N" on stdout, until SIGTERM; then it writes how many
# lines it wrote to COUNTFILE. partial: each line in two write(2)s with a pause between them.
WRITER = r'''
import os, signal, sys, time
name, mode, countfile = sys.argv[1], sys.argv[2], sys.argv[3]
stop = False
def on_term(sig, frame):
    global stop
    stop = True
signal.signal(signal.SIGTERM, on_term)
n = 0
while not stop:
    n += 1
    line = f"{name} seq={n}\n".encode()
    if mode == "partial":
        cut = len(line) // 2
        os.write(1, line[:cut])
        time.sleep(0.003)
        os.write(1, line[cut:])
        time.sleep(0.005)
    else:
        os.write(1, line)
        if n % 10 == 0:
            time.sleep(0.02)
with open(countfile + ".tmp", "w") as f:
    f.write(str(n))
os.rename(countfile + ".tmp", countfile)
'''

# Sends READY=1, then STATUS=tick N every 100 ms, to $NOTIFY_SOCKET.
NOTIFIER = r'''
import os, socket, time
addr = os.environ["NOTIFY_SOCKET"]
if addr.startswith("@"):
    addr = "\0" + addr[1:]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b"READY=1", addr)
n = 0
while True:
    n += 1
    try:
        s.sendto(f"STATUS=tick {n}".encode(), addr)
    except OSError:
        pass
    time.sleep(0.1)
'''


def log(msg: str) -> None:
    print(f"[reexec {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fds_of(pid: int) -> dict:
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out[int(fd)] = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            pass
    return out


def stable_fds(pid: int, others, readings: int = 4, gap: float = 0.15) -> dict:
    """The descriptors of pid present, with the same target, in every one of `readings` readings
    `gap` s apart: what vigild holds for good, without the pipes of a probe or of a crasher's
    incarnation that come and go within milliseconds (each has new inodes). others() gives
    (volatile, held): the targets of the descriptors of the services whose incarnations change
    during the measure (crashers, stops in progress), left out, and those of every other
    process of the namespace. A pipe is one kernel object, with the same inode in vigild and in
    the service that writes to it; a pipe of vigild's that no process shares is the output of an
    incarnation that ended, which vigild closes at its unit's next spawn (Shell::retire): left
    out too, as it depends on where the crashers are in their cycle."""
    common = fds_of(pid)
    for i in range(readings):
        if i:
            time.sleep(gap)
        now = fds_of(pid)
        volatile, held = others()
        common = {fd: t for fd, t in common.items() if now.get(fd) == t and t not in volatile
                  and (not t.startswith("pipe:") or t in held)
                  and not pidfd_of_own_child(pid, fd, t)}
    return common


def pidfd_of_own_child(pid: int, fd: int, target: str) -> bool:
    """fd of pid is a pidfd of one of pid's children. vigild watches a MAINPID= process through
    a pidfd while another process is its parent; once that parent exits, the process is
    re-parented to vigild and SIGCHLD tells its end. The watch made before stays until that
    end; a new image, which finds the process its child already, makes none. Such pidfds are
    not counted: they are the difference between an image that saw the re-parenting and one
    that did not, not something the exec leaked or lost."""
    if target != "anon_inode:[pidfd]":
        return False
    try:
        with open(f"/proc/{pid}/fdinfo/{fd}") as f:
            other = next((int(ln.split()[1]) for ln in f if ln.startswith("Pid:")), -1)
    except (OSError, ValueError, IndexError):
        return False
    info = harness.proc_info(other) if other > 0 else None
    return info is not None and info.ppid == pid


def kinds(fds: dict) -> dict:
    out: dict = {}
    for t in fds.values():
        k = t.split(":[")[0] if ":[" in t else ("file" if t.startswith("/") else t)
        if k == "anon_inode":
            k = t
        out[k] = out.get(k, 0) + 1
    return dict(sorted(out.items()))


def http_get(port: int, path: str, timeout: float = 5) -> str:
    """The status line of GET path on 127.0.0.1:port."""
    with socket.create_connection(("127.0.0.1", port), timeout=scaled(timeout)) as c:
        c.settimeout(scaled(timeout))
        c.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while b"\r\n" not in data:
            chunk = c.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.split(b"\r\n")[0].decode()


class DeathWatch:
    """The CLOCK_MONOTONIC time (ms) at which a process ended, from its pidfd, polled in a
    thread: the kernel's view of when a SIGKILL landed."""

    def __init__(self, pid: int) -> None:
        self.died_ms: Optional[float] = None
        self.fd = os.pidfd_open(pid)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        p = select.poll()
        p.register(self.fd, select.POLLIN)
        while not p.poll(1000):
            pass
        self.died_ms = time.monotonic() * 1000
        os.close(self.fd)


class NrWatch:
    """The death times (CLOCK_MONOTONIC ms) of vigild's children running `sleep 100000` (the
    never-ready service's incarnations), each from its pidfd. New children are looked for every
    10 ms in /proc/VIGILD/task/*/children (one small read per thread, no scan of /proc); each
    lives 2 s."""

    def __init__(self, vigild: int) -> None:
        self.vigild = vigild
        self.deaths: list = []
        self._seen: set = set()
        self._watches: list = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _children(self) -> list:
        out = []
        try:
            tasks = os.listdir(f"/proc/{self.vigild}/task")
        except OSError:
            return out
        for t in tasks:
            try:
                with open(f"/proc/{self.vigild}/task/{t}/children") as f:
                    out += [int(x) for x in f.read().split()]
            except OSError:
                pass
        return out

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in self._children():
                if pid not in self._seen and cmdline(pid) == ["sleep", "100000"]:
                    self._seen.add(pid)
                    try:
                        self._watches.append(DeathWatch(pid))
                    except OSError:
                        pass
            time.sleep(0.01)

    def died(self) -> int:
        """How many have died so far."""
        return sum(1 for w in list(self._watches) if w.died_ms is not None)

    def stop(self) -> list:
        self._stop.set()
        self.thread.join(scaled(5))
        return sorted(w.died_ms for w in self._watches if w.died_ms is not None)


class ControlPoker:
    """Sends `version` requests over the raw control protocol, one connection each, back to back,
    from start() to stop(). Records when each was sent and whether it was answered: a request
    refused (connect failed) or left without an answer is a failure."""

    def __init__(self, sock: str) -> None:
        self.sock = sock
        self.done: list = []      # (sent_ms, answered_ms)
        self.failed: list = []    # (sent_ms, what)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "ControlPoker":
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(scaled(30))

    def _one(self) -> None:
        sent = time.monotonic() * 1000
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
                c.settimeout(scaled(20))
                c.connect(self.sock)
                c.sendall(b'{"id":1,"cmd":"version"}\n')
                buf = b""
                while True:
                    chunk = c.recv(65536)
                    if not chunk:
                        self.failed.append((sent, f"EOF without an answer after {buf[:200]!r}"))
                        return
                    buf += chunk
                    for line in buf.split(b"\n")[:-1]:
                        if line and json.loads(line).get("id") == 1:
                            self.done.append((sent, time.monotonic() * 1000))
                            return
        except OSError as e:
            self.failed.append((sent, repr(e)))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._one()
            time.sleep(0.002)


# --------------------------------------------------------------------------- the scenario


class Scenario:
    """Builds the 200 services, runs the three re-execs, and keeps what it saw for the tests."""

    def __init__(self) -> None:
        self.d = Daemon({}, start=False)
        self.http_port = free_port()
        self.d.args = ("--http", f"127.0.0.1:{self.http_port}")
        self.logdir = os.path.join(self.d.dir, "logs")
        os.mkdir(self.logdir)
        for name, text in (("writer.py", WRITER), ("notifier.py", NOTIFIER)):
            with open(os.path.join(self.d.dir, name), "w") as f:
                f.write(text)
        self.ports = {"ph": free_port(), "pt": free_port(), "ls": free_port()}
        self.writers = [f"w{i}" for i in range(WHOLE_WRITERS + PARTIAL_WRITERS)]
        self.units = self.build_units()
        self.d.write_units(self.units)
        self.reexecs: list = []   # per exec: {t0, t1, answer, rc, stderr, fds_before, ...}
        self.slow_watch: dict = {}

    def svc(self, ident: str, *modes: str) -> list:
        return self.d.svc(ident, *modes)

    def build_units(self) -> dict:
        ts = harness.testsvc()
        d = self.d
        units: dict = {
            "root": {"kind": "supervisor", "intensity": 100000, "period": "10s"},
            "io": {"kind": "supervisor", "strategy": "one_for_one", "intensity": 100000,
                   "period": "10s"},
            "fill": {"kind": "supervisor", "strategy": "one_for_one", "intensity": 1000,
                     "period": "10s"},
        }
        for i, name in enumerate(self.writers):
            mode = "whole" if i < WHOLE_WRITERS else "partial"
            units[name] = {
                "command": [PYTHON, os.path.join(d.dir, "writer.py"), name, mode,
                            os.path.join(d.dir, name + ".count"), "--id", name],
                "parent": "io", "stop": {"timeout": "5s"},
                "logs": {"file": os.path.join(self.logdir, name + ".log"),
                         "max_size": "64MiB", "keep": 1}}
        for i, delay in enumerate(CRASH_DELAYS_MS):
            units[f"c{i}"] = {"command": self.svc(f"c{i}", "exit", "1"), "parent": "io",
                              "backoff": {"initial": f"{delay}ms", "max": f"{delay}ms",
                                          "factor": 1, "jitter": 0}}
        for k in range(REEXECS + 1):  # the last one is stopped away from any exec: the control
            units[f"slow{k}"] = {"command": self.svc(f"slow{k}", "log-signals", "ignore-term",
                                                     "sleep"),
                                 "stop": {"timeout": f"{SLOW_TIMEOUT_MS}ms"}}
        # A start that fails the whole tree at start-up is OTP's rule: the first incarnation
        # becomes ready (and crashes soon after), the later ones never do. Those are `sleep`,
        # which dies at once even when the test's binaries are built with ASan (whose processes
        # take long to exit): NrWatch times their deaths.
        flag = os.path.join(d.dir, "nr.once")
        first = " ".join(self.svc("nr", "notify-ready", "crash-after", "300", "sleep"))
        units["nr"] = {"command": ["sh", "-c", f"if [ -e {flag} ]; then exec sleep 100000; fi; "
                                   f": > {flag}; exec {first}"],
                       "ready": {"notify": True, "timeout": f"{NEVER_READY_MS}ms"},
                       "backoff": {"initial": "300ms", "max": "300ms", "jitter": 0},
                       "stop": {"timeout": "5s"}}
        for i in range(3):  # the launcher exits: the worker is re-parented to vigild
            worker = " ".join(self.svc(f"m{i}", "sleep"))
            units[f"m{i}"] = {"command": ["sh", "-c", f"{worker} & systemd-notify --ready "
                                          "MAINPID=$!; exit 0"],
                              "ready": {"notify": True, "timeout": "20s"}}
        # The launcher stays: the worker is not vigild's child, its end is seen by a pidfd.
        worker = " ".join(self.svc("mw", "sleep"))
        units["mw"] = {"command": ["sh", "-c", f"{worker} & systemd-notify --ready MAINPID=$!; "
                                   "wait $!; exec sleep 100001"],
                       "ready": {"notify": True, "timeout": "20s"}}
        units["inst"] = {"command": self.svc("inst", "sleep"), "instances": 4}
        probe = {"period": "300ms", "timeout": "2s", "failure_threshold": 3}
        units["pe"] = {"command": self.svc("pe", "sleep"),
                       "liveness": {"exec": ["true"], **probe}}
        units["ph"] = {"command": self.svc("ph", "http", str(self.ports["ph"])),
                       "liveness": {"http": {"port": self.ports["ph"], "path": "/healthz"},
                                    **probe}}
        units["pt"] = {"command": self.svc("pt", "http", str(self.ports["pt"])),
                       "liveness": {"tcp": {"port": self.ports["pt"]}, **probe}}
        units["nt"] = {"command": [PYTHON, os.path.join(d.dir, "notifier.py"), "--id", "nt"],
                       "ready": {"notify": True, "timeout": "20s"}}
        units["rf"] = {"command": self.svc("rf", "ready-fd", "3", "sleep"),
                       "ready": {"fd": 3, "timeout": "20s"}}
        units["ls"] = {"command": self.svc("ls", "sleep"),
                       "listen": [{"tcp": f"127.0.0.1:{self.ports['ls']}"}]}
        n = sum(u.get("instances", 1) for u in units.values() if u.get("kind") != "supervisor")
        for i in range(N_SERVICES - n):
            units[f"f{i:03d}"] = {"command": [ts, "--id", f"f{i:03d}", "sleep"],
                                  "parent": "fill"}
        return units

    # -- reading the daemon -----------------------------------------------------------------

    def status(self) -> dict:
        r = self.d.ctl("--json", "status")
        if r.returncode not in (0, 3):
            raise AssertionError(f"status: {r.returncode} {r.stderr}")
        return {u["name"]: u for u in json.loads(r.stdout)["units"]}

    def events(self) -> list:
        r = self.d.ctl("--json", "events", "-n", "1000000")
        if r.returncode != 0:
            raise AssertionError(f"events: {r.returncode} {r.stderr}")
        return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]

    def checks(self) -> dict:
        r = self.d.ctl("--json", "checks", "pe", "ph", "pt")
        if r.returncode not in (0, 3):
            raise AssertionError(f"checks: {r.returncode} {r.stderr}")
        return {c["unit"]: c for c in json.loads(r.stdout)["checks"]}

    def pids(self) -> dict:
        """name -> (host pid, start time, inner pid, incarnation) of every running service,
        from status and /proc; (None, None, pid, incarnation) when the pid status gives is no
        live process (a crasher that just exited: the comparisons leave those out)."""
        by_inner = {p.inner_pid: p for p in self.d.processes() if p.state != "Z"}
        out = {}
        for name, u in self.status().items():
            if u["kind"] != "service" or u["state"] != "running" or u["pid"] is None:
                continue
            p = by_inner.get(u["pid"])
            host = p.pid if p is not None else None
            out[name] = (host, host and start_time(host), u["pid"], u["incarnation"])
        return out

    def fd_owners(self) -> tuple:
        """(volatile, held) for stable_fds: the descriptor targets of the services whose
        incarnations come and go (crashers, nr) or that are being stopped (slow*), and those of
        every other process of the namespace but vigild."""
        volatile, held = set(), set()
        for p in self.d.processes():
            if p.pid == self.vigild:
                continue
            try:
                targets = set(fds_of(p.pid).values())
            except OSError:
                continue
            argv = cmdline(p.pid)
            ident = argv[argv.index("--id") + 1] if "--id" in argv[:-1] else ""
            if argv == ["sleep", "100000"]:
                ident = "nr"
            if re.fullmatch(r"c\d+|nr|slow\d+", ident):
                volatile |= targets
            else:
                held |= targets
        return volatile, held

    def all_ready(self) -> bool:
        st = self.status()
        want = [n for n, u in st.items() if u["kind"] == "service" and n not in (
            "nr",) and not n.startswith("c")]
        return all(st[n]["state"] == "running" and st[n]["ready"] for n in want)

    # -- the run ------------------------------------------------------------------------------

    def run(self) -> None:
        d = self.d
        d.start()
        d.wait_socket(30)
        wait_until(self.all_ready, 30, "every service to run and be ready", interval=0.1)
        self.vigild = d.ns.init_pid
        self.vigild_start = start_time(self.vigild)
        self.nr_watch = NrWatch(self.vigild)
        # Every probe has passed a few times and every crasher has been through a backoff.
        wait_until(lambda: all(c["successes"] >= 2 for c in self.checks().values()), 20,
                   "the probes to pass")
        time.sleep(scaled(1.5))
        self.pids0 = self.pids()
        self.events0 = self.events()
        self.checks0 = self.checks()
        self.status0 = self.status()
        self.rss0 = vm_rss_kib(self.vigild)
        for k in range(REEXECS):
            self.one_reexec(k)
        self.after_reexecs()

    def one_reexec(self, k: int) -> None:
        d = self.d
        rec: dict = {"k": k}
        rec["fds_before"] = stable_fds(self.vigild, self.fd_owners)
        rec["http_before"] = http_get(self.http_port, "/healthz")
        # Right after one of nr's deaths, so that its next start timeout, a full
        # NEVER_READY_MS, runs across the exec.
        died = self.nr_watch.died()
        wait_until(lambda: self.nr_watch.died() > died, 2 * NEVER_READY_MS / 1000 + 5,
                   "a death of nr")
        self.stop_slow(k)  # a stop whose timeout runs across the exec
        wait_until(lambda: any(i == f"slow{k}" for _, i, _ in timed_events(d, "signal")), 5,
                   f"slow{k} to have its SIGTERM")
        poker = ControlPoker(d.sock).start()
        time.sleep(0.05)
        rec["t0"] = time.monotonic() * 1000
        r = d.ctl("--json", "reexec", timeout=60)
        rec["t1"] = time.monotonic() * 1000
        time.sleep(0.1)
        poker.stop()
        rec["rc"], rec["stdout"], rec["stderr"] = r.returncode, r.stdout, r.stderr
        try:
            rec["answer"] = json.loads(r.stdout)
        except ValueError:
            rec["answer"] = None
        rec["poker_done"], rec["poker_failed"] = poker.done, poker.failed
        said = json.dumps(rec["answer"]) if rec["answer"] else r.stdout.strip()
        log(f"reexec {k + 1}: rc {r.returncode} in {rec['t1'] - rec['t0']:.0f} ms: "
            f"{said} {r.stderr.strip()}; {len(poker.done)} control requests "
            f"answered around it, {len(poker.failed)} not")
        self.reexecs.append(rec)
        if r.returncode != 0:
            raise AssertionError(f"reexec {k + 1} failed: {r.returncode} {r.stdout} {r.stderr}")
        rec["fds_after"] = stable_fds(self.vigild, self.fd_owners)
        rec["http_after"] = http_get(self.http_port, "/healthz")

    def stop_slow(self, k: int) -> None:
        """Stops slow{k} (it ignores SIGTERM: SIGKILL is due SLOW_TIMEOUT_MS later), its death
        timed by a pidfd."""
        slow = self.d.main_pid(f"slow{k}")
        self.slow_watch[f"slow{k}"] = DeathWatch(slow)
        r = self.d.ctl("stop", "--no-wait", f"slow{k}")
        if r.returncode != 0:
            raise AssertionError(f"stop slow{k}: {r.returncode} {r.stderr}")

    def after_reexecs(self) -> None:
        d = self.d
        self.stop_slow(REEXECS)  # the same deadline away from any exec
        self.pids1 = self.pids()
        self.events1 = self.events()
        self.rss1 = vm_rss_kib(self.vigild)
        self.asan = uses_asan(self.vigild)
        self.status1 = self.status()
        log("after the execs: probes, notify, listen")
        # The probes go on: each passes again after the last exec.
        base = self.checks()
        wait_until(lambda: all(c["successes"] > base[u]["successes"]
                               for u, c in self.checks().items()), 10, "the probes to run again")
        self.checks1 = self.checks()
        # The notify socket still works: the STATUS= ticks go on.
        tick = self.status1["nt"]["status_text"]
        wait_until(lambda: self.status()["nt"]["status_text"] != tick, 5, "a new STATUS= of nt")
        # The held listen socket still takes connections, into the service's own socket.
        with socket.create_connection(("127.0.0.1", self.ports["ls"]), timeout=scaled(5)):
            pass
        log("after the execs: stop timeouts, restart counts")
        # Every stop timeout fired.
        for name, w in self.slow_watch.items():
            wait_until(lambda: w.died_ms is not None, 10, f"{name} to die")
        # Each crasher's restart count, read while it is in backoff: its exits so far were all
        # handled, and its next start has not come yet.
        self.crashers_end = {}
        for _ in range(50):
            t0 = time.monotonic() * 1000
            st = self.status()
            t1 = time.monotonic() * 1000
            for i in range(len(CRASH_DELAYS_MS)):
                c = f"c{i}"
                if c not in self.crashers_end and st[c]["state"] == "backoff":
                    self.crashers_end[c] = (t0, t1, st[c]["restarts"])
            if len(self.crashers_end) == len(CRASH_DELAYS_MS):
                break
            time.sleep(0.05)
        r = d.ctl("stop", *(f"c{i}" for i in range(len(CRASH_DELAYS_MS))), timeout=30)
        if r.returncode != 0:
            raise AssertionError(f"stop c*: {r.returncode} {r.stderr}")
        self.status_end = self.status()
        self.nr_deaths = self.nr_watch.stop()
        log("after the execs: MAINPID= workers")
        # A MAINPID= worker's end is still the service's end, whether vigild reaps it (m0) or
        # sees it through a pidfd (mw, whose launcher reaps it).
        self.m_restarts = {}
        for name in ("m0", "mw"):
            st = self.status()[name]
            self.m_restarts[name] = st["restarts"]
            worker = next(p.pid for p in d.processes() if p.inner_pid == st["pid"])
            harness.kill_quietly(worker, signal.SIGKILL)
            wait_until(lambda: self.status()[name]["restarts"] == self.m_restarts[name] + 1
                       and self.status()[name]["ready"], 10, f"{name} to restart")
        log("after the execs: writers, rings")
        # The writers end: each writes its count; then every line can be judged.
        r = d.ctl("stop", *self.writers, timeout=60)
        if r.returncode != 0:
            raise AssertionError(f"stop writers: {r.returncode} {r.stderr}")
        wait_until(lambda: all(os.path.exists(os.path.join(d.dir, w + ".count"))
                               for w in self.writers), 10, "the writers' counts")
        self.counts = {w: int(harness.read_text(os.path.join(d.dir, w + ".count")))
                       for w in self.writers}
        log("after the execs: rings")
        self.rings = {}
        for w in self.writers:
            r = d.ctl("--json", "logs", "-n", "1000000", w)
            self.rings[w] = [json.loads(x) for x in r.stdout.splitlines() if x.strip()]
        # vigild's stdout has every forwarded line once the writers' pipes are drained.
        time.sleep(scaled(0.5))
        self.stdout = d.stdout()
        self.stderr = d.stderr()


# --------------------------------------------------------------------------- the verdicts


def seq_problems(what: str, seqs: list, first: int, last: int) -> list:
    """Problems of `seqs` against exactly first..last in order."""
    if seqs == list(range(first, last + 1)):
        return []
    seen, dups, prev, order = set(), [], 0, []
    for s in seqs:
        if s in seen:
            dups.append(s)
        elif s < prev:
            order.append(s)
        seen.add(s)
        prev = max(prev, s)
    missing = sorted(set(range(first, last + 1)) - seen)
    return [f"{what}: {len(seqs)} lines for {first}..{last}: missing {missing[:10]} "
            f"({len(missing)}), doubled {dups[:10]} ({len(dups)}), out of order {order[:10]}"]


class Reexec(unittest.TestCase):
    sc: Optional[Scenario] = None
    error: Optional[BaseException] = None

    @classmethod
    def setUpClass(cls) -> None:
        cls.sc = Scenario()
        try:
            cls.sc.run()
        except BaseException as e:
            cls.error = e
            log(f"scenario aborted: {e!r}")
            if cls.sc.d.ns is not None:
                err = cls.sc.d.stderr().splitlines()
                # The first complaints tell why more often than the tail.
                bad = [ln for ln in err if re.search(r"fail|error|refus|invalid|gave up", ln)]
                log("vigild stderr, first complaints:\n" + "\n".join(bad[:20]))
                log("vigild stderr, tail:\n" + "\n".join(err[-30:]))

    @classmethod
    def tearDownClass(cls) -> None:
        cls.sc.d.close()

    def setUp(self) -> None:
        if self.error is not None:
            raise AssertionError(f"the scenario did not complete: {self.error!r}")

    def test_each_reexec_answers_with_the_new_vigild(self):
        for rec in self.sc.reexecs:
            a = rec["answer"]
            self.assertIsNotNone(a, rec["stdout"])
            self.assertEqual(a.get("ok", True), True)
            self.assertEqual(a["pid"], 1)
            self.assertEqual(a["generation"], rec["k"] + 1)
            # The services it kept: all 200 but those stopped by then (a few slow*).
            self.assertTrue(N_SERVICES - 10 <= a["services"] <= N_SERVICES, a)
            self.assertIsInstance(a["pause_ms"], (int, float))
            self.assertGreaterEqual(a["pause_ms"], 0)
            self.assertEqual(a["binary"], harness.vigild())
            # The same build: the new vigild took the old one's units, read no unit file.
            self.assertEqual(a["units"], "carried")
        # Plain (not --json) output says the same in words.
        sc = self.sc
        for _ in range(3):  # a refusal that says "try again" is by design (spawns in flight)
            r = sc.d.ctl("reexec", timeout=60)
            if r.returncode == 0 or "try again" not in r.stderr:
                break
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, rf"^vigild re-executed \(re-exec {REEXECS + 1}\): \d+ services "
                         r"kept, paused [\d.]+ ms")

    def test_vigild_keeps_its_pid(self):
        sc = self.sc
        self.assertEqual(harness.proc_info(sc.vigild).inner_pid, 1)
        self.assertEqual(start_time(sc.vigild), sc.vigild_start)
        self.assertEqual(harness.proc_info(sc.vigild).comm, "vigild")
        self.assertIsNone(sc.d.ns.poll())

    def test_every_service_keeps_its_process(self):
        sc = self.sc
        moved = {"m0", "mw"} | {f"slow{k}" for k in range(REEXECS + 1)} | set(sc.writers)
        ended = {n for n in sc.pids0 if n.startswith("c") or n == "nr"}
        expect = {n: v for n, v in sc.pids0.items() if n not in moved | ended}
        self.assertGreater(len(expect), N_SERVICES - 30)
        self.assertNotIn(None, [v[0] for v in expect.values()])
        got = {n: sc.pids1.get(n) for n in expect}
        self.assertEqual(got, expect)
        # The writers too, up to their stop after the last exec: their counts prove they ran
        # through (a restarted writer would start again at seq=1, which the lines catch).
        for w in sc.writers:
            self.assertEqual(sc.status1[w]["pid"], sc.pids0[w][2], w)
            self.assertEqual(sc.status1[w]["restarts"], 0, w)

    def test_restart_counts_carry_on(self):
        sc = self.sc
        for name in ("f000", "inst@1", "pe", "m1", "mw", "nt"):
            self.assertEqual(sc.status1[name]["restarts"], 0, name)
        exits = [(ident, ms) for _, ident, ms in timed_events(sc.d, "exit")]
        # Each exit (status 1, logged by the crasher itself) is a restart decided: none lost,
        # none counted twice across the execs. The count was read in backoff, between the
        # stamps t0 and t1: the exits until then (one may fall between t0 and t1).
        self.assertGreaterEqual(len(sc.crashers_end), 3, sc.crashers_end)
        for c, (t0, t1, restarts) in sorted(sc.crashers_end.items()):
            self.assertGreater(restarts, sc.status0[c]["restarts"], c)
            before = sum(1 for i, ms in exits if i == c and ms <= t0)
            until = sum(1 for i, ms in exits if i == c and ms <= t1)
            self.assertTrue(before <= restarts <= until, f"{c}: {restarts} restarts, "
                            f"{before}..{until} exits")

    def test_backoff_deadlines_fire_on_time_across_the_execs(self):
        # Each crasher starts every `delay` ms (its backoff counts from the previous start).
        sc = self.sc
        spans = pauses(sc)
        spanned = [0] * len(spans)
        late = []
        starts: dict = {}
        for _, ident, ms in timed_events(sc.d, "start"):
            starts.setdefault(ident, []).append(ms)
        across, control = [], []
        for i, delay in enumerate(CRASH_DELAYS_MS):
            a, c = periodic_errors(starts[f"c{i}"], delay, spans, around=1)
            across += [(e, f"c{i}: {what}", j) for e, what, j in a]
            control += c
        allowed = allowed_error(control)
        log(f"backoffs: {len(across)} across an exec, worst {max_abs(across):.0f} ms; "
            f"{len(control)} others, worst {max_abs(control):.0f} ms; allowed {allowed:.0f} ms")
        for e, what, j in across:
            spanned[j] += 1
            if abs(e) > allowed:
                late.append(what)
        self.assertEqual(late, [])
        # Across every exec when an exec is short (tens of ms); an ASan build's takes about a
        # second, longer than some backoffs: then at least across one.
        if harness.timeout_multiplier() == 1:
            self.assertNotIn(0, spanned, "a backoff across every exec")
        self.assertGreater(sum(spanned), 0, "a backoff across an exec")

    def test_stop_timeouts_fire_on_time_across_the_execs(self):
        sc = self.sc
        signals = {ident: ms for kind, ident, ms in timed_events(sc.d, "signal")
                   if ident.startswith("slow")}
        spans = pauses(sc)
        # The machine's jitter for deadlines timed by pidfds: the last slow stop, away from any
        # exec, and nr's start timeouts away from them.
        control = periodic_errors(sc.nr_deaths, NEVER_READY_MS, spans, 0)[1]
        last = f"slow{REEXECS}"
        self.assertIn(last, signals, f"{last} logged no SIGTERM")
        control.append(sc.slow_watch[last].died_ms - signals[last] - SLOW_TIMEOUT_MS)
        allowed = allowed_error(control)
        off = [round(sc.slow_watch[n].died_ms - signals[n] - SLOW_TIMEOUT_MS)
               for n in sorted(signals)]
        log(f"stop timeouts: {off} ms off (the last one away from the execs); "
            f"allowed {allowed:.0f} ms")
        for k, rec in enumerate(sc.reexecs):
            name = f"slow{k}"
            self.assertIn(name, signals, f"{name} logged no SIGTERM")
            died = sc.slow_watch[name].died_ms
            # The exec ran while the stop timeout was running.
            self.assertLess(signals[name], spans[k][0])
            self.assertGreater(signals[name] + SLOW_TIMEOUT_MS, spans[k][1])
            self.assertLessEqual(abs(died - signals[name] - SLOW_TIMEOUT_MS), allowed,
                                 f"{name}: SIGTERM at {signals[name]}, died at {died:.0f}")
            st = sc.status_end[name]
            self.assertEqual(st["state"], "stopped", name)
            self.assertEqual(st["last_exit"], {"signal": "SIGKILL", "signo": 9}, name)

    def test_start_timeouts_fire_on_time_across_the_execs(self):
        # nr's incarnations after the first never become ready: each is killed NEVER_READY_MS
        # after the restart decided when the previous one died (its backoff has passed; the
        # start timeout counts from that decision), so its deaths are NEVER_READY_MS apart.
        # The deaths are the kernel's (pidfds): judged one by one where the timeout ran
        # across an exec.
        sc = self.sc
        spans = pauses(sc)
        across, control = periodic_errors(sc.nr_deaths, NEVER_READY_MS, spans, around=0)
        allowed = allowed_error(control)
        log(f"start timeouts: {len(across)} across an exec, worst {max_abs(across):.0f} ms; "
            f"{len(control)} others, worst {max_abs(control):.0f} ms; allowed {allowed:.0f} ms")
        self.assertEqual([what for e, what, _ in across if abs(e) > allowed], [])
        self.assertTrue(across, f"no start timeout ran across an exec: {sc.nr_deaths} {spans}")

    def test_every_line_exactly_once_in_file_ring_and_stdout(self):
        sc = self.sc
        problems = []
        fwd: dict = {w: [] for w in sc.writers}
        for line in sc.stdout.splitlines():
            m = FWD.match(line)
            if m and m.group(1) in fwd:
                m2 = SEQ_LINE.match(m.group(2))
                if m2 is None or m2.group(1) != m.group(1):
                    problems.append(f"forwarded: odd line {line[:100]!r}")
                else:
                    fwd[m.group(1)].append(int(m2.group(2)))
        for w in sc.writers:
            n = sc.counts[w]
            file_seqs = []
            for line in harness.lines_of(os.path.join(sc.logdir, w + ".log")):
                m = SEQ_LINE.match(line)
                if m is None or m.group(1) != w:
                    problems.append(f"{w}.log: odd line {line[:100]!r}")
                else:
                    file_seqs.append(int(m.group(2)))
            problems += seq_problems(f"{w}.log", file_seqs, 1, n)
            problems += seq_problems(f"{w} on vigild's stdout", fwd[w], 1, n)
            ring = []
            for item in sc.rings[w]:
                if "line" not in item:
                    continue
                m = SEQ_LINE.match(item["line"])
                if m is None or item.get("continued"):
                    problems.append(f"{w} ring: odd item {item}")
                else:
                    ring.append(int(m.group(2)))
            if not ring:
                problems.append(f"{w} ring: empty")
            else:
                problems += seq_problems(f"{w} ring", ring, ring[0], n)
        self.assertEqual(problems, [])
        # The writers were writing through every exec (the partial ones a line every ~10 ms).
        self.assertGreater(min(sc.counts.values()), 100, sc.counts)

    def test_event_history_continues(self):
        sc = self.sc
        before, after = sc.events0, sc.events1

        def key(r):
            return json.dumps({k: v for k, v in r.items() if k != "time"}, sort_keys=True)
        a_keys = [key(r) for r in after]
        self.assertEqual(len(a_keys), len(set(a_keys)), "a record twice in the history")
        self.assertTrue(before)
        last = key(before[-1])
        self.assertIn(last, a_keys, "the last record before the execs is gone")
        pos = a_keys.index(last)
        m = min(len(before), pos + 1)
        self.assertEqual([key(r) for r in before[-m:]], a_keys[pos + 1 - m:pos + 1])
        if after and "seq" in after[0]:
            seqs = [r["seq"] for r in after]
            self.assertEqual(seqs, list(range(seqs[0], seqs[0] + len(seqs))))
        # Records keep coming after the execs (the crashers' restarts).
        self.assertGreater(len(after) - pos - 1, 0)

    def test_probes_keep_their_counters_and_run_on(self):
        sc = self.sc
        for unit, c0 in sc.checks0.items():
            c1 = sc.checks1[unit]
            self.assertGreater(c1["successes"], c0["successes"], unit)
            self.assertEqual(c1["failures"], c0["failures"], unit)
            self.assertEqual(c1["state"], "passing", unit)
            self.assertEqual(sc.status1[unit]["restarts"], 0, unit)

    def test_sockets_survive(self):
        sc = self.sc
        for rec in sc.reexecs:
            self.assertRegex(rec["http_before"], r"^HTTP/1\.[01] 200")
            self.assertRegex(rec["http_after"], r"^HTTP/1\.[01] 200")
        # The held listen socket is the same socket in vigild and in the service.
        svc = sc.d.main_pid("ls")
        held = os.readlink(f"/proc/{svc}/fd/3")
        self.assertIn(held, set(fds_of(sc.vigild).values()))

    def test_control_requests_during_each_exec_are_answered(self):
        for rec in self.sc.reexecs:
            self.assertEqual(rec["poker_failed"], [], f"reexec {rec['k'] + 1}")
            during = [s for s, a in rec["poker_done"] if rec["t0"] <= s <= rec["t1"]]
            self.assertTrue(during, f"reexec {rec['k'] + 1}: no request sent during it")

    def test_descriptor_count_unchanged(self):
        for rec in self.sc.reexecs:
            b, a = rec["fds_before"], rec["fds_after"]
            gone = set(b.values()) - set(a.values())
            new = set(a.values()) - set(b.values())
            self.assertEqual(len(a), len(b), f"reexec {rec['k'] + 1}: gone {sorted(gone)[:8]} "
                             f"new {sorted(new)[:8]}; before {kinds(b)}, "
                             f"after {kinds(a)}")
            # The pipes and sockets are carried, not made anew: the same kernel objects.
            carried = {t for t in b.values() if t.startswith("pipe:")}
            self.assertEqual(carried - set(a.values()), set(), f"reexec {rec['k'] + 1}")

    def test_rss_comparable(self):
        sc = self.sc
        log(f"VmRSS before the execs {sc.rss0} KiB, after {sc.rss1} KiB")
        if sc.asan:
            self.skipTest("vigild runs under ASan, whose quarantine and shadow memory differ "
                          "between the images")
        factor, slack = RSS_TOLERANCE
        self.assertLessEqual(sc.rss1, sc.rss0 * factor + slack)

    def test_mainpid_worker_still_watched(self):
        sc = self.sc
        for name in ("m0", "mw"):
            st = sc.status()[name]
            self.assertEqual(st["restarts"], sc.m_restarts[name] + 1, name)
            if name == "m0":  # mw's launcher reaped it: its status is the launcher's to know
                self.assertEqual(st["last_exit"], {"signal": "SIGKILL", "signo": 9})

    def test_no_sanitizer_report_and_no_error(self):
        err = self.sc.stderr
        self.assertIsNone(harness.SANITIZER_REPORT.search(err), err[-3000:])


def periodic_errors(times: list, period: float, spans: list, around: int) -> tuple:
    """The errors of the deadlines behind `times`, the stamps (ms) of something vigild does
    every `period` ms, in two lists: (across, control). across: (error, what, j) for each gap
    that holds the exec spans[j] = (t0, t1); control: the error of every other gap, measured
    the same way: how far from its period a deadline lands on this machine at this moment
    without an exec (see allowed_error).

    around: neighbour gaps summed with each gap. A start stamp carries the service's own
    start-up latency (fork, exec, dynamic linking: a few ms, tens on a loaded machine): one
    late stamp makes the gap before it too long and the gap after too short by the same
    amount, while vigild counts its deadline from its own spawn, so the latency does not add
    up. With around=1 the error is (last stamp - first stamp) - 3 * period over the gap and
    its two neighbours: a single late stamp cancels out, a deadline the exec moved (lost,
    restarted, fired early) does not. Deaths timed by pidfd need none (around=0)."""
    across, control = [], []
    for k in range(len(times) - 1):
        a, b = times[k], times[k + 1]
        lo, hi = max(k - around, 0), min(k + 1 + around, len(times) - 1)
        err = (times[hi] - times[lo]) - (hi - lo) * period
        spans_in = [j for j, (t0, t1) in enumerate(spans) if a <= t0 and t1 <= b]
        if not spans_in:
            control.append(err)
        for j in spans_in:
            across.append((err, f"stamps {[round(t) for t in times[lo:hi + 1]]} around the "
                                f"exec at {spans[j][0]:.0f}..{spans[j][1]:.0f}: {err:+.0f} ms "
                                f"off {hi - lo} periods of {period} ms", j))
    return across, control


def allowed_error(control: list) -> float:
    """How far from its due time a deadline that ran across an exec may fire: TOLERANCE_MS, plus
    the worst error of the same deadlines away from any exec in the same run (the machine's
    jitter: a few ms on a quiet machine, far more when other jobs load it). An exec that lost,
    restarted or fired a deadline moves it by far more than both."""
    return TOLERANCE_MS + max((abs(e) for e in control), default=0.0)


def pauses(sc: "Scenario") -> list:
    """(start, end) in CLOCK_MONOTONIC ms of the time vigild ran no loop in each exec: from the
    new vigild's answer back by the pause_ms it reports (the exec began then), so a deadline is
    "across the exec" when it was due neither before nor during that time."""
    out = []
    for r in sc.reexecs:
        pause = (r["answer"] or {}).get("pause_ms")
        out.append((r["t1"] - pause, r["t1"]) if pause is not None else (r["t0"], r["t1"]))
    return out


def max_abs(errors: list) -> float:
    return max((abs(e[0] if isinstance(e, tuple) else e) for e in errors), default=0.0)


def timed_events(d: Daemon, kind: Optional[str] = None) -> list:
    """[(kind, id, ms)] from the testsvc log (ms: CLOCK_MONOTONIC), for kinds whose last field
    is the time: start, stop, signal, mark."""
    out = []
    for line in harness.lines_of(d.log):
        parts = line.split()
        if len(parts) >= 4 and parts[0] in ("start", "stop", "signal", "mark", "exit"):
            if kind is None or parts[0] == kind:
                out.append((parts[0], parts[1], int(parts[-1])))
    return out


# --------------------------------------------------------------------------- failure paths


class ReexecFailure(unittest.TestCase):
    """vigild started from a copy of its binary in the test's folder, which the test removes or
    replaces."""

    def units(self, d_svc) -> dict:
        return {"root": {"kind": "supervisor", "intensity": 1000, "period": "10s"},
                **{f"s{i}": {"command": d_svc(f"s{i}", "sleep")} for i in range(5)}}

    def running_pids(self, d: Daemon) -> dict:
        """name -> (host pid, start time) of s0..s4."""
        out = {}
        for name in (f"s{i}" for i in range(5)):
            pid = d.main_pid(name)
            out[name] = (pid, start_time(pid) if pid else None)
        return out

    def make(self) -> tuple:
        d = Daemon({}, start=False)
        self.addCleanup(d.close)
        d.write_units(self.units(d.svc))
        bindir = os.path.join(d.dir, "bin")
        os.mkdir(bindir)
        exe = os.path.join(bindir, "vigild")
        shutil.copy2(harness.vigild(), exe)
        d.ns = harness.PidNamespace([exe, "--units", d.units_dir, "--socket", d.sock])
        d.wait_socket()
        wait_until(lambda: all(d.main_pid(f"s{i}") for i in range(5)), 10, "the services")
        return d, exe

    @staticmethod
    def replace(src: str, exe: str) -> None:
        """Puts a copy of src at exe by rename: a new file (new inode), as a package upgrade
        does."""
        shutil.copy2(src, exe + ".new")
        os.rename(exe + ".new", exe)

    def exe_inode(self, d: Daemon) -> int:
        return os.stat(f"/proc/{d.ns.init_pid}/exe").st_ino

    def test_missing_binary_fails_and_vigild_goes_on(self):
        d, exe = self.make()
        pids = self.running_pids(d)
        inode = self.exe_inode(d)
        os.unlink(exe)
        r = d.ctl("reexec", timeout=60)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertRegex(r.stderr, rf"reexec( failed)?: execve {re.escape(exe)}: No such file "
                         r"or directory; vigild goes on as before")
        r = d.ctl("--json", "reexec", timeout=60)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        # Still the same program image, the same services, and it answers.
        self.assertEqual(self.exe_inode(d), inode)
        self.assertEqual(self.running_pids(d), pids)
        self.assertEqual(d.ctl("status").returncode, 0)
        # The file back (a new one): the next reexec runs it.
        self.replace(harness.vigild(), exe)
        new = os.stat(exe).st_ino
        r = d.ctl("--json", "reexec", timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(json.loads(r.stdout)["binary"], exe)
        self.assertEqual(self.exe_inode(d), new)
        self.assertEqual(self.running_pids(d), pids)

    def test_requests_sent_around_the_exec_are_answered(self):
        # Four clients send `version` back to back, one connection each, through ten re-execs
        # in a row: a request the old image accepted but had not read when it executed must
        # still be answered (by either image), not reset.
        d, exe = self.make()
        pokers = [ControlPoker(d.sock).start() for _ in range(4)]
        try:
            for _ in range(10):
                r = d.ctl("reexec", timeout=60)
                self.assertEqual(r.returncode, 0, r.stderr)
                time.sleep(0.1)
        finally:
            for p in pokers:
                p.stop()
        failed = [f for p in pokers for f in p.failed]
        log(f"{sum(len(p.done) for p in pokers)} requests answered around 10 re-execs, "
            f"{len(failed)} not")
        self.assertEqual(failed, [])

    def test_busy_spawner_refusal_says_the_truth(self):
        # Crashers restarting every 20-50 ms keep the spawner busy. A re-exec waits for a moment
        # with no spawn pending, at most 5 s, and is refused only then. It used to be refused
        # at once (5-500 ms), saying spawns were still in progress "after 5s", when a spawn was
        # asked for between the spawner's last answer and the check that followed it.
        d = Daemon({}, start=False)
        self.addCleanup(d.close)
        units = self.units(d.svc)
        for i in range(6):
            delay = f"{20 + 6 * i}ms"
            units[f"c{i}"] = {"command": d.svc(f"c{i}", "exit", "1"),
                              "backoff": {"initial": delay, "max": delay, "jitter": 0}}
        units["root"]["intensity"] = 100000
        d.write_units(units)
        d.start()
        d.wait_socket()
        wait_until(lambda: all(d.main_pid(f"s{i}") for i in range(5)), 10, "the services")
        outcomes = []
        for k in range(3):
            t0 = time.monotonic()
            r = d.ctl("reexec", timeout=60)
            took = time.monotonic() - t0
            outcomes.append((r.returncode, round(took, 2)))
            if r.returncode != 0:
                self.assertIn("spawns were still in progress after 5s", r.stderr)
                self.assertGreaterEqual(took, 4.9, f"reexec {k + 1} refused after "
                                        f"{took * 1000:.0f} ms: {r.stderr.strip()}")
        log(f"re-execs beside a busy spawner (exit status, seconds): {outcomes}")

    def test_sigrtmin_plus_1_reexecs(self):
        d, exe = self.make()
        pids = self.running_pids(d)
        self.replace(harness.vigild(), exe)
        new = os.stat(exe).st_ino
        self.assertNotEqual(self.exe_inode(d), new)
        d.ns.signal_init(signal.SIGRTMIN + 1)
        wait_until(lambda: self.exe_inode(d) == new, 10, "vigild to run the new file")
        wait_until(lambda: d.ctl("status").returncode == 0, 10, "vigild to answer")
        self.assertEqual(self.running_pids(d), pids)
        self.assertEqual(harness.proc_info(d.ns.init_pid).inner_pid, 1)

    def test_a_binary_that_cannot_read_the_state_starts_the_tree_fresh(self):
        nextversion = os.environ.get("VIGILD_NEXTVERSION") or os.path.join(
            os.path.dirname(harness.vigild()), "vigild-nextversion")
        if not os.access(nextversion, os.X_OK):
            self.skipTest(f"no vigild built with another state version ({nextversion})")
        d, exe = self.make()
        pids = self.running_pids(d)
        init = d.ns.init_pid
        self.replace(nextversion, exe)
        r = d.ctl("reexec", timeout=60)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertRegex(r.stderr, r"state")
        # Same vigild pid, every old service gone, the tree started fresh.
        self.assertEqual(d.ns.init_pid, init)
        self.assertEqual(harness.proc_info(init).inner_pid, 1)
        for name, (pid, st) in pids.items():
            wait_until(lambda: start_time(pid) != st, 10, f"the old {name} to end")
        wait_until(lambda: all(d.main_pid(f"s{i}") for i in range(5)), 10, "fresh services")
        for name, (pid, st) in pids.items():
            self.assertNotEqual((d.main_pid(name), start_time(d.main_pid(name))), (pid, st))


def ask(sock: str, cmd: str, args: Optional[dict] = None, timeout: float = 5.0) -> Optional[dict]:
    """vigild's reply to one request on a connection of its own; None when none came within
    `timeout` (a request that waits)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        c.settimeout(timeout)
        c.connect(sock)
        stream = c.makefile("rb")
        try:
            stream.readline()  # the hello
            c.sendall(json.dumps({"id": 1, "cmd": cmd, "args": args or {}}).encode() + b"\n")
            line = stream.readline()
        except socket.timeout:
            return None
        return json.loads(line) if line else None


def wait_state(pid: int, state: str, seconds: float) -> bool:
    """Whether the process is in `state` (/proc/PID/stat) within `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        info = harness.proc_info(pid)
        if info is not None and info.state == state:
            return True
        time.sleep(0.005)
    return False


class StandIn(unittest.TestCase):
    """From the export of the state until the new binary listens, a stand-in (a fork of vigild,
    src/daemon/uv_standin.cpp) answers the requests that only read and holds the others for the
    new binary. The test stops vigild (SIGSTOP, from outside its namespace) while the stand-in
    runs: the exec is then as long as the test wants."""

    def stand_ins(self, vigild: int) -> list:
        return [p for p in harness.children_of(vigild) if p.comm == "vigild-standin"]

    def catch_the_exec(self, d: Daemon) -> tuple:
        """Starts `vigilctl reexec` and stops vigild as soon as its stand-in is there and
        answers; (the vigilctl process, the stand-in's host pid, the re-execs so far, this
        one included). Tries again when the exec was over first."""
        vigild = d.ns.init_pid
        for tries in range(1, 21):
            reexec = harness.Run([harness.vigilctl(), "--socket", d.sock, "--json", "reexec"])
            seen = None
            deadline = time.monotonic() + scaled(10)
            while seen is None and reexec.poll() is None and time.monotonic() < deadline:
                try:
                    with open(f"/proc/{vigild}/task/{vigild}/children") as f:
                        kids = [int(x) for x in f.read().split()]
                except OSError:
                    kids = []
                for k in kids:
                    info = harness.proc_info(k)
                    if info and info.comm == "vigild-standin" and info.state != "Z":
                        seen = k
            if seen is not None:
                os.kill(vigild, signal.SIGSTOP)
                # A stop sent while vigild is inside execve can be lost: then, or when the
                # stand-in had handed over already, try again.
                stopped = wait_state(vigild, "T", 1.0)
                v = ask(d.sock, "version", timeout=scaled(2)) if stopped else None
                if v is not None and v["result"].get("stand_in"):
                    return reexec, seen, tries
                os.kill(vigild, signal.SIGCONT)
            self.assertEqual(reexec.wait(60), 0, bytes(reexec.stderr).decode())
            reexec.close()
            wait_until(lambda: not self.stand_ins(vigild), 10, "the stand-in to end")
        self.fail("never caught a re-exec with its stand-in up in 20 tries")

    def test_reads_are_answered_and_the_rest_held_until_the_new_vigild_runs(self):
        d = Daemon({}, start=False)
        self.addCleanup(d.close)
        n = 200
        units = {"root": {"kind": "supervisor", "intensity": 1000, "period": "10s"}}
        for i in range(n):
            units[f"s{i:03d}"] = {"command": d.svc(f"s{i:03d}", "sleep")}
        d.write_units(units)
        d.start()
        d.wait_socket()
        wait_until(lambda: sum(p.ppid == d.ns.init_pid for p in d.processes()) >= n, 30,
                   "the services")
        vigild = d.ns.init_pid
        victim = d.wait_pid("s000")
        before = d.request("version")["result"]
        # A connection open before the exec, idle through it.
        idle = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(idle.close)
        idle.settimeout(scaled(20))
        idle.connect(d.sock)
        idle_in = idle.makefile("rb")
        idle_in.readline()

        reexec, stand_in, tries = self.catch_the_exec(d)
        self.addCleanup(reexec.close)
        held = None
        try:
            # vigild is stopped: whatever answers is the stand-in, as things were.
            self.assertEqual(harness.proc_info(vigild).state, "T")
            info = harness.proc_info(stand_in)
            self.assertEqual((info.ppid, info.comm), (vigild, "vigild-standin"))
            v = ask(d.sock, "version", timeout=scaled(5))
            self.assertEqual((v["result"]["pid"], v["result"]["stand_in"]), (1, True))
            st = ask(d.sock, "status", {"units": ["s001"]}, timeout=scaled(5))
            self.assertEqual(st["result"]["units"][0]["state"], "running")
            self.assertTrue(ask(d.sock, "tree", timeout=scaled(5))["ok"])
            # A stop waits for the new vigild, unanswered, and nothing is stopped meanwhile.
            held = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            held.settimeout(scaled(20))
            held.connect(d.sock)
            held_in = held.makefile("rb")
            held_in.readline()
            held.sendall(b'{"id":7,"cmd":"stop","args":{"units":["s000"]}}\n')
            ready, _, _ = select.select([held], [], [], 0.3)
            self.assertEqual(ready, [], "the stop was answered while vigild was stopped")
            info = harness.proc_info(victim)
            self.assertTrue(info is not None and info.state not in ("Z", "X"), info)
        finally:
            os.kill(vigild, signal.SIGCONT)
        self.assertEqual(reexec.wait(60), 0, bytes(reexec.stderr).decode())
        answer = json.loads(bytes(reexec.stdout))
        reexec.close()
        self.assertEqual(answer["generation"], tries)
        # The stop: answered once, by the new vigild, and done.
        reply = json.loads(held_in.readline())
        held.close()
        self.assertEqual((reply["id"], reply["ok"]), (7, True), reply)
        wait_until(lambda: harness.proc_info(victim) is None, 10, "s000's process to end")
        # The stand-in ends and is reaped (no zombie), and is not counted as an orphan.
        wait_until(lambda: not self.stand_ins(vigild), 10, "the stand-in to end")
        self.assertEqual(d.ns.zombies(), [])
        after = d.request("version")["result"]
        self.assertNotIn("stand_in", after)
        self.assertEqual(after["orphans_reaped"], before["orphans_reaped"])
        # The connection open before the exec answers the new vigild.
        idle.sendall(b'{"id":9,"cmd":"status","args":{"units":["s000"]}}\n')
        reply = json.loads(idle_in.readline())
        self.assertEqual(reply["id"], 9)
        self.assertEqual(reply["result"]["units"][0]["state"], "stopped")


if __name__ == "__main__":
    unittest.main()
