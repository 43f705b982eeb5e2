"""Wrapper mode, `vigild [OPTIONS] -- CMD [ARGS...]`, tested against the kernel.

Every behaviour is checked twice: with vigild as PID 1 of a fresh PID namespace (PidNamespace,
the container case) and with vigild as an ordinary process (Run, where it must be a child
subreaper). The class WrapperBehaviour holds the tests; the two subclasses pick the mode.

The wrapped commands are small sh(1) scripts, so the tests need nothing but /bin/sh:
  - SIGLOG traps the forwardable signals and appends each signal's name to a log file, then
    idles until a stop file appears and exits 0.
  - ORPHANS double-forks N short-lived processes (`(true &)`), whose zombies are re-parented to
    vigild, plus one long-lived orphan whose pid it records.
"""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import sys
import termios
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import wait_until, holds_for, scaled  # noqa: E402

# The signals a container runtime or a terminal sends most; each must reach the child.
FORWARDED = ["TERM", "INT", "HUP", "QUIT", "USR1", "USR2", "WINCH"]
# Job-control signals that must never stop vigild; they are forwarded to the child like the rest.
JOB_CONTROL = ["TSTP", "TTIN", "TTOU"]

# $1: log file. Logs "ready", then one line per trapped signal; exits 0 once $1.stop exists.
# The trap text is fixed when the trap is set, so "$log" must not contain a double quote.
SIGLOG = r'''
log=$1
for s in TERM INT HUP QUIT USR1 USR2 WINCH ALRM CONT TSTP TTIN TTOU; do
    trap "echo $s >> \"$log\"" $s
done
echo ready >> "$log"
while [ ! -e "$log.stop" ]; do sleep 0.02; done
exit 0
'''

# $1: log file, $2: number of orphans. Makes $2 orphans that exit at once and one that sleeps
# (its pid goes to $1.pid; it lets go of vigild's stdout and stderr, so the test's readers see
# EOF when vigild exits), logs "spawned", then waits for $1.stop and exits 7.
ORPHANS = r'''
log=$1 n=$2 i=0
while [ $i -lt $n ]; do (true &); i=$((i + 1)); done
(sleep 1000 </dev/null >/dev/null 2>&1 & echo $! > "$log.pid")
echo spawned >> "$log"
while [ ! -e "$log.stop" ]; do sleep 0.02; done
exit 7
'''

# Every signal below 32 that a process can catch, minus SIGCHLD and the synchronous faults,
# minus SIGTERM and SIGINT (they end vigil-testsvc log-signals, so they are sent last).
EVERY_CATCHABLE = [s for s in range(1, 32) if s not in (
    signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD, signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE,
    signal.SIGILL, signal.SIGTRAP, signal.SIGSYS, signal.SIGABRT, signal.SIGTERM, signal.SIGINT)]

# Arguments that a careless parser would split, expand, drop or interpret.
TRICKY_ARGS = [
    "plain", "with space", "two  spaces", " ", "", "new\nline", "tab\there", "--", "-g",
    "--group", "--log-level", "debug", "-h", "--help", "--units", "$HOME", "*", "'single'",
    '"double"', "back\\slash", "ünïcödé", b"\xff\xfe not utf-8", "",
]


def sig_number(name: str) -> int:
    return getattr(signal, "SIG" + name)


