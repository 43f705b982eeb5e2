"""Hot reload with real processes: `vigilctl reload` and SIGHUP to vigild.
Each case rewrites the unit folder of a running vigild (PID 1 of a fresh PID namespace) and
checks in /proc which processes were replaced: an unchanged unit must keep its process, pid,
restart count and history; a broken folder must change nothing and bring the diagnostics back
with file:line:column."""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from daemon import FAST, Daemon  # noqa: E402
from harness import holds_for, wait_until  # noqa: E402

EXIT_ERROR, EXIT_NOT_FOUND = 1, 4


def service(d: Daemon, ident: str, *modes: str, **fields) -> dict:
    """A testsvc unit, ready on fd 3 right after its start line."""
    unit = {"command": d.svc(ident, "ready-fd", "3", *(modes or ("sleep",))),
            "ready": {"fd": 3}, "backoff": FAST}
    unit.update(fields)
    return unit


class Reload(unittest.TestCase):
    def setUp(self) -> None:
        d = Daemon({}, start=False)
        self.addCleanup(d.close)
        self.d = d
        self.units = {
            "root": {"kind": "supervisor", "strategy": "one_for_one", "intensity": 5},
            "a": service(d, "a"),
            "b": service(d, "b", after=["a"]),
            "app": {"kind": "supervisor", "after": ["b"]},
            "w1": service(d, "w1", parent="app"),
            "w2": service(d, "w2", parent="app", after=["w1"]),
        }
        d.write_units(self.units)
        d.start()
        d.wait_socket()
        self.pids = self.running("a", "b", "w1", "w2")

    # -- helpers ------------------------------------------------------------------------------

    def running(self, *names: str) -> dict:
        pids = {}
        for n in names:
            pids[n] = self.d.wait_pid(n)
            wait_until(lambda n=n: self.d.status(n)["state"] == "running", 10,
                       f"{n} to be running")
        return pids

    def services(self) -> list:
        return [n for n in self.units if self.units[n].get("kind") != "supervisor"]

    def unit_names(self) -> list:
        return [u["name"] for u in self.d.ctl_json("status")["units"]]

    def reload(self, *flags: str) -> dict:
        r = self.d.ctl("--json", "reload", *flags)
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)

    def assert_kept(self, names, pids=None) -> None:
        pids = pids or self.pids
        for n in names:
            self.assertEqual(self.d.main_pid(n), pids[n], f"{n} was replaced")

    def changed(self, reply: dict) -> dict:
        return {k: sorted(reply[k]) for k in ("added", "removed", "restarted", "updated")
                if reply.get(k)}

    # -- cases --------------------------------------------------------------------------------

    def test_add_starts_only_the_new_unit(self):
        d = self.d
        # A restart before the reload: its count and history must survive the reload.
        os.kill(self.pids["a"], signal.SIGKILL)
        self.pids["a"] = d.wait_pid("a", other_than=self.pids["a"])
        wait_until(lambda: d.status("a")["state"] == "running", 10, "a to run again")
        history = d.ctl("events", "a").stdout

        self.units["c"] = service(d, "c", after=["b"])
        d.write_units(self.units)
        reply = self.reload()
        self.assertEqual(self.changed(reply), {"added": ["c"]})
        c = d.wait_pid("c")
        wait_until(lambda: d.status("c")["state"] == "running", 10, "c to run")
        self.assertEqual(harness.proc_info(c).inner_pid, d.status("c")["pid"])
        self.assertTrue(holds_for(lambda: all(d.main_pid(n) == self.pids[n]
                                              for n in self.pids), 0.3))
        self.assertEqual(d.status("a")["restarts"], 1)
        self.assertTrue(d.ctl("events", "a").stdout.startswith(history))
        self.assertEqual(d.starts().count("c"), 1)
        self.assertNotIn("a", d.stops())  # SIGKILL is not logged; nobody else was stopped
        self.assertEqual(d.stops(), [])

    def test_a_unit_added_back_while_its_removed_self_stops_waits_for_it(self):
        # Removed by one reload, added back by the next while the removed one still stops (it
        # ignores SIGTERM): the new one starts once the old one is down (never two of one unit),
        # and the old one's end (SIGKILL after its stop timeout, its cgroup or process group
        # emptied and removed) leaves the new one alone.
        d = self.d
        # The stop timeout must outlast the two reloads below and the 0.5 s after them: scaled,
        # as a sanitizer's vigilctl takes longer.
        self.units["x"] = service(d, "x-old", "ignore-term", "mark", "armed", "sleep",
                                  stop={"timeout": f"{int(harness.scaled(1) * 1000)}ms"})
        d.write_units(self.units)
        self.reload()
        old = d.wait_pid("x-old")
        wait_until(lambda: ("mark", "x-old", "armed") in d.events(), 10, "x-old armed")
        del self.units["x"]
        d.write_units(self.units)
        self.reload()
        self.units["x"] = service(d, "x-new")
        d.write_units(self.units)
        # --no-wait: reload would wait for x-new to be up, after the old x is down.
        self.assertEqual(self.changed(self.reload("--no-wait")), {"added": ["x"]})
        self.assertTrue(holds_for(lambda: d.main_pid("x-new") is None, 0.5))
        self.assertIsNotNone(harness.proc_info(old), "the old x still stops")
        new = d.wait_pid("x-new")
        self.assertIsNone(harness.proc_info(old), "the old x is gone first")
        self.assertTrue(holds_for(lambda: d.main_pid("x-new") == new, 0.5))
        st = d.status("x")
        self.assertEqual((st["state"], st["restarts"], st["pid"]),
                         ("running", 0, harness.proc_info(new).inner_pid))

    def test_remove_stops_only_the_removed_unit(self):
        d = self.d
        del self.units["w2"]
        d.write_units(self.units)
        reply = self.reload()
        self.assertEqual(self.changed(reply), {"removed": ["w2"]})
        wait_until(lambda: harness.proc_info(self.pids["w2"]) is None, 10,
                   "w2's process to go")
        self.assertEqual(d.stops(), ["w2"])
        wait_until(lambda: d.ctl("status", "w2").returncode == EXIT_NOT_FOUND, 5,
                   "w2 to be gone from status")
        self.assertEqual(self.unit_names(), ["a", "b", "app", "w1"])
        self.assert_kept(["a", "b", "w1"])
        self.assertTrue(holds_for(lambda: d.main_pid("w2") is None, 0.3))

    def test_one_changed_field_restarts_only_that_unit(self):
        d = self.d
        self.units["w1"]["command"] = d.svc("w1", "ready-fd", "3", "mark", "v2", "sleep")
        d.write_units(self.units)
        reply = self.reload()
        self.assertEqual(self.changed(reply), {"restarted": ["w1"]})
        new = d.wait_pid("w1", other_than=self.pids["w1"])
        wait_until(lambda: ("mark", "w1", "v2") in d.events(), 10, "the new w1 to run")
        self.assertNotEqual(new, self.pids["w1"])
        self.assertTrue(holds_for(lambda: all(d.main_pid(n) == self.pids[n]
                                              for n in ("a", "b", "w2")), 0.3))
        self.assertEqual(d.stops(), ["w1"])
        st = d.status("w1")
        self.assertEqual((st["state"], st["pid"], st["restarts"]),
                         ("running", harness.proc_info(new).inner_pid, 0))

    def test_supervisor_parameters_change_in_place(self):
        d = self.d
        self.units["root"].update(strategy="rest_for_one", intensity=7)
        self.units["app"].update(strategy="one_for_all")
        d.write_units(self.units)
        reply = self.reload()
        self.assertEqual(self.changed(reply), {"updated": ["app", "root"]})
        self.assertTrue(holds_for(lambda: all(d.main_pid(n) == self.pids[n]
                                              for n in self.pids), 0.5))
        self.assertEqual(d.stops(), [])
        # The new strategy is in effect: one_for_all under app now restarts w2 with w1.
        os.kill(self.pids["w1"], signal.SIGKILL)
        d.wait_pid("w2", other_than=self.pids["w2"])
        self.assertEqual(d.main_pid("a"), self.pids["a"])

    def test_broken_folder_changes_nothing_and_returns_diagnostics(self):
        d = self.d
        before = self.unit_names()
        broken = copy.deepcopy(self.units)
        broken["c"] = service(d, "c")               # would be added
        del broken["w2"]                             # would be removed
        broken["a"]["restart"] = "sometimes"         # invalid value
        broken["b"]["stop"] = {"timout": "1s"}       # unknown field (typo)
        d.write_units(broken)
        with open(os.path.join(d.units_dir, "w1.json"), "w") as f:
            f.write('{\n  "command": ["x",\n}\n')   # not JSON
        r = d.ctl("reload")
        self.assertEqual(r.returncode, EXIT_ERROR, r.stdout + r.stderr)
        for name in ("a", "b", "w1"):
            self.assertRegex(r.stderr, rf"{name}\.json:\d+:\d+:", r.stderr)
        self.assertIn("sometimes", r.stderr)
        self.assertIn("timout", r.stderr)
        rj = d.ctl("--json", "reload")
        self.assertEqual(rj.returncode, EXIT_ERROR)
        self.assertTrue(re.search(r"a\.json:\d+:\d+:", rj.stderr), rj.stderr)
        # Nothing changed: the same units, the same processes, nothing started or stopped.
        self.assertTrue(holds_for(lambda: all(d.main_pid(n) == self.pids[n]
                                              for n in self.pids), 0.5))
        self.assertEqual(self.unit_names(), before)
        self.assertIsNone(d.main_pid("c"))
        self.assertEqual(d.stops(), [])
        self.assertEqual(sorted(d.starts()), ["a", "b", "w1", "w2"])
        # Fixing the folder makes the next reload apply (c added, w2 removed).
        fixed = copy.deepcopy(self.units)
        fixed["c"] = service(d, "c")
        del fixed["w2"]
        d.write_units(fixed)
        self.assertEqual(self.changed(self.reload()), {"added": ["c"], "removed": ["w2"]})
        d.wait_pid("c")
        d.wait_gone("w2")
        self.assert_kept(["a", "b", "w1"])

    # A unit removed by reload releases its runtime (Shell::release), which ends its
    # `logs -f` followers with the end line.
    def test_logs_follow_of_a_removed_unit_ends(self):
        d = self.d
        follow = harness.Run([harness.vigilctl(), "--socket", d.sock, "logs", "--raw", "-f", "w2"])
        self.addCleanup(follow.close)
        self.assertTrue(holds_for(lambda: follow.poll() is None, 0.3))
        del self.units["w2"]
        d.write_units(self.units)
        self.assertEqual(self.changed(self.reload()), {"removed": ["w2"]})
        d.wait_gone("w2")
        self.assertEqual(d.ctl("logs", "--raw", "w2").returncode, EXIT_NOT_FOUND)
        try:
            rc = follow.wait(5)
        except harness.WaitTimeout:
            self.fail("vigilctl logs -f still follows a unit that was removed 5 s ago")
        self.assertIn(rc, (0, EXIT_NOT_FOUND))

    def test_sighup_reloads(self):
        d = self.d
        self.units["c"] = service(d, "c")
        d.write_units(self.units)
        d.ns.signal_init(signal.SIGHUP)
        d.wait_pid("c")
        wait_until(lambda: d.status("c")["state"] == "running", 10, "c to run")
        self.assert_kept(self.pids)
        self.assertEqual(d.ns.poll(), None)  # SIGHUP did not end vigild
        # A broken folder on SIGHUP: logged, nothing changes, vigild keeps running.
        with open(os.path.join(d.units_dir, "zz.json"), "w") as f:
            f.write('{"command": 5}\n')
        d.ns.signal_init(signal.SIGHUP)
        wait_until(lambda: re.search(r"zz\.json:\d+:\d+:", d.stderr()), 10,
                   "the diagnostic on vigild's stderr")
        self.assertTrue(holds_for(lambda: d.ns.poll() is None, 0.3))
        self.assertNotIn("zz", self.unit_names())
        self.assert_kept(self.pids)

    def test_stopped_unit_stays_stopped_across_reload(self):
        d = self.d
        r = d.ctl("stop", "b")
        self.assertEqual(r.returncode, 0, r.stderr)
        d.wait_gone("b")
        wait_until(lambda: d.status("b")["state"] == "stopped", 5, "b stopped")
        self.units["c"] = service(d, "c")  # a reload that does change something
        d.write_units(self.units)
        self.assertEqual(self.changed(self.reload()), {"added": ["c"]})
        d.wait_pid("c")
        self.assertTrue(holds_for(lambda: d.main_pid("b") is None, 1.0))
        self.assertEqual(d.status("b")["state"], "stopped")
        self.assertEqual(self.reload()["added"], [])  # and a reload that changes nothing
        self.assertTrue(holds_for(lambda: d.main_pid("b") is None, 0.5))
        # Started again by hand, it runs.
        self.assertEqual(d.ctl("start", "b").returncode, 0)
        d.wait_pid("b")

    def test_stopped_unit_whose_spec_changed_stays_stopped(self):
        d = self.d
        self.assertEqual(d.ctl("stop", "w2").returncode, 0)
        d.wait_gone("w2")
        wait_until(lambda: d.status("w2")["state"] == "stopped", 5, "w2 stopped")
        self.units["w2"]["command"] = d.svc("w2", "ready-fd", "3", "mark", "v2", "sleep")
        d.write_units(self.units)
        self.reload()
        self.assertTrue(holds_for(lambda: d.main_pid("w2") is None, 1.0))
        self.assertEqual(d.status("w2")["state"], "stopped")
        self.assert_kept(["a", "b", "w1"])
        self.assertEqual(d.ctl("start", "w2").returncode, 0)
        d.wait_pid("w2")
        wait_until(lambda: ("mark", "w2", "v2") in d.events(), 10, "w2 to run the new spec")

    # Item 50 while the stop is still under way: reload used to turn the stop command's
    # cause into Cause::Reload (src/core/core.cpp, Core::Impl::reconfigure), so the unit came
    # back once it died; fixed in 0480b8d.
    def test_unit_stopping_by_command_stays_stopped_when_reload_changes_it(self):
        d = self.d
        # w3 takes 800 ms to die of SIGTERM, so the reload lands while it is stopping.
        self.units["w3"] = service(d, "w3", "term-delay", "800", "mark", "armed", "sleep",
                                   parent="app", after=["w2"])
        d.write_units(self.units)
        self.reload()
        old = d.wait_pid("w3")
        wait_until(lambda: d.status("w3")["state"] == "running", 10, "w3 to run")
        # Its SIGTERM handler is in place (signalled before, it would die at once).
        wait_until(lambda: ("mark", "w3", "armed") in d.events(), 10, "w3 to be armed")
        self.assertEqual(d.ctl("stop", "--no-wait", "w3").returncode, 0)
        wait_until(lambda: d.status("w3")["state"] == "stopping", 5, "w3 to be stopping")
        self.units["w3"]["command"] = d.svc("w3", "ready-fd", "3", "mark", "v2", "sleep")
        d.write_units(self.units)
        self.reload()
        wait_until(lambda: harness.proc_info(old) is None, 10, "the old w3 to die")
        # Item 50: stopped by command, it stays stopped until started, reload or not.
        self.assertTrue(holds_for(lambda: d.main_pid("w3") is None, 1.0),
                        "w3 was started again by the reload")
        self.assertEqual(d.status("w3")["state"], "stopped")

    # A moved unit is removed and added again; the new node must wait until the old process
    # is down, or two processes of one unit run at once (was a bug in
    # Core::Impl::reconfigure, fixed after 0480b8d).
    def test_unit_moved_to_another_supervisor_never_runs_twice(self):
        d = self.d
        # w2's old process takes 500 ms to die of SIGTERM.
        self.units["w2"] = service(d, "w2", "term-delay", "500", "mark", "armed", "sleep",
                                   parent="app", after=["w1"])
        d.write_units(self.units)
        self.reload()
        old = d.wait_pid("w2", other_than=self.pids["w2"])
        wait_until(lambda: d.status("w2")["state"] == "running", 10, "w2 to run")
        # Its SIGTERM handler is in place (signalled before, it would die at once).
        wait_until(lambda: ("mark", "w2", "armed") in d.events(), 10, "w2 to be armed")
        self.units["w2"]["parent"] = "root"
        self.units["w2"]["after"] = ["b"]
        d.write_units(self.units)
        reply = self.reload()
        self.assertIn("w2", reply["added"] + reply["restarted"])
        new = d.wait_pid("w2", other_than=old, timeout=10)
        self.assertEqual(d.status("w2")["parent"], "root")
        wait_until(lambda: harness.proc_info(old) is None, 10, "the old w2 to die")
        # The old process must be gone (its `stop` line logged) before the new one starts.
        log = [line.split() for line in harness.lines_of(d.log)]
        new_inner = harness.proc_info(new).inner_pid
        start_at = next(i for i, x in enumerate(log)
                        if x[:2] == ["start", "w2"] and int(x[2]) == new_inner)
        old_stop_at = max(i for i, x in enumerate(log) if x[:3] == ["stop", "w2", "SIGTERM"])
        self.assertLess(old_stop_at, start_at, "two w2 processes ran at the same time")

if __name__ == "__main__":
    unittest.main()
