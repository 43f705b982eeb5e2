"""A running vigild (the supervision daemon, not wrapper mode) for integration tests.

``Daemon(units)`` writes the unit files into a fresh folder and starts vigild as PID 1 of a new
PID namespace (harness.PidNamespace), with its control socket in the same folder. Services are
usually vigil-testsvc processes built with ``Daemon.svc(id, *modes)``: they append
``start ID PID MS`` and ``stop ID SIGNAL MS`` lines to one shared log, which is how tests check
start and stop order. Processes are found from the host's /proc (``main_pid``), so assertions
are about what the kernel shows, not what vigild says.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
from typing import Optional

import harness
from harness import scaled, wait_until


def cmdline(pid: int) -> list:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


# Fast backoff so restart tests do not wait; tests of backoff itself override it.
FAST = {"initial": "10ms", "max": "10ms", "jitter": 0}


class Daemon:
    def __init__(self, units: dict, args: tuple = (), start: bool = True) -> None:
        self.dir = tempfile.mkdtemp(prefix="vigil-it-")
        self.units_dir = os.path.join(self.dir, "units")
        os.mkdir(self.units_dir)
        self.log = os.path.join(self.dir, "svc.log")
        open(self.log, "w").close()
        self.sock = os.path.join(self.dir, "run", "control.sock")
        self.args = tuple(args)
        self.ns: Optional[harness.PidNamespace] = None
        self.write_units(units)
        if start:
            self.start()

    # -- set-up -------------------------------------------------------------------------------

    def write_units(self, units: dict) -> None:
        """Replaces the unit folder's content with `units` (name -> JSON object or raw text)."""
        for f in os.listdir(self.units_dir):
            os.unlink(os.path.join(self.units_dir, f))
        for name, body in units.items():
            with open(os.path.join(self.units_dir, name + ".json"), "w") as f:
                f.write(body if isinstance(body, str) else json.dumps(body, indent=2))

    def svc(self, ident: str, *modes: str) -> list:
        """argv of a vigil-testsvc that logs to the shared log under `ident`."""
        return [harness.testsvc(), "--id", ident, "--log", self.log, *modes]

    def start(self, inspect: bool = True) -> None:
        argv = [harness.vigild(), "--units", self.units_dir, "--socket", self.sock, *self.args]
        self.ns = harness.PidNamespace(argv, inspect=inspect)

    def close(self) -> None:
        if self.ns is not None:
            self.ns.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "Daemon":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- what the kernel shows ----------------------------------------------------------------

    def processes(self) -> list:
        return self.ns.processes()

    def main_pid(self, ident: str) -> Optional[int]:
        """Host pid of the live main process of service `ident` (a child of vigild)."""
        for p in self.ns.processes():
            if p.ppid == self.ns.init_pid and p.state != "Z":
                argv = cmdline(p.pid)
                if "--id" in argv and argv[argv.index("--id") + 1:][:1] == [ident]:
                    return p.pid
        return None

    def wait_pid(self, ident: str, other_than: Optional[int] = None, timeout: float = 10) -> int:
        def ok():
            pid = self.main_pid(ident)
            return pid if pid is not None and pid != other_than else None
        return wait_until(ok, timeout, f"a process for {ident}")

    def wait_gone(self, ident: str, timeout: float = 10) -> None:
        wait_until(lambda: self.main_pid(ident) is None, timeout, f"{ident} to be gone")

    # -- the services' own log ----------------------------------------------------------------

    def events(self, kind: Optional[str] = None) -> list:
        """[(kind, id, arg)] from the testsvc log, in order: ('start', 'a', pid),
        ('stop', 'a', 'SIGTERM'), ..."""
        out = []
        with open(self.log) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[0] in ("start", "stop", "mark", "orphan"):
                    if kind is None or parts[0] == kind:
                        out.append((parts[0], parts[1], parts[2]))
        return out

    def starts(self) -> list:
        return [e[1] for e in self.events("start")]

    def stops(self) -> list:
        return [e[1] for e in self.events("stop")]

    def wait_starts(self, n: int, timeout: float = 10) -> list:
        return wait_until(lambda: len(self.starts()) >= n and self.starts(), timeout,
                          f"{n} starts (have {self.starts()})")

    # -- control ------------------------------------------------------------------------------

    def ctl(self, *args: str, timeout: float = 10) -> subprocess.CompletedProcess:
        r = subprocess.run([harness.vigilctl(), "--socket", self.sock, *args],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=scaled(timeout))
        harness.check_sanitizer_report("vigilctl " + " ".join(args), r.stderr)
        return r

    def ctl_json(self, *args: str) -> dict:
        r = self.ctl("--json", *args)
        if r.returncode not in (0, 3):
            raise AssertionError(f"vigilctl {' '.join(args)}: {r.returncode}: {r.stderr}")
        return json.loads(r.stdout)

    def request(self, cmd: str, args: Optional[dict] = None, timeout: float = 10) -> dict:
        """vigild's reply ({"id", "ok", "result" or "error"}) to one request, sent on a
        connection of its own straight through the control protocol: no vigilctl process.
        The tests poll status this way (a sanitized vigilctl's start costs far more CPU than
        vigild's answer: bench/README.md, "CI time"); vigilctl's commands are tested with ctl()."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(scaled(timeout))
                s.connect(self.sock)
                stream = s.makefile("rb")
                stream.readline()   # vigild's hello
                s.sendall(json.dumps({"id": 1, "cmd": cmd, "args": args or {}}).encode() + b"\n")
                line = stream.readline()
        except OSError as e:
            raise AssertionError(f"{cmd} request to vigild: {e}") from e
        if not line:
            raise AssertionError(f"vigild closed the connection before it answered {cmd}")
        return json.loads(line)

    def status(self, unit: str) -> dict:
        reply = self.request("status", {"units": [unit]})
        if not reply.get("ok"):
            raise AssertionError(f"status {unit}: {reply.get('error')}")
        return reply["result"]["units"][0]

    def wait_socket(self, timeout: float = 10) -> None:
        wait_until(lambda: os.path.exists(self.sock), timeout, "the control socket")

    def wait_exit(self, timeout: float = 20) -> int:
        return self.ns.wait(timeout)

    def stderr(self) -> str:
        return bytes(self.ns.stderr).decode("utf-8", "replace")

    def stdout(self) -> str:
        return bytes(self.ns.stdout).decode("utf-8", "replace")
