"""Hostile: the control socket and vigilctl (docs/security.md §2, §4 and §5; vigilctl(1)).

Clients of the control socket are root, vigild's own user and, with --socket-group, the group's
members; any of them may be hostile, and so may whoever prepared the socket's folder. vigild
must keep serving root through descriptor exhaustion, clients that never read, requests built
to cost memory or CPU, numbers past every range and a crowd of another user's idle
connections; vigilctl must never talk to a server run by someone else, and a vigild run by a
user must refuse a socket folder that someone else controls.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import unittest

from hostile import (NOBODY, PATIENT_ROOT, HostileCase, Raw, TempGroup, cpu_ms, fd_count,
                     harness, kill_and_wait, needs_root, rss_kb, scaled, system_python,
                     wait_until)

# vigilctl's exit statuses (vigilctl(1) EXIT STATUS).
EXIT_ERROR, EXIT_USAGE, EXIT_FOREIGN, EXIT_UNREACHABLE = 1, 2, 6, 7

# Runs as another user: opens N connections to the socket, says how many it holds on stdout,
# and keeps them (reading nothing) until its stdin closes.
def lower_nofile(test: unittest.TestCase, pid: int, soft: int) -> None:
    """Lowers pid's soft RLIMIT_NOFILE to `soft` until the test ends (only the soft limit: a
    hard limit once lowered cannot be raised again without CAP_SYS_RESOURCE)."""
    old = subprocess.run(["prlimit", "--pid", str(pid), "--nofile", "--raw", "--noheadings",
                          "--output=SOFT,HARD"], capture_output=True, text=True,
                         check=True).stdout.split()
    subprocess.run(["prlimit", "--pid", str(pid), f"--nofile={soft}:{old[1]}"], check=True)
    test.restore_nofile = lambda: subprocess.run(
        ["prlimit", "--pid", str(pid), f"--nofile={old[0]}:{old[1]}"], check=True)


HOLDER = r"""
import socket, sys
path, n = sys.argv[1], int(sys.argv[2])
held = []
for _ in range(n):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(2)
    try:
        s.connect(path)
    except OSError:
        break
    held.append(s)
print(len(held), flush=True)
sys.stdin.read()
"""

# A fake vigild run by another user: every client gets a hello and a reply that vigilctl must
# not show.
FAKE = r"""
import os, socket, sys
path = sys.argv[1]
srv = socket.socket(socket.AF_UNIX)
srv.bind(path)
os.chmod(path, 0o666)
srv.listen(8)
print("listening", flush=True)
while True:
    c, _ = srv.accept()
    try:
        c.sendall(b'{"hello":"vigil","version":2,"server":"0.1.0"}\n')
        c.settimeout(2)
        c.recv(65536)
        c.sendall(b'{"id":1,"ok":true,"result":{"units":[{"name":"PWNED","kind":"service",'
                  b'"state":"running","pid":1}]}}\n'
                  b'{"id":null,"ok":false,"error":{"code":"internal","message":"PWNED"}}\n')
    except OSError:
        pass
    c.close()
