"""Integration-test harness for vigil (Python 3 standard library only).

The integration suite runs the real binaries and checks what the kernel shows, never what vigild
says (docs/house-style.md §7.8). This module gives the tests:

- Binaries: ``vigild()``, ``vigilctl()`` and ``testsvc()`` read the paths meson passes in the
  environment variables VIGILD, VIGILCTL and TESTSVC (``test(..., env: ...)`` in
  tests/integration/meson.build). A test that needs a missing one fails (a skip would prove
  nothing); ``testsvc_or_none()`` is for tests with a fallback.
- Bounded waits: ``wait_until(pred, timeout)`` polls ``pred`` until it returns something truthy
  and raises ``WaitTimeout`` (an AssertionError, so the test fails) otherwise. Every timeout is
  multiplied by VIGIL_TEST_TIMEOUT_MULTIPLIER (default 1; raise it for ASan or slow machines),
  like libuv's UV_TEST_TIMEOUT_MULTIPLIER. meson's ``timeout:`` is the backstop.
- PID namespaces: ``PidNamespace(argv)`` starts ``argv`` as PID 1 of a fresh PID namespace with
  its own /proc: ``unshare --pid --fork --mount-proc`` as root, ``unshare -Urpf --mount-proc``
  (a user namespace too) otherwise. ``--kill-child`` makes the kernel SIGKILL the namespace's
  init when unshare dies, and the death of an init kills every process of its namespace, so a
  test that fails or times out can never leak processes: ``close()`` kills unshare.
- /proc inspection: ``proc_info(pid)`` parses /proc/PID/stat and /proc/PID/status.
  ``PidNamespace.processes()`` lists the namespace's processes *from the host side*: the host
  /proc shows every process of every descendant PID namespace, and a process belongs to the
  namespace when its /proc/PID/ns/pid link names the same namespace as the init's (the
  harness holds a descriptor of that namespace until close(), so that its inode number, which
  the link shows, is not given to another namespace once this one ends). This was
  chosen over running an inspector inside the namespace (``nsenter`` or a shell beside vigild)
  because it adds no process to what is being counted, still works while the init is exiting,
  gives host pids (to signal processes "from outside") and, from the NSpid/NSpgid lines of
  /proc/PID/status, the pids as seen inside. ``descendants(pid)`` does the same for a process
  tree that is not in a namespace (vigild not PID 1).
- Helpers built on that: ``zombies(procs)`` (state Z), ``process_groups(procs)`` (pgid ->
  processes), ``state_of(pid)``.
- ``Run``: a plain subprocess (vigild not PID 1) in a new session, with output captured,
  bounded waits and a cleanup that kills the whole session (vigild may exit while orphans
  still run, re-parented elsewhere, but they keep the session id).

Run a test file by hand with, e.g.:
    VIGILD=build/src/daemon/vigild python3 tests/integration/test_wrapper.py -v
"""

from __future__ import annotations

import dataclasses
import mmap
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from typing import Callable, Iterable, Optional, Sequence, TypeVar, Union

T = TypeVar("T")
Arg = Union[str, bytes, os.PathLike]


# --------------------------------------------------------------------------- binaries and time


def _binary(var: str) -> Optional[str]:
    path = os.environ.get(var)
    if path and os.access(path, os.X_OK):
        return os.path.abspath(path)
    return None


def vigild() -> str:
    """Path of the vigild under test (env VIGILD). Fails the test when it is missing."""
    path = _binary("VIGILD")
    if path is None:
        raise AssertionError("VIGILD is not set to an executable vigild (meson sets it)")
    return path


def vigilctl() -> str:
    """Path of the vigilctl under test (env VIGILCTL)."""
    path = _binary("VIGILCTL")
    if path is None:
        raise AssertionError("VIGILCTL is not set to an executable vigilctl (meson sets it)")
    return path


def testsvc_or_none() -> Optional[str]:
    """Path of tests/helpers/vigil-testsvc (env TESTSVC, or VIGIL_TESTSVC as the helpers'
    meson.build suggests), or None when it was not built."""
    return _binary("TESTSVC") or _binary("VIGIL_TESTSVC")