class WrapperBehaviour:
    """The tests, run by both modes. A subclass sets `pid1` and provides start()."""

    pid1 = False

    def setUp(self) -> None:
        self.vigild = harness.vigild()
        self.tmp = harness.TempDir()
        self.addCleanup(self.tmp.cleanup)

    # -- mode plumbing

    def start(self, cmd, opts=(), inspect=True, **kwargs):
        """Starts `vigild OPTS -- CMD...`; the returned process is closed at cleanup."""
        argv = [self.vigild, *opts, "--", *cmd]
        if self.pid1:
            proc = harness.PidNamespace(argv, inspect=inspect, **kwargs)
        else:
            proc = harness.Run(argv, **kwargs)
        self.addCleanup(proc.close)
        return proc

    def vigild_pid(self, proc) -> int:
        return proc.init_pid if self.pid1 else proc.pid

    def host_pid(self, proc, pid: int) -> int:
        """The host pid of a pid that a process of the wrapped tree reported (e.g. from $!)."""
        if not self.pid1:
            return pid
        info = wait_until(lambda: proc.by_inner_pid(pid), 5, f"namespace pid {pid}")
        return info.pid

    def processes(self, proc) -> list:
        """vigild and everything below it (the whole namespace as PID 1)."""
        if self.pid1:
            return proc.processes()
        own = harness.proc_info(proc.pid)
        return ([own] if own else []) + harness.descendants(proc.pid)

    def child_of(self, proc):
        """The wrapped command: vigild's child whose process group is its own pid."""
        def find():
            for p in harness.children_of(self.vigild_pid(proc)):
                if p.pgid == p.pid and p.state != "Z":
                    return p
            return None
        return wait_until(find, 5, "vigild's child")

    def siglog(self, opts=()):
        log = self.tmp.file("signals.log")
        proc = self.start(["sh", "-c", SIGLOG, "siglog", log], opts=opts)
        wait_until(lambda: "ready" in harness.lines_of(log), 5, "the child's traps")
        return proc, log

    def stop_siglog(self, proc, log) -> None:
        with open(log + ".stop", "w"):
            pass
        self.assertEqual(proc.wait(10), 0)

    def assert_silent(self, proc) -> None:
        self.assertEqual(bytes(proc.stdout), b"")
        self.assertEqual(bytes(proc.stderr), b"")

    # -- exit status

    def test_exit_codes(self) -> None:
        for code in (0, 1, 42, 255):
            with self.subTest(code=code):
                proc = self.start(["sh", "-c", f"exit {code}"], inspect=False)
                self.assertEqual(proc.wait(10), code)
                self.assert_silent(proc)

    def test_killed_by_signal_is_128_plus_n(self) -> None:
        for name, code in (("KILL", 137), ("TERM", 143), ("USR1", 138)):
            with self.subTest(signal=name):
                proc = self.start(["sh", "-c", f"kill -s {name} $$"], inspect=False)
                self.assertEqual(proc.wait(10), code)
                self.assert_silent(proc)

    def test_child_killed_from_outside(self) -> None:
        proc, _ = self.siglog()
        child = self.child_of(proc)
        os.kill(child.pid, signal.SIGKILL)
        self.assertEqual(proc.wait(10), 137)
        self.assert_silent(proc)

    def test_success_prints_nothing_of_its_own(self) -> None:
        proc = self.start(["/bin/true"], inspect=False)
        self.assertEqual(proc.wait(10), 0)
        self.assert_silent(proc)
        proc = self.start(["sh", "-c", "echo out; echo err >&2"], inspect=False)
        self.assertEqual(proc.wait(10), 0)
        self.assertEqual(bytes(proc.stdout), b"out\n")
        self.assertEqual(bytes(proc.stderr), b"err\n")

    # -- exec failures

    def test_missing_command_is_127_with_reason(self) -> None:
        for cmd in ("/nonexistent/vigil-no-such-cmd", "vigil-no-such-cmd-in-path"):
            with self.subTest(cmd=cmd):
                began = time.monotonic()
                proc = self.start([cmd, "arg"], inspect=False)
                self.assertEqual(proc.wait(10), 127)
                self.assertLess(time.monotonic() - began, scaled(3), "not prompt")
                self.assertIn(f"vigild: exec {cmd}: No such file or directory",
                              bytes(proc.stderr).decode())
                self.assertEqual(bytes(proc.stdout), b"")

    def test_non_executable_command_is_126_with_reason(self) -> None:
        path = self.tmp.file("not-executable")
        with open(path, "w") as f:
            f.write("#!/bin/sh\nexit 0\n")
        os.chmod(path, 0o644)  # no x bit: even root gets EACCES from execve
        proc = self.start([path], inspect=False)
        self.assertEqual(proc.wait(10), 126)
        self.assertIn(f"vigild: exec {path}: Permission denied", bytes(proc.stderr).decode())

    # -- signals

    def test_each_signal_is_forwarded_to_the_child(self) -> None:
        proc, log = self.siglog()
        child = self.child_of(proc)
        for name in FORWARDED:
            with self.subTest(signal=name):
                os.kill(self.vigild_pid(proc), sig_number(name))
                wait_until(lambda: name in harness.lines_of(log), 5, f"SIG{name} in the child")
        # Each signal arrived once, at the child we started: vigild neither died nor respawned.
        self.assertEqual(harness.lines_of(log), ["ready"] + FORWARDED)
        self.assertEqual(self.child_of(proc).pid, child.pid)
        self.stop_siglog(proc, log)
        self.assert_silent(proc)

    def test_signals_go_to_the_child_only_unless_group(self) -> None:
        for opts, grandchild_gets_it in (((), False), (("-g",), True)):
            with self.subTest(opts=opts):
                log, log2 = self.tmp.file(f"a{len(opts)}.log"), self.tmp.file(f"b{len(opts)}.log")
                # A second logger in the background shares the child's process group.
                script = f'sh -c "$0" siglog "{log2}" & exec sh -c "$0" siglog "{log}"'
                proc = self.start(["sh", "-c", script, SIGLOG], opts=opts)
                for path in (log, log2):
                    wait_until(lambda: "ready" in harness.lines_of(path), 5, "both loggers")
                os.kill(self.vigild_pid(proc), signal.SIGUSR1)
                wait_until(lambda: "USR1" in harness.lines_of(log), 5, "SIGUSR1 in the child")
                if grandchild_gets_it:
                    wait_until(lambda: "USR1" in harness.lines_of(log2), 5, "SIGUSR1 in the group")
                else:
                    self.assertTrue(holds_for(lambda: "USR1" not in harness.lines_of(log2), 0.3),
                                    "without -g the group must not get the signal")
                for path in (log2, log):
                    open(path + ".stop", "w").close()
                self.assertEqual(proc.wait(10), 0)

    def test_job_control_signals_never_stop_vigild(self) -> None:
        proc, log = self.siglog()
        pid = self.vigild_pid(proc)
        for name in JOB_CONTROL:
            with self.subTest(signal=name):
                os.kill(pid, sig_number(name))
                wait_until(lambda: name in harness.lines_of(log), 5, f"SIG{name} forwarded")
                self.assertTrue(holds_for(lambda: harness.state_of(pid) not in ("T", "t"), 0.2),
                                f"vigild stopped on SIG{name}")
        # Still forwarding afterwards: not wedged.
        os.kill(pid, signal.SIGUSR2)
        wait_until(lambda: "USR2" in harness.lines_of(log), 5, "SIGUSR2 after job control")
        self.stop_siglog(proc, log)
        self.assert_silent(proc)

    def test_child_starts_with_empty_mask_and_default_dispositions(self) -> None:
        # vigild itself starts with SIGHUP, SIGINT and SIGUSR1 ignored (as under nohup or from
        # a non-interactive shell's background job); the child must not inherit that.
        cmd = [self.vigild, "--", "sleep", "1000"]
        script = 'trap "" HUP INT USR1; exec "$@"'
        argv = ["sh", "-c", script, "sh", *cmd]
        if self.pid1:
            proc = harness.PidNamespace(argv, init_name=os.path.basename(self.vigild))
        else:
            proc = harness.Run(argv)
        self.addCleanup(proc.close)
        child = self.child_of(proc)
        wait_until(lambda: harness.proc_info(child.pid).comm == "sleep", 5, "sleep to exec")
        info = harness.proc_info(child.pid)
        self.assertEqual(info.sig_blocked, 0, "the child's signal mask is not empty")
        self.assertEqual(info.sig_ignored, 0, "the child inherited ignored signals")
        self.assertEqual(info.pgid, info.pid, "the child is not in its own process group")
        vigild_info = harness.proc_info(self.vigild_pid(proc))
        self.assertNotEqual(vigild_info.pgid, info.pgid)
        os.kill(child.pid, signal.SIGTERM)
        self.assertEqual(proc.wait(10), 143)

    def test_idle_vigild_never_wakes_up(self) -> None:
        # No periodic wake-up (tini's sigtimedwait has a 1 s timeout): while nothing happens,
        # vigild is not scheduled at all.
        proc = self.start(["sleep", "1000"])
        child = self.child_of(proc)
        pid = self.vigild_pid(proc)
        wait_until(lambda: harness.state_of(pid) == "S", 5, "vigild to block")
        time.sleep(0.2)  # let start-up settle (the exec'd child's SIGCHLD-free start)
        before = harness.context_switches(pid)
        time.sleep(1.5)
        self.assertEqual(harness.context_switches(pid), before, "vigild woke up while idle")
        os.kill(child.pid, signal.SIGTERM)
        self.assertEqual(proc.wait(10), 143)

    # -- reaping

    def test_500_orphans_leave_no_zombie(self) -> None:
        log = self.tmp.file("orphans.log")
        proc = self.start(["sh", "-c", ORPHANS, "orphans", log, "500"])
        wait_until(lambda: "spawned" in harness.lines_of(log), 30, "500 orphans")
        sleeper = self.host_pid(proc, int(wait_until(
            lambda: harness.read_text(log + ".pid").strip(), 5, "the long-lived orphan")))
        self.addCleanup(harness.kill_quietly, sleeper)
        # The long-lived orphan was re-parented to vigild (PID 1, or a subreaper).
        self.assertEqual(harness.proc_info(sleeper).ppid, self.vigild_pid(proc))
        wait_until(lambda: not harness.zombies(self.processes(proc)), 10, "no zombie left")
        self.assertEqual(proc.poll(), None, "vigild ended before its child")
        open(log + ".stop", "w").close()
        # vigild exits with the child's status while the orphan still sleeps.
        self.assertEqual(proc.wait(10), 7)
        self.assert_silent(proc)

    def test_exits_with_child_status_while_orphan_runs(self) -> None:
        pidfile = self.tmp.file("orphan.pid")
        script = f'(sleep 1000 </dev/null >/dev/null 2>&1 & echo $! > "{pidfile}"); exit 3'
        proc = self.start(["sh", "-c", script], inspect=False)
        rc = proc.wait(5)
        self.assertLess(proc.ended - proc.started, scaled(2), "vigild waited for the orphan")
        sleeper = harness.read_text(pidfile).strip()
        if sleeper and not self.pid1:  # as PID 1 the namespace died with vigild
            harness.kill_quietly(int(sleeper))
        self.assertEqual(rc, 3)
        self.assertTrue(sleeper, "the orphan was not started")

    def test_orphan_exit_is_not_the_child_exit(self) -> None:
        log = self.tmp.file("log")
        # An orphan exits 5 while the child still runs; the child later exits 9.
        script = (f'(sh -c "exit 5" &); echo orphaned >> "{log}"; '
                  f'while [ ! -e "{log}.stop" ]; do sleep 0.02; done; exit 9')
        proc = self.start(["sh", "-c", script])
        wait_until(lambda: "orphaned" in harness.lines_of(log), 5)
        wait_until(lambda: not harness.zombies(self.processes(proc)), 5, "the orphan reaped")
        self.assertTrue(holds_for(lambda: proc.poll() is None, 0.3),
                        "vigild took the orphan's exit for its child's")
        open(log + ".stop", "w").close()
        self.assertEqual(proc.wait(10), 9)

    def test_every_catchable_signal_is_forwarded(self) -> None:
        # vigil-testsvc log-signals logs `signal testsvc SIGNAME MS` for every catchable
        # signal below 32 (not SIGCHLD, not the synchronous ones); only SIGTERM/SIGINT end it.
        svc, log = harness.testsvc(), self.tmp.file("testsvc.log")
        proc = self.start([svc, "--log", log, "log-signals", "lines", "1", "sleep"])
        wait_until(lambda: b"testsvc seq=1" in proc.stdout, 5, "the handlers")
        for sig in EVERY_CATCHABLE:
            name = harness.signal_name(sig)
            with self.subTest(signal=name):
                os.kill(self.vigild_pid(proc), sig)
                wait_until(lambda: f"signal testsvc {name}" in harness.read_text(log), 5,
                           f"{name} in the child")
        os.kill(self.vigild_pid(proc), signal.SIGTERM)
        self.assertEqual(proc.wait(10), 143)
        self.assertEqual(bytes(proc.stderr), b"")

    def test_500_testsvc_orphans_are_all_reaped(self) -> None:
        # vigil-testsvc orphan 500 100: 500 children each fork a grandchild and exit; the 500
        # grandchildren are re-parented to vigild and exit after 100 ms.
        svc, log = harness.testsvc(), self.tmp.file("testsvc.log")
        proc = self.start([svc, "--log", log, "orphan", "500", "100", "sleep"])
        wait_until(lambda: harness.read_text(log).count("\norphan ") >= 500, 30, "500 orphans")
        child = self.child_of(proc)
        # What must be left: vigild and its child, and no zombie anywhere.
        expected = {self.vigild_pid(proc), child.pid}
        wait_until(lambda: {p.pid for p in self.processes(proc)} == expected, 15,
                   "every orphan exited and was reaped")
        self.assertEqual(proc.poll(), None)
        os.kill(child.pid, signal.SIGTERM)
        self.assertEqual(proc.wait(10), 143)

    def test_inherited_descriptors_reach_the_child(self) -> None:
        # As with tini, a descriptor vigild inherited (socket activation, --preserve-fds)
        # reaches the child with the same number, and nothing of vigild's own does: after
        # closing 9, ls sees only 0, 1, 2 and its own directory descriptor (3).
        read_end, write_end = os.pipe()  # both close-on-exec
        passed = os.dup2(write_end, 9, inheritable=True)
        self.addCleanup(os.close, read_end)
        script = "echo through-9 >&9 && exec 9>&- && ls /proc/self/fd"
        proc = self.start(["sh", "-c", script], inspect=False, pass_fds=(passed,))
        os.close(passed)
        os.close(write_end)
        self.assertEqual(proc.wait(10), 0)
        self.assertEqual(os.read(read_end, 100), b"through-9\n")
        self.assertEqual(sorted(bytes(proc.stdout).split()), [b"0", b"1", b"2", b"3"])

    # -- arguments

    def test_arguments_reach_the_child_byte_for_byte(self) -> None:
        dump = 'for a; do printf "%s\\0" "$a"; done'
        proc = self.start(["sh", "-c", dump, "dump", *TRICKY_ARGS], inspect=False)
        self.assertEqual(proc.wait(10), 0)
        expected = b"".join(os.fsencode(a) + b"\0" for a in TRICKY_ARGS)
        self.assertEqual(bytes(proc.stdout), expected)
        self.assertEqual(bytes(proc.stderr), b"")


