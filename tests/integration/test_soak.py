"""Chaos soak: vigild as PID 1 of a fresh PID namespace runs 200 services of
mixed kinds under nested supervisors (all three strategies, all restart types), while a driver
with a seeded RNG SIGKILLs random processes, stops/starts/restarts units through vigilctl,
sends crash signals, and reloads with changed, added and removed units. Some services crash on
their own (vigil-testsvc crash-after / abort-after), some spawn orphans, some write numbered
lines to rotating log files.

At checkpoints (driver paused) and at the end, the invariants are read from /proc and from the
log files, never from what vigild says about itself (docs/house-style.md §7.8):

- vigild never crashed: the namespace's init is still the same vigild and still answers;
- no zombie child of vigild survives a grace period (in-flight reaps are allowed);
- every permanent service that was not manually stopped (nor below a stopped supervisor) is
  running, and `vigilctl status --json` and /proc agree on its pid;
- no live child of vigild that no unit owns, once the churn has settled;
- vigild's open fd count equals its baseline in the same "steady state" (the services that end
  by themselves stopped, every other one running) and with every service stopped; between
  those exact comparisons, checkpoints bound it loosely;
- vigild's VmRSS grows less than 5% (or 1 MiB, whichever is more) between the end of a ~70 s
  warm-up and the end (not judged under ASan, whose quarantine grows); with re-execs, both
  readings are taken just after one (rss_now). The floor is for the
  bounded rings that go on filling after the warm-up: the global history (4096 records) and
  each unit's (32), filled only as records come; add/remove reloads alone grow vigild by about
  80 KiB per 100 cycles until the 4096th record, then no more;
- every line written by the line writers is in their rotated log files exactly once: each
  incarnation (prefix `wNAME-PID-NONCE`, so incarnations never collide even when pids wrap) wrote
  chunks of numbered lines, and what is in the files is, per incarnation, the chunks in order,
  each gap-free and duplicate-free, every chunk complete except the last one present; the live
  incarnations' output is complete; the lines forwarded to vigild's stdout are the same;
- SIGTERM to vigild: it exits 0 and the namespace is empty; no sanitizer report on its stderr.

The driver also re-executes vigild (`vigilctl reexec`) every VIGIL_SOAK_REEXEC_EVERY seconds
(default 10, 0: never): the exec must answer ok, keep vigild's pid, and leave vigild tracking
every service process that lived through it under the same pid (invariant "reexec"); every
other invariant then holds across the execs too. The driver SIGKILLs children of vigild
caught between fork and exec (or its spawner helper, if it has one), and keeps a model of what
it stopped: a unit it stopped (or one below a supervisor it stopped) is not expected to run
until it starts it again. Not judged: the order of chunks across stdout and stderr (two
pipes), and how short a killed incarnation's output is (what was in its pipe is all there can
be).

The soak runs once (setUpClass); each invariant is its own test, so a bug marks only its test.
ReloadChurn isolates the fd and memory leak the soak found (see its BUG comment).
Environment: VIGIL_SOAK_SECONDS (driver duration, default 150), VIGIL_SOAK_SEED (default:
random, printed), VIGIL_SOAK_REEXEC_EVERY (seconds between re-execs, default 10; 0: none),
VIGIL_TEST_TIMEOUT_MULTIPLIER (bounded waits, e.g. 3 under ASan).

Run by hand from tests/integration:
    VIGILD=../../build/src/daemon/vigild VIGILCTL=../../build/src/cli/vigilctl \\
    TESTSVC=../../build/tests/helpers/vigil-testsvc python3 test_soak.py -v
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import unittest
from typing import Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from daemon import Daemon, cmdline  # noqa: E402
from harness import scaled, start_time, uses_asan, vm_rss_kib, wait_until  # noqa: E402

SECONDS = float(os.environ.get("VIGIL_SOAK_SECONDS", "150"))
SEED = int(os.environ.get("VIGIL_SOAK_SEED", str(random.SystemRandom().randrange(1 << 32))))
REEXEC_EVERY = float(os.environ.get("VIGIL_SOAK_REEXEC_EVERY", "10"))
WARMUP = min(30.0, SECONDS / 4)
CHECKPOINT_EVERY = max(SECONDS / 4, 20.0)
BACKOFF = {"initial": "10ms", "max": "300ms", "factor": 2, "jitter": 0.2, "reset_after": "2s"}
# One writer incarnation: CHUNKS chunks of CHUNK lines, CHUNK_PAUSE ms apart, then it sleeps.
CHUNKS, CHUNK, CHUNK_PAUSE = 8, 250, 150
LINE = re.compile(r"^(w[a-z0-9-]+?-\d+-[0-9a-f]+)\.(\d+) seq=(\d+)$")
FWD = re.compile(r"^([a-z0-9][a-z0-9._@-]*) [|!] (.*)$")


def log(msg: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the unit tree


class Tree:
    """The unit files of the soak and what the driver knows about them: kinds, restart types,
    parents, which services are line writers. `units` is what is on disk."""

    def __init__(self, d: Daemon, logdir: str) -> None:
        self.d = d
        self.logdir = logdir
        self.units: dict = {}
        self.writers: list = []       # unit names of line writers
        self.periodic: set = set()    # services that end by themselves now and then
        ts = harness.testsvc()
        self.ts = ts
        # Enough rotated files for the whole run: an incarnation writes ~60 KB.
        self.max_size = 16 * 1024 * max(1, int(SECONDS // 150) + 1)

        def sup(name, strategy, parent="root", intensity=1000, period="10s", **kw):
            u = {"kind": "supervisor", "strategy": strategy, "intensity": intensity,
                 "period": period}
            if parent != "root":
                u["parent"] = parent
            u.update(kw)
            self.units[name] = u

        def svc(name, parent, modes, restart="permanent", periodic=False, **kw):
            u = {"command": [ts, "--id", name, *modes], "parent": parent, "restart": restart,
                 "backoff": BACKOFF, "stop": {"timeout": "2s"}}
            u.update(kw)
            self.units[name] = u
            if periodic:
                self.periodic.add(name)

        def writer(name, parent, **kw):
            chunks = []
            for c in range(1, CHUNKS + 1):
                mode = "stderr-lines" if c == CHUNKS // 2 else "lines"
                chunks.append(f'{mode} {CHUNK} "$p.{c}"')
                if c < CHUNKS:
                    chunks.append(f"sleep {CHUNK_PAUSE}")
            # $$ is the pid the testsvc keeps after exec; the uuid nonce keeps incarnations
            # apart even if pids wrap (pid_max may be 32768 in the namespace).
            script = ("read u </proc/sys/kernel/random/uuid; p=w" + name + "-$$-${u%%-*}; "
                      f"exec {ts} --id {name} " + " ".join(chunks) + " sleep")
            u = {"command": ["sh", "-c", script], "parent": parent, "backoff": BACKOFF,
                 "stop": {"timeout": "2s"},
                 "logs": {"file": os.path.join(logdir, name + ".log"),
                          "max_size": self.max_size, "keep": 1000}}
            u.update(kw)
            self.units[name] = u
            self.writers.append(name)

        def mixed(parent, prefix, n, rng):
            """n services of every kind, in a fixed order (the RNG is seeded)."""
            kinds = ["sleep", "sleep", "sleep", "transient", "temporary", "orphans", "crash",
                     "ignore-term", "term-delay", "ready-fd", "notify", "sleep", "probe"]
            for i in range(n):
                name = f"{prefix}-{i:02d}"
                k = kinds[i % len(kinds)]
                if k == "sleep":
                    svc(name, parent, ["sleep"])
                elif k == "transient":
                    svc(name, parent, ["sleep", str(rng.randrange(3000, 20000)), "exit",
                                       str(rng.choice([0, 1]))], restart="transient",
                        periodic=True)
                elif k == "temporary":
                    svc(name, parent, ["sleep", str(rng.randrange(3000, 30000)),
                                       "exit", "0"], restart="temporary", periodic=True)
                elif k == "orphans":
                    svc(name, parent, ["orphan", "3", str(rng.randrange(50, 400)),
                                       "sleep", str(rng.randrange(1000, 4000)), "exit", "0"],
                        periodic=True)
                elif k == "crash":
                    crash = rng.choice(["crash-after", "abort-after"])
                    svc(name, parent, [crash, str(rng.randrange(4000, 15000)), "sleep"],
                        restart=rng.choice(["permanent", "transient"]), periodic=True)
                elif k == "ignore-term":
                    svc(name, parent, ["ignore-term", "sleep"],
                        stop={"timeout": "200ms"})
                elif k == "term-delay":
                    svc(name, parent, ["term-delay", "50", "sleep"])
                elif k == "ready-fd":
                    svc(name, parent, ["ready-fd", "3", "sleep"],
                        ready={"fd": 3, "timeout": "20s"})
                elif k == "notify":
                    svc(name, parent, ["notify-ready", "sleep"],
                        ready={"notify": True, "timeout": "20s"})
                elif k == "probe":
                    svc(name, parent, ["sleep"],
                        liveness={"exec": ["true"], "period": "1s", "timeout": "2s"})

        rng = random.Random(SEED)
        sup("root", "one_for_one", intensity=100000)
        sup("ofo", "one_for_one")
        mixed("ofo", "ofo", 50, rng)
        svc("ofo-inst", "ofo", ["sleep"], instances=5)
        writer("ofo-w1", "ofo")
        writer("ofo-w2", "ofo")
        writer("ofo-w3", "ofo")
        sup("ofa", "one_for_all")
        mixed("ofa", "ofa", 9, rng)
        writer("ofa-w1", "ofa")
        sup("rfo", "rest_for_one")
        mixed("rfo", "rfo", 18, rng)
        for i in range(1, 18):
            self.units[f"rfo-{i:02d}"]["after"] = [f"rfo-{i - 1:02d}"]
        writer("rfo-w1", "rfo", after=["rfo-08"])
        writer("rfo-w2", "rfo", after=["rfo-17"])
        sup("nest1", "one_for_one")
        mixed("nest1", "n1", 14, rng)
        sup("nest2", "rest_for_one", parent="nest1")
        mixed("nest2", "n2", 9, rng)
        writer("n2-w1", "nest2")
        sup("nest3", "one_for_all", parent="nest2")
        mixed("nest3", "n3", 7, rng)
        writer("n3-w1", "nest3")
        # A supervisor that gives up now and then (its crasher beats its intensity): accepted,
        # its parent restarts it.
        sup("fragile", "one_for_one", intensity=2, period="5s")
        svc("fragile-crasher", "fragile", ["crash-after", "1500", "sleep"], periodic=True)
        mixed("fragile", "fr", 4, rng)
        writer("fr-w1", "fragile")
        # A transient supervisor: a give-up of it is final (not expected to run afterwards).
        sup("tsup", "one_for_all", restart="transient")
        mixed("tsup", "ts", 5, rng)
        sup("bulk", "one_for_one")
        n_services = sum(self.n_instances(n) for n, u in self.units.items()
                         if u.get("kind") != "supervisor")
        mixed("bulk", "bulk", 200 - n_services - 1, rng)
        writer("bulk-w1", "bulk")
        self.base = json.loads(json.dumps(self.units))

    def n_instances(self, name: str) -> int:
        return self.units[name].get("instances", 1)

    def is_sup(self, name: str) -> bool:
        return name == "root" or self.units.get(name, {}).get("kind") == "supervisor"

    def parent(self, name: str) -> str:
        return self.units[self.unit_of(name)].get("parent", "root")

    @staticmethod
    def unit_of(name: str) -> str:
        return name.split("@")[0]

    def services(self) -> list:
        """Child names of every service (instances expanded)."""
        out = []
        for n, u in self.units.items():
            if u.get("kind") == "supervisor":
                continue
            k = u.get("instances")
            out += [f"{n}@{i}" for i in range(1, k + 1)] if k else [n]
        return out

    def supervisors_top(self) -> list:
        return sorted(n for n in self.supervisors() if self.parent(n) == "root")

    def supervisors(self) -> list:
        return [n for n, u in self.units.items() if u.get("kind") == "supervisor"
                and n != "root"]

    def ancestors(self, name: str) -> list:
        out, n = [], name
        while n != "root":
            n = self.parent(n)
            out.append(n)
        return out

    def restart_type(self, name: str) -> str:
        return self.units[self.unit_of(name)].get("restart", "permanent")

    def write(self, name: str) -> None:
        path = os.path.join(self.d.units_dir, name + ".json")
        with open(path + ".tmp", "w") as f:  # not *.json: vigild ignores it
            json.dump(self.units[name], f, indent=1)
        os.rename(path + ".tmp", path)

    def write_all(self) -> None:
        for f in os.listdir(self.d.units_dir):
            if f[:-5] not in self.units:
                os.unlink(os.path.join(self.d.units_dir, f))
        for n in self.units:
            self.write(n)

    def remove(self, name: str) -> None:
        del self.units[name]
        os.unlink(os.path.join(self.d.units_dir, name + ".json"))


# --------------------------------------------------------------------------- /proc helpers


def fds_of(pid: int) -> dict:
    """fd -> link target of pid's open fds."""
    out = {}
    base = f"/proc/{pid}/fd"
    for fd in os.listdir(base):
        try:
            out[int(fd)] = os.readlink(f"{base}/{fd}")
        except OSError:
            pass
    return out


