"""Service output through the real vigild: capture, forwarding to vigild's stdout,
rotated files, the ring behind `vigilctl logs`, pattern triggers and back-pressure.

Every check reads what reached the sinks (the files on disk, vigild's stdout as the test read it,
`vigilctl logs`) and what the kernel shows (/proc: pids of services), never vigild's own account.
Writers number their lines ("PREFIX seq=N", one write(2) per line), so loss, duplication and
reordering are all visible as a sequence that is not exactly 1..k.
"""

from __future__ import annotations

import json
import os
import random
import re
import select
import shlex
import signal
import stat
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from daemon import FAST, Daemon  # noqa: E402
from harness import holds_for, scaled, wait_until  # noqa: E402

# A root that never gives up during a test that kills its children on purpose.
ROOT = {"kind": "supervisor", "intensity": 100000, "period": "1s"}

SEQ_LINE = re.compile(r"^(\S+) seq=(\d+)$")


def sh(script: str) -> list:
    return ["/bin/sh", "-c", script]


def rotated_set(path: str) -> list:
    """The rotated files of `path`, oldest first, then `path` itself."""
    base, folder = os.path.basename(path), os.path.dirname(path)
    numbered = []
    for name in os.listdir(folder):
        if name.startswith(base + ".") and name[len(base) + 1:].isdigit():
            numbered.append(int(name[len(base) + 1:]))
    return [f"{path}.{n}" for n in sorted(numbered, reverse=True)] + [path]