"""


class Control(HostileCase):
    # ------------------------------------------------------------------ descriptors run out

    @needs_root
    def test_emfile_on_the_control_socket_costs_no_cpu_and_no_journal(self):
        d = self.vigil()
        init = d.ns.init_pid
        limit = fd_count(init) + 2
        lower_nofile(self, init, limit)
        clients = []
        try:
            for _ in range(40):
                s = socket.socket(socket.AF_UNIX)
                s.settimeout(scaled(2))
                try:
                    s.connect(d.sock)
                except OSError:
                    s.close()
                    continue
                clients.append(s)
            self.assertGreater(len(clients), 10)
            time.sleep(0.3)  # the accept-and-close of the first rush
            journal = len(self.journal(d))
            cpu = cpu_ms(init)
            time.sleep(2)
            spent = cpu_ms(init) - cpu
            # A listener that spins on EMFILE burns a core (2000 ms) and logs each failure.
            self.assertLess(spent, 200, f"vigild used {spent} ms of CPU in 2 s out of "
                                        "descriptors")
            self.assertLess(len(self.journal_since(d, journal)), 100,
                            "\n".join(self.journal_since(d, journal)[:20]))
            # The kernel queued every connection; past the limit vigild accepted and closed them
            # (libuv's EMFILE trick): those see the end of the stream without a hello.
            closed = 0
            for s in clients:
                s.settimeout(0.05)
                try:
                    data = s.recv(4096)
                except socket.timeout:
                    continue
                except ConnectionResetError:
                    data = b""
                closed += data == b""
            self.assertGreater(closed, 20, "vigild did not run out of descriptors")
            for s in clients:
                s.close()
            clients = []
            # Once they go, status answers, with the limit still low.
            wait_until(lambda: fd_count(init) <= limit - 1, 5, "the clients' descriptors")
            self.assert_answers_quickly(d, "after the clients left, out of descriptors")
        finally:
            for s in clients:
                s.close()
            self.restore_nofile()
        self.after_attack(d)

    @needs_root
    def test_emfile_while_a_unit_restarts(self):
        # Out of descriptors, a spawn fails (no pipes, no cgroup.procs): the unit backs off and
        # is restarted, with its output captured again, once descriptors are back; vigild
        # neither spins nor floods its journal meanwhile.
        d = self.vigil(lambda d: {"root": PATIENT_ROOT,
                                  "beat": {"command": d.svc("beat", "lines", "1", "beat-line",
                                                            "crash-after", "20"),
                                           "backoff": {"initial": "100ms", "max": "200ms"}}})
        init = d.ns.init_pid
        # RLIMIT_NOFILE bounds descriptor numbers: at the lowest number vigild does not use
        # between two runs of beat, no new descriptor can be made. beat's own descriptors, when
        # it runs, took the lowest free numbers, so their closing opens no hole below it.
        def used() -> set:
            try:
                return {int(fd) for fd in os.listdir(f"/proc/{init}/fd")}
            except OSError:
                return set()
        samples = []
        for _ in range(30):
            samples.append(used())
            time.sleep(0.01)
        idle = min(samples, key=len)
        lower_nofile(self, init, min(n for n in range(len(idle) + 1) if n not in idle))
        try:
            journal = len(self.journal(d))
            cpu = cpu_ms(init)
            time.sleep(2)
            spent = cpu_ms(init) - cpu
            self.assertLess(spent, 300, f"vigild used {spent} ms of CPU in 2 s")
            window = self.journal_since(d, journal)
            self.assertLess(len(window), 100, "\n".join(window[:20]))
            self.assertTrue(any("Too many open files" in line for line in window),
                            "the attack did not run vigild out of descriptors:\n"
                            + "\n".join(window[:20]))
            self.assertIsNone(d.ns.poll())
        finally:
            self.restore_nofile()
        restored = time.time()

        def fresh_line():
            r = d.ctl("--json", "logs", "-n", "1", "beat")
            return r.returncode == 0 and r.stdout and \
                json.loads(r.stdout.splitlines()[-1])["time"] / 1000 > restored
        wait_until(fresh_line, 10, "beat's output from a start after the limit was restored")
        self.assertEqual(d.ctl("stop", "beat").returncode, 0)
        self.after_attack(d)

    # ------------------------------------------------------------------ memory

    def test_100_followers_that_never_read_a_fast_writer(self):
        d = self.vigil(lambda d: {"root": PATIENT_ROOT,
                                  "spew": {"command": ["/bin/sh", "-c",
                                                       'while [ ! -e "$GO" ]; do sleep 0.02; '
                                                       'done; exec "$@"', "sh",
                                                       *d.svc("spew", "lines", "50000",
                                                              "spew-" * 20, "sleep")],
                                           "env": {"GO": os.path.join(d.dir, "go")}}},
                       wait_running=("spew",))
        init = d.ns.init_pid
        followers = []
        for _ in range(100):
            s = socket.socket(socket.AF_UNIX)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(d.sock)
            s.sendall(b'{"id":1,"cmd":"logs","args":{"unit":"spew","lines":1000,'
                      b'"follow":true}}\n')
            followers.append(s)
        self.addCleanup(lambda: [s.close() for s in followers])
        time.sleep(0.2)
        open(os.path.join(d.dir, "go"), "w").close()
        most = 0
        deadline = time.monotonic() + scaled(20)

        def all_read():
            r = d.ctl("logs", "--raw", "-n", "1", "spew")
            return r.returncode == 0 and "seq=50000" in r.stdout
        while True:
            most = max(most, rss_kb(init))
            # Root still gets in (the fan-out of 50000 lines to 100 followers is real work:
            # no latency bound while it runs, only the after-attack check's).
            r = d.ctl("--timeout", str(scaled(5)), "status", "bystander", timeout=30)
            self.assertEqual(r.returncode, 0, r.stderr)
            if all_read():
                break
            self.assertLess(time.monotonic(), deadline, "vigild did not read spew's output")
            time.sleep(0.05)
        most = max(most, rss_kb(init))
        # The attack reached the caps: vigild dropped followers for not reading.
        self.assertTrue(any("answers unread" in line for line in self.journal(d)),
                        "no follower was dropped: the attack did not fill vigild's queues")
        # 100 followers x 8 MiB would be 800 MiB; the total cap is 32 MiB.
        self.assert_rss_growth_below(d, most, 100 * 1024, "with 100 followers")
        for s in followers:
            s.close()
        followers.clear()
        self.after_attack(d, settle=15)

    def test_nested_json_and_other_costly_requests(self):
        d = self.vigil()
        c = Raw(d.sock)
        self.addCleanup(c.close)
        init = d.ns.init_pid

        def refused(line: bytes, code: str = "bad_request") -> None:
            c.send(line + b"\n")
            m = c.read()
            self.assertFalse(m["ok"], m)
            self.assertEqual(m["error"]["code"], code, m)
        # 60 KB: 30000 levels of arrays (a recursive parser would overflow its stack).
        depth = 30000
        refused(b'{"id":1,"cmd":"status","args":{"units":' + b"[" * depth + b"]" * depth
                + b"}}")
        refused(b'{"id":2,"cmd":"status","args":' + b'{"a":' * 10000 + b"1" + b"}" * 10000
                + b"}")
        refused(b"[" * 60000)                                       # never closed
        refused(b'{"id":3,"cmd":"status","args":{"units":[' + b"1," * 20000 + b"1]}}")
        refused(b'{"id":4,"cmd":"status","args":{"units":["a"]},"x":"'
                + b"\\u0000" * 10000 + b'"}')
        # As many patterns of 255 bytes, built to backtrack in a glob matcher, as a request
        # line holds.
        pattern = ("*a?" * 84 + "*b")[:255]
        c.send(json.dumps({"id": 5, "cmd": "status",
                           "args": {"units": [pattern] * 240}}).encode() + b"\n")
        t0 = time.monotonic()
        m = c.read()
        self.assertLess(time.monotonic() - t0, scaled(1), "240 globs took too long")
        self.assertFalse(m["ok"])
        # 2000 requests in one write, answers read only afterwards: all answered, in order.
        c.send(b'{"id":6,"cmd":"version"}\n' * 2000)
        for _ in range(2000):
            self.assertEqual(c.read()["id"], 6)
        self.assertTrue(c.request({"id": 7, "cmd": "version"})["ok"])
        self.assert_rss_growth_below(d, rss_kb(init), 8 * 1024, "after the costly requests")
        c.close()
        self.after_attack(d)

    @needs_root
    def test_300_idle_connections_of_a_group_member_do_not_lock_root_out(self):
        group = TempGroup(self)
        d = self.vigil(lambda d: {"other": {"command": d.svc("other", "sleep")}},
                       args=("--socket-group", group.name), wait_running=("other",))
        os.chmod(d.dir, 0o755)
        holder = subprocess.Popen([system_python(), "-c", HOLDER, d.sock, "300"],
                                  user=NOBODY, group=NOBODY, extra_groups=[group.gid],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        self.addCleanup(kill_and_wait, holder)
        line = holder.stdout.readline()
        self.assertTrue(line.strip().isdigit(), holder.stderr.read() if not line else line)
        time.sleep(0.2)
        # The member holds at most its 16 connections in vigild; root gets in at once.
        self.assertLessEqual(fd_count(d.ns.init_pid), d.base.fds + 16 + 2)
        self.assert_answers_quickly(d, "with 300 connections of a group member open")
        old = d.main_pid("other")
        r = d.ctl("restart", "other")   # and a command that changes something: served
        self.assertEqual(r.returncode, 0, r.stderr)
        d.wait_pid("other", other_than=old)
        holder.stdin.close()
        holder.wait(scaled(10))
        self.after_attack(d)

    # ------------------------------------------------------------------ values

    def test_numbers_past_every_range_get_error_replies(self):
        d = self.vigil()
        c = Raw(d.sock)
        self.addCleanup(c.close)

        def error(obj, code: str = None) -> dict:
            m = c.request(obj)
            self.assertFalse(m["ok"], (obj, m))
            if code:
                self.assertEqual(m["error"]["code"], code, (obj, m))
            return m
        for sig in ("RTMIN+2147483647", "RTMIN+-1", "RTMAX-99999", "SIG" + "A" * 300,
                    "9" * 1000, 2147483648, -1, 4294967296, 1e308, 65, "RTMIN+4294967296"):
            m = error({"id": 1, "cmd": "signal", "args": {"signal": sig, "units": ["bystander"]}})
            self.assertIn(m["error"]["code"], ("invalid", "bad_request"), (sig, m))
        for lines in (10 ** 30, 2 ** 63, 2 ** 64, -1, 1e308, 1000001, "1000"):
            error({"id": 2, "cmd": "logs", "args": {"unit": "bystander", "lines": lines}},
                  "bad_request")
            error({"id": 3, "cmd": "events", "args": {"lines": lines}}, "bad_request")
        error({"id": "x" * 129, "cmd": "version"}, "bad_request")
        error({"id": 10 ** 30, "cmd": "version"}, "bad_request")
        error({"id": 4, "cmd": "status", "args": {"units": ["a" * 256]}}, "bad_request")
        error({"id": 5, "cmd": "status", "args": {"units": ["bystander"] * 1025}},
              "bad_request")
        # An id of 1 MB: the line is too long; vigild says so and hangs up.
        big = Raw(d.sock)
        self.addCleanup(big.close)
        try:
            big.send(b'{"id":"' + b"x" * (1 << 20) + b'","cmd":"version"}\n')
        except (BrokenPipeError, ConnectionResetError):
            pass
        m = big.read()
        self.assertEqual(m["error"]["code"], "too_long")
        self.assertIsNone(m["id"])
        self.assertEqual(big.readline(), b"")
        big.close()
        self.assertTrue(c.request({"id": 6, "cmd": "version"})["ok"])
        c.close()
        self.after_attack(d)

    def test_vigilctl_with_a_signal_past_every_range(self):
        d = self.vigil()
        for sig in ("RTMIN+2147483647", "RTMIN+99999999999999999999", "2147483648",
                    "-9", "SIG" + "X" * 5000):
            r = d.ctl("signal", sig, "bystander")
            self.assertLess(r.returncode, 128, f"vigilctl crashed on {sig[:40]}: {r.stderr}")
            self.assertEqual(r.returncode, EXIT_USAGE, f"{sig[:40]}: {r.stderr}")
            self.assertIn("signal", r.stderr.lower())
        for lines in ("99999999999999999999", "-1", "1e9"):
            r = d.ctl("logs", "--raw", "-n", lines, "bystander")
            self.assertLess(r.returncode, 128, r.stderr)
            self.assertNotEqual(r.returncode, 0, f"logs -n {lines}: {r.stdout[:200]}")
        self.after_attack(d)

    # ------------------------------------------------------------------ who talks to whom

    @needs_root
    def test_vigilctl_refuses_a_server_run_by_another_user(self):
        folder = tempfile.mkdtemp(prefix="vigil-hx-fake-")
        self.addCleanup(shutil.rmtree, folder, True)
        os.chmod(folder, 0o755)
        os.chown(folder, NOBODY, NOBODY)
        path = os.path.join(folder, "control.sock")
        fake = subprocess.Popen([system_python(), "-c", FAKE, path], user=NOBODY, group=NOBODY,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        self.addCleanup(kill_and_wait, fake)
        self.assertEqual(fake.stdout.readline().strip(), "listening", fake.stderr)
        ctl = shutil.copy(harness.vigilctl(), os.path.join(folder, "vigilctl"))
        os.chmod(ctl, 0o755)

        def vigilctl(uid, *args):
            pre = [] if uid == 0 else ["setpriv", f"--reuid={uid}", f"--regid={uid}",
                                       "--clear-groups"]
            return subprocess.run(pre + [ctl, "--socket", path, *args],
                                  stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  timeout=scaled(10))
        for uid in (0, 4242):
            for args in (("status",), ("--json", "status"), ("stop", "web"),
                         ("logs", "-f", "web")):
                r = vigilctl(uid, *args)
                self.assertEqual(r.returncode, EXIT_FOREIGN, (uid, args, r.stderr))
                self.assertEqual(r.stdout, "", (uid, args))
                self.assertNotIn("PWNED", r.stderr)
                self.assertIn(str(NOBODY), r.stderr)  # says whose server it is
        # The fake answers its own user: so the refusals above came from the uid check.
        r = vigilctl(NOBODY, "--json", "status")
        self.assertIn("PWNED", r.stdout + r.stderr)

    def nobody_vigild(self, socket_folder: str, prepare_script: str = "",
                      socket_arg: bool = True) -> harness.Run:
        """vigild run as nobody (not PID 1), in a mount namespace of its own whose /tmp is a
        fresh tmpfs; prepare_script runs as root in it first. The binary is opened before the
        tmpfs hides /tmp and run through that descriptor, so a build under /tmp works too."""
        vigild = harness.vigild()
        sock = ["--socket", os.path.join(socket_folder, "control.sock")] if socket_arg else []
        script = ("set -e; exec 3<\"$1\"; shift; "
                  "mount -t tmpfs -o mode=1777 none /tmp; mkdir -m 0755 /tmp/units; "
                  + prepare_script + "; exec setpriv --reuid=65534 --regid=65534 "
                  "--clear-groups env -u XDG_RUNTIME_DIR -u VIGIL_SOCKET /proc/self/fd/3 \"$@\"")
        argv = ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script, "sh",
                vigild, "--units", "/tmp/units", *sock]
        run = harness.Run(argv)
        self.addCleanup(run.close)
        return run

    @needs_root
    def test_a_non_root_vigild_refuses_a_socket_folder_someone_else_controls(self):
        cases = {
            # the default folder, made first by root
            "default, root's": ("/tmp/vigil-65534", "mkdir -m 0755 /tmp/vigil-65534", False),
            "root's": ("/tmp/run", "mkdir -m 0755 /tmp/run", True),
            "world-writable": ("/tmp/run",
                               "mkdir -m 0777 /tmp/run; chown 65534:65534 /tmp/run; "
                               "chmod 0777 /tmp/run", True),
            "group-writable": ("/tmp/run",
                               "mkdir /tmp/run; chown 65534:0 /tmp/run; chmod 0770 /tmp/run",
                               True),
            "a symlink": ("/tmp/run",
                          "mkdir -m 0700 /tmp/real; chown 65534:65534 /tmp/real; "
                          "ln -s /tmp/real /tmp/run", True),
        }
        # The notify sockets' folder (the socket's folder with -notify appended) made first by
        # root, or a symlink to a folder someone else controls: a unit that notifies cannot
        # start (and so, at start-up, vigild exits 3), and the message names the folder.
        own_run = "mkdir -m 0700 /tmp/run; chown 65534:65534 /tmp/run; "
        notify_unit = ("echo '{\"command\": [\"sleep\", \"100\"], \"ready\": "
                       "{\"notify\": true}}' > /tmp/units/n.json; ")
        cases["notify folder, root's"] = (
            "/tmp/run-notify", own_run + notify_unit + "mkdir -m 0755 /tmp/run-notify", True)
        cases["notify folder, a symlink"] = (
            "/tmp/run-notify", own_run + notify_unit + "mkdir -m 0777 /tmp/elsewhere; "
            "ln -s /tmp/elsewhere /tmp/run-notify", True)
        for name, (folder, script, socket_arg) in cases.items():
            run = self.nobody_vigild(folder, script, socket_arg)
            rc = run.wait(10)
            err = bytes(run.stderr).decode("utf-8", "replace")
            self.assertNotEqual(rc, 0, f"{name}: vigild started: {err}")
            self.assertLess(rc, 128, f"{name}: vigild crashed: {err}")
            self.assertIn(folder, err, f"{name}: the message does not name the folder")
        # The control: a folder of nobody's own, not writable by others: vigild starts.
        run = self.nobody_vigild("/tmp/run", "mkdir -m 0700 /tmp/run; chown 65534:65534 "
                                 "/tmp/run", True)
        wait_until(lambda: "tree started" in bytes(run.stderr).decode("utf-8", "replace")
                   or run.poll() is not None, 10, "vigild as nobody to start")
        self.assertIsNone(run.poll(), bytes(run.stderr).decode("utf-8", "replace"))


if __name__ == "__main__":
    unittest.main()