def settled_fds(pid: int) -> dict:
    """fds_of(pid) once two readings 200 ms apart agree: vigild closes a vigilctl connection
    just after answering, so a reading right after a command may still count it."""
    prev = fds_of(pid)
    for _ in range(50):
        time.sleep(0.2)
        cur = fds_of(pid)
        if cur == prev:
            return cur
        prev = cur
    return prev


def fd_kinds(fds: dict) -> dict:
    kinds: dict = {}
    for target in fds.values():
        k = target.split(":")[0] if ":" in target else ("file" if target.startswith("/") else
                                                         target)
        if k == "anon_inode":
            k = target
        kinds[k] = kinds.get(k, 0) + 1
    return dict(sorted(kinds.items()))


# --------------------------------------------------------------------------- the soak


class Soak:
    """Runs the soak; `violations[invariant]` lists what went wrong, `figures` what was
    measured."""

    def __init__(self) -> None:
        self.rng = random.Random(SEED ^ 0x5EED)
        self.violations: dict = {k: [] for k in (
            "alive", "zombies", "running", "fds", "fds-beyond-removed", "rss", "lines",
            "forward", "exit", "sanitizer", "strays", "reexec")}
        self.figures: dict = {"seed": SEED, "seconds": SECONDS, "actions": {}}
        self.stopped: set = set()      # units the driver stopped (and did not start since)
        self.extra = 0
        self.removed = 0               # units removed by a reload (extras)
        self.gen = 0
        self.d: Optional[Daemon] = None

    # -- plumbing -----------------------------------------------------------------------------

    def violate(self, what: str, msg: str) -> None:
        log(f"VIOLATION {what}: {msg}")
        self.violations[what].append(msg)

    def count(self, action: str) -> None:
        a = self.figures["actions"]
        a[action] = a.get(action, 0) + 1

    def ctl(self, *args: str, timeout: float = 30) -> Optional[subprocess.CompletedProcess]:
        # The driver judges the effects itself (check_running), amid chaos that can fail any
        # change: its commands return once vigild has them, as before vigilctl waited.
        words = [a for a in args if not a.startswith("-")]
        if words and words[0] in ("start", "stop", "restart", "reload"):
            args = (*args, "--no-wait")
        try:
            r = self.d.ctl(*args, timeout=timeout)
        except subprocess.TimeoutExpired:
            self.violate("alive", f"vigilctl {' '.join(args)} got no answer in {timeout}s")
            return None
        return r

    def status(self) -> dict:
        """name -> status entry, from vigilctl status --json."""
        r = self.ctl("--json", "status")
        if r is None or r.returncode not in (0, 3):
            raise AssertionError(f"status failed: {r and r.returncode} {r and r.stderr}")
        return {u["name"]: u for u in json.loads(r.stdout)["units"]}

    def init_alive(self) -> bool:
        ns = self.d.ns
        return (ns.poll() is None and harness.state_of(ns.init_pid) not in (None, "Z")
                and harness.proc_info(ns.init_pid).comm == "vigild")

    def expected_running(self) -> set:
        """Permanent services neither stopped by the driver nor below a stopped supervisor."""
        out = set()
        for s in self.tree.services():
            if self.tree.restart_type(s) != "permanent":
                continue
            path = [s, self.tree.unit_of(s)] + self.tree.ancestors(s)
            if self.stopped.intersection(path):
                continue
            out.add(s)
        return out

    def live_children(self) -> dict:
        """inner pid -> ProcInfo of vigild's live (non-zombie) children."""
        init = self.d.ns.init_pid
        return {p.inner_pid: p for p in self.d.processes() if p.ppid == init and p.state != "Z"}

    # -- checks -------------------------------------------------------------------------------

    def running_problems(self, expect: set) -> dict:
        """name -> problem, for the services of `expect` that are not running with status and
        /proc agreeing: status says running with a pid, that pid is a live child of vigild in
        /proc and runs that service; plus pids that status gives to two services."""
        st = self.status()
        kids = self.live_children()
        problems: dict = {}
        seen: dict = {}
        for name, u in st.items():
            if u["kind"] == "service" and u["state"] == "running" and u["pid"] is not None:
                if u["pid"] in seen:
                    problems[name] = f"{name} and {seen[u['pid']]} share pid {u['pid']}"
                seen[u["pid"]] = name
        for s in sorted(expect):
            u = st.get(s)
            if u is None:
                problems[s] = f"{s}: not in status"
            elif u["state"] != "running" or u["pid"] is None:
                problems[s] = f"{s}: {u['state']} (goal {u['goal']})"
            elif u["pid"] not in kids:
                problems[s] = f"{s}: status pid {u['pid']} is no live child of vigild"
            else:
                argv = cmdline(kids[u["pid"]].pid)
                if argv[:1] != ["sh"] and s.split("@")[0] not in argv:
                    problems[s] = f"{s}: pid {u['pid']} runs {argv[:4]}"
        return problems

    def check_running(self, where: str) -> None:
        """Each expected service must be seen running (status and /proc agreeing) at least once
        within the wait: services that end by themselves now and then are in backoff for a
        moment, so they need not all be up at the same instant."""
        pending = set(self.expected_running())
        last: dict = {}

        def ok():
            problems = self.running_problems(pending)
            pending.intersection_update(problems)
            last.clear()
            last.update(problems)
            return not pending
        try:
            wait_until(ok, 30, "every permanent service to run", interval=0.1)
        except harness.WaitTimeout:
            probs = [last[n] for n in sorted(last)]
            self.violate("running", f"{where}: {len(probs)} problems: {probs[:10]}; "
                         f"{self.diagnose(probs[:3])}")

    def diagnose(self, problems: list) -> str:
        """What /proc and vigild's own log say about the units of `problems`."""
        out = []
        by_inner = {p.inner_pid: p for p in self.d.processes()}
        for prob in problems:
            name = prob.split(":")[0]
            m = re.search(r"pid (\d+)", prob)
            if m:
                p = by_inner.get(int(m.group(1)))
                out.append(f"{name} pid {m.group(1)} in /proc: {p}")
            lines = [ln for ln in self.d.stderr().splitlines() if f" {name}[" in ln
                     or f" {name}:" in ln]
            out.append(f"{name} log: " + " / ".join(lines[-6:]))
        # The supervisors above: their state, their last records, and their children that are
        # neither running nor stopped (what a stuck start or stop sequence waits for).
        st = self.status()
        sups: list = []
        for prob in problems:
            name = prob.split(":")[0]
            if name in self.tree.units or name.split("@")[0] in self.tree.units:
                sups += [a for a in self.tree.ancestors(name) if a not in sups]
        for sup in sups:
            u = st.get(sup, {})
            lines = [ln for ln in self.d.stderr().splitlines() if f" {sup}:" in ln
                     or f" {sup}[" in ln]
            busy = [(n, v.get("state"), v.get("goal")) for n, v in st.items()
                    if v.get("parent") == sup and v.get("state") not in ("running", "stopped")]
            out.append(f"supervisor {sup}: {u.get('state')} (goal {u.get('goal')}); children "
                       f"in between: {busy[:8]}; log: " + " / ".join(lines[-8:]))
        return "\n".join(out)

    def check_zombies(self, where: str) -> None:
        """A zombie child of vigild that is still there (same pid and start time) after a grace
        period was not reaped: a bug. Zombies of other parents are the services' business."""
        def snapshot():
            return {(p.pid, start_time(p.pid)): p for p in self.d.ns.zombies()
                    if p.ppid == self.d.ns.init_pid}
        first = snapshot()
        if not first:
            return
        time.sleep(scaled(2))
        stuck = [p for k, p in snapshot().items() if k in first]
        if stuck:
            self.violate("zombies", f"{where}: {len(stuck)} unreaped: "
                         f"{[(p.inner_pid, p.comm) for p in stuck[:10]]}")

    def check_alive(self, where: str) -> None:
        if not self.init_alive():
            self.violate("alive", f"{where}: vigild is gone (rc {self.d.ns.poll()}); "
                         f"stderr tail: {self.d.stderr()[-2000:]}")
            raise AssertionError("vigild died")
        r = self.ctl("--json", "version")
        if r is None or r.returncode != 0:
            self.violate("alive", f"{where}: version failed: {r and r.stderr}")

    def checkpoint(self, where: str) -> None:
        log(f"checkpoint {where}")
        self.check_alive(where)
        self.check_running(where)
        self.check_zombies(where)
        fds = len(fds_of(self.d.ns.init_pid))
        # Between the exact comparisons, a loose bound: each added service costs a few fds.
        bound = self.fd_start + 6 * max(0, len(self.tree.services()) - self.n_services0) + 32
        if fds > bound:
            msg = (f"{where}: {fds} fds > {bound} (at start {self.fd_start}, "
                   f"{self.removed} units removed so far)")
            self.violate("fds", msg)
            if fds > bound + 2 * self.removed:
                self.violate("fds-beyond-removed", msg)
        self.figures.setdefault("checkpoints", []).append(
            {"where": where, "fds": fds, "rss_kib": vm_rss_kib(self.d.ns.init_pid)})

    # -- driver actions -----------------------------------------------------------------------

    def pick_service(self) -> str:
        return self.rng.choice(self.tree.services())

    def pick_unit(self) -> str:
        if self.rng.random() < 0.1:
            return self.rng.choice(self.tree.supervisors())
        return self.pick_service()

    def subtree_touches_stopped(self, name: str) -> bool:
        path = {name, self.tree.unit_of(name), *self.tree.ancestors(name)}
        if path & self.stopped:
            return True
        return any(name in self.tree.ancestors(s) for s in self.stopped
                   if s in self.tree.units or "@" in s)

    def act(self) -> None:
        r = self.rng.random()
        if r < 0.01:
            self.kill_spawner()
        elif r < 0.30:
            self.kill_main()
        elif r < 0.38:
            self.kill_other()
        elif r < 0.48:
            self.stop()
        elif r < 0.62:
            self.start()
        elif r < 0.72:
            self.restart()
        elif r < 0.77:
            self.crash_signal()
        elif r < 0.83:
            self.reload_env()
        elif r < 0.90:
            self.reload_add_remove()
        elif r < 0.95:
            self.count("status")
            self.status()
        else:
            self.count("logs")
            self.ctl("logs", "--raw", "-n", "20", self.rng.choice(self.tree.writers))

    def kill_main(self) -> None:
        kids = [p for p in self.live_children().values()
                if "--id" in cmdline(p.pid) or cmdline(p.pid)[:1] == ["sh"]]
        if kids:
            harness.kill_quietly(self.rng.choice(kids).pid, signal.SIGKILL)
            self.count("sigkill-main")

    def kill_spawner(self) -> None:
        """SIGKILL vigild's spawner helper (its child named vigild), perhaps in the middle of a
        spawn, and every service caught between fork and exec (named vigild/spawn until its
        exec). vigild must send lost spawns again or report them failed, restart the helper,
        and lose nothing."""
        init = self.d.ns.init_pid
        for p in self.d.processes():
            if p.ppid != init or p.comm not in ("vigild", "vigild/spawn"):
                continue
            harness.kill_quietly(p.pid, signal.SIGKILL)
            self.count("sigkill-spawner" if p.comm == "vigild" else "sigkill-pre-exec")

    def kill_other(self) -> None:
        init = self.d.ns.init_pid
        others = [p for p in self.d.processes() if p.pid != init and p.state != "Z"]
        if others:
            victim = self.rng.choice(others)
            harness.kill_quietly(victim.pid, signal.SIGKILL)
            self.count("sigkill-any")
            if victim.ppid == init and victim.comm == "vigild":
                self.count("sigkill-spawner")  # the helper (judge_fds counts its deaths)

    def stop(self) -> None:
        if len(self.stopped) >= 15:
            return self.start()
        name = self.pick_unit()
        r = self.ctl("stop", name)
        if r is not None and r.returncode == 0:
            self.stopped.add(name)
            self.count("stop")
        elif r is not None:
            self.count("stop-refused")

    def start(self) -> None:
        startable = [s for s in self.stopped
                     if not (set(self.tree.ancestors(s)) & self.stopped)]
        known = self.status()
        temporaries = [s for s in self.tree.services()
                       if self.tree.restart_type(s) != "permanent" and s in known]
        if startable and self.rng.random() < 0.8:
            name = self.rng.choice(sorted(startable))
        elif temporaries:
            name = self.rng.choice(temporaries)
        else:
            return
        if set(self.tree.ancestors(name)) & self.stopped:
            return
        r = self.ctl("--json", "start", name)
        if r is None:
            return
        try:
            own = [x for x in json.loads(r.stdout)["results"] if x["unit"] == name]
        except ValueError:
            own = []
        if own and own[0]["outcome"] in ("ok", "already_running"):
            # The exit status may be 1 for the nested refusals start_all() describes; a child
            # refused stays in `stopped` (it may still start with its supervisor: then it is
            # merely not judged until it is started again).
            self.count("start")
            took = {x["unit"] for x in json.loads(r.stdout)["results"]
                    if x["outcome"] in ("ok", "already_running")}
            self.stopped = {s for s in self.stopped
                            if not (s in took and (s == name or name in self.tree.ancestors(s)))}
        else:
            self.count("start-refused")
            if "no unit named" in r.stderr:
                # A unit that a reload removed meanwhile.
                self.stopped.discard(name)
            else:
                log(f"start {name}: {r.returncode} {own} {r.stderr.strip()}")

    def restart(self) -> None:
        name = self.pick_unit()
        if self.subtree_touches_stopped(name):
            return
        r = self.ctl("restart", name)
        if r is not None and r.returncode == 0:
            self.count("restart")
        elif r is not None:
            self.count("restart-refused")
            log(f"restart {name}: {r.returncode} {r.stdout.strip()} {r.stderr.strip()}")

    def crash_signal(self) -> None:
        name = self.pick_service()
        r = self.ctl("signal", self.rng.choice(["SEGV", "ABRT", "KILL"]), name)
        if r is not None:
            self.count("signal" if r.returncode == 0 else "signal-not-running")

    def reload(self, why: str) -> None:
        r = self.ctl("reload", timeout=60)
        if r is not None and r.returncode != 0:
            self.violate("alive", f"reload ({why}) failed: {r.returncode} {r.stderr}")
        else:
            self.count(f"reload-{why}")

    def reload_env(self) -> None:
        name = self.tree.unit_of(self.pick_service())
        self.gen += 1
        self.tree.units[name]["env"] = {"SOAK_GEN": str(self.gen)}
        self.tree.write(name)
        self.reload("env")

    def reload_add_remove(self) -> None:
        extras = [n for n in self.tree.units if n.startswith("extra-")]
        if extras and (len(extras) >= 5 or self.rng.random() < 0.5):
            name = self.rng.choice(extras)
            self.tree.remove(name)
            self.removed += 1
            self.stopped.discard(name)
            self.reload("remove")
        else:
            self.extra += 1
            name = f"extra-{self.extra}"
            parent = self.rng.choice(self.tree.supervisors())
            self.tree.units[name] = {"command": [self.tree.ts, "--id", name, "sleep"],
                                     "parent": parent, "backoff": BACKOFF}
            self.tree.write(name)
            self.reload("add")

    def rss_now(self) -> int:
        """vigild's VmRSS. With re-execs in the chaos, read right after one: a new image starts
        with a compact heap that the rings and buffers then fill again, so a reading taken
        soon after an exec and one taken long after it differ by that refill, not by a leak.
        Both readings just after an exec compare the state that is carried."""
        if REEXEC_EVERY > 0:
            for _ in range(5):
                before = self.figures["actions"].get("reexec", 0)
                self.reexec()
                if self.figures["actions"].get("reexec", 0) > before:
                    break
                time.sleep(0.5)
            time.sleep(0.5)
        return vm_rss_kib(self.d.ns.init_pid)

    def reexec(self) -> None:
        """vigilctl reexec amid the chaos (the driver waits for it): it answers ok, vigild keeps
        its pid, and every service process alive before and after is still the one vigild
        tracks for that service (a lost or doubled child would show as another pid)."""
        init = self.d.ns.init_pid
        born = start_time(init)
        before = {n: u["pid"] for n, u in self.status().items()
                  if u["kind"] == "service" and u["state"] == "running" and u["pid"]}
        r = self.ctl("--json", "reexec", timeout=60)
        if r is None:
            return
        if r.returncode != 0 and "again" in r.stderr:
            # Refused for now, by design: a reload or a removed unit's stop under way, spawns
            # still in flight (reexec_blocker); the next one comes a few seconds later.
            self.count("reexec-refused")
            return
        if r.returncode != 0:
            self.violate("reexec", f"reexec: {r.returncode} {r.stdout.strip()} "
                         f"{r.stderr.strip()}")
            return
        self.count("reexec")
        if self.d.ns.init_pid != init or start_time(init) != born:
            self.violate("reexec", "vigild's pid or start time changed across the exec")
        # A process that lives on (alive in /proc before and after a status read that does not
        # show it) must still be vigild's for that service. Both reads are needed: one that
        # was being stopped when the exec came may end between the /proc scan and the status.
        st1 = self.status()
        kids = self.live_children()
        st = self.status()
        for name, pid in sorted(before.items()):
            shown = (st1.get(name, {}).get("pid"), st.get(name, {}).get("pid"))
            if pid not in kids or pid in shown:
                continue
            host = kids[pid].pid
            if harness.state_of(host) in (None, "Z") or pid not in self.live_children():
                continue
            owner = [n for n, u in st.items() if u.get("pid") == pid]
            self.violate("reexec", f"{name}: pid {pid} lives on but status says "
                         f"{st.get(name, {}).get('state')} pid {st.get(name, {}).get('pid')} "
                         f"(owner now {owner}; {harness.proc_info(host)})")

    # -- phases -------------------------------------------------------------------------------

    def restore(self) -> None:
        """Back to the initial unit files, every unit started (temporary and transient services
        that ended too, and a transient supervisor that gave up)."""
        self.removed += len([n for n in self.tree.units if n not in self.tree.base])
        self.tree.units = json.loads(json.dumps(self.tree.base))
        self.tree.write_all()
        self.reload("restore")
        self.stopped = set()
        # Top-down, one level at a time, each level once its supervisors run: a child is
        # refused while its supervisor is not running yet (see start_all()).
        sups = self.tree.supervisors()
        for depth in range(1, 1 + max(len(self.tree.ancestors(n)) for n in sups)):
            level = [n for n in sups if len(self.tree.ancestors(n)) == depth]
            self.start_all(level)
            wait_until(lambda: all(self.status()[n]["state"] == "running" for n in level),
                       30, f"supervisors {level} to run")
        self.start_all(self.tree.services())

    def running_set(self) -> set:
        return {n for n, u in self.status().items()
                if u["kind"] == "service" and u["state"] == "running"}

    def steady(self, where: str) -> tuple:
        """Stops the services that end by themselves, waits until the other ones all run and
        vigild's fd count is the same twice 300 ms apart; returns (fds, running set). This
        state is reproducible: it is the one the fd baseline compares."""
        self.stop_units(sorted(self.tree.periodic))
        want = set(self.tree.services()) - self.tree.periodic
        prev: dict = {}

        t0 = time.monotonic()

        def ok():
            prev["set"] = self.running_set()
            missing = sorted(want - prev["set"])
            if missing and time.monotonic() - t0 > 5 and not prev.get("told"):
                prev["told"] = True
                st = self.status()
                states = [(n, st.get(n, {}).get("state"), st.get(n, {}).get("goal"))
                          for n in missing[:6]]
                log(f"{where}: still not running after 5 s: {states}; running periodic: "
                    f"{sorted(prev['set'] & self.tree.periodic)}; "
                    f"{self.diagnose(missing[:2] + sorted(prev['set'] & self.tree.periodic)[:2])}")
            # A one_for_all or rest_for_one sweep in flight starts stopped siblings again
            # (docs/otp-semantics.md item 20): stop those once more.
            again = sorted(prev["set"] & self.tree.periodic)
            if again:
                self.stop_units(again)
            return prev["set"] == want
        try:
            wait_until(ok, 30, f"{where}: a steady state", interval=0.3)
        except harness.WaitTimeout:
            st = self.status()
            missing = sorted(want - prev["set"])
            states = [(n, st.get(n, {}).get("state"), st.get(n, {}).get("goal"))
                      for n in missing[:10]]
            self.violate("running", f"{where}: no steady state: missing {states}, "
                         f"extra {sorted(prev['set'] - want)[:10]}; "
                         f"{self.diagnose(missing[:3])}")
        self.check_strays(where)
        return settled_fds(self.d.ns.init_pid), want

    def check_strays(self, where: str) -> None:
        """No live child of vigild that vigild does not know: every one is the main process of
        a service (per status) or the spawner helper. (Orphans of the orphan-spawning services
        live < 0.5 s, and those services are stopped in the steady state.)"""
        init = self.d.ns.init_pid
        last: list = []

        def none():
            pids = {u["pid"] for u in self.status().values() if u["pid"] is not None}
            last[:] = [(p.inner_pid, p.comm, cmdline(p.pid)[:6]) for p in self.d.processes()
                       if p.ppid == init and p.state != "Z" and p.comm != "vigild"
                       and p.inner_pid not in pids]
            return not last
        try:
            wait_until(none, 10, "no untracked child of vigild", interval=0.2)
        except harness.WaitTimeout:
            self.violate("strays", f"{where}: {len(last)} live children of vigild that no "
                         f"unit owns: {last[:10]}")

    def stop_units(self, names: list) -> None:
        """vigilctl stop of those of `names` that exist (a reload may have removed some)."""
        known = self.status()
        names = [n for n in names if n in known]
        if not names:
            return
        r = self.ctl("stop", *names, timeout=60)
        if r is None or r.returncode != 0:
            raise AssertionError(f"stop {names[:5]}...: {r and r.stderr}")

    def start_all(self, names: Optional[list] = None) -> None:
        """vigilctl start; the verdict is check_running's, which follows. `start SUP` expands
        to SUP's whole subtree, and a grandchild whose supervisor the same command is about to
        start (or that is still stopping) is refused ("supervisor X is not running; start it",
        "supervisor X is stopping"; exit 1) although it does start with X: such refusals are
        counted, not judged here."""
        known = self.status()
        names = [n for n in (names or self.tree.supervisors_top()) if n in known]
        r = self.ctl("--json", "start", *names, timeout=60)
        if r is None:
            raise AssertionError("start: no answer")
        if r.returncode != 0:
            refused = [x for x in json.loads(r.stdout)["results"]
                       if x["outcome"] not in ("ok", "already_running")]
            a = self.figures["actions"]
            a["start-refused-nested"] = a.get("start-refused-nested", 0) + len(refused)
            odd = [x for x in refused if not x["message"].startswith("supervisor ")]
            if odd:
                log(f"start refused: {odd[:5]}")

    def stop_all_and_measure(self) -> dict:
        self.stop_units(self.tree.supervisors_top())
        left: list = []

        # A service that ends by itself may end between the last start and this stop: it
        # then reads "exited" (down, ended by itself, not restarted), which is as down as
        # "stopped". Any other service must read "stopped".
        def down(n: str, u: dict) -> bool:
            return u["state"] == "stopped" or (u["state"] == "exited" and n in self.tree.periodic)

        def all_stopped() -> bool:
            left[:] = [(n, u["state"], u["pid"], u.get("exiting")) for n, u in
                       self.status().items() if u["kind"] == "service" and not down(n, u)]
            return not left
        try:
            wait_until(all_stopped, 60, "every service to stop")
        except harness.WaitTimeout:
            log(f"not stopped: {left[:10]}; {self.diagnose([f'{n}: ' for n, *_ in left[:3]])}")
            raise
        # vigild's spawner helper (a child named vigild) lives as long as vigild.
        wait_until(lambda: not [p for p in self.d.processes()
                                if p.pid != self.d.ns.init_pid and p.comm != "vigild"],
                   30, "every service process to end")
        return settled_fds(self.d.ns.init_pid)

    def judge_fds(self, where: str, now: dict, base: dict) -> None:
        """Exactly the baseline ("fds"), or else (BUG, see the report in the test below) more
        only by the output pipes of units removed by reloads, 2 per removed unit ("fds-beyond-
        removed")."""
        if len(now) == len(base):
            return
        # An incarnation that ended keeps its output pipes, at EOF, in vigild until its unit's
        # next spawn (Shell::retire); a re-exec does not carry pipes at EOF. After re-execs,
        # fewer pipes than the baseline, and nothing else different, is by design.
        k_now, k_base = fd_kinds(now), fd_kinds(base)
        fewer_pipes = k_base.pop("pipe", 0) - k_now.pop("pipe", 0)
        if self.figures["actions"].get("reexec") and fewer_pipes > 0 and k_now == k_base:
            log(f"{where}: {fewer_pipes} pipes fewer than the baseline (ended incarnations' "
                "pipes at EOF, not carried by a re-exec)")
            return
        # The driver may SIGKILL vigild's spawner helper (kill_spawner); after the second death
        # vigild spawns by itself for good and closes the helper's socket and pidfd. Those two
        # descriptors missing is by design, not a leak.
        k_now, k_base = fd_kinds(now), fd_kinds(base)
        if (self.figures["actions"].get("sigkill-spawner", 0) >= 2
                and k_base.get("anon_inode:[pidfd]", 0) - k_now.get("anon_inode:[pidfd]", 0) == 1
                and k_base.get("socket", 0) - k_now.get("socket", 0) == 1
                and len(base) - len(now) == 2):
            return
        msg = (f"{where}: {len(now)} fds at the end, {len(base)} at start; kinds now "
               f"{fd_kinds(now)}, at start {fd_kinds(base)}; {self.removed} units removed")
        self.violate("fds", msg)
        k_now, k_base = fd_kinds(now), fd_kinds(base)
        extra_pipes = k_now.pop("pipe", 0) - k_base.pop("pipe", 0)
        if k_now != k_base or not 0 <= extra_pipes <= 2 * self.removed:
            self.violate("fds-beyond-removed", msg)

    def run(self) -> None:
        log(f"seed {SEED} (VIGIL_SOAK_SEED), {SECONDS:.0f}s of chaos (VIGIL_SOAK_SECONDS)")
        self.d = Daemon({}, start=False)
        self.logdir = os.path.join(self.d.dir, "logs")
        os.mkdir(self.logdir)
        self.tree = Tree(self.d, self.logdir)
        self.tree.write_all()
        self.n_services0 = len(self.tree.services())
        log(f"{self.n_services0} services, {len(self.tree.supervisors())} supervisors, "
            f"{len(self.tree.writers)} line writers, {len(self.tree.periodic)} that end "
            f"by themselves")
        self.d.start()
        self.d.wait_socket(30)
        self.check_running("start")
        self.fd_start = len(fds_of(self.d.ns.init_pid))
        log(f"started: vigild has {self.fd_start} fds, RSS {vm_rss_kib(self.d.ns.init_pid)} KiB")

        # Baselines: fds in the steady state, then with every service stopped.
        self.fds_run0, self.set0 = self.steady("baseline")
        self.fds_stop0 = self.stop_all_and_measure()
        log(f"baseline: {len(self.fds_run0)} fds with {len(self.set0)} steady services "
            f"running, {len(self.fds_stop0)} with none")
        self.figures["fds"] = {"start": self.fd_start, "steady-0": len(self.fds_run0),
                               "all-stopped-0": len(self.fds_stop0)}
        self.start_all()
        self.check_running("restart-all")

        t0 = time.monotonic()
        next_cp = t0 + WARMUP
        warmed = False
        checkpoints_done = 0
        next_reexec = time.monotonic() + REEXEC_EVERY * self.rng.uniform(0.5, 1.5)
        n = 0
        while time.monotonic() - t0 < SECONDS:
            if not self.init_alive():
                self.check_alive("driver")
            if REEXEC_EVERY > 0 and time.monotonic() >= next_reexec:
                self.reexec()
                next_reexec = time.monotonic() + REEXEC_EVERY * self.rng.uniform(0.5, 1.5)
            self.act()
            n += 1
            time.sleep(self.rng.uniform(0.0, 0.08))
            if time.monotonic() >= next_cp:
                pause = time.monotonic()
                self.checkpoint(f"t={pause - t0:.0f}s")
                checkpoints_done += 1
                # Warm-up ends at the second checkpoint (~70 s at the default length): vigild
                # allocates a unit's ring and carry buffers when it first writes, so memory
                # keeps being committed until every kind of unit (reload-added ones included)
                # has logged once; measured curves plateau there (+8% to t=68s, +2% after).
                if not warmed and checkpoints_done >= 2:
                    warmed = True
                    self.rss_warm = self.rss_now()
                    log(f"warm-up over: RSS {self.rss_warm} KiB")
                t0 += time.monotonic() - pause   # checkpoints do not eat the chaos time
                next_cp = time.monotonic() + CHECKPOINT_EVERY
        self.figures["actions_total"] = n
        if REEXEC_EVERY > 0 and SECONDS >= 2 * REEXEC_EVERY and not self.figures["actions"].get(
                "reexec"):
            self.violate("reexec", f"no re-exec went through in {SECONDS:.0f} s "
                         f"({self.figures['actions'].get('reexec-refused', 0)} refused)")
        log(f"driver done: {n} actions {self.figures['actions']}")

        self.restore()
        self.checkpoint("end")
        st = self.status()
        self.figures["restarts"] = sum(u["restarts"] for u in st.values())
        self.rss_end = self.rss_now()
        if not warmed:
            self.rss_warm = self.rss_end
        self.figures["rss_kib"] = {"warm": self.rss_warm, "end": self.rss_end}
        growth = (self.rss_end - self.rss_warm) / self.rss_warm
        self.figures["rss_growth_pct"] = round(growth * 100, 2)
        if uses_asan(self.d.ns.init_pid):
            log(f"RSS growth {growth:.1%} not judged: vigild runs under ASan (quarantine)")
        elif self.rss_end - self.rss_warm >= max(0.05 * self.rss_warm, 1024):
            self.violate("rss", f"VmRSS {self.rss_warm} -> {self.rss_end} KiB (+{growth:.1%}, "
                                "over both 5% and 1 MiB)")

        fds_run1, set1 = self.steady("end")
        self.figures["fds"]["steady-end"] = len(fds_run1)
        self.judge_fds("steady state", fds_run1, self.fds_run0)
        self.check_lines_live()
        fds_stop1 = self.stop_all_and_measure()
        self.figures["fds"]["all-stopped-end"] = len(fds_stop1)
        self.judge_fds("all stopped", fds_stop1, self.fds_stop0)
        self.figures["units_removed"] = self.removed
        self.start_all()
        self.check_running("final")
        self.check_zombies("final")

        self.d.ns.signal_init(signal.SIGTERM)
        try:
            rc = self.d.wait_exit(60)
        except harness.WaitTimeout as e:
            self.violate("exit", f"vigild did not exit after SIGTERM: {e}")
            rc = None
        if rc is not None and rc != 0:
            self.violate("exit", f"vigild exited {rc} after SIGTERM; stderr tail: "
                         f"{self.d.stderr()[-2000:]}")
        left = self.d.ns.processes() if rc is not None else []
        if left:
            self.violate("exit", f"{len(left)} processes left: {[p.comm for p in left][:10]}")
        self.check_lines_files()
        self.check_lines_forwarded()
        err = self.d.stderr()
        m = harness.SANITIZER_REPORT.search(err)
        if m:
            self.violate("sanitizer", err[max(0, m.start() - 200):m.start() + 3000])
        log(f"figures: {json.dumps(self.figures)}")

    # -- the lines ----------------------------------------------------------------------------

    def files_of(self, writer: str) -> list:
        """The writer's log files, oldest first (name.N ... name.1, name)."""
        base = os.path.join(self.logdir, writer + ".log")
        rotated = []
        for f in os.listdir(self.logdir):
            if f.startswith(writer + ".log."):
                suffix = f[len(writer) + 5:]
                if suffix.isdigit():
                    rotated.append(int(suffix))
        if 1000 in rotated:
            self.violate("lines", f"{writer}: keep (1000) reached, lines may have been "
                         "rotated away: raise max_size")
        return [f"{base}.{i}" for i in sorted(rotated, reverse=True)] + [base]

    @staticmethod
    def parse(lines, out: dict, bad: list, where: str) -> None:
        """Appends (chunk, seq) per incarnation to out[prefix]."""
        for line in lines:
            m = LINE.match(line)
            if m is None:
                bad.append(f"{where}: unexpected line {line[:80]!r}")
                continue
            out.setdefault(m.group(1), []).append((int(m.group(2)), int(m.group(3))))

    @staticmethod
    def judge(inc: str, seqs: list, complete: bool) -> Optional[str]:
        """None when seqs is chunks 1..c in order, each 1..CHUNK, the last possibly cut short
        (or everything, when complete). Lines keep their order within a chunk; chunks are
        compared sorted (a stable sort), since the stderr chunk travels on its own pipe and may
        be read before the stdout chunk written just before it."""
        expect_chunk, expect_seq = 1, 1
        for chunk, seq in sorted(seqs, key=lambda cs: cs[0]):
            if chunk == expect_chunk and seq == expect_seq:
                pass
            elif chunk == expect_chunk + 1 and seq == 1 and expect_seq == CHUNK + 1:
                expect_chunk += 1
            else:
                return (f"{inc}: got chunk {chunk} seq {seq} where chunk {expect_chunk} "
                        f"seq {expect_seq} was due")
            expect_seq = seq + 1
        if complete and (expect_chunk, expect_seq) != (CHUNKS, CHUNK + 1):
            return f"{inc}: incomplete, ends before chunk {expect_chunk} seq {expect_seq}"
        return None

    def read_writer(self, writer: str, bad: list) -> dict:
        incs: dict = {}
        for path in self.files_of(writer):
            raw = harness.lines_of(path)
            self.parse(raw, incs, bad, os.path.basename(path))
        return incs

    def check_lines_live(self) -> None:
        """In the steady state (nothing restarts them): each writer's live incarnation wrote
        all its lines, and they are all in the files already."""
        last: list = []

        def done():
            problems = []
            st = self.status()
            for w in self.tree.writers:
                pid = st[w]["pid"]
                incs = self.read_writer(w, [])
                # The newest incarnation with that pid (pids may wrap: the nonce differs).
                live = [k for k in incs if k.startswith(f"w{w}-{pid}-")]
                if not live:
                    problems.append(f"{w}: nothing from its live pid {pid} in the files")
                    continue
                err = self.judge(live[-1], incs[live[-1]], complete=True)
                if err:
                    problems.append(err)
            last[:] = problems
            return not problems
        try:
            wait_until(done, 30, "the live writers' lines in the files", interval=0.2)
        except harness.WaitTimeout:
            self.violate("lines", f"live writers: {last[:10]}")

    def check_lines_files(self) -> None:
        total, incs_n, short = 0, 0, 0
        for w in self.tree.writers:
            bad: list = []
            incs = self.read_writer(w, bad)
            for b in bad[:5]:
                self.violate("lines", b)
            for inc, seqs in incs.items():
                incs_n += 1
                total += len(seqs)
                if len(seqs) < CHUNKS * CHUNK:
                    short += 1
                err = self.judge(inc, seqs, complete=False)
                if err:
                    self.violate("lines", f"{w}: {err}")
        self.figures["lines"] = {"verified": total, "incarnations": incs_n,
                                 "cut_short": short}
        if incs_n == 0:
            self.violate("lines", "no writer output at all")

    def check_lines_forwarded(self) -> None:
        """vigild's stdout carries `name | line` (stderr lines `name ! line`): the writers'
        lines there must be exactly those in the files."""
        fwd: dict = {}
        for line in self.d.stdout().splitlines():
            m = FWD.match(line)
            if m and m.group(1) in self.tree.writers:
                m2 = LINE.match(m.group(2))
                if m2:
                    fwd.setdefault(m2.group(1), []).append((int(m2.group(2)),
                                                            int(m2.group(3))))
        files: dict = {}
        for w in self.tree.writers:
            files.update(self.read_writer(w, []))
        diff = [k for k in set(fwd) | set(files) if fwd.get(k) != files.get(k)]
        self.figures["lines"]["forwarded"] = sum(len(v) for v in fwd.values())
        for k in diff[:5]:
            a, b = fwd.get(k, []), files.get(k, [])
            self.violate("forward", f"{k}: {len(a)} forwarded lines, {len(b)} in the files")


