"""Hostile: unit files (docs/security.md §1 and §2).

The units folder is the administrator's, but what is in it is still checked as if it were not:
every number has a bound the code can hold (a 1 TiB ring, a 4 GiB line limit or a watchdog of
50,000,000,000 days would overflow or exhaust vigild), a user that does not exist is an error of
the file and not of the start, and a unit file that is a FIFO, a device or a link is refused
without being read (a blocking open would freeze the reload for good).

Every refusal must come as a diagnostic `file:line:column: /pointer: message` (vigil.unit(5)),
from `vigild --check` and from a reload of a running vigild, which then keeps its services.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
import unittest

from hostile import Daemon, HostileCase, harness, scaled, wait_until

# Hostile values, each in a unit file of its own: (name, field line, the value's text as it
# appears on that line, the JSON pointer the diagnostic must name).
BAD_VALUES = [
    ("ring", '"logs": {"ring": "1TiB"}', '"1TiB"', "/logs/ring"),
    ("maxline", '"logs": {"max_line": "4GiB"}', '"4GiB"', "/logs/max_line"),
    ("watchdog", '"watchdog": "50000000000d"', '"50000000000d"', "/watchdog"),
    ("maxsize", '"logs": {"max_size": "2TiB"}', '"2TiB"', "/logs/max_size"),
    ("keep", '"logs": {"keep": 4294967296}', "4294967296", "/logs/keep"),
    ("factor", '"backoff": {"factor": 1e308}', "1e308", "/backoff/factor"),
    ("initial", '"backoff": {"initial": "99999999999999999999ms"}', '"99999999999999999999ms"',
     "/backoff/initial"),
    ("stoptimeout", '"stop": {"timeout": "9223372036854775807ms"}',
     '"9223372036854775807ms"', "/stop/timeout"),
    ("stopsignal", '"stop": {"signal": "RTMIN+2147483647"}', '"RTMIN+2147483647"',
     "/stop/signal"),
    ("instances", '"instances": 18446744073709551616', "18446744073709551616", "/instances"),
    ("nofile", '"limits": {"nofile": 18446744073709551617}', "18446744073709551617",
     "/limits/nofile"),
    ("readyfd", '"ready": {"fd": 2147483648}', "2147483648", "/ready/fd"),
    ("count", '"patterns": [{"match": "x", "count": 10000000000}]', "10000000000",
     "/patterns/0/count"),
    ("within", '"patterns": [{"match": "x", "within": "366d"}]', '"366d"', "/patterns/0/within"),
    ("period", '"liveness": {"tcp": {"port": 1}, "period": "86400001ms"}', '"86400001ms"',
     "/liveness/period"),
    ("port", '"liveness": {"tcp": {"port": 4294967297}}', "4294967297", "/liveness/tcp/port"),
]

# A user or group that cannot be resolved, or an id out of range: an error of the unit file.
BAD_USERS = [
    ("nosuchuser", '"user": "nosuchuser"', '"nosuchuser"', "/user"),
    ("nosuchgroup", '"group": "nosuchgroup"', '"nosuchgroup"', "/group"),
    ("uidrange", '"user": 4294967295', "4294967295", "/user"),
    ("uidnul", '"user": "root\\u0000x"', '"root\\u0000x"', "/user"),
]


def unit_text(field_line: str) -> str:
    return '{\n  "command": ["sleep", "1000"],\n  ' + field_line + "\n}\n"


def expected(folder: str, name: str, field_line: str, value: str, pointer: str) -> str:
    """The diagnostic's head: file:3:column: /pointer: (the field is on line 3; columns count
    characters from 1 and point at the value)."""
    column = ("  " + field_line).index(value) + 1
    return f"{os.path.join(folder, name + '.json')}:3:{column}: {pointer}: "


def run_check(units: str, timeout: float = 10) -> tuple:
    """vigild --check: (exit status, stdout, stderr), bounded."""
    p = subprocess.Popen([harness.vigild(), "--check", "--units", units],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        out, err = p.communicate(timeout=scaled(timeout))
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise AssertionError(f"vigild --check --units {units} still runs after "
                             f"{scaled(timeout):.0f} s")
    return p.returncode, out, err


class UnitFiles(HostileCase):
    def folder(self) -> str:
        path = tempfile.mkdtemp(prefix="vigil-hx-units-")
        self.addCleanup(lambda: subprocess.run(["rm", "-rf", path]))
        return path

    def check_refuses(self, cases: list) -> None:
        units = self.folder()
        for name, field_line, _, _ in cases:
            with open(os.path.join(units, name + ".json"), "w") as f:
                f.write(unit_text(field_line))
        rc, out, err = run_check(units)
        self.assertEqual(rc, 1, f"vigild --check: {rc}\n{out}\n{err}")
        lines = (out + err).splitlines()
        for name, field_line, value, pointer in cases:
            head = expected(units, name, field_line, value, pointer)
            self.assertTrue(any(line.startswith(head) for line in lines),
                            f"no diagnostic {head!r}...; got:\n" + "\n".join(lines))
        # One diagnostic per bad value and no more (none of them was half-read as another).
        diags = [line for line in lines if line.startswith(units)]
        self.assertEqual(len(diags), len(cases), "\n".join(diags))

    def test_huge_numbers_are_refused_by_check_with_file_line_column(self):
        self.check_refuses(BAD_VALUES)

    def test_a_bad_user_is_refused_by_check_at_user(self):
        self.check_refuses(BAD_USERS)

    def test_instances_that_would_copy_a_big_unit_10000_times_cost_nothing(self):
        # 10000 instances of a 128 KiB unit would be 1.3 GB of unit text: refused by the bound
        # on the whole tree, quickly and in little memory.
        units = self.folder()
        with open(os.path.join(units, "big.json"), "w") as f:
            json.dump({"command": ["sleep", "1"], "instances": 10000,
                       "env": {"PAD": "x" * 131000}}, f)
        p = subprocess.Popen([harness.vigild(), "--check", "--units", units],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        t0 = time.monotonic()
        try:
            out, err = p.communicate(timeout=scaled(10))
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            self.fail("vigild --check runs for ever on 10000 instances")
        self.assertLess(time.monotonic() - t0, scaled(5))
        self.assertEqual(p.returncode, 1, err)
        self.assertIn(b"/instances: ", out + err)
        # Peak memory of the children so far (this one is the largest): far below the 1.3 GB.
        self.assertLess(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, 200 * 1024)

    # ------------------------------------------------------------------ on a running vigild

    def reload_refused(self, d: Daemon, cases: list) -> None:
        """Adds one unit file per case to the running d, reloads: refused with each
        diagnostic, and nothing started or stopped."""
        pids = {name: d.main_pid(name) for name in ("keeper", "bystander")}
        for name, field_line, _, _ in cases:
            with open(os.path.join(d.units_dir, name + ".json"), "w") as f:
                f.write(unit_text(field_line))
        r = d.ctl("reload")
        self.assertEqual(r.returncode, 1, f"reload: {r.returncode}\n{r.stdout}\n{r.stderr}")
        for name, field_line, value, pointer in cases:
            head = expected(d.units_dir, name, field_line, value, pointer)
            self.assertIn(head, r.stderr)
            # Logged too: vigild's log lines may reach its stderr just after the answer.
            wait_until(lambda: head in d.stderr(), 5, f"vigild to log {head}")
        for name, pid in pids.items():
            self.assertEqual(d.main_pid(name), pid, f"{name} changed")
        names = [u["name"] for u in d.ctl_json("status")["units"]]
        for name, *_ in cases:
            self.assertNotIn(name, names)
        for name, *_ in cases:
            os.unlink(os.path.join(d.units_dir, name + ".json"))

    def keeper(self, d: Daemon) -> dict:
        return {"keeper": {"command": d.svc("keeper", "log-signals", "sleep")}}

    def test_reload_with_huge_numbers_is_refused_and_changes_nothing(self):
        d = self.vigil(self.keeper, wait_running=("keeper",))
        self.reload_refused(d, BAD_VALUES)
        self.assertNotIn("signal keeper", harness.read_text(d.log))
        self.after_attack(d)

    def test_reload_adding_a_unit_with_a_bad_user_is_refused_and_others_keep_running(self):
        d = self.vigil(self.keeper, wait_running=("keeper",))
        self.reload_refused(d, BAD_USERS)
        # SIGHUP takes the same way: refused, logged, nothing changes.
        n = len(self.journal(d))
        with open(os.path.join(d.units_dir, "nosuchuser.json"), "w") as f:
            f.write(unit_text('"user": "nosuchuser"'))
        d.ns.signal_init(signal.SIGHUP)
        wait_until(lambda: any("/user: " in line for line in self.journal_since(d, n)), 10,
                   "the reload's diagnostic in the journal")
        os.unlink(os.path.join(d.units_dir, "nosuchuser.json"))
        self.assertNotIn("nosuchuser", [u["name"] for u in d.ctl_json("status")["units"]])
        self.assertNotIn("signal keeper", harness.read_text(d.log))
        self.after_attack(d)

    # ------------------------------------------------------------- files that are not files

    def test_fifo_device_socket_and_links_named_like_unit_files_are_refused_unread(self):
        d = self.vigil(self.keeper, wait_running=("keeper",))
        u = d.units_dir
        os.mkfifo(os.path.join(u, "fifo.json"))
        os.symlink("/dev/zero", os.path.join(u, "zero.json"))
        os.symlink(os.path.join(u, "fifo.json"), os.path.join(u, "fifolink.json"))
        os.symlink(os.path.join(u, "keeper.json"), os.path.join(u, "keeperlink.json"))
        listener = socket.socket(socket.AF_UNIX)
        self.addCleanup(listener.close)
        listener.bind(os.path.join(u, "sock.json"))
        with open(os.path.join(u, "huge.json"), "w") as f:     # over the 1 MiB bound
            f.write('{"command": ["sleep", "1"], "description": "' + "x" * (2 << 20) + '"}')
        pids = {name: d.main_pid(name) for name in ("keeper", "bystander")}
        t0 = time.monotonic()
        r = d.ctl("reload")
        self.assertLess(time.monotonic() - t0, scaled(5), "reload took too long")
        self.assertEqual(r.returncode, 1, f"{r.stdout}\n{r.stderr}")
        for name in ("fifo", "zero", "fifolink", "keeperlink", "sock", "huge"):
            self.assertIn(os.path.join(u, name + ".json") + ":", r.stderr)
        for name, pid in pids.items():
            self.assertEqual(d.main_pid(name), pid)
        # vigild --check on the same folder is refused as quickly (no open of the FIFO).
        rc, out, err = run_check(u, timeout=5)
        self.assertEqual(rc, 1, out + err)
        for name in ("fifo", "zero", "fifolink", "keeperlink", "sock", "huge"):
            os.unlink(os.path.join(u, name + ".json"))
        r = d.ctl("reload")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.after_attack(d)

    def test_unit_file_swapped_for_a_fifo_during_reloads_every_50ms(self):
        # While SIGHUP reloads the folder every 50 ms, a unit file is replaced by a FIFO and
        # back (rename(2), so the name always exists). A reload that opened the FIFO blocking
        # would hang its worker for good; one that read the name, then opened it, would read
        # what the check did not see. Status must answer within 100 ms throughout, the FIFO
        # must be refused with a diagnostic, and the swapped unit never restarts.
        d = self.vigil(lambda d: {"swap": {"command": d.svc("swap", "log-signals", "sleep")},
                                  **self.keeper(d)},
                       wait_running=("keeper", "swap"))
        pids = {name: d.main_pid(name) for name in ("keeper", "swap", "bystander")}
        path = os.path.join(d.units_dir, "swap.json")
        with open(path) as f:
            text = f.read()
        stop = threading.Event()
        errors: list = []
        swaps = [0]

        def swapper():
            try:
                while not stop.is_set():
                    fifo = os.path.join(d.units_dir, ".swap.fifo")
                    os.mkfifo(fifo)
                    os.rename(fifo, path)
                    time.sleep(0.02)
                    tmp = os.path.join(d.units_dir, ".swap.tmp")
                    with open(tmp, "w") as f:
                        f.write(text)
                    os.rename(tmp, path)
                    swaps[0] += 1
                    time.sleep(0.02)
            except Exception as e:  # noqa: BLE001  (reported by the test)
                errors.append(e)

        def hupper():
            while not stop.is_set():
                harness.kill_quietly(d.ns.init_pid, signal.SIGHUP)
                time.sleep(0.05)

        threads = [threading.Thread(target=swapper, daemon=True),
                   threading.Thread(target=hupper, daemon=True)]
        for t in threads:
            t.start()
        worst = 0.0
        try:
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                worst = max(worst, self.status_time(d))
                time.sleep(0.03)
        finally:
            stop.set()
            for t in threads:
                t.join(scaled(5))
        self.assertEqual(errors, [])
        self.assertGreater(swaps[0], 20)
        self.assertLess(worst, scaled(0.1), f"status took {worst * 1000:.0f} ms during reloads")
        self.assertTrue(stat.S_ISREG(os.lstat(path).st_mode))
        fifo_refused = [line for line in self.journal(d)
                        if "swap.json" in line and "FIFO" in line]
        self.assertTrue(fifo_refused, "no diagnostic about the FIFO in the journal")
        # The reload worker is not stuck: one more reload completes at once and changes nothing.
        t0 = time.monotonic()
        r = d.ctl("reload")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertLess(time.monotonic() - t0, scaled(5))
        for name, pid in pids.items():
            self.assertEqual(d.main_pid(name), pid, f"{name} was restarted")
        log = harness.read_text(d.log)
        self.assertNotIn("signal swap", log)
        self.assertNotIn("signal keeper", log)
        self.after_attack(d)


if __name__ == "__main__":
    unittest.main()