def testsvc() -> str:
    """Path of vigil-testsvc. Fails the test when it is missing: a skipped test proves nothing,
    so only tests with a fallback call testsvc_or_none() instead."""
    path = testsvc_or_none()
    if path is None:
        raise AssertionError("TESTSVC is not set to an executable vigil-testsvc (meson sets it)")
    return path


def timeout_multiplier() -> float:
    try:
        value = float(os.environ.get("VIGIL_TEST_TIMEOUT_MULTIPLIER", "1"))
    except ValueError:
        value = 1.0
    return max(value, 1.0)


def scaled(seconds: float) -> float:
    """A timeout scaled by VIGIL_TEST_TIMEOUT_MULTIPLIER."""
    return seconds * timeout_multiplier()


class WaitTimeout(AssertionError):
    """A bounded wait ran out: the test fails (it is an AssertionError, not an error)."""


def wait_until(pred: Callable[[], T], timeout: float = 5.0, what: str = "",
               interval: float = 0.005) -> T:
    """Polls pred until it returns a truthy value, which is returned. Raises WaitTimeout after
    scaled(timeout) seconds. The poll interval grows from `interval` to 50 ms, so short waits
    stay fast and long ones stay cheap."""
    deadline = time.monotonic() + scaled(timeout)
    delay = interval
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {scaled(timeout):.1f}s waiting for "
                              f"{what or getattr(pred, '__name__', 'a condition')}")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def holds_for(pred: Callable[[], object], duration: float, interval: float = 0.01) -> bool:
    """True when pred stays truthy for `duration` seconds (not scaled: it is a minimum)."""
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        if not pred():
            return False
        time.sleep(interval)
    return bool(pred())


# --------------------------------------------------------------------------- /proc


@dataclasses.dataclass(frozen=True)
class ProcInfo:
    pid: int            # host pid (as this test process sees it)
    comm: str
    state: str          # R S D Z T t X I ...
    ppid: int
    pgid: int
    sid: int
    ns_pids: tuple      # NSpid: the pid in each PID namespace, outermost first
    ns_pgids: tuple     # NSpgid
    sig_blocked: int    # SigBlk mask
    sig_ignored: int    # SigIgn mask
    sig_caught: int     # SigCgt mask

    @property
    def inner_pid(self) -> int:
        """The pid in the innermost namespace (1 for a namespace's init)."""
        return self.ns_pids[-1] if self.ns_pids else self.pid

    @property
    def inner_pgid(self) -> int:
        return self.ns_pgids[-1] if self.ns_pgids else self.pgid


