"""`vigilctl status NAME`: one service in detail, with a real vigild and real processes.

What the detail view says is checked against the kernel (/proc) and against what the test
made happen: the unit file and command it wrote, the pid of the process vigild started, the
STATUS= and STOPPING=1 the service sent on its NOTIFY_SOCKET, the exec error of a command that
does not exist, the SIGKILL sent with `vigilctl signal`, the lines the service wrote. vigild
runs as PID 1 of a fresh PID namespace (harness.PidNamespace), where its pids are not the
host's: vigilctl, on the host, must then leave the Memory line out; one test runs vigild in the
host's namespace (harness.Run) to check the Memory and CPU figures against /proc."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from daemon import FAST, Daemon  # noqa: E402
from harness import scaled, wait_until  # noqa: E402

EXIT_NOT_RUNNING = 3


def inner(host_pid: int) -> int:
    info = harness.proc_info(host_pid)
    assert info is not None, f"process {host_pid} is gone"
    return info.inner_pid


def labelled(out: str) -> dict:
    """The detail view's "Label: value" lines, by label (continuation lines left out)."""
    lines = {}
    for line in out.splitlines()[1:]:
        if not line.strip():
            break  # the log lines follow the blank line
        m = re.match(r"^ *([A-Z][A-Za-z ]*): (.*)$", line)
        if m:
            lines[m.group(1)] = m.group(2)
    return lines


