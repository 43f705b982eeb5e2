"""The supervision daemon with real processes: vigild as PID 1 of a fresh PID
namespace, services played by vigil-testsvc, and every verdict read from /proc or from the
services' own start/stop log. Test names carry the docs/otp-semantics.md item they exercise."""

from __future__ import annotations

import os
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from daemon import FAST, Daemon, cmdline  # noqa: E402
from harness import holds_for, wait_until  # noqa: E402


def service(d: Daemon, ident: str, *modes: str, **fields) -> dict:
    """A testsvc unit. It reports ready on fd 3 right after logging its start line, so vigild
    starts the next sibling only then and the shared log's start order is vigild's order."""
    unit = {"command": d.svc(ident, "ready-fd", "3", *(modes or ("sleep",))),
            "ready": {"fd": 3}, "backoff": FAST}
    unit.update(fields)
    return unit


def service_cgroup_folder(pid: int):
    """The cgroup v2 folder of process `pid` when vigild made it one (…/vigil.ID/UNIT), else
    None."""
    mount = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            if post.startswith("cgroup2 "):
                mount = pre.split()[4]
    with open(f"/proc/{pid}/cgroup") as f:
        path = next((ln[3:].strip() for ln in f if ln.startswith("0::")), None)
    if mount is None or path is None or "/vigil." not in path:
        return None
    return mount + path


