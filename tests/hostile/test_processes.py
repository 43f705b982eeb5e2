"""Hostile: services as processes (docs/security.md §3, §4, §5 and §6).

A service can do what any process can: flood the notify socket it was given (or one it can
reach: they are mode 0666, the sender's credentials being the check), crash just late enough
to slip past a naive backoff, leave its session with setsid() and ignore SIGTERM, die so that
its pid is reused by someone else. And vigild's own helper that spawns services can die. None
of it may freeze vigild, flood its journal, restart services in a loop, leave a process behind
or signal a process that is not the service's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import unittest

from hostile import (FAST, PATIENT_ROOT, Daemon, HostileCase, cpu_ms, environ_of, harness,
                     scaled, sh, system_python, wait_until)

# Sends N datagrams to a notify socket, from whatever process runs it: READY=1, keys that
# would hand over or change the service (MAINPID=, WATCHDOG_USEC=, STATUS=, STOPPING=), and
# garbage, some of it with descriptors attached (SCM_RIGHTS) or over the 4096-byte limit.
# Prints how many it sent. Every send is bounded (a socket that stops taking datagrams fails
# the flood after 5 s).
FLOODER = r"""
import os, socket, sys
path, n, mainpid = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.settimeout(5)
fd = os.open("/dev/null", os.O_RDONLY)
msgs = [b"READY=1", b"READY=1\nSTATUS=pwned", b"MAINPID=" + mainpid.encode(), b"MAINPID=1",
        b"WATCHDOG_USEC=1", b"WATCHDOG=trigger", b"STOPPING=1", b"STATUS=" + b"x" * 600,
        b"\xff\xfe\x00garbage\x00=\n=\n", b"", b"=" * 4096, b"A" * 8000, b"ERRNO=999999999999",
        b"EXTEND_TIMEOUT_USEC=18446744073709551615", b"FDSTORE=1", b"BARRIER=1"]
sent = 0
for i in range(n):
    m = msgs[i % len(msgs)]
    try:
        if m in (b"FDSTORE=1", b"BARRIER=1"):
            s.sendmsg([m], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, bytes(
                __import__("array").array("i", [fd] * 4)))], 0, path)
        else:
            s.sendto(m, path)
        sent += 1
    except OSError as e:
        if e.errno == 90:       # EMSGSIZE: the kernel refused the 8000-byte one; go on
            sent += 1
            continue
        print(f"send {i}: {e}", file=sys.stderr)
        break