def proc_info(pid: int) -> Optional[ProcInfo]:
    """Parses /proc/PID/stat and /proc/PID/status; None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("utf-8", "replace")
        with open(f"/proc/{pid}/status", "rb") as f:
            status = f.read().decode("utf-8", "replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm may hold spaces and parentheses: it ends at the last ')'.
    lpar, rpar = stat.index("("), stat.rindex(")")
    rest = stat[rpar + 2:].split()
    fields = {}
    for line in status.splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()

    def ints(key: str) -> tuple:
        return tuple(int(x) for x in fields.get(key, "").split())

    def mask(key: str) -> int:
        return int(fields.get(key, "0"), 16)

    return ProcInfo(pid=pid, comm=stat[lpar + 1:rpar], state=rest[0], ppid=int(rest[1]),
                    pgid=int(rest[2]), sid=int(rest[3]), ns_pids=ints("NSpid"),
                    ns_pgids=ints("NSpgid"), sig_blocked=mask("SigBlk"),
                    sig_ignored=mask("SigIgn"), sig_caught=mask("SigCgt"))


def signal_name(sig: int) -> str:
    """'SIGTERM' for 15, as vigil prints it."""
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def context_switches(pid: int) -> Optional[int]:
    """voluntary + nonvoluntary context switches of pid so far: a process that sleeps without
    waking up keeps this number still. None when pid is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return sum(int(line.split()[1]) for line in f
                       if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt")))
    except (FileNotFoundError, ProcessLookupError):
        return None


def run_delay_ns(pid: Optional[int] = None) -> int:
    """Nanoseconds a task has spent runnable but not running, waiting for a CPU (the second
    field of /proc/PID/schedstat: the main thread of pid, or this thread for None). 0 when it is
    gone or the kernel does not keep it."""
    path = "/proc/thread-self/schedstat" if pid is None else f"/proc/{pid}/schedstat"
    try:
        with open(path) as f:
            return int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0


class Stopwatch:
    """Wall time since its creation less the time that this thread, or pid's main thread (a
    daemon's loop), waited for a CPU meanwhile. What is left is the time they ran or slept: a
    loop that blocks in a syscall, is stopped, or works through a backlog still shows in full,
    but the machine's other load does not. A latency bound checked on it holds on two cores
    shared with a sanitized build or an attack without being loosened. The two waits may
    overlap, so the figure errs low by at most the shorter of them. Read it from the thread
    that created it."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.theirs, self.mine = run_delay_ns(pid), run_delay_ns()
        self.t0 = time.monotonic()

    def wall(self) -> float:
        return time.monotonic() - self.t0

    def seconds(self) -> float:
        took = self.wall()
        waited = (run_delay_ns(self.pid) - self.theirs + run_delay_ns() - self.mine) / 1e9
        return max(0.0, took - waited)


def time_unqueued(pid: int, fn: Callable[[], T]) -> tuple:
    """(fn(), seconds): fn's time on a Stopwatch for pid."""
    watch = Stopwatch(pid)
    out = fn()
    return out, watch.seconds()


def state_of(pid: int) -> Optional[str]:
    """The one-letter state of pid (Z zombie, T stopped...), or None when it is gone."""
    info = proc_info(pid)
    return info.state if info else None


def all_pids() -> list:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def all_processes() -> list:
    return [info for info in map(proc_info, all_pids()) if info is not None]


def pid_namespace_of(pid: int) -> Optional[str]:
    """'pid:[4026532...]' for pid, or None when it is gone or not readable."""
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def children_of(pid: int) -> list:
    return [p for p in all_processes() if p.ppid == pid]


def descendants(pid: int) -> list:
    """Every live process below pid (not pid itself), from a single /proc scan."""
    procs = all_processes()
    by_parent: dict = {}
    for p in procs:
        by_parent.setdefault(p.ppid, []).append(p)
    out, todo = [], [pid]
    while todo:
        for child in by_parent.get(todo.pop(), []):
            out.append(child)
            todo.append(child.pid)
    return out


def zombies(procs: Iterable[ProcInfo]) -> list:
    return [p for p in procs if p.state == "Z"]


def process_groups(procs: Iterable[ProcInfo]) -> dict:
    """pgid -> [ProcInfo], with host pgids."""
    groups: dict = {}
    for p in procs:
        groups.setdefault(p.pgid, []).append(p)
    return groups


def kill_quietly(pid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


# --------------------------------------------------------------------------- processes


def _reader(stream, sink: bytearray) -> threading.Thread:
    def run() -> None:
        while True:
            chunk = stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536)
            if not chunk:
                break
            sink.extend(chunk)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


# What AddressSanitizer, LeakSanitizer and UndefinedBehaviorSanitizer print. A sanitized vigild
# aborts on its first report (abort_on_error, halt_on_error), but a test that ends it with
# SIGKILL, or only reads its output, would not notice: every process the harness started is
# checked when it is closed (SanitizerReport).
SANITIZER_REPORT = re.compile(r"ERROR: (Address|Leak|Thread|Memory)Sanitizer|runtime error:|"
                              r"SUMMARY: \w+Sanitizer")


class SanitizerReport(AssertionError):
    pass


def check_sanitizer_report(what: str, text: str) -> None:
    """Raises SanitizerReport, with the report, when `text` (a process's stderr) has one."""
    m = SANITIZER_REPORT.search(text)
    if m:
        raise SanitizerReport(f"sanitizer report in the stderr of {what}:\n"
                              + text[max(0, m.start() - 200):m.start() + 3000])


class _Proc:
    """A subprocess with stdout and stderr collected in the background (so a chatty child can
    never block on a full pipe) and a bounded wait. Closing it fails (SanitizerReport) when its
    stderr has a sanitizer's report."""

    def __init__(self, argv: Sequence[Arg], stdin=subprocess.DEVNULL,
                 env: Optional[dict] = None, cwd: Optional[str] = None, **popen) -> None:
        self.argv = list(argv)
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.popen = subprocess.Popen(self.argv, stdin=stdin, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, env=env, cwd=cwd, **popen)
        self._readers = [_reader(self.popen.stdout, self.stdout),
                         _reader(self.popen.stderr, self.stderr)]
        self.started = time.monotonic()
        self.ended: Optional[float] = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def poll(self) -> Optional[int]:
        rc = self.popen.poll()
        if rc is not None and self.ended is None:
            self.ended = time.monotonic()
        return rc

    def wait(self, timeout: float = 10.0) -> int:
        """The exit status (negative -N when killed by signal N); WaitTimeout when it does not
        end within scaled(timeout)."""
        try:
            rc = self.popen.wait(scaled(timeout))
        except subprocess.TimeoutExpired:
            raise WaitTimeout(f"{self.argv!r} still runs after {scaled(timeout):.1f}s; "
                              f"stderr so far: {bytes(self.stderr)!r}") from None
        if self.ended is None:
            self.ended = time.monotonic()
        self._join_readers(scaled(5))
        return rc

    def _join_readers(self, timeout: float) -> bool:
        """Waits up to `timeout` for EOF on stdout and stderr. A process that outlives the one
        we started (an orphan) may hold them open; the output is then what arrived so far."""
        deadline = time.monotonic() + timeout
        for t in self._readers:
            t.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._readers)

    def _close_streams(self) -> None:
        # Closing a stream that a reader thread is blocked on would block on the stream's lock:
        # only close once the readers are done (they are daemon threads otherwise).
        if self._join_readers(scaled(2)):
            for stream in (self.popen.stdout, self.popen.stderr):
                stream.close()
        check_sanitizer_report(" ".join(map(str, self.argv)),
                               bytes(self.stderr).decode("utf-8", "replace"))

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)


