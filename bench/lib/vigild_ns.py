"""A vigild for bench scripts: PID 1 of a fresh PID namespace, on units written to a scratch
folder in /dev/shm, its control socket beside them (bench/loop_stall.py, bench/rolling.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile


def ns_prefix() -> list:
    """unshare's arguments for a new PID namespace with its own /proc (and a user namespace when
    not root); --kill-child ends the namespace with unshare."""
    base = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]
    return base if os.geteuid() == 0 else ["unshare", "-Ur", "--pid", "--fork", "--mount-proc",
                                           "--kill-child"]


def binaries(build_dir: str, script: str):
    """(vigild, vigilctl) of build_dir ($VIGILD and $VIGILCTL override them), or None after
    saying on stderr, in `script`'s name, which is not built."""
    vigild = os.environ.get("VIGILD", os.path.join(build_dir, "src/daemon/vigild"))
    vigilctl = os.environ.get("VIGILCTL", os.path.join(build_dir, "src/cli/vigilctl"))
    for f in (vigild, vigilctl):
        if not os.access(f, os.X_OK):
            print(f"{script}: {f} is not built (ninja -C {build_dir} src/daemon/vigild "
                  "src/cli/vigilctl)", file=sys.stderr)
            return None
    return vigild, vigilctl


class Vigild:
    def __init__(self, vigild: str, vigilctl: str, units: dict, prefix: str,
                 stderr=subprocess.DEVNULL) -> None:
        """units: name -> JSON object. stderr: where vigild's (log level warn) goes."""
        self.dir = tempfile.mkdtemp(prefix=prefix, dir="/dev/shm")
        self.vigilctl = vigilctl
        self.sock = os.path.join(self.dir, "run", "control.sock")
        udir = os.path.join(self.dir, "units")
        os.makedirs(udir)
        for name, body in units.items():
            with open(os.path.join(udir, name + ".json"), "w") as f:
                json.dump(body, f)
        self.proc = subprocess.Popen(ns_prefix() + [vigild, "--units", udir, "--socket",
                                                   self.sock, "--log-level", "warn"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=stderr)

    def run_ctl(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([self.vigilctl, "--socket", self.sock, *args],
                              capture_output=True, text=True, timeout=timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)