class WrapperAsPid1Test(WrapperBehaviour, unittest.TestCase):
    """vigild is PID 1 of a new PID namespace (a container's init)."""

    pid1 = True

    def test_signals_from_inside_the_namespace(self) -> None:
        proc, log = self.siglog()
        for name in FORWARDED:
            with self.subTest(signal=name):
                done = proc.run_inside(["kill", "-s", name, "1"])
                self.assertEqual(done.returncode, 0, done.stderr)
                wait_until(lambda: name in harness.lines_of(log), 5, f"SIG{name} from inside")
        self.assertEqual(harness.lines_of(log), ["ready"] + FORWARDED)
        self.stop_siglog(proc, log)

    def test_namespace_is_empty_after_exit(self) -> None:
        proc = self.start(["sh", "-c", "sleep 1000 & exec sleep 1000"])
        child = self.child_of(proc)
        os.kill(child.pid, signal.SIGTERM)
        self.assertEqual(proc.wait(10), 143)
        wait_until(lambda: not proc.processes(), 5, "the namespace to empty")


class WrapperNotPid1Test(WrapperBehaviour, unittest.TestCase):
    """vigild is an ordinary process: it must register as a child subreaper."""

    pid1 = False

    # Subreaper registration is checked by its effect in test_500_orphans_leave_no_zombie:
    # the long-lived orphan is re-parented to vigild, not to the host's init.