class Run(_Proc):
    """vigild (or anything) as an ordinary child of the test: not PID 1. It starts in a new
    session (start_new_session), whose id is its pid: every process it leaves behind, even one
    re-parented elsewhere after it exited, keeps that session id unless it calls setsid()
    itself. ``close()`` kills the whole session, so no test leaks processes."""

    def __init__(self, argv: Sequence[Arg], **kwargs) -> None:
        kwargs.setdefault("start_new_session", True)
        super().__init__(argv, **kwargs)
        self.sid = self.pid if kwargs["start_new_session"] else os.getsid(0)

    def session(self) -> list:
        """Every live process of the session the command started (itself included)."""
        return [p for p in all_processes() if p.sid == self.sid and p.pid != os.getpid()]

    def close(self) -> None:
        kill_quietly(self.pid)
        if self.sid != os.getsid(0):
            for p in self.session():
                kill_quietly(p.pid)
        try:
            self.popen.wait(scaled(10))
        except subprocess.TimeoutExpired:
            pass
        self._close_streams()

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def as_root() -> bool:
    return os.geteuid() == 0


def unshare_prefix() -> list:
    """The command prefix that runs its argument as PID 1 of a new PID namespace with its own
    /proc. --kill-child: when unshare dies, the kernel SIGKILLs the init it forked, and the
    init's death kills the whole namespace (see PidNamespace)."""
    if as_root():
        return ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]
    return ["unshare", "-Urpf", "--mount-proc", "--kill-child"]