class SoakTest(unittest.TestCase):
    soak: Soak = None
    error: Optional[BaseException] = None

    @classmethod
    def setUpClass(cls) -> None:
        cls.soak = Soak()
        try:
            cls.soak.run()
        except BaseException as e:  # every test below then reports it
            cls.error = e
            log(f"soak aborted: {e!r}")
            if cls.soak.d is not None and cls.soak.d.ns is not None:
                log(f"vigild stderr tail: {cls.soak.d.stderr()[-3000:]}")

    @classmethod
    def tearDownClass(cls) -> None:
        if cls.soak.d is not None:
            cls.soak.d.close()

    def verdict(self, what: str) -> None:
        if self.error is not None:
            raise AssertionError(f"the soak did not complete: {self.error!r}")
        v = self.soak.violations[what]
        self.assertEqual(v, [], f"seed {SEED}: {len(v)} violations of '{what}'")

    def test_vigild_never_crashed_and_always_answered(self):
        self.verdict("alive")

    def test_no_unreaped_zombie(self):
        self.verdict("zombies")

    def test_every_permanent_service_runs_and_status_agrees_with_proc(self):
        self.verdict("running")

    def test_no_untracked_child_of_vigild(self):
        self.verdict("strays")

    # A unit removed by reload (or a temporary child that ended) releases everything its
    # Runtime held (Shell::release): 2 fds per removed unit leaked before that fix.
    def test_fd_count_back_to_baseline(self):
        self.verdict("fds")

    def test_fd_count_grows_only_by_the_pipes_of_removed_units(self):
        self.verdict("fds-beyond-removed")

    def test_rss_growth_under_5_percent_or_1_mib_after_warmup(self):
        self.verdict("rss")

    def test_every_log_line_in_the_files_exactly_once(self):
        self.verdict("lines")

    def test_forwarded_lines_match_the_files(self):
        self.verdict("forward")

    def test_sigterm_exits_0_and_leaves_no_process(self):
        self.verdict("exit")

    def test_no_sanitizer_report(self):
        self.verdict("sanitizer")

    def test_reexec_keeps_vigild_and_every_process(self):
        self.verdict("reexec")