class StatusDetail(unittest.TestCase):

    def daemon(self, units) -> Daemon:
        d = Daemon({}, start=False)  # the units need d.svc()
        self.addCleanup(d.close)
        d.write_units(units(d))
        d.start()
        d.wait_socket()
        return d

    @staticmethod
    def events(d: Daemon, unit: str) -> list:
        r = d.ctl("--json", "events", unit)
        return [json.loads(x) for x in r.stdout.splitlines() if x.strip()]

    def wait_state(self, d: Daemon, unit: str, state: str, timeout: float = 10) -> dict:
        return wait_until(lambda: (lambda s: s if s["state"] == state else None)(d.status(unit)),
                          timeout, f"{unit} to be {state}")

    def web(self, d: Daemon) -> dict:
        return {"web": {"description": "Example web server",
                        "command": d.svc("web", "notify", "STATUS=Serving 12 clients",
                                         "notify-ready", "lines", "3", "out", "sleep"),
                        "ready": {"notify": True, "timeout": "10s"}, "backoff": FAST}}

    def test_a_running_service_in_detail_plain_when_piped(self):
        d = self.daemon(self.web)
        st = wait_until(lambda: (lambda s: s if s["ready"] else None)(d.status("web")), 10,
                        "web to be ready")
        host = d.wait_pid("web")
        self.assertEqual(st["pid"], inner(host))
        wait_until(lambda: "out seq=3" in d.ctl("logs", "web").stdout, 5, "web's lines")
        r = d.ctl("status", "web")
        self.assertEqual(r.returncode, 0, r.stderr)
        out = r.stdout
        self.assertNotIn("\x1b", out)
        self.assertEqual(out.splitlines()[0], "● web - Example web server")
        f = labelled(out)
        self.assertEqual(f["Unit"], os.path.join(d.units_dir, "web.json"))
        self.assertTrue(f["Command"].startswith(harness.testsvc() + " --id web "), f)
        self.assertIn(" notify 'STATUS=Serving 12 clients' notify-ready ", f["Command"])
        self.assertRegex(f["State"], r"^running \(ready\) since \d{4}-\d\d-\d\d "
                                     r"\d\d:\d\d:\d\d \S+; \S+ ago$")
        self.assertEqual(f["Main PID"], str(inner(host)))  # the kernel's pid (in the namespace)
        self.assertEqual(f["Restarts"], "0; intensity 5 of 5 left in 10s")
        self.assertEqual(f["Status"], '"Serving 12 clients"')
        self.assertNotIn("Last exit", f)
        self.assertNotIn("Backoff", f)
        # vigild's pids are not the host's: vigilctl does not read another process's /proc.
        self.assertNotIn("Memory", f)
        self.assertNotIn("CPU", out)
        # The last log lines, after a blank line: time, stream, the line.
        logs = out.split("\n\n", 1)[1].splitlines()
        self.assertEqual([x.split(" ", 1)[1] for x in logs],
                         ["stdout out seq=1", "stdout out seq=2", "stdout out seq=3"])
        for x in logs:
            self.assertRegex(x, r"^\d\d:\d\d:\d\d ")
        # STATUS= in the table too (a glob: the table, even for one unit).
        table = d.ctl("status", "we[b]").stdout.splitlines()
        self.assertEqual(table[1].split()[:2], ["web", "running"])
        self.assertTrue(table[1].endswith("Serving 12 clients"), table)
        # --json: vigild's status object with the detail fields, and no "proc" here.
        j = d.ctl_json("status", "web")["units"][0]
        self.assertEqual((j["description"], j["command"][-1]), ("Example web server", "sleep"))
        self.assertEqual(j["intensity"], {"max": 5, "period_ms": 10000, "used": 0})
        self.assertNotIn("proc", j)
        # Killed by a signal a vigilctl user sent: the view says by whom.
        self.assertEqual(d.ctl("signal", "KILL", "web").returncode, 0)
        new = d.wait_pid("web", other_than=host)
        wait_until(lambda: d.status("web")["pid"] == inner(new), 10, "the new incarnation")
        f = labelled(d.ctl("status", "web").stdout)
        self.assertRegex(f["Last exit"],
                         r"^killed by SIGKILL \(sent by vigilctl signal, uid \d+ pid \d+\)$")
        self.assertEqual(f["Restarts"], "1; intensity 4 of 5 left in 10s")

    def test_backoff_after_an_exec_error_exits_3(self):
        units = lambda d, cmd: {"typo": {"command": cmd, "backoff": {  # noqa: E731
            "initial": "30s", "max": "30s", "jitter": 0}}}
        d = self.daemon(lambda d: units(d, d.svc("typo", "sleep")))
        self.wait_state(d, "typo", "running")
        d.write_units(units(d, ["/nonexistent/pyhton3", "-m", "http server"]))
        self.assertEqual(d.ctl("reload", "--no-wait").returncode, 0)  # the unit cannot start
        self.wait_state(d, "typo", "backoff")
        r = d.ctl("status", "typo")
        self.assertEqual(r.returncode, EXIT_NOT_RUNNING, r.stderr)
        self.assertEqual(r.stdout.splitlines()[0], "● typo")
        f = labelled(r.stdout)
        self.assertEqual(f["Command"], "/nonexistent/pyhton3 -m 'http server'")
        self.assertTrue(f["State"].startswith("backoff since "), f)
        self.assertRegex(f["Backoff"], r"^restart in \d+s$")
        self.assertEqual(f["Last exit"],
                         "exec error: exec /nonexistent/pyhton3: No such file or directory")
        self.assertNotIn("Main PID", f)

    def test_stopping_is_an_event(self):
        d = self.daemon(lambda d: {"web": {
            "command": d.svc("web", "notify-ready", "notify", "STOPPING=1", "mark", "sent",
                             "sleep"),
            "ready": {"notify": True, "timeout": "10s"}}})
        self.wait_state(d, "web", "running")
        wait_until(lambda: "mark web sent" in harness.read_text(d.log), 5, "the STOPPING=1")
        ev = wait_until(lambda: [e for e in self.events(d, "web")
                                 if e["kind"] == "notice" and "STOPPING=1" in e["message"]],
                        5, "the STOPPING=1 event")
        self.assertEqual(ev[0]["cause"], "notify")
        text = d.ctl("events", "web").stdout
        self.assertRegex(text, r"web +notice +the service reported STOPPING=1")

    def test_memory_and_cpu_from_proc_in_vigilds_namespace(self):
        top = tempfile.mkdtemp(prefix="vigil-detail-")
        self.addCleanup(shutil.rmtree, top, True)
        units = os.path.join(top, "units")
        os.mkdir(units)
        sock = os.path.join(top, "control.sock")
        with open(os.path.join(units, "web.json"), "w") as f:
            json.dump({"command": [harness.testsvc(), "--id", "web", "sleep"]}, f)
        v = harness.Run([harness.vigild(), "--units", units, "--socket", sock])
        self.addCleanup(v.close)

        def ctl(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run([harness.vigilctl(), "--socket", sock, *args],
                                  stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  timeout=scaled(10))
        st = wait_until(lambda: os.path.exists(sock) and (lambda r: json.loads(r.stdout)[
            "units"][0] if r.returncode == 0 else None)(ctl("--json", "status", "web")),
            10, "web running")
        pid = st["pid"]

        def statm() -> int:
            return int(harness.read_text(f"/proc/{pid}/statm").split()[1]) * os.sysconf(
                "SC_PAGE_SIZE")
        # The service may still be growing as it starts: vigilctl's figure is read between two
        # reads of the kernel's.
        before = statm()
        st = json.loads(ctl("--json", "status", "web").stdout)["units"][0]
        after = statm()
        self.assertEqual(st["proc"]["rss_bytes"] // 4096 * 4096, st["proc"]["rss_bytes"])
        self.assertGreater(st["proc"]["rss_bytes"], min(before, after) - (1 << 20))
        self.assertLess(st["proc"]["rss_bytes"], max(before, after) + (1 << 20))
        self.assertGreaterEqual(st["proc"]["cpu_ms"], 0)
        f = labelled(ctl("status", "web").stdout)
        self.assertEqual(f["Main PID"], str(pid))
        self.assertRegex(f["Memory"], r"^\d+(\.\d)?[BKMG] \(RSS\)   CPU: \d+\.\d{3}s$")
        self.assertEqual(ctl("shutdown").returncode, 0)
        self.assertEqual(v.wait(scaled(10)), 0)


if __name__ == "__main__":
    unittest.main()