print(sent)
"""


def cgroup2_mount() -> str:
    """The mount point of the cgroup v2 hierarchy, or ''."""
    for line in harness.read_text("/proc/self/mountinfo").splitlines():
        left, _, right = line.partition(" - ")
        if right.split()[:1] == ["cgroup2"]:
            return left.split()[4]
    return ""


def cgroup_of(pid: int) -> str:
    for line in harness.read_text(f"/proc/{pid}/cgroup").splitlines():
        if line.startswith("0::"):
            return line[3:]
    return ""


def writable_cgroup2() -> str:
    """Why cgroup v2 cannot be used here, or '' when this process can make a cgroup below its
    own (as vigild, run by it, would)."""
    mount = cgroup2_mount()
    if not mount:
        return "no cgroup2 mount"
    probe = os.path.join(mount, cgroup_of(os.getpid()).lstrip("/"), f"vigil-hx-{os.getpid()}")
    try:
        os.mkdir(probe)
        os.rmdir(probe)
    except OSError as e:
        return f"cannot make a cgroup: {e}"
    return ""


class Processes(HostileCase):
    # ------------------------------------------------------------------ notify flood

    def notify_socket(self, d: Daemon, unit: str) -> str:
        env = environ_of(d.main_pid(unit)).split(b"\0")
        for var in env:
            if var.startswith(b"NOTIFY_SOCKET="):
                return var[len(b"NOTIFY_SOCKET="):].decode()
        self.fail(f"{unit} has no NOTIFY_SOCKET")

    def test_notify_flood_from_processes_that_are_not_the_service(self):
        d = self.vigil(lambda d: {
            "notifier": {"command": d.svc("notifier", "log-signals", "notify-ready", "sleep"),
                         "ready": {"notify": True, "timeout": "10s"}, "watchdog": "1h"}},
            wait_running=("notifier",))
        before = d.status("notifier")
        self.assertTrue(before["ready"])
        pid = d.main_pid("notifier")
        path = self.notify_socket(d, "notifier")
        bystander_inner = harness.proc_info(d.base.bystander).inner_pid
        journal = len(self.journal(d))
        os.chmod(d.dir, 0o755)
        # From inside the namespace (a pid vigild can see, not the service's), then from outside
        # (a pid it cannot: 0). One flooder at a time: each takes a core, vigild needs the other.
        worst, samples = 0.0, 0
        cpu = cpu_ms(d.ns.init_pid)
        for argv, count in (
                (["nsenter", f"--target={d.ns.init_pid}", "--pid", "--"], "100000"),
                ([], "20000")):
            flood = subprocess.Popen(argv + [system_python(), "-c", FLOODER, path, count,
                                             str(bystander_inner)],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
            deadline = time.monotonic() + scaled(60)
            while flood.poll() is None:
                self.assertLess(time.monotonic(), deadline, "the flood did not end")
                worst = max(worst, self.status_time(d))
                samples += 1
                time.sleep(0.02)
            out, err = flood.communicate()
            self.assertEqual(out.strip(), count, err)
        spent = cpu_ms(d.ns.init_pid) - cpu
        self.assertGreater(samples, 3)
        self.assertLess(worst, scaled(0.1), f"status took {worst * 1000:.0f} ms during the "
                                            f"flood (vigild used {spent} ms of CPU)")
        # The journal says what was refused, rate-limited.
        time.sleep(0.2)
        grown = self.journal_since(d, journal)
        self.assertLess(len(grown), 100, "\n".join(grown[:30]))
        # The service is as it was: same process, ready, no STATUS from strangers, not killed
        # by a watchdog interval of 1 us, no signal; the bystander was not made its main pid.
        after = d.status("notifier")
        self.assertEqual(d.main_pid("notifier"), pid)
        self.assertEqual((after["state"], after["ready"], after["pid"], after["incarnation"]),
                         (before["state"], before["ready"], before["pid"],
                          before["incarnation"]))
        self.assertNotIn("pwned", after["status_text"])
        self.assertEqual(after["watchdog_ms"], before["watchdog_ms"])
        self.assertNotIn("signal notifier", harness.read_text(d.log))
        self.after_attack(d)

    # ------------------------------------------------------------------ slow crasher

    def test_a_service_that_crashes_300ms_after_each_start_is_slowed_down(self):
        # A service that lives a little longer than the first backoff delay (100 ms) and then
        # crashes: a backoff that only grows for crashes sooner than the delay restarts it
        # every 300 ms, 40 times in 12 s, for ever. The delay must grow with consecutive
        # failures (until an incarnation lives reset_after).
        d = self.vigil(lambda d: {"root": PATIENT_ROOT,
                                  "slow": {"command": d.svc("slow", "crash-after", "300")}},
                       wait_running=("slow",))
        t0 = time.monotonic()
        time.sleep(12)
        starts = [e for e in d.events("start") if e[1] == "slow"]
        elapsed = time.monotonic() - t0
        self.assertLess(len(starts), 15, f"{len(starts)} starts in {elapsed:.1f} s")
        st = d.status("slow")
        self.assertLess(st["restarts"], 15, st)
        d.ctl("stop", "slow")
        self.after_attack(d)

    # ------------------------------------------------------------------ setsid grandchild

    ESCAPER = (r'setsid sh -c "trap \"\" TERM; echo \$\$ > $GC.\$\$; exec sleep 100000" '
               r'</dev/null >/dev/null 2>&1 & exec "$@"')

    def grandchildren(self, d: Daemon) -> list:
        """Host pids of the live grandchildren the escaper made (each wrote GC.<inner pid>)."""
        out = []
        for name in os.listdir(d.dir):
            if name.startswith("gc."):
                info = d.ns.by_inner_pid(int(name[3:]))
                if info is not None and info.state != "Z" and info.comm == "sleep":
                    out.append(info.pid)
        return out

    def test_a_setsid_grandchild_that_ignores_sigterm_is_gone_after_stop_and_crash(self):
        why = writable_cgroup2()
        if why:
            self.skipTest(f"no writable cgroup v2 here ({why}): vigild cannot hold a process "
                          "that left its session")
        d = self.vigil(lambda d: {"root": PATIENT_ROOT, "escaper": {
            "command": sh(self.ESCAPER) + ["sh"] + d.svc("escaper", "sleep"),
            "env": {"GC": os.path.join(d.dir, "gc")},
            "stop": {"timeout": "1s"}, "backoff": FAST}}, wait_running=("escaper",))
        main = d.wait_pid("escaper")
        gc = wait_until(lambda: self.grandchildren(d), 5, "the grandchild")[0]
        info = harness.proc_info(gc)
        self.assertNotEqual(info.sid, harness.proc_info(main).sid, "the grandchild kept the "
                            "session: the attack did not run")
        # vigild made a cgroup for the service below its own, and the grandchild is in it.
        own = cgroup_of(d.ns.init_pid)
        service_cgroup = cgroup_of(main)
        self.assertTrue(service_cgroup.startswith(own.rstrip("/") + "/vigil."),
                        (own, service_cgroup))
        self.assertTrue(service_cgroup.endswith("/escaper"), service_cgroup)
        self.assertEqual(cgroup_of(gc), service_cgroup)

        # vigilctl stop: the grandchild is gone too.
        r = d.ctl("stop", "escaper")
        self.assertEqual(r.returncode, 0, r.stderr)
        wait_until(lambda: harness.state_of(gc) in (None, "Z") and not self.grandchildren(d),
                   5, "the grandchild to be gone after stop")
        self.assertEqual(d.status("escaper")["state"], "stopped")

        # A crash of the main process: the old grandchild is gone, a new one comes with the
        # restart.
        r = d.ctl("start", "escaper")
        self.assertEqual(r.returncode, 0, r.stderr)
        main = d.wait_pid("escaper", other_than=main)
        gc = wait_until(lambda: self.grandchildren(d), 5, "the new grandchild")[0]
        # SIGKILL, not SIGSEGV: an ASan build's handler would first symbolize a report, which
        # on a loaded machine takes longer than any bound here.
        os.kill(main, signal.SIGKILL)
        wait_until(lambda: harness.state_of(gc) in (None, "Z"), 5,
                   "the grandchild to be gone after the crash")
        d.wait_pid("escaper", other_than=main)
        wait_until(lambda: [p for p in self.grandchildren(d) if p != gc], 5,
                   "the restarted service's grandchild")
        r = d.ctl("stop", "escaper")
        self.assertEqual(r.returncode, 0, r.stderr)
        wait_until(lambda: not self.grandchildren(d), 5, "every grandchild to be gone")
        self.after_attack(d)

    # ------------------------------------------------------------------ signals and pids

    def impostor(self, d: Daemon, inner_pid: int) -> int:
        """Starts a vigil-testsvc that logs every signal, as `inner_pid` of d's namespace
        (ns_last_pid), and returns its host pid."""
        script = ("import os, sys\n"
                  "with open('/proc/sys/kernel/ns_last_pid', 'w') as f:\n"
                  f"    f.write('{inner_pid - 1}')\n"
                  "os.execvp(sys.argv[1], sys.argv[1:])\n")
        # nsenter forks python3 (a pid of its own), which sets ns_last_pid and execs sh; sh
        # forks once, for the background job: that fork gets inner_pid.
        argv = ["nsenter", f"--target={d.ns.init_pid}", "--pid", "--", system_python(), "-c",
                script, "/bin/sh", "-c", 'exec "$@" </dev/null >/dev/null 2>&1 &', "sh",
                *d.svc("impostor", "log-signals", "sleep")]
        subprocess.run(argv, check=True, timeout=scaled(10))
        def execed():
            p = d.ns.by_inner_pid(inner_pid)
            return p if p is not None and p.comm.startswith("vigil-") else None
        found = wait_until(execed, 5, f"the impostor to run as pid {inner_pid}")
        self.addCleanup(harness.kill_quietly, found.pid)
        return found.pid

    @unittest.skipUnless(harness.as_root(), "needs root (ns_last_pid)")
    def test_signal_to_a_stopped_or_backing_off_unit_never_reaches_its_old_pid(self):
        # The unit's process ended; another process now has its pid. `vigilctl signal` must say
        # the unit runs no process, and signal nothing (vigild signals through pidfds).
        d = self.vigil(lambda d: {"root": PATIENT_ROOT,
                                  "victim": {"command": d.svc("victim", "sleep"),
                                             "backoff": {"initial": "30s", "max": "30s",
                                                         "jitter": 0}}},
                       wait_running=("victim",))
        for how in ("stopped", "backing off"):
            pid = d.wait_pid("victim")
            inner = harness.proc_info(pid).inner_pid
            if how == "stopped":
                self.assertEqual(d.ctl("stop", "victim").returncode, 0)
            else:
                os.kill(pid, signal.SIGKILL)    # a crash: it waits 30 s in backoff
                wait_until(lambda: d.status("victim")["state"] == "backoff", 5, "backoff")
            wait_until(lambda: harness.state_of(pid) is None, 5, "the old process reaped")
            imp = self.impostor(d, inner)
            r = d.ctl("signal", "USR1", "victim")
            self.assertEqual(r.returncode, 1, f"{how}: {r.stdout} {r.stderr}")
            self.assertIn("running", (r.stdout + r.stderr).lower())
            r = d.ctl("--json", "signal", "USR1", "victim")
            self.assertIn('"not_running"', r.stdout)
            time.sleep(0.2)
            self.assertNotIn("signal impostor", harness.read_text(d.log),
                             f"{how}: the signal reached the process that took the pid")
            harness.kill_quietly(imp)
            wait_until(lambda: harness.state_of(imp) in (None, "Z"), 5, "the impostor to end")
            if how == "stopped":
                self.assertEqual(d.ctl("start", "victim").returncode, 0)
        self.after_attack(d)

    # ------------------------------------------------------------------ the spawner's helper

    def spawner_helpers(self, d: Daemon) -> list:
        """vigild's children that are vigild (not exec'd): the spawner's helper."""
        return [p.pid for p in d.ns.init_children() if p.comm == "vigild" and p.state != "Z"]

    def fifty(self, d: Daemon) -> dict:
        units = {"root": {"kind": "supervisor", "parallel": True, "intensity": 1000000,
                          "period": "1s"}}
        for i in range(50):
            units[f"w{i:02d}"] = {"command": d.svc(f"w{i:02d}", "sleep"), "backoff": FAST}
        return units

    def kill_frozen_helper(self, d: Daemon, then) -> None:
        """Freezes vigild's spawner helper, runs then() (which makes vigild submit spawns to
        it), and kills it: every spawn in flight dies with it."""
        helpers = wait_until(lambda: self.spawner_helpers(d), 5, "the spawner's helper")
        for h in helpers:
            os.kill(h, signal.SIGSTOP)
        then()
        time.sleep(0.3)   # vigild submits the spawns to the frozen helper
        for h in helpers:
            os.kill(h, signal.SIGKILL)

    def assert_fifty_supervised(self, d: Daemon) -> None:
        """Every w* runs, is a child of vigild with the pid vigild shows, and no testsvc runs
        that vigild does not supervise."""
        names = [f"w{i:02d}" for i in range(50)]

        def all_running():
            r = d.ctl("--json", "status")
            if r.returncode not in (0, 3):
                rc = d.ns.poll()
                if rc is not None or "closed the connection" in r.stderr:
                    rc = d.ns.wait(10)
                    self.fail(f"vigild ended (status {rc}) after its helper died; journal:\n"
                              + "\n".join(line for line in self.journal(d)
                                          if "died before the spawn" not in line)[-3000:])
                return None
            st = {u["name"]: u for u in json.loads(r.stdout)["units"]}
            return all(st[n]["state"] == "running" for n in names) and st
        st = wait_until(all_running, 20, "every service to run after the helper died")
        children = {p.inner_pid: p for p in d.ns.init_children() if p.state != "Z"}
        for n in names:
            self.assertIn(st[n]["pid"], children, f"{n}: its pid is not a child of vigild")
            argv = harness.read_text(f"/proc/{children[st[n]['pid']].pid}/cmdline").split("\0")
            self.assertEqual(argv[argv.index("--id") + 1], n)
        supervised = {st[n]["pid"] for n in names} | {st["bystander"]["pid"]}
        strays = [p for p in d.processes() if p.comm.startswith("vigil-testsvc")
                  and p.state != "Z" and p.inner_pid not in supervised]
        self.assertEqual(strays, [], "testsvc processes nobody supervises")

    @unittest.skipUnless(harness.as_root(), "needs root (signals to vigild's helper)")
    def test_spawner_helper_killed_while_50_services_start(self):
        # At start-up: a failed start rolls the tree back and ends vigild (status 3). A spawn
        # lost with the helper is not the unit's failure: the services must still all run.
        d = self.new_daemon()
        units = self.fifty(d)
        units["bystander"] = self.bystander(d)
        d.write_units(units)
        d.ns = harness.PidNamespace([harness.vigild(), "--units", d.units_dir, "--socket",
                                     d.sock])
        self.kill_frozen_helper(d, lambda: None)
        d.wait_socket()
        self.assert_fifty_supervised(d)
        d.base = self.baseline(d)
        self.after_attack(d)

    @unittest.skipUnless(harness.as_root(), "needs root (signals to vigild's helper)")
    def test_spawner_helper_killed_while_50_services_restart(self):
        # After start-up: 50 services crash at once and their restarts are in flight when the
        # helper dies; the restart policy starts them again through a new helper.
        d = self.vigil(self.fifty, wait_running=tuple(f"w{i:02d}" for i in range(50)))

        def crash_all():
            for i in range(50):
                harness.kill_quietly(d.main_pid(f"w{i:02d}"), signal.SIGKILL)
        self.kill_frozen_helper(d, crash_all)
        self.assert_fifty_supervised(d)
        self.after_attack(d)


if __name__ == "__main__":
    unittest.main()
