"""Sockets vigild holds for services (`listen`), with real vigild, real programs and real sockets.

The services are small Python programs: one checks systemd's socket-activation convention by
hand (LISTEN_PID is its own pid, LISTEN_FDS, LISTEN_FDNAMES, fd 3.. listening sockets with the
unit's addresses, blocking) and one uses python3-systemd's listen_fds() (libsystemd's rules).
What is checked is what the kernel shows: /proc/PID/fd inodes of vigild and of the services,
stat of the socket files, connections answered or ports free."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from daemon import Daemon  # noqa: E402
from harness import scaled, wait_until  # noqa: E402

# Writes what it was given to REPORT (one JSON line), then answers every connection on fd 3
# with "<name> <pid>\n".
MANUAL = r'''
import fcntl, json, os, socket, sys
ident, report = sys.argv[1], sys.argv[4]
fds = []
n = int(os.environ.get("LISTEN_FDS", "0"))
for fd in range(3, 3 + n):
    s = socket.socket(fileno=fd)
    info = {"fd": fd, "family": int(s.family), "type": int(s.type),
            "accepting": s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN),
            "nonblock": bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK),
            "cloexec": bool(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC)}
    name = s.getsockname()
    info["addr"] = name if isinstance(name, str) else list(name[:2])
    fds.append(info)
    s.detach()
with open(report, "a") as f:
    f.write(json.dumps({"pid": os.getpid(), "listen_pid": os.environ.get("LISTEN_PID"),
                        "listen_fds": os.environ.get("LISTEN_FDS"),
                        "names": os.environ.get("LISTEN_FDNAMES"), "fds": fds}) + "\n")
srv = socket.socket(fileno=3)
while True:
    c, _ = srv.accept()
    c.sendall(f"{ident} {os.getpid()}\n".encode())
    c.close()
'''

# The same answer, with the descriptors from libsystemd's rules (python3-systemd).
SD = r'''
import os, socket, sys
from systemd import daemon
ident = sys.argv[1]
fds = daemon.listen_fds()  # none unless LISTEN_PID is this process's pid
srv = socket.socket(fileno=fds[0])
while True:
    c, _ = srv.accept()
    c.sendall(f"{ident} {os.getpid()} fds={fds}\n".encode())
    c.close()
'''


# The system's Python, where python3-systemd lives (a tool's own Python may not have it).
PYTHON = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ask(port: int, timeout: float = 5) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=scaled(timeout)) as c:
        c.settimeout(scaled(timeout))
        data = b""
        while not data.endswith(b"\n"):
            chunk = c.recv(256)
            if not chunk:
                break
            data += chunk
        return data.decode()


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def fd_inode(pid: int, fd: int) -> str:
    return os.readlink(f"/proc/{pid}/fd/{fd}")


def socket_inodes(pid: int) -> set:
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            out.add(target)
    return out


class Listen(unittest.TestCase):
    def daemon(self, units_of) -> Daemon:
        d = Daemon({}, start=False)
        self.addCleanup(d.close)
        for name, text in (("manual.py", MANUAL), ("sd.py", SD)):
            with open(os.path.join(d.dir, name), "w") as f:
                f.write(text)
        d.write_units(units_of(d))
        return d

    def py(self, d: Daemon, script: str, ident: str) -> list:
        return [PYTHON, os.path.join(d.dir, script), ident, "--id", ident,
                os.path.join(d.dir, ident + ".report")]

    def reports(self, d: Daemon, ident: str) -> list:
        return [json.loads(line) for line in
                harness.lines_of(os.path.join(d.dir, ident + ".report"))]

    def test_convention_by_hand_and_by_libsystemd(self):
        p1, p2, p3 = free_port(), free_port(), free_port()
        sockdir = None

        def units(d):
            nonlocal sockdir
            sockdir = os.path.join(d.dir, "sock")
            os.mkdir(sockdir, 0o755)
            # A stale socket file (a vigild that was killed) is replaced.
            with socket.socket(socket.AF_UNIX) as stale:
                stale.bind(os.path.join(sockdir, "m.sock"))
            return {
                "manual": {"command": self.py(d, "manual.py", "manual"),
                           "listen": [{"tcp": f"127.0.0.1:{p1}"},
                                      {"unix": os.path.join(sockdir, "m.sock"), "name": "ctl",
                                       "mode": "0640", "owner": "nobody", "group": 0},
                                      {"udp": f"127.0.0.1:{p2}", "name": "dns"}]},
                "sd": {"command": self.py(d, "sd.py", "sd"),
                       "listen": [{"tcp": f"127.0.0.1:{p3}"}]},
            }
        d = self.daemon(units)
        d.start()
        d.wait_socket()
        pid = d.wait_pid("manual")
        rep = wait_until(lambda: self.reports(d, "manual"), 10, "manual's report")[0]
        inner = harness.proc_info(pid).inner_pid
        self.assertEqual(rep["pid"], inner)
        self.assertEqual(rep["listen_pid"], str(inner))
        self.assertEqual(rep["listen_fds"], "3")
        self.assertEqual(rep["names"], "manual:ctl:dns")
        fds = rep["fds"]
        self.assertEqual([f["fd"] for f in fds], [3, 4, 5])
        self.assertEqual(fds[0]["addr"], ["127.0.0.1", p1])
        self.assertEqual(fds[0]["type"], int(socket.SOCK_STREAM))
        self.assertEqual(fds[1]["addr"], os.path.join(sockdir, "m.sock"))
        self.assertEqual(fds[1]["family"], int(socket.AF_UNIX))
        self.assertEqual(fds[2]["addr"], ["127.0.0.1", p2])
        self.assertEqual(fds[2]["type"], int(socket.SOCK_DGRAM))
        self.assertEqual([f["accepting"] for f in fds], [1, 1, 0])
        self.assertFalse(any(f["nonblock"] for f in fds), "a held socket is O_NONBLOCK")
        self.assertFalse(any(f["cloexec"] for f in fds))
        # The service's fd 3 is vigild's own socket (one open file, not a copy bound twice).
        self.assertIn(fd_inode(pid, 3), socket_inodes(d.ns.init_pid))
        self.assertEqual(ask(p1), f"manual {inner}\n")
        st = os.lstat(os.path.join(sockdir, "m.sock"))
        self.assertTrue(stat.S_ISSOCK(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o640)
        self.assertEqual((st.st_uid, st.st_gid), (65534, 0))
        # libsystemd's sd_listen_fds() accepts what vigild passes (it gives nothing when
        # LISTEN_PID is not the caller's pid).
        sd = d.wait_pid("sd")
        self.assertEqual(ask(p3), f"sd {harness.proc_info(sd).inner_pid} fds=[3]\n")
        # The detail view lists the sockets.
        out = d.ctl("status", "manual").stdout
        self.assertIn(f"tcp 127.0.0.1:{p1} (manual)", out)
        self.assertIn(f"udp 127.0.0.1:{p2} (dns)", out)

    def test_connections_while_down_wait_for_the_next_incarnation(self):
        port = free_port()
        d = self.daemon(lambda d: {"web": {
            "command": self.py(d, "manual.py", "web"),
            "backoff": {"initial": "1s", "max": "1s", "jitter": 0},
            "listen": [{"tcp": f"127.0.0.1:{port}"}]}})
        d.start()
        first = d.wait_pid("web")
        wait_until(lambda: self.reports(d, "web"), 10, "web's report")
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: d.main_pid("web") is None, 10, "web to be down")
        # In its backoff: the connection is queued by the kernel, not refused.
        answer = ask(port, timeout=10)
        second = d.wait_pid("web", other_than=first)
        self.assertEqual(answer, f"web {harness.proc_info(second).inner_pid}\n")
        self.assertEqual(len(self.reports(d, "web")), 2)
        self.assertIn(fd_inode(second, 3), socket_inodes(d.ns.init_pid))

    def test_reload_keeps_rebinds_and_frees(self):
        keep, drop, add = free_port(), free_port(), free_port()

        def unit(d, ports):
            return {"web": {"command": self.py(d, "manual.py", "web"),
                            "listen": [{"tcp": f"127.0.0.1:{p}"} for p in ports]}}
        d = self.daemon(lambda d: unit(d, [keep, drop]))
        d.start()
        d.wait_socket()
        first = d.wait_pid("web")
        kept_inode = fd_inode(first, 3)
        self.assertIn(kept_inode, socket_inodes(d.ns.init_pid))
        self.assertFalse(port_free(drop))
        d.write_units(unit(d, [keep, add]))
        r = d.ctl("reload")
        self.assertEqual(r.returncode, 0, r.stderr)
        second = d.wait_pid("web", other_than=first)
        self.assertEqual(fd_inode(second, 3), kept_inode)  # the same socket
        self.assertIn(fd_inode(second, 4), socket_inodes(d.ns.init_pid))
        self.assertEqual(ask(keep), f"web {harness.proc_info(second).inner_pid}\n")
        wait_until(lambda: port_free(drop), 10, "the removed entry's port to be free")
        # A reload whose new socket cannot be bound is refused; nothing changes.
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            busy = taken.getsockname()[1]
            d.write_units(unit(d, [keep, add, busy]))
            r = d.ctl("reload")
            self.assertNotEqual(r.returncode, 0)
            self.assertIn(f"listen tcp 127.0.0.1:{busy}: bind: Address already in use",
                          r.stdout + r.stderr)
        self.assertEqual(d.main_pid("web"), second)

    def test_instances_share_a_socket_and_reuseport_gives_each_its_own(self):
        shared, own = free_port(), free_port()
        d = self.daemon(lambda d: {"web": {
            "command": self.py(d, "manual.py", "web"), "instances": 2,
            "listen": [{"tcp": f"127.0.0.1:{shared}"},
                       {"tcp": f"127.0.0.1:{own}", "reuseport": True}]}})
        d.start()
        d.wait_socket()
        wait_until(lambda: len(self.reports(d, "web")) >= 2, 10, "two instances")
        pids = [p.pid for p in d.processes() if p.ppid == d.ns.init_pid and p.state != "Z"
                and "--id" in harness.read_text(f"/proc/{p.pid}/cmdline")]
        self.assertEqual(len(pids), 2)
        self.assertEqual(fd_inode(pids[0], 3), fd_inode(pids[1], 3))
        self.assertNotEqual(fd_inode(pids[0], 4), fd_inode(pids[1], 4))

    def test_an_unsafe_socket_directory_is_refused(self):
        def units(d):
            unsafe = os.path.join(d.dir, "open")
            os.mkdir(unsafe)
            os.chmod(unsafe, 0o777)
            return {"web": {"command": self.py(d, "manual.py", "web"),
                            "listen": [{"unix": os.path.join(unsafe, "w.sock")}]}}
        d = self.daemon(units)
        # vigild refuses to run: no PID namespace needed to see it.
        r = subprocess.run([harness.vigild(), "--units", d.units_dir, "--socket", d.sock],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=scaled(10))
        self.assertEqual(r.returncode, 1)
        self.assertIn(f"listen unix {d.dir}/open/w.sock: directory {d.dir}/open is writable "
                      "by its group or others", r.stderr)
        self.assertIn("nothing was started", r.stderr)
        self.assertFalse(os.path.exists(os.path.join(d.dir, "open", "w.sock")))
        self.assertFalse(os.path.exists(d.sock))
        # Anything but a socket at the path is left alone, and refused.
        os.chmod(os.path.join(d.dir, "open"), 0o755)
        with open(os.path.join(d.dir, "open", "w.sock"), "w") as f:
            f.write("precious")
        r = subprocess.run([harness.vigild(), "--units", d.units_dir, "--socket", d.sock],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=scaled(10))
        self.assertEqual(r.returncode, 1)
        self.assertIn("exists and is not a socket", r.stderr)
        self.assertEqual(harness.read_text(os.path.join(d.dir, "open", "w.sock")), "precious")


if __name__ == "__main__":
    unittest.main()