class ReloadChurn(unittest.TestCase):
    """The soak's fd finding, isolated: adding and removing a unit by reload, 100 times, must
    leave vigild as it was (fds exactly, VmRSS within 1 MiB)."""

    # Was 2 fds and ~208 KiB of RSS per removed unit, for ever, before Shell::release.
    def test_add_remove_cycles_leave_vigild_as_it_was(self):
        d = Daemon({"a": {"command": [harness.testsvc(), "--id", "a", "sleep"]}})
        self.addCleanup(d.close)
        d.wait_socket()
        unit = os.path.join(d.units_dir, "x.json")

        def cycle():
            with open(unit, "w") as f:
                json.dump({"command": [harness.testsvc(), "--id", "x", "sleep"]}, f)
            self.assertEqual(d.ctl("reload").returncode, 0)
            wait_until(lambda: d.main_pid("x"), 10, "x to run")
            os.unlink(unit)
            self.assertEqual(d.ctl("reload").returncode, 0)
            wait_until(lambda: d.main_pid("x") is None, 10, "x to be gone")
        cycle()  # warm-up: first-use allocations
        fds0, rss0 = len(settled_fds(d.ns.init_pid)), vm_rss_kib(d.ns.init_pid)
        for _ in range(100):
            cycle()
        fds1, rss1 = len(settled_fds(d.ns.init_pid)), vm_rss_kib(d.ns.init_pid)
        log(f"100 add/remove reloads: fds {fds0} -> {fds1}, VmRSS {rss0} -> {rss1} KiB")
        self.assertEqual(fds1, fds0)
        if not uses_asan(d.ns.init_pid):  # ASan's quarantine holds freed memory on purpose
            self.assertLess(rss1 - rss0, 1024)


if __name__ == "__main__":
    unittest.main()