def children(pid: int, comm: str) -> list:
    """Host pids of pid's live children named `comm`, from /proc/PID/task/PID/children: one
    small read rather than a scan of every process on the machine (so a kill loop stays fast
    on a loaded host)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            pids = [int(x) for x in f.read().split()]
    except OSError:
        return []
    out = []
    for child in pids:
        info = harness.proc_info(child)
        if info is not None and info.comm == comm and info.state != "Z":
            out.append(child)
    return out


def tree(pid: int) -> list:
    """Host pids of pid's live descendants, from the children files of its threads."""
    out, todo = [], [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children") as f:
                    kids = [int(x) for x in f.read().split()]
            except OSError:
                continue
            out += kids
            todo += kids
    return out


class Namespace(harness.PidNamespace):
    """harness.PidNamespace that finds its init and lists its processes by walking children
    files instead of scanning every /proc entry: on a host with thousands of processes (other
    test suites running) each full scan takes seconds, which made this file slow and flaky.
    Only processes below the init are listed, which is all these tests look at."""

    def _find_init(self, exe_name: str) -> int:
        def init_execed():
            if self.popen.poll() is not None:
                raise AssertionError(f"unshare ended early with {self.popen.returncode}; "
                                     f"stderr: {bytes(self.stderr)!r}")
            for child in tree(self.pid)[:1]:
                info = harness.proc_info(child)
                if info and info.inner_pid == 1 and info.comm == exe_name[:15]:
                    return child
            return None
        return wait_until(init_execed, 10, "the namespace's init to exec")

    def processes(self) -> list:
        pids = [self.init_pid] + tree(self.init_pid)
        return [i for i in map(harness.proc_info, pids) if i is not None]


def start(d: Daemon, **kwargs) -> None:
    """Daemon.start with Namespace."""
    d.ns = Namespace([harness.vigild(), "--units", d.units_dir, "--socket", d.sock, *d.args],
                     **kwargs)


def read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""


def file_set_lines(path: str) -> list:
    return b"".join(read_bytes(p) for p in rotated_set(path)).decode("utf-8", "replace") \
        .splitlines()


def forwarded(stdout: str, name: str, stream: str = "|") -> list:
    """The lines vigild forwarded for unit `name` on `stream` ('|' stdout, '!' stderr)."""
    head = f"{name} {stream} "
    return [line[len(head):] for line in stdout.splitlines() if line.startswith(head)]


def sequences(lines: list, where: str) -> dict:
    """prefix -> [seq, ...] in order of appearance; every line must be a whole numbered line
    (a mangled or half line fails here)."""
    out: dict = {}
    for line in lines:
        m = SEQ_LINE.match(line)
        if m is None:
            raise AssertionError(f"{where}: not a whole numbered line: {line!r}")
        out.setdefault(m.group(1), []).append(int(m.group(2)))
    return out


class Logs(unittest.TestCase):
    def daemon(self, build, args: tuple = ()) -> Daemon:
        d = Daemon({}, args=args, start=False)
        self.addCleanup(d.close)
        d.write_units(build(d))
        start(d)
        d.wait_socket()
        return d

    def stop_daemon(self, d: Daemon) -> None:
        d.ns.signal_init(signal.SIGTERM)
        self.assertEqual(d.wait_exit(20), 0, d.stderr()[-2000:])

    def assert_contiguous(self, seqs: dict, where: str) -> None:
        for prefix, got in seqs.items():
            self.assertEqual(got, list(range(1, len(got) + 1)),
                             f"{where}: {prefix}: lines are not exactly 1..{len(got)}")

    def assert_no_errors(self, d: Daemon) -> None:
        bad = [line for line in d.stderr().splitlines()
               if re.search(r"\b(error|fail|illegal|cannot)\b", line, re.I)]
        self.assertEqual(bad, [], "vigild's stderr has error lines")

    # ---------------------------------------------------------------- no loss under SIGKILL

    def test_random_sigkills_lose_and_duplicate_nothing(self):
        names = [f"w{i}" for i in range(1, 6)]
        # One printf per line (dash's printf builtin makes one write(2) of the whole line, and
        # a write of less than PIPE_BUF bytes to a pipe is atomic), so a SIGKILL can end a
        # writer between lines but never inside one: every line must arrive whole. A short
        # sleep every 50 lines keeps the volume bounded on a 2-core machine.
        writer = ('i=0; while :; do i=$((i+1)); printf "%s seq=%d\\n" "{n}-$$" $i; '
                  'if [ $((i % 50)) = 0 ]; then sleep 0.002; fi; done')

        def build(d):
            os.mkdir(os.path.join(d.dir, "logs"))
            units = {"root": ROOT}
            for n in names:
                units[n] = {"command": sh(writer.format(n=n)), "backoff": FAST,
                            "logs": {"file": os.path.join(d.dir, "logs", n + ".log"),
                                     "max_size": "256KiB", "keep": 1000}}
            return units
        d = self.daemon(build)
        wait_until(lambda: len(children(d.ns.init_pid, "sh")) == 5, 10, "5 writers")
        rng = random.Random(6)
        killed = 0
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            writers = children(d.ns.init_pid, "sh")
            if writers:
                harness.kill_quietly(rng.choice(writers))
                killed += 1
            time.sleep(rng.uniform(0.02, 0.15))
        self.stop_daemon(d)
        self.assertGreater(killed, 30)
        out = d.stdout()
        total = 0
        for n in names:
            in_file = sequences(file_set_lines(os.path.join(d.dir, "logs", n + ".log")),
                                f"{n} file")
            in_fwd = sequences(forwarded(out, n), f"{n} forwarded")
            self.assertTrue(all(p.startswith(n + "-") for p in in_file), in_file.keys())
            self.assert_contiguous(in_file, f"{n} file")
            self.assert_contiguous(in_fwd, f"{n} forwarded")
            # Both sinks saw the same incarnations, each up to the same last line.
            self.assertEqual({p: len(s) for p, s in in_file.items()},
                             {p: len(s) for p, s in in_fwd.items()}, n)
            self.assertGreaterEqual(len(in_file), 2, f"{n}: never killed")
            # An exit is reported only after its pipes reached EOF, so an incarnation's lines
            # all come before the next one's: each prefix is one block in the file.
            order = [SEQ_LINE.match(x).group(1)
                     for x in file_set_lines(os.path.join(d.dir, "logs", n + ".log"))]
            blocks = [p for i, p in enumerate(order) if i == 0 or order[i - 1] != p]
            self.assertEqual(len(blocks), len(set(blocks)), f"{n}: incarnations interleave")
            total += sum(len(s) for s in in_file.values())
        self.assertGreater(total, 1000)

    def test_a_line_cut_by_sigkill_is_kept_up_to_the_cut(self):
        # A writer that writes a line in two writes and is killed between them: the half line
        # must still appear, unmangled, as a final line without newline.
        d = self.daemon(lambda d: {
            "root": ROOT,
            "cut": {"command": sh('printf "cut-line seq=1\\n"; printf "half a li"; '
                                  'exec sleep 100'), "restart": "temporary",
                    "logs": {"file": os.path.join(d.dir, "cut.log")}}})
        pid = wait_until(lambda: children(d.ns.init_pid, "sleep"),
                         10, "the writer")[0]
        wait_until(lambda: b"cut-line" in read_bytes(os.path.join(d.dir, "cut.log"))
                   or "cut-line" in d.stdout(), 10, "the first line")
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: "cut | half a li" in d.stdout(), 10, "the half line forwarded")
        self.stop_daemon(d)
        self.assertEqual(read_bytes(os.path.join(d.dir, "cut.log")),
                         b"cut-line seq=1\nhalf a li\n")
        self.assertEqual(forwarded(d.stdout(), "cut"), ["cut-line seq=1", "half a li"])

    # ---------------------------------------------------------------- rotation

    def test_rotation_keeps_every_line_once_and_no_file_over_max_size(self):
        n_lines = 50000  # about 2.4 MiB
        prefix = "rotation-test-line-padded-to-forty-bytes"

        def build(d):
            return {"root": ROOT, "rot": {
                "command": d.svc("rot", "lines", str(n_lines), prefix), "restart": "temporary",
                "logs": {"file": os.path.join(d.dir, "rot.log"), "max_size": "256KiB",
                         "keep": 20, "forward": False}}}
        d = self.daemon(build)
        path = os.path.join(d.dir, "rot.log")
        wait_until(lambda: len(file_set_lines(path)) >= n_lines, 15, "every line in the files")
        self.stop_daemon(d)
        files = rotated_set(path)
        self.assertGreaterEqual(len(files), 9, files)
        self.assertLessEqual(len(files) - 1, 20)
        # file.1 .. file.N with no hole in the numbering.
        self.assertEqual(files[:-1], [f"{path}.{i}" for i in range(len(files) - 1, 0, -1)])
        slack = len(prefix) + 16
        for f in files:
            self.assertLessEqual(os.path.getsize(f), 256 * 1024 + slack, f)
        seqs = sequences(file_set_lines(path), "rot files")
        self.assertEqual(list(seqs), [prefix])
        self.assertEqual(seqs[prefix], list(range(1, n_lines + 1)))
        self.assertEqual(forwarded(d.stdout(), "rot"), [], "forward: false was forwarded")

    def test_rotation_drops_only_files_beyond_keep(self):
        n_lines = 50000

        def build(d):
            return {"root": ROOT, "rk": {
                "command": d.svc("rk", "lines", str(n_lines), "rotation-keep-test-line-padding"),
                "restart": "temporary",
                "logs": {"file": os.path.join(d.dir, "rk.log"), "max_size": "64KiB",
                         "keep": 3, "forward": False}}}
        d = self.daemon(build)
        path = os.path.join(d.dir, "rk.log")

        def last_seq():
            lines = file_set_lines(path)
            m = SEQ_LINE.match(lines[-1]) if lines else None
            return m and int(m.group(2)) == n_lines
        wait_until(last_seq, 15, "the last line")
        self.stop_daemon(d)
        files = rotated_set(path)
        self.assertEqual(files, [f"{path}.3", f"{path}.2", f"{path}.1", path])
        got = sequences(file_set_lines(path), "rk files")["rotation-keep-test-line-padding"]
        # The newest lines, contiguous up to the last one.
        self.assertEqual(got, list(range(n_lines - len(got) + 1, n_lines + 1)))

    def test_keep_zero_truncates_in_place(self):
        n_lines = 5000

        def build(d):
            return {"root": ROOT, "k0": {
                "command": d.svc("k0", "lines", str(n_lines), "keep-zero"),
                "restart": "transient",
                "logs": {"file": os.path.join(d.dir, "k0.log"), "max_size": "4KiB", "keep": 0,
                         "forward": False}}}
        d = self.daemon(build)
        path = os.path.join(d.dir, "k0.log")
        wait_until(lambda: d.status("k0")["state"] in ("stopped", "exited"), 15,
                   "the writer's exit")
        self.stop_daemon(d)
        self.assertEqual(rotated_set(path), [path])
        self.assertLessEqual(os.path.getsize(path), 4096 + 32)
        got = sequences(file_set_lines(path), "k0")["keep-zero"]
        self.assertEqual(got, list(range(n_lines - len(got) + 1, n_lines + 1)))

    def test_reload_moves_the_file_sink(self):
        def unit(d, name):
            return {"root": ROOT, "rl": {
                "command": sh('i=0; while :; do i=$((i+1)); echo "reload-$$ seq=$i"; sleep 0.02; '
                              'done'), "backoff": FAST,
                "logs": {"file": os.path.join(d.dir, name)}}}
        d = self.daemon(lambda d: unit(d, "one.log"))
        wait_until(lambda: "seq=5" in d.stdout(), 10, "a few lines")
        d.write_units(unit(d, "two.log"))
        r = d.ctl("reload")
        self.assertEqual(r.returncode, 0, r.stderr)
        two = os.path.join(d.dir, "two.log")
        wait_until(lambda: b"seq=" in read_bytes(two), 10, "lines in the new file")
        self.stop_daemon(d)
        parts = [read_bytes(os.path.join(d.dir, "one.log")), read_bytes(two)]
        seqs = sequences(b"".join(parts).decode().splitlines(), "rl files")
        # A changed logs field may restart the service or keep it; either way each
        # incarnation's lines are contiguous across the two files.
        self.assert_contiguous(seqs, "rl files")
        self.assertTrue(all(parts), "a file stayed empty")

    def test_lines_lost_to_a_full_disk_are_reported(self):
        # A file sink that fails every write (/dev/full: ENOSPC) must not lose its lines
        # silently (docs/security.md §6): their count shows in `vigilctl status`
        # (log_lines_failed), and the failure in `vigilctl events` or on vigild's stderr.
        d = self.daemon(lambda d: {"root": ROOT, "df": {
            "command": d.svc("df", "lines", "100", "full", "sleep"), "backoff": FAST,
            "logs": {"file": "/dev/full"}}})
        wait_until(lambda: "df | full seq=100" in d.stdout(), 10, "the lines forwarded")

        def counts(obj, key=""):
            if isinstance(obj, dict):
                return [c for k, v in obj.items() for c in counts(v, k)]
            if isinstance(obj, int) and re.search("fail|lost|drop", key):
                return [obj]
            return []
        wait_until(lambda: any(c >= 100 for c in counts(d.status("df"))), 5,
                   "a count of failed lines in status")
        self.assertRegex(self.events_text(d, "df") + d.stderr(), r"(?i)/dev/full|no space")

    def test_long_line_is_whole_again_in_ctl_logs(self):
        body = "".join(chr(ord("a") + i % 26) for i in range(1000))
        d = self.daemon(lambda d: {"root": ROOT, "lc": {
            "command": sh(f'printf "%s\\nafter\\n" {body}'), "restart": "transient",
            "logs": {"max_line": "64"}}})
        wait_until(lambda: "lc | after" in d.stdout(), 10, "the lines forwarded")
        r = d.ctl("logs", "--raw", "lc")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.splitlines(), [body, "after"])

    # ---------------------------------------------------------------- special files

    def test_dev_stdout_as_file_is_written_never_rotated(self):
        n = 2000

        def build(d):
            return {"root": ROOT, "ds": {
                "command": d.svc("ds", "lines", str(n), "devstdout"), "restart": "temporary",
                "logs": {"file": "/dev/stdout", "max_size": "4KiB", "keep": 2,
                         "forward": False}}}
        d = self.daemon(build)
        wait_until(lambda: d.stdout().count("devstdout seq=") >= n, 10, "every line")
        self.stop_daemon(d)
        seqs = sequences([line for line in d.stdout().splitlines() if "devstdout" in line],
                         "vigild stdout")
        self.assertEqual(seqs["devstdout"], list(range(1, n + 1)))
        self.assertFalse(os.path.lexists("/dev/stdout.1"))
        self.assertTrue(os.path.islink("/dev/stdout"))
        self.assert_no_errors(d)

    def test_fifo_as_file_is_written_never_rotated(self):
        n = 2000
        got = bytearray()
        d = Daemon({}, start=False)
        self.addCleanup(d.close)
        fifo = os.path.join(d.dir, "out.fifo")
        os.mkfifo(fifo)
        # The reader is open before vigild opens the FIFO (opening a FIFO's write end without a
        # reader fails with ENXIO).
        rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        self.addCleanup(os.close, rfd)
        stop = threading.Event()

        def reader():
            while not stop.is_set():
                r, _, _ = select.select([rfd], [], [], 0.05)
                if r:
                    try:
                        got.extend(os.read(rfd, 65536))
                    except BlockingIOError:
                        pass
        t = threading.Thread(target=reader, daemon=True)
        t.start()
        self.addCleanup(lambda: (stop.set(), t.join(5)))
        d.write_units({"root": ROOT, "ff": {
            "command": d.svc("ff", "lines", str(n), "fifo"), "restart": "temporary",
            "logs": {"file": fifo, "max_size": "4KiB", "keep": 2, "forward": False}}})
        start(d)
        wait_until(lambda: got.count(b"fifo seq=") >= n, 10, "every line through the FIFO")
        self.stop_daemon(d)
        self.assertEqual(sequences(bytes(got).decode().splitlines(), "fifo")["fifo"],
                         list(range(1, n + 1)))
        self.assertTrue(stat.S_ISFIFO(os.lstat(fifo).st_mode))
        self.assertEqual([f for f in os.listdir(d.dir) if f.startswith("out.fifo.")], [])
        self.assert_no_errors(d)

    # ---------------------------------------------------------------- framing

    def test_final_line_without_newline_is_kept_everywhere(self):
        # temporary: not started again after the kill, which would write the line twice.
        d = self.daemon(lambda d: {"root": ROOT, "nn": {
            "command": sh('printf "no newline at end"; exec sleep 100'), "restart": "temporary",
            "logs": {"file": os.path.join(d.dir, "nn.log")}}})
        # While the writer lives the partial line may wait for its end; its EOF releases it.
        pid = wait_until(lambda: children(d.ns.init_pid, "sleep"),
                         10, "the writer")[0]
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: "nn | no newline at end" in d.stdout(), 10, "the line forwarded")
        r = d.ctl("logs", "--raw", "nn")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("no newline at end", r.stdout.splitlines())
        self.stop_daemon(d)
        self.assertEqual(read_bytes(os.path.join(d.dir, "nn.log")), b"no newline at end\n")

    def test_final_line_without_newline_of_an_exiting_service(self):
        d = self.daemon(lambda d: {"root": ROOT, "nx": {
            # transient: not restarted after exit 0, and its ring is kept.
            "command": sh('printf "no newline at end"'), "restart": "transient",
            "logs": {"file": os.path.join(d.dir, "nx.log")}}})
        wait_until(lambda: "nx | no newline at end" in d.stdout(), 10, "the line forwarded")
        r = d.ctl("logs", "--raw", "nx")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("no newline at end", r.stdout.splitlines())
        self.stop_daemon(d)
        self.assertEqual(read_bytes(os.path.join(d.dir, "nx.log")), b"no newline at end\n")
        self.assertEqual(forwarded(d.stdout(), "nx"), ["no newline at end"])

    def test_long_line_is_split_and_marked_not_dropped(self):
        body = "".join(chr(ord("a") + i % 26) for i in range(1000))
        d = self.daemon(lambda d: {"root": ROOT, "ll": {
            "command": sh(f'printf "%s\\nafter\\n" {body}'), "restart": "temporary",
            "logs": {"file": os.path.join(d.dir, "ll.log"), "max_line": "64"}}})
        wait_until(lambda: "ll | after" in d.stdout(), 10, "the lines forwarded")
        self.stop_daemon(d)

        def check(records, where):
            self.assertEqual(records[-1], "after", where)
            pieces = records[:-1]
            self.assertGreater(len(pieces), 1, where)
            for p in pieces[:-1]:
                self.assertTrue(p.endswith("\\"), f"{where}: unmarked piece {p!r}")
                self.assertLessEqual(len(p) - 1, 64, where)
            self.assertFalse(pieces[-1].endswith("\\"), where)
            self.assertEqual("".join(p[:-1] for p in pieces[:-1]) + pieces[-1], body, where)
        check(read_bytes(os.path.join(d.dir, "ll.log")).decode().splitlines(), "file")
        check(forwarded(d.stdout(), "ll"), "forwarded")

    def test_timestamps_in_file_and_forward_and_stderr_marked(self):
        d = self.daemon(lambda d: {"root": ROOT, "ts": {
            "command": d.svc("ts", "lines", "3", "stamped", "stderr-lines", "2", "oops", "sleep"),
            "logs": {"file": os.path.join(d.dir, "ts.log"), "timestamps": True}}})
        wait_until(lambda: d.stdout().count("ts ! ") >= 2, 10, "the stderr lines forwarded")
        stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z "
        out = forwarded(d.stdout(), "ts")
        err = forwarded(d.stdout(), "ts", "!")
        self.assertEqual([re.sub("^" + stamp, "", x) for x in out],
                         [f"stamped seq={i}" for i in range(1, 4)], out)
        self.assertEqual([re.sub("^" + stamp, "", x) for x in err],
                         [f"oops seq={i}" for i in range(1, 3)], err)
        self.stop_daemon(d)
        in_file = read_bytes(os.path.join(d.dir, "ts.log")).decode().splitlines()
        self.assertEqual(len(in_file), 5, in_file)
        for line in in_file:
            self.assertRegex(line, "^" + stamp + r"(stamped|oops) seq=\d$")

    # ---------------------------------------------------------------- patterns

    def pattern_unit(self, d: Daemon, ident: str, script_before: str, patterns: list,
                     **fields) -> dict:
        """A testsvc (found by main_pid) that first runs `script_before` once per unit (a marker
        file keeps a restarted incarnation from printing it again)."""
        marker = os.path.join(d.dir, ident + ".once")
        svc = " ".join(shlex.quote(a) for a in d.svc(ident, "sleep"))
        script = (f"if [ ! -e {marker} ]; then touch {marker}; {script_before}; fi; "
                  f"exec {svc}")
        unit = {"command": sh(script), "backoff": FAST, "patterns": patterns}
        unit.update(fields)
        return unit

    def events_text(self, d: Daemon, unit: str) -> str:
        r = d.ctl("events", unit)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout

    def test_pattern_restart_restarts_and_the_event_names_the_pattern(self):
        def build(d):
            go = os.path.join(d.dir, "go")
            return {"root": ROOT, "oom": self.pattern_unit(
                d, "oom", f"while [ ! -e {go} ]; do sleep 0.02; done; "
                          "echo 'java.lang.OutOfMemoryError: heap'; sleep 0.5",
                [{"match": "OutOfMemoryError", "action": "restart"}])}
        d = self.daemon(build)
        # The first incarnation is a shell until it prints (the next one execs testsvc).
        sh_pid = wait_until(lambda: children(d.ns.init_pid, "sh"),
                            10, "the shell")[0]
        open(os.path.join(d.dir, "go"), "w").close()
        wait_until(lambda: harness.state_of(sh_pid) in (None, "Z"), 5, "the restart")
        second = d.wait_pid("oom")
        self.assertNotEqual(second, sh_pid)
        wait_until(lambda: "/OutOfMemoryError/" in self.events_text(d, "oom"), 5,
                   "an event naming the pattern")
        self.assertIn("/OutOfMemoryError/", d.stderr())
        self.assertTrue(holds_for(lambda: d.main_pid("oom") == second, 0.5))

    def test_pattern_count_within_restarts_only_on_the_third_match(self):
        def build(d):
            go = os.path.join(d.dir, "go")
            return {"root": ROOT, "cw": self.pattern_unit(
                d, "cw", f"echo boom; echo boom; while [ ! -e {go} ]; do sleep 0.02; done; "
                         "echo boom; sleep 0.3",
                [{"match": "^boom$", "action": "restart", "count": 3, "within": "5s"}])}
        d = self.daemon(build)
        # Before `exec testsvc` the main process is sh: find it by its command line.
        sh_pid = wait_until(lambda: children(d.ns.init_pid, "sh"),
                            10, "the shell")[0]
        wait_until(lambda: "cw | boom" in d.stdout(), 5, "the first matches")
        self.assertTrue(holds_for(lambda: harness.state_of(sh_pid) not in (None, "Z"), 0.5),
                        "restarted after two matches")
        open(os.path.join(d.dir, "go"), "w").close()
        wait_until(lambda: harness.state_of(sh_pid) in (None, "Z"), 5, "the restart")
        d.wait_pid("cw")

    def test_pattern_matches_outside_the_window_do_not_count(self):
        d = self.daemon(lambda d: {"root": ROOT, "ow": self.pattern_unit(
            d, "ow", "echo boom; echo boom; sleep 1.5; echo boom",
            [{"match": "^boom$", "action": "restart", "count": 3, "within": "1s"}])})
        pid = d.wait_pid("ow", timeout=10)  # after the third match
        self.assertTrue(holds_for(lambda: d.main_pid("ow") == pid, 0.7))
        self.assertEqual(d.stdout().count("ow | boom"), 3)

    def test_pattern_stop_stops_the_unit_for_good(self):
        d = self.daemon(lambda d: {"root": ROOT, "st": self.pattern_unit(
            d, "st", "echo FATAL; sleep 0.3", [{"match": "FATAL", "action": "stop"}],
            restart="permanent")})
        wait_until(lambda: "st | FATAL" in d.stdout(), 10, "the match")
        # main_pid() finds the testsvc the script execs; until then the service is a shell
        # (the match comes from it), so the wait is for the shell too.
        wait_until(lambda: d.main_pid("st") is None and not children(d.ns.init_pid, "sh"),
                   10, "st's shell to be stopped")
        self.assertTrue(holds_for(lambda: d.main_pid("st") is None and not children(
            d.ns.init_pid, "sh"), 1.0))
        self.assertIn("FATAL", self.events_text(d, "st"))
        self.assertEqual(d.status("st")["state"], "stopped")

    def test_pattern_event_only_records(self):
        d = self.daemon(lambda d: {"root": ROOT, "ev": {
            "command": d.svc("ev", "lines", "1", "slow-request", "sleep"), "backoff": FAST,
            "patterns": [{"match": "slow-request", "action": "event"}]}})
        pid = d.wait_pid("ev")
        wait_until(lambda: "slow-request" in self.events_text(d, "ev"), 5, "the event")
        self.assertTrue(holds_for(lambda: d.main_pid("ev") == pid, 0.7))

    def test_pattern_on_stderr_ignores_stdout(self):
        def build(d):
            go = os.path.join(d.dir, "go")
            return {"root": ROOT, "se": self.pattern_unit(
                d, "se", f"echo PANIC; while [ ! -e {go} ]; do sleep 0.02; done; "
                         "echo PANIC >&2; sleep 0.3",
                [{"match": "PANIC", "stream": "stderr", "action": "restart"}])}
        d = self.daemon(build)
        sh_pid = wait_until(lambda: children(d.ns.init_pid, "sh"),
                            10, "the shell")[0]
        wait_until(lambda: "se | PANIC" in d.stdout(), 5, "the stdout line")
        self.assertTrue(holds_for(lambda: harness.state_of(sh_pid) not in (None, "Z"), 0.5),
                        "a stdout line triggered a stderr pattern")
        open(os.path.join(d.dir, "go"), "w").close()
        wait_until(lambda: "se ! PANIC" in d.stdout(), 5, "the stderr line")
        wait_until(lambda: harness.state_of(sh_pid) in (None, "Z"), 5, "the restart")
        d.wait_pid("se")

    def test_stderr_into_stdout_costs_one_descriptor_and_keeps_the_order(self):
        # logs.stderr "stdout": one pipe a service, so vigild holds one descriptor for each
        # instead of two (and nothing else: no pidfd of its own child); every line is a stdout
        # line, in the order the service wrote them.
        n = 10
        script = "echo out1; echo err1 >&2; echo out2; exec sleep 300"

        def build(merge):
            def units(d):
                u = {"root": ROOT}
                for i in range(n):
                    u[f"m{i}"] = {"command": sh(script), "backoff": FAST}
                    if merge:
                        u[f"m{i}"]["logs"] = {"stderr": "stdout"}
                return u
            return units
        d = self.daemon(build(False))
        vigild = d.ns.init_pid

        def fds():
            return len(os.listdir(f"/proc/{vigild}/fd"))

        def steady_fds():
            # A count that holds for 300 ms: a control connection vigild has not closed yet,
            # or a watch on a stopped unit's leftovers, must not count.
            def held():
                v = fds()
                return v if holds_for(lambda: fds() == v, 0.3) else None
            return wait_until(held, 10, "vigild's descriptor count to settle")

        def settled():
            return all(d.status(f"m{i}")["state"] == "running" for i in range(n)) and \
                all(x.count("\n") >= 3 for x in
                    [d.ctl("logs", "--raw", f"m{i}").stdout for i in range(n)])
        wait_until(settled, 10, "the separate services to run and write")
        separate = steady_fds()
        d.write_units(build(True)(d))
        r = d.ctl("reload")
        self.assertEqual(r.returncode, 0, r.stderr)
        wait_until(settled, 10, "the merged services to run and write")
        wait_until(lambda: fds() <= separate - n, 5,
                   f"vigild to hold {n} descriptors less than {separate} (has {fds()})")
        merged = steady_fds()
        got = [json.loads(x) for x in d.ctl("--json", "logs", "m0").stdout.splitlines()]
        new_run = [(x["stream"], x["line"]) for x in got][-3:]
        self.assertEqual(new_run, [("stdout", "out1"), ("stdout", "err1"), ("stdout", "out2")])
        wait_until(lambda: "m0 | err1" in d.stdout(), 5, "err1 forwarded as a stdout line")
        # Without the services: what each one cost, exactly.
        d.write_units({"root": ROOT})
        self.assertEqual(d.ctl("reload").returncode, 0)
        wait_until(lambda: fds() <= merged - n, 5, f"the {n} services' descriptors to be closed")
        none = steady_fds()
        self.assertEqual((separate - none, merged - none), (2 * n, n),
                         "descriptors held for 10 services, separate and merged streams")

    def test_pattern_unhealthy_restarts_like_a_failed_probe(self):
        def build(d):
            go = os.path.join(d.dir, "go")
            return {"root": ROOT, "uh": self.pattern_unit(
                d, "uh", f"while [ ! -e {go} ]; do sleep 0.02; done; echo DEADLOCK; sleep 0.5",
                [{"match": "DEADLOCK", "action": "unhealthy"}])}
        d = self.daemon(build)
        sh_pid = wait_until(lambda: children(d.ns.init_pid, "sh"), 10, "the shell")[0]
        open(os.path.join(d.dir, "go"), "w").close()
        wait_until(lambda: harness.state_of(sh_pid) in (None, "Z"), 5, "the restart")
        d.wait_pid("uh")
        wait_until(lambda: "/DEADLOCK/" in self.events_text(d, "uh"), 5, "the event")

    def test_bad_pattern_is_a_diagnostic_with_its_position(self):
        d = Daemon({}, start=False)
        self.addCleanup(d.close)
        d.write_units({"bad": {"command": ["/bin/true"],
                               "patterns": [{"match": "ok"}, {"match": "(unclosed"}]}})
        r = subprocess.run([harness.vigild(), "--check", "--units", d.units_dir],
                           capture_output=True, text=True, timeout=scaled(10))
        self.assertNotEqual(r.returncode, 0)
        self.assertRegex(r.stderr, r"bad\.json:\d+:\d+: .*patterns")

    # ---------------------------------------------------------------- vigilctl logs

    def test_ctl_logs_n_shows_the_last_lines(self):
        d = self.daemon(lambda d: {"root": ROOT, "tl": {
            "command": d.svc("tl", "lines", "20", "tail", "sleep"), "backoff": FAST}})
        wait_until(lambda: "tl | tail seq=20" in d.stdout(), 10, "20 lines")
        r = d.ctl("logs", "--raw", "-n", "5", "tl")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.splitlines(), [f"tail seq={i}" for i in range(16, 21)])

    def test_ctl_logs_follow_prints_new_lines(self):
        d = self.daemon(lambda d: {"root": ROOT, "fl": {
            "command": sh('i=0; while :; do i=$((i+1)); echo "follow seq=$i"; sleep 0.05; '
                          'done'), "backoff": FAST}})
        wait_until(lambda: "fl | follow seq=3" in d.stdout(), 10, "a few lines")
        p = subprocess.Popen([harness.vigilctl(), "--socket", d.sock, "logs", "--raw", "-f", "-n", "1",
                              "fl"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             stdin=subprocess.DEVNULL)
        self.addCleanup(p.stderr.close)
        self.addCleanup(p.stdout.close)
        self.addCleanup(p.wait, 5)
        self.addCleanup(harness.kill_quietly, p.pid)
        got = bytearray()
        threading.Thread(target=lambda: [got.extend(c) for c in iter(
            lambda: p.stdout.read1(4096), b"")], daemon=True).start()

        def seqs():
            return [int(m) for m in re.findall(rb"follow seq=(\d+)\n", bytes(got))]
        wait_until(lambda: len(seqs()) >= 10, 10, "ten followed lines")
        s = seqs()
        self.assertEqual(s, list(range(s[0], s[0] + len(s))))
        self.assertIsNone(p.poll())

    def test_ctl_logs_reopen_and_sigusr2_start_a_new_file(self):
        def build(d):
            return {"root": ROOT, "ro": {
                "command": sh('i=0; while :; do i=$((i+1)); echo "reopen seq=$i"; '
                              'sleep 0.02; done'),
                "backoff": FAST, "logs": {"file": os.path.join(d.dir, "ro.log")}}}
        d = self.daemon(build)
        path = os.path.join(d.dir, "ro.log")
        wait_until(lambda: "ro | reopen seq=5" in d.stdout(), 10, "a few lines")
        # The file is flushed in batches: wait until something is on disk.
        wait_until(lambda: read_bytes(path), 10, "the file's first write")
        os.rename(path, path + ".old1")
        r = d.ctl("logs", "--reopen", "ro")
        self.assertEqual(r.returncode, 0, r.stderr)
        wait_until(lambda: b"seq=" in read_bytes(path), 10, "lines in the reopened file")
        os.rename(path, path + ".old2")
        d.ns.signal_init(signal.SIGUSR2)
        wait_until(lambda: b"seq=" in read_bytes(path), 10, "lines after SIGUSR2")
        self.stop_daemon(d)
        parts = [read_bytes(path + ".old1"), read_bytes(path + ".old2"), read_bytes(path)]
        lines = b"".join(parts).decode().splitlines()
        seqs = sequences(lines, "ro files")["reopen"]
        self.assertEqual(seqs, list(range(1, len(seqs) + 1)))
        self.assertTrue(all(parts), "a file stayed empty")

    def test_ring_size_bounds_ctl_logs_to_the_newest_lines(self):
        d = self.daemon(lambda d: {"root": ROOT, "rg": {
            "command": d.svc("rg", "lines", "500", "ring", "sleep"), "backoff": FAST,
            "logs": {"ring": "1KiB"}}})
        wait_until(lambda: "rg | ring seq=500" in d.stdout(), 10, "500 lines")
        r = d.ctl("logs", "--raw", "-n", "1000", "rg")
        self.assertEqual(r.returncode, 0, r.stderr)
        got = sequences(r.stdout.splitlines(), "vigilctl logs")["ring"]
        self.assertLessEqual(sum(len(f"ring seq={i}") for i in got), 1024)
        self.assertGreater(len(got), 10)
        self.assertEqual(got, list(range(501 - len(got), 501)))

    def test_follow_continues_across_a_restart(self):
        d = self.daemon(lambda d: {"root": ROOT, "fr": {
            "command": sh('i=0; while :; do i=$((i+1)); echo "again-$$ seq=$i"; sleep 0.05; '
                          'done'), "backoff": FAST}})
        first = wait_until(lambda: children(d.ns.init_pid, "sh"), 10, "the writer")[0]
        p = subprocess.Popen([harness.vigilctl(), "--socket", d.sock, "logs", "--raw", "-f", "fr"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             stdin=subprocess.DEVNULL)
        self.addCleanup(p.stdout.close)
        self.addCleanup(p.wait, 5)
        self.addCleanup(harness.kill_quietly, p.pid)
        got = bytearray()
        threading.Thread(target=lambda: [got.extend(c) for c in iter(
            lambda: p.stdout.read1(4096), b"")], daemon=True).start()
        wait_until(lambda: f"again-{harness.proc_info(first).inner_pid} ".encode() in got, 10,
                   "the first incarnation's lines")
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: len(set(re.findall(rb"again-(\d+) ", bytes(got)))) >= 2, 10,
                   "the next incarnation's lines in the same stream")

    def test_output_of_a_process_left_behind_is_kept_until_it_ends(self):
        # The main process exits while a process it started (in a session of its own, so not in
        # its process group) still writes. What is left of a service gets the stop signal when
        # its main process ends (this one ignores SIGTERM) and the stop timeout to go: its late
        # line must reach the sinks, and the exit is reported only once it is gone.
        def build(d):
            f = os.path.join(d.dir, "left")
            return {"root": ROOT, "gc": {
                "command": sh(f'setsid sh -c "trap \\"\\" TERM; touch {f}; sleep 0.3; '
                              f'echo late-line" & '
                              f'while [ ! -e {f} ]; do sleep 0.01; done; echo main-line; exit 3'),
                "restart": "transient", "stop": {"timeout": "5s"},
                "backoff": {"initial": "5s", "max": "5s", "jitter": 0},
                "logs": {"file": os.path.join(d.dir, "gc.log")}}}
        d = self.daemon(build)
        wait_until(lambda: "gc | late-line" in d.stdout(), 10, "the late line")
        wait_until(lambda: d.status("gc")["last_exit"] == {"code": 3}, 10, "the exit")
        self.stop_daemon(d)
        self.assertEqual(read_bytes(os.path.join(d.dir, "gc.log")), b"main-line\nlate-line\n")

    # ---------------------------------------------------------------- back-pressure

    def blocked_stdout_daemon(self, n: int):
        """vigild as PID 1 with its stdout on a pipe that nobody reads yet, one unit "bp"
        writing n numbered lines into its log file, and a unit "beat" that crashes every
        100 ms. Returns (daemon, read end) once bp has written all n lines."""
        d = Daemon({}, start=False)
        self.addCleanup(d.close)
        d.write_units({"root": ROOT, "bp": {
            "command": d.svc("bp", "lines", str(n), "backpressure-line", "sleep"),
            "backoff": FAST, "logs": {"file": os.path.join(d.dir, "bp.log"),
                                      "max_size": "64MiB"}},
            "beat": {"command": d.svc("beat", "crash-after", "100"), "backoff": FAST}})
        rfd, wfd = os.pipe()
        self.addCleanup(os.close, rfd)
        argv = ["/bin/sh", "-c", f'exec "$@" >&{wfd}', "sh", harness.vigild(), "--units",
                d.units_dir, "--socket", d.sock]
        try:
            d.ns = Namespace(argv, init_name="vigild", pass_fds=(wfd,))
        finally:
            os.close(wfd)
        d.wait_socket()
        path = os.path.join(d.dir, "bp.log")
        wait_until(lambda: read_bytes(path).count(b"\n") >= n, 20, "every line in the file")
        return d, rfd

    def drain(self, rfd: int) -> tuple:
        got = bytearray()

        def run():
            while True:
                chunk = os.read(rfd, 65536)
                if not chunk:
                    return
                got.extend(chunk)
        t = threading.Thread(target=run, daemon=True)
        t.start()
        return got, t

    def test_a_blocked_stdout_drops_forwarded_lines_with_a_count_and_holds_nothing_back(self):
        # Nobody reads vigild's stdout: the service is not held back (its file gets every
        # line), supervision goes on (beat keeps being restarted), status answers at once;
        # the forwarded copy is dropped beyond the forwarder's queue, counted, and said.
        n = 200000
        d, rfd = self.blocked_stdout_daemon(n)
        restarts = d.status("beat")["restarts"]
        t0 = time.monotonic()
        st = d.status("bp")
        self.assertLess(time.monotonic() - t0, 1.0, "status is slow while stdout is blocked")
        self.assertEqual(st["state"], "running")
        dropped = st["forward_dropped"]
        self.assertGreater(dropped, 0, "nothing was dropped: was stdout blocked at all?")
        wait_until(lambda: d.status("beat")["restarts"] > restarts + 2, 10,
                   "beat restarted while stdout is blocked")
        in_file = sequences(file_set_lines(os.path.join(d.dir, "bp.log")),
                            "file")["backpressure-line"]
        self.assertEqual(in_file, list(range(1, n + 1)))
        got, t = self.drain(rfd)
        wait_until(lambda: b"lines dropped: standard output" in got, 20, "the marker line")
        self.stop_daemon(d)
        t.join(scaled(5))
        text = bytes(got).decode()
        fwd = sequences(forwarded(text, "bp"), "forwarded")["backpressure-line"]
        # In order, none twice; what is missing was counted.
        self.assertEqual(fwd, sorted(set(fwd)))
        self.assertEqual(len(fwd) + dropped, n, f"kept {len(fwd)} + dropped {dropped} != {n}")

    def test_a_closed_stdout_does_not_kill_vigild_and_the_file_keeps_everything(self):
        # Nobody reads vigild's stdout any more (the container's log reader died): writes fail
        # with EPIPE. vigild must neither die of SIGPIPE nor stop serving the other sinks.
        n = 20000
        d = Daemon({}, start=False)
        self.addCleanup(d.close)
        d.write_units({"root": ROOT, "ep": {
            "command": d.svc("ep", "lines", str(n), "epipe-line", "sleep"), "backoff": FAST,
            "logs": {"file": os.path.join(d.dir, "ep.log"), "max_size": "64MiB"}}})
        rfd, wfd = os.pipe()
        os.close(rfd)
        argv = ["/bin/sh", "-c", f'exec "$@" >&{wfd}', "sh", harness.vigild(), "--units",
                d.units_dir, "--socket", d.sock]
        try:
            d.ns = Namespace(argv, init_name="vigild", pass_fds=(wfd,))
        finally:
            os.close(wfd)
        d.wait_socket()
        path = os.path.join(d.dir, "ep.log")
        wait_until(lambda: read_bytes(path).count(b"\n") >= n, 15, "every line in the file")
        pid = d.wait_pid("ep")
        self.assertEqual(d.status("ep")["state"], "running")
        os.kill(pid, signal.SIGKILL)
        d.wait_pid("ep", other_than=pid)
        self.stop_daemon(d)
        got = sequences(file_set_lines(path), "ep file")["epipe-line"]
        self.assertEqual(got[:n], list(range(1, n + 1)))

    def run_on_tty(self, env_extra: dict) -> bytes:
        """Runs vigild with its stdout on a pseudo-terminal and returns what the terminal got
        once unit "tt" forwarded its two lines."""
        d = Daemon({}, start=False)
        self.addCleanup(d.close)
        d.write_units({"root": ROOT, "tt": {
            "command": d.svc("tt", "lines", "1", "on-a-tty", "stderr-lines", "1", "err-tty",
                             "sleep"), "backoff": FAST}})
        master, slave = os.openpty()
        self.addCleanup(os.close, master)
        argv = ["/bin/sh", "-c", f'exec "$@" >&{slave}', "sh", harness.vigild(), "--units",
                d.units_dir, "--socket", d.sock]
        env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
        env.update(env_extra)
        try:
            d.ns = Namespace(argv, init_name="vigild", pass_fds=(slave,), env=env)
        finally:
            os.close(slave)
        got = bytearray()

        def enough():
            r, _, _ = select.select([master], [], [], 0.05)
            if r:
                got.extend(os.read(master, 65536))
            return b"err-tty" in got and b"on-a-tty" in got
        wait_until(enough, 10, "both lines on the terminal")
        self.stop_daemon(d)
        return bytes(got)

    def test_forward_is_coloured_per_service_on_a_tty(self):
        got = self.run_on_tty({})
        self.assertRegex(got, rb"\x1b\[[0-9;]+mtt \|\x1b\[0m on-a-tty seq=1")
        self.assertRegex(got, rb"\x1b\[[0-9;]+mtt !\x1b\[0m err-tty seq=1")

    def test_no_color_turns_colour_off(self):
        got = self.run_on_tty({"NO_COLOR": "1"})
        self.assertIn(b"tt | on-a-tty seq=1", got)
        self.assertNotIn(b"\x1b[", got)

if __name__ == "__main__":
    unittest.main()