class WrapperCommandLineTest(unittest.TestCase):
    """vigild reads a wrapper command line by hand (the fast path) and hands anything else to
    its full option parser (CLI11): both must agree on what a command line means and on the
    words of every error."""

    def setUp(self) -> None:
        self.vigild = harness.vigild()
        self.tmp = harness.TempDir()
        self.addCleanup(self.tmp.cleanup)

    def run_vigild(self, args, env=None):
        proc = harness.Run([self.vigild, *args], env=env)
        self.addCleanup(proc.close)
        return proc

    def test_options_of_the_fast_path(self) -> None:
        for opts, verbose in ((["-g"], False), (["--group"], False), (["-g", "-g"], False),
                              (["--log-level", "info"], False), (["--log-level=warn"], False),
                              (["--log-level", "debug"], True), (["--log-level=debug"], True),
                              (["--log-level", "debug", "-g"], True),
                              (["--group", "--log-level=debug"], True)):
            with self.subTest(opts=opts):
                proc = self.run_vigild([*opts, "--", "sh", "-c", "exit 5"])
                self.assertEqual(proc.wait(10), 5)
                err = bytes(proc.stderr).decode()
                if verbose:
                    self.assertIn("vigild: spawned sh as pid ", err)
                    self.assertRegex(err, r"vigild: pid \d+ ended; exiting with status 5\n")
                else:
                    self.assertEqual(err, "")

    def test_other_options_still_reach_wrapper_mode(self) -> None:
        # Options the fast path does not know go through the full parser, which then runs the
        # command all the same (a daemon option has no effect in wrapper mode).
        for opts in (["--units", "/nonexistent"], ["--socket", "/nonexistent/s", "-g"],
                     ["--units=/nonexistent", "--log-level", "debug"]):
            with self.subTest(opts=opts):
                proc = self.run_vigild([*opts, "--", "sh", "-c", "exit 4"])
                self.assertEqual(proc.wait(10), 4)
                err = bytes(proc.stderr).decode()
                self.assertEqual("vigild: spawned sh as pid " in err, "debug" in opts, err)

    def test_bad_command_lines_fail_with_the_parsers_words(self) -> None:
        marker = self.tmp.file("ran")
        cmd = ["sh", "-c", f'touch "{marker}"']
        for args, words in (
                (["--log-level", "bogus", "--", *cmd], "--log-level: bogus not in"),
                (["--log-level", "debug", "--log-level", "warn", "--", *cmd], "--log-level"),
                (["--log-level", "--", *cmd], "--log-level"),
                (["--log-level=", "--", *cmd], "--log-level"),
                (["-x", "--", *cmd], "The following argument was not expected: -x"),
                (["-gx", "--", *cmd], "The following argument was not expected: -x"),
                (["--", ], "vigild: nothing to run after '--'"),
                (["-g", "--"], "vigild: nothing to run after '--'")):
            with self.subTest(args=args):
                proc = self.run_vigild(args)
                self.assertEqual(proc.wait(10), 2)
                self.assertIn(words, bytes(proc.stderr).decode())
                self.assertEqual(bytes(proc.stdout), b"")
                self.assertFalse(os.path.exists(marker), "the command ran")

    def test_environment_is_passed_on_as_it_is(self) -> None:
        # Byte for byte and in order: vigild hands its own environment to the command.
        env = {"ZED": "last=first", "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               "EMPTY": "", "SPACES": " a  b ", "A": "1"}
        proc = self.run_vigild(["--", "env", "-0"], env=env)
        self.assertEqual(proc.wait(10), 0)
        expected = b"".join(f"{k}={v}".encode() + b"\0" for k, v in env.items())
        self.assertEqual(bytes(proc.stdout), expected)


class WrapperTerminalTest(unittest.TestCase):
    """With a controlling terminal, the child's group is the terminal's foreground group, so
    ^C typed at the terminal reaches the child, and vigild still works afterwards. Run with
    vigild as a session leader (`setsid -c`) and as PID 1 of a namespace in such a session."""

    def start_on_terminal(self, argv, tostop: bool = False):
        """Runs argv as a session leader whose controlling terminal is a new pty; returns
        (Popen, master fd)."""
        master, slave = pty.openpty()
        self.addCleanup(os.close, master)
        if tostop:  # background writers to the terminal get SIGTTOU
            attrs = termios.tcgetattr(slave)
            attrs[3] |= termios.TOSTOP
            termios.tcsetattr(slave, termios.TCSANOW, attrs)
        # setsid -c: a new session whose controlling terminal is stdin (the pty's slave).
        proc = subprocess.Popen(["setsid", "-c", *argv], stdin=slave, stdout=slave, stderr=slave)
        os.close(slave)
        self.addCleanup(self.kill_session, proc)
        return proc, master

    @staticmethod
    def kill_session(proc) -> None:
        # The session's id is setsid's pid; whatever is left of it (the child, if vigild was
        # killed first) still has that id.
        for p in harness.all_processes():
            if p.sid == proc.pid:
                harness.kill_quietly(p.pid)
        proc.wait()

    def test_vigild_writes_to_its_terminal_in_the_background(self) -> None:
        # With TOSTOP, a background process that writes to its terminal gets SIGTTOU. vigild
        # is in the background once its child owns the terminal; its debug lines must neither
        # stop it (default action) nor wedge it (a caught SIGTTOU restarts the write forever).
        tmp = harness.TempDir()
        self.addCleanup(tmp.cleanup)
        log = tmp.file("signals.log")
        proc, master = self.start_on_terminal(
            [harness.vigild(), "--log-level", "debug", "--", "sh", "-c", SIGLOG, "siglog", log],
            tostop=True)
        wait_until(lambda: "ready" in harness.lines_of(log), 5, "the child's traps")
        child = wait_until(lambda: harness.children_of(proc.pid), 5, "vigild's child")[0]
        self.assertEqual(os.tcgetpgrp(master), child.pid)
        output = bytearray()
        os.set_blocking(master, False)

        def read_master() -> bytes:
            try:
                output.extend(os.read(master, 65536))
            except (BlockingIOError, OSError):
                pass
            return bytes(output)

        for sig in (signal.SIGUSR1, signal.SIGUSR2):
            os.kill(proc.pid, sig)
            name = harness.signal_name(sig)
            wait_until(lambda: name[3:] in harness.lines_of(log), 5, f"{name} forwarded")
            wait_until(lambda: name.encode() in read_master(), 5, f"vigild's line about {name}")
            self.assertTrue(holds_for(lambda: harness.state_of(proc.pid) not in ("T", "t"), 0.2),
                            "vigild stopped writing to its terminal")
        open(log + ".stop", "w").close()
        try:
            self.assertEqual(proc.wait(scaled(10)), 0)
        except subprocess.TimeoutExpired:
            self.fail("vigild did not exit after its child")

    def run_on_terminal(self, pid1: bool) -> None:
        tmp = harness.TempDir()
        self.addCleanup(tmp.cleanup)
        log = tmp.file("signals.log")
        argv = harness.unshare_prefix() + ["--"] if pid1 else []
        argv += [harness.vigild(), "--", "sh", "-c", SIGLOG, "siglog", log]
        proc, master = self.start_on_terminal(argv)
        wait_until(lambda: "ready" in harness.lines_of(log), 5, "the child's traps")
        if pid1:  # setsid execs unshare, whose only child is vigild
            vigild_pid = wait_until(lambda: harness.children_of(proc.pid), 5)[0].pid
        else:
            vigild_pid = proc.pid
        child = wait_until(lambda: harness.children_of(vigild_pid), 5, "vigild's child")[0]
        # What the kernel says: the terminal's foreground group is the child's, not vigild's.
        self.assertEqual(os.tcgetpgrp(master), child.pid)
        os.write(master, b"\x03")  # ^C
        wait_until(lambda: "INT" in harness.lines_of(log), 5, "SIGINT from the terminal")
        self.assertEqual(harness.lines_of(log), ["ready", "INT"])
        open(log + ".stop", "w").close()
        try:
            self.assertEqual(proc.wait(scaled(10)), 0)
        except subprocess.TimeoutExpired:
            self.fail("vigild did not exit after its child")
        # Nothing of vigild's own on the terminal (the child printed nothing either).
        os.set_blocking(master, False)
        try:
            out = os.read(master, 4096)
        except (BlockingIOError, OSError):
            out = b""
        self.assertNotIn(b"vigild", out)

    def test_ctrl_c_reaches_the_child(self) -> None:
        self.run_on_terminal(pid1=False)

    def test_ctrl_c_reaches_the_child_as_pid1(self) -> None:
        self.run_on_terminal(pid1=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