class PidNamespace(_Proc):
    """argv runs as PID 1 of a fresh PID namespace, started by unshare (see unshare_prefix).
    unshare waits for the init and exits with its status, so wait() returns vigild's status.

    init_pid is the host pid of the namespace's init; signalling it is "from outside the
    container". run_inside() runs a command inside the namespace (nsenter), which is "from
    inside". processes() lists the namespace from the host's /proc."""

    def __init__(self, argv: Sequence[Arg], inspect: bool = True,
                 init_name: Optional[str] = None, **kwargs) -> None:
        """inspect=False skips finding the init (init_pid stays None), for a command that may
        end before it could be found. init_name: the init's comm once it has exec'd its final
        program (default: the base name of argv[0])."""
        super().__init__(unshare_prefix() + ["--"] + list(argv), **kwargs)
        self.init_pid: Optional[int] = None
        self.namespace: Optional[str] = None
        self._ns_fd: Optional[int] = None
        self._init_name = init_name or os.fsdecode(os.path.basename(os.fsencode(argv[0])))
        if inspect:
            self.inspect()

    def inspect(self) -> None:
        """Finds the init and its namespace (the constructor does, unless inspect=False: then
        several can be started at once and inspected after)."""
        try:
            self.init_pid = self._find_init(self._init_name)
            # Held open until close(): the kernel gives a freed namespace's inode number to
            # the next namespace made (another test's), so a namespace that ended could
            # otherwise name someone else's processes.
            self._ns_fd = os.open(f"/proc/{self.init_pid}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
            self.namespace = os.readlink(f"/proc/self/fd/{self._ns_fd}")
            if self.namespace == pid_namespace_of(os.getpid()):
                raise AssertionError("could not identify the new PID namespace")
        except BaseException:
            self.close()
            raise

    def _find_init(self, exe_name: str) -> int:
        def init_execed() -> Optional[int]:
            if self.popen.poll() is not None:
                raise AssertionError(f"unshare ended early with {self.popen.returncode}; "
                                     f"stderr: {bytes(self.stderr)!r}")
            for child in children_of(self.pid):
                # The init is unshare's only child; wait until it has exec'd argv[0] (before
                # that it is a copy of unshare, and its /proc/PID/comm says so).
                if child.inner_pid == 1 and child.comm == exe_name[:15]:
                    return child.pid
            return None
        return wait_until(init_execed, 10, "the namespace's init to exec")

    def processes(self) -> list:
        """Every process of the namespace (init included), zombies included, from the host."""
        if self.namespace is None:
            raise AssertionError("PidNamespace(inspect=False) cannot list its processes")
        out = []
        for pid in all_pids():
            if pid_namespace_of(pid) == self.namespace:
                info = proc_info(pid)
                if info is not None:
                    out.append(info)
        return out

    def by_inner_pid(self, inner: int) -> Optional[ProcInfo]:
        for p in self.processes():
            if p.inner_pid == inner:
                return p
        return None

    def zombies(self) -> list:
        return zombies(self.processes())

    def process_groups(self) -> dict:
        return process_groups(self.processes())

    def init_children(self) -> list:
        return [p for p in self.processes() if p.ppid == self.init_pid]

    def signal_init(self, sig: int) -> None:
        """Sends sig to the namespace's init from outside the namespace."""
        os.kill(self.init_pid, sig)

    def run_inside(self, argv: Sequence[Arg], timeout: float = 10.0) -> subprocess.CompletedProcess:
        """Runs argv in the namespace (its pid 1 is the init): nsenter joins the PID namespace
        (and, without root, the user namespace), forks, and the child runs argv there."""
        enter = ["nsenter", f"--target={self.init_pid}", "--pid"]
        if not as_root():
            enter += ["--user", "--preserve-credentials"]
        return subprocess.run(enter + ["--"] + list(argv), stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=scaled(timeout))

    def close(self) -> None:
        """Kills unshare; --kill-child then kills the init and with it the whole namespace."""
        if self.popen.poll() is None:
            kill_quietly(self.pid)
        try:
            self.popen.wait(scaled(10))
        except subprocess.TimeoutExpired:
            pass
        self._close_streams()
        if self._ns_fd is not None:
            os.close(self._ns_fd)
            self._ns_fd = None

    def __enter__(self) -> "PidNamespace":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------- files


class TempDir:
    """A temporary directory removed at the end (tests write logs of what children saw)."""

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="vigil-it-")
        self.path = self._tmp.name

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def cleanup(self) -> None:
        self._tmp.cleanup()


def read_text(path: str) -> str:
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def lines_of(path: str) -> list:
    return read_text(path).splitlines()


def vm_rss_kib(pid: int) -> int:
    """The process's resident memory (VmRSS), in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def start_time(pid: int) -> Optional[int]:
    """The process's start time (clock ticks after boot, /proc/PID/stat field 22), None when it
    is gone: with the pid, it names one process for good."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2:].split()[19])


_asan_exes: dict = {}


def uses_asan(pid: int) -> bool:
    """The process runs an AddressSanitizer build: gcc's runtime is a library (libasan is
    mapped), clang's is linked into the program (its executable holds __asan_init)."""
    if "libasan" in read_text(f"/proc/{pid}/maps"):
        return True
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return False
    if exe not in _asan_exes:
        try:
            with open(exe, "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as m:
                _asan_exes[exe] = m.find(b"__asan_init") >= 0
        except (OSError, ValueError):
            return False
    return _asan_exes[exe]