class Supervision(unittest.TestCase):
    def daemon(self, build, args: tuple = (), inspect: bool = True) -> Daemon:
        """build(d) returns the units; the daemon starts once they are written. inspect=False
        for a vigild that may exit before the test could find it."""
        d = Daemon({}, args=args, start=False)
        self.addCleanup(d.close)
        d.write_units(build(d))
        d.start(inspect=inspect)
        return d

    def test_otp01_otp38_start_order_then_reverse_depth_first_stop(self):
        d = self.daemon(lambda d: {
            "a": service(d, "a"),
            "sup1": {"kind": "supervisor", "after": ["a"]},
            "b": service(d, "b", parent="sup1"),
            "c": service(d, "c", parent="sup1", after=["b"]),
            "d": service(d, "d", after=["sup1"]),
        })
        self.assertEqual(d.wait_starts(4), ["a", "b", "c", "d"])
        d.ns.signal_init(signal.SIGTERM)
        self.assertEqual(d.wait_exit(), 0)
        self.assertEqual(d.stops(), ["d", "c", "b", "a"])
        self.assertEqual(d.ns.processes(), [])

    def test_otp14_one_for_one_restarts_only_the_dead_child(self):
        d = self.daemon(lambda d: {n: service(d, n) for n in ("one", "two", "three")})
        d.wait_starts(3)
        pids = {n: d.wait_pid(n) for n in ("one", "two", "three")}
        os.kill(pids["two"], signal.SIGKILL)
        new_two = d.wait_pid("two", other_than=pids["two"])
        self.assertNotEqual(new_two, pids["two"])
        self.assertTrue(holds_for(lambda: d.main_pid("one") == pids["one"]
                                  and d.main_pid("three") == pids["three"], 0.3))
        self.assertEqual(d.stops(), [])  # nobody else got a signal

    def test_otp16_rest_for_one_restarts_the_rest_in_order(self):
        d = self.daemon(lambda d: {
            "root": {"kind": "supervisor", "strategy": "rest_for_one", "intensity": 10},
            "s1": service(d, "s1"),
            "s2": service(d, "s2", after=["s1"]),
            "s3": service(d, "s3", after=["s2"]),
            "s4": service(d, "s4", after=["s3"]),
        })
        d.wait_starts(4)
        pids = {n: d.wait_pid(n) for n in ("s1", "s2", "s3", "s4")}
        os.kill(pids["s2"], signal.SIGKILL)
        d.wait_starts(7)
        self.assertEqual(d.stops(), ["s4", "s3"])
        self.assertEqual(d.starts()[4:], ["s2", "s3", "s4"])
        for n in ("s2", "s3", "s4"):
            self.assertNotEqual(d.wait_pid(n), pids[n])
        self.assertEqual(d.main_pid("s1"), pids["s1"])

    def test_otp15_one_for_all_stops_survivors_in_reverse_then_starts_all(self):
        d = self.daemon(lambda d: {
            "root": {"kind": "supervisor", "strategy": "one_for_all", "intensity": 10},
            "x1": service(d, "x1"),
            "x2": service(d, "x2", after=["x1"]),
            "x3": service(d, "x3", after=["x2"]),
        })
        d.wait_starts(3)
        pids = {n: d.wait_pid(n) for n in ("x1", "x2", "x3")}
        os.kill(pids["x2"], signal.SIGKILL)
        d.wait_starts(6)
        self.assertEqual(d.stops(), ["x3", "x1"])
        self.assertEqual(d.starts()[3:], ["x1", "x2", "x3"])
        for n in ("x1", "x2", "x3"):
            self.assertNotEqual(d.wait_pid(n), pids[n])

    def test_otp30_escalation_multiplies_then_vigild_exits_4(self):
        d = self.daemon(lambda d: {
            "root": {"kind": "supervisor", "intensity": 1, "period": "1h"},
            "sup1": {"kind": "supervisor", "intensity": 1, "period": "1h"},
            "w": service(d, "w", "sleep", "100", "exit", "1", parent="sup1"),
        }, inspect=False)
        self.assertEqual(d.wait_exit(30), 4)
        self.assertEqual(d.starts(), ["w"] * 4)
        self.assertIn("giving up", d.stderr())

    def test_otp03_start_failure_rolls_back_and_exits_3(self):
        d = self.daemon(lambda d: {
            "a": service(d, "a"),
            "b": {"command": ["/nonexistent/program", "x"], "after": ["a"]},
            "c": service(d, "c", after=["b"]),
        }, inspect=False)
        self.assertEqual(d.wait_exit(), 3)
        self.assertEqual(d.starts(), ["a"])
        self.assertEqual(d.stops(), ["a"])
        self.assertIn("exec /nonexistent/program: No such file or directory", d.stderr())

    def test_otp28_a_removed_temporary_child_runs_again_when_its_supervisor_restarts(self):
        # OTP deletes a temporary child that ended; a restart of its supervisor runs init/1
        # again and brings it back. vigild must still know how to run it (the soak once found
        # its unit freed, the spawn failing, and the supervisor's start looping).
        d = self.daemon(lambda d: {
            "sup": {"kind": "supervisor"},
            "t": service(d, "t", parent="sup", restart="temporary"),
            "a": service(d, "a", parent="sup", after=["t"]),
        })
        d.wait_starts(2)
        old = {n: d.wait_pid(n) for n in ("t", "a")}
        self.assertEqual(d.ctl("stop", "t").returncode, 0)
        d.wait_gone("t")
        wait_until(lambda: d.ctl("status", "t").returncode != 0, 5, "t to be removed")
        self.assertEqual(d.ctl("restart", "sup").returncode, 0)
        new_t = d.wait_pid("t", other_than=old["t"])
        new_a = d.wait_pid("a", other_than=old["a"])
        self.assertEqual(d.wait_starts(4)[-2:], ["t", "a"])  # a exec'd; its line may lag
        wait_until(lambda: d.status("t")["state"] == "running"
                   and d.status("t")["pid"] is not None, 5, "t to run per status")
        self.assertIsNotNone(harness.proc_info(new_t))
        self.assertIsNotNone(harness.proc_info(new_a))
        self.assertEqual(d.status("sup")["restarts"], 0)
        self.assertNotIn("failed to start", d.stderr())

    def test_parallel_supervisor_starts_and_stops_its_children_together(self):
        # 12 services that log and ignore SIGTERM (30 s stop timeout): one at a time, only the
        # first would get a SIGTERM within the wait below; together, all of them do. `last` is
        # after w01: it starts once w01 has started, and w01 gets its SIGTERM only once `last`
        # (which dies of it) is down.
        n = 12

        def units(d):
            u = {"pool": {"kind": "supervisor", "parallel": True}}
            for i in range(1, n + 1):
                u[f"w{i:02d}"] = service(d, f"w{i:02d}", "log-signals", "ignore-term", "sleep",
                                         parent="pool", stop={"timeout": "30s"})
            u["last"] = service(d, "last", "log-signals", "sleep", parent="pool",
                                after=["w01"])
            return u
        d = self.daemon(units)
        names = [f"w{i:02d}" for i in range(1, n + 1)] + ["last"]
        starts = d.wait_starts(n + 1)
        self.assertEqual(sorted(starts), sorted(names))
        self.assertLess(starts.index("w01"), starts.index("last"))
        pids = {m: d.wait_pid(m) for m in names}

        def termed():
            return [line.split()[1] for line in harness.lines_of(d.log)
                    if line.startswith("signal ") and line.split()[2:3] == ["SIGTERM"]]
        self.assertEqual(d.ctl("stop", "--no-wait", "pool", timeout=30).returncode, 0)
        wait_until(lambda: set(termed()) == set(names), 10,
                   f"every service of the pool to get its SIGTERM (have {termed()})")
        got = termed()
        self.assertGreater(got.index("w01"), got.index("last"))
        # The SIGTERMs came while the services still ran: none was waited for.
        for m in names[:n]:
            self.assertIsNotNone(harness.proc_info(pids[m]), m)

    def test_otp44_auto_shutdown_exits_with_the_significant_childs_status(self):
        # "aside" starts first (start order is by name) and is ready, its SIGTERM handler in
        # place, before "main" starts: named "side", it started after main and could still be
        # starting under a sanitizer when main's exit 200 ms later stopped the tree.
        d = self.daemon(lambda d: {
            "root": {"kind": "supervisor", "auto_shutdown": "any_significant"},
            "aside": service(d, "aside"),
            "main": service(d, "main", "sleep", "200", "exit", "42",
                            restart="temporary", significant=True),
        }, inspect=False)
        self.assertEqual(d.wait_exit(), 42)
        self.assertEqual(d.stops(), ["aside"])

    def test_otp35_stop_timeout_then_sigkill(self):
        d = self.daemon(lambda d: {
            "stubborn": service(d, "stubborn", "ignore-term", "mark", "armed", "sleep",
                                stop={"timeout": "300ms"}),
        })
        wait_until(lambda: ("mark", "stubborn", "armed") in d.events(), 10)
        d.ns.signal_init(signal.SIGTERM)
        self.assertEqual(d.wait_exit(), 0)
        self.assertRegex(d.stderr(), r"stubborn\[\d+\]: .*SIGKILL")

    def test_second_sigterm_kills_what_is_left(self):
        d = self.daemon(lambda d: {
            "stubborn": service(d, "stubborn", "ignore-term", "mark", "armed", "sleep",
                                stop={"timeout": "1h"}),
        })
        wait_until(lambda: ("mark", "stubborn", "armed") in d.events(), 10)
        d.ns.signal_init(signal.SIGTERM)
        # The first SIGTERM waits for the (hour-long) stop timeout...
        self.assertTrue(holds_for(lambda: d.ns.poll() is None, 0.3))
        d.ns.signal_init(signal.SIGTERM)
        # ...the second kills what is left, so vigild exits now.
        self.assertEqual(d.wait_exit(10), 0)

    def test_a_stop_leaves_no_process_of_the_service(self):
        script = "sleep 1000 & sleep 1000 & (sleep 1000 &) ; wait"
        d = self.daemon(lambda d: {
            "family": {"command": ["sh", "-c", script], "backoff": FAST},
            "other": service(d, "other"),
        })
        d.wait_socket()
        family = wait_until(lambda: [p for p in d.processes() if p.comm == "sleep"
                                     and len({q.pgid for q in d.processes()
                                              if q.comm == "sleep"}) == 1
                                     and len([q for q in d.processes()
                                              if q.comm == "sleep"]) == 3], 10,
                            "three sleeps in one group")
        pgid = family[0].pgid
        r = d.ctl("stop", "family")
        self.assertEqual(r.returncode, 0, r.stderr)
        wait_until(lambda: not [p for p in d.processes() if p.pgid == pgid], 10,
                   "the service's process group to be empty")
        self.assertEqual(d.status("family")["state"], "stopped")
        self.assertEqual(d.ns.zombies(), [])

    def escaping_family(self, args: tuple = ()):
        """A service whose shell starts a `sleep 1001` in a session (and group) of its own, with
        its output elsewhere, as a daemon would, then becomes `sleep 1000`. Returns the daemon
        and the escaped process (ProcInfo)."""
        d = self.daemon(lambda d: {"fam": {
            "command": ["sh", "-c", "setsid sleep 1001 >/dev/null 2>&1 & exec sleep 1000"],
            "backoff": FAST, "stop": {"timeout": "5s"}}}, args=args)
        d.wait_socket()

        def escaped():
            for p in d.processes():
                if p.state != "Z" and cmdline(p.pid) == ["sleep", "1001"]:
                    # Read again: `p` may predate the exec, and so setsid(1)'s setsid().
                    return harness.proc_info(p.pid)
            return None
        esc = wait_until(escaped, 10, "the escaped sleep")
        main = wait_until(lambda: [p for p in d.processes()
                                   if cmdline(p.pid) == ["sleep", "1000"]], 10)[0]
        self.assertNotEqual(esc.sid, main.sid)
        self.assertNotEqual(esc.pgid, main.pgid)
        return d, esc

    def test_a_stop_reaches_a_process_that_left_the_session(self):
        d, esc = self.escaping_family()
        if "without cgroups" in d.stderr():
            self.skipTest("no writable cgroup2 here: " + d.stderr().strip().splitlines()[0])
        r = d.ctl("stop", "fam")
        self.assertEqual(r.returncode, 0, r.stderr)
        wait_until(lambda: harness.proc_info(esc.pid) is None, 10, "the escaped sleep's end")
        self.assertEqual(d.status("fam")["state"], "stopped")
        self.assertEqual(d.status("fam")["left_behind"], [])
        self.assertEqual(d.ns.zombies(), [])

    def test_the_cgroup_folder_of_a_killed_vigild_is_removed_by_the_next(self):
        d1 = self.daemon(lambda d: {"a": service(d, "a")})
        pid = d1.wait_pid("a")
        folder = service_cgroup_folder(pid)
        if folder is None:
            self.skipTest("no cgroup for services here: " + d1.stderr().strip())
        parent = os.path.dirname(folder)
        self.assertTrue(os.path.basename(parent).startswith("vigil."), parent)
        d1.ns.signal_init(signal.SIGKILL)  # no clean-up: the kernel drops its lock
        d1.wait_exit()
        # Another test's vigild (meson runs integration tests beside each other), started once
        # the services are gone, may sweep the folder before d2 does: that is the same rule.
        # (read_text: "" once the folder is gone.)
        wait_until(lambda: harness.read_text(os.path.join(folder, "cgroup.procs")) == "", 10,
                   "its services gone")
        d2 = self.daemon(lambda d: {"a": service(d, "a")})
        mine = os.path.dirname(service_cgroup_folder(d2.wait_pid("a")))
        self.assertNotEqual(mine, parent)
        wait_until(lambda: not os.path.exists(parent), 10, "the gone vigild's folder removed")
        self.assertTrue(os.path.isdir(mine))  # its own stays, locked

    def test_vigilds_started_together_each_get_a_cgroup_folder_of_their_own(self):
        # Started in the same clock tick, two vigilds have the same id (pid 1, same start time),
        # and each one's start sweeps the others' new folders whose lock is free: each must
        # still end with a folder of its own, locked, holding its service.
        daemons = []
        for _ in range(12):
            d = Daemon({}, start=False)
            self.addCleanup(d.close)
            d.write_units({"a": service(d, "a")})
            daemons.append(d)
        for d in daemons:
            d.start(inspect=False)
        for d in daemons:
            d.ns.inspect()
        found = [service_cgroup_folder(d.wait_pid("a")) for d in daemons]
        if found == [None] * len(daemons):
            self.skipTest("no cgroup for services here: " + daemons[0].stderr().strip())
        for d, folder in zip(daemons, found):
            self.assertIsNotNone(folder, d.stderr())
            self.assertNotIn("without cgroups", d.stderr())
            self.assertTrue(os.path.basename(os.path.dirname(folder)).startswith("vigil."))
        self.assertEqual(len({os.path.dirname(f) for f in found}), len(daemons), found)

    def test_without_cgroups_status_lists_what_a_stop_cannot_reach(self):
        d, esc = self.escaping_family(args=("--no-cgroups",))
        r = d.ctl("stop", "fam")
        self.assertEqual(r.returncode, 0, r.stderr)
        wait_until(lambda: d.status("fam")["state"] == "stopped", 10, "the stop")
        left = wait_until(lambda: d.status("fam")["left_behind"], 10, "the list")
        self.assertEqual(left, [esc.inner_pid])
        # The kernel agrees: it is alive, in a session of its own.
        info = harness.proc_info(esc.pid)
        self.assertIsNotNone(info)
        self.assertNotEqual(info.state, "Z")
        self.assertIn(f"left behind: {esc.inner_pid}", d.ctl("status", "fam").stdout)
        self.assertIn(f"processes left behind: {esc.inner_pid}", d.stderr())
        os.kill(esc.pid, signal.SIGKILL)
        wait_until(lambda: d.status("fam")["left_behind"] == [], 10, "the list to empty")

    def test_500_orphans_leave_no_zombie(self):
        d = self.daemon(lambda d: {
            "breeder": service(d, "breeder", "orphan", "500", "50", "mark", "bred", "sleep"),
        })
        wait_until(lambda: ("mark", "breeder", "bred") in d.events(), 30)
        wait_until(lambda: len([e for e in d.events("orphan")]) >= 500, 30, "500 orphans")
        # vigild's own helper process (its spawner) is a child too: only testsvc processes
        # other than the breeder would be orphans left behind.
        wait_until(lambda: not d.ns.zombies() and
                   not [p for p in d.processes() if p.ppid == d.ns.init_pid
                        and p.comm != "vigild" and p.pid != d.main_pid("breeder")], 20,
                   "every orphan to be reaped")
        version = d.ctl_json("version")
        self.assertGreaterEqual(version["orphans_reaped"], 500)

    def test_chdir_failure_is_reported_with_the_path(self):
        d = self.daemon(lambda d: {
            "root": {"kind": "supervisor", "intensity": 2, "period": "1h"},
            "vanishing": service(d, "vanishing", "sleep", "100", "exit", "1",
                                 cwd="/nonexistent-dir-for-vigil"),
        }, inspect=False)
        self.assertEqual(d.wait_exit(), 3)
        self.assertIn("chdir /nonexistent-dir-for-vigil: No such file or directory",
                      d.stderr())


if __name__ == "__main__":
    unittest.main()
