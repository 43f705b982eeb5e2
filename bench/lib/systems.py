"""The supervisors under test: how to lay out N services, start, stop, query and log with each.

Each System writes its own configuration into a fresh work directory and says which processes are
"the supervisor" (for PSS, CPU and wake-up accounting: never the services themselves). Every peer
runs with its defaults except where a default would make the measurement meaningless; those
deviations are listed in `notes` and printed under the results table.

The services are the same everywhere: `/bin/sleep ARG` (runit and s6 need a run script, which
`exec`s it from /bin/sh as their documentation does), the numbered-line writer for the log test
and `benchtool stamp` for the crash loop.
"""

import json
import os
import resource
import shutil
import signal

# From this many services on, a supervisor that can send a service's stderr into its stdout pipe
# does (vigil: "logs": {"stderr": "stdout"}; supervisord: redirect_stderr=true). Two pipes a
# service take 2N descriptors plus the supervisor's own, 20,256 for vigild at 10,000, above a hard
# RLIMIT_NOFILE of 20,000 that root cannot raise without CAP_SYS_RESOURCE. Smaller fleets keep
# the defaults, so that their rows keep their meaning from run to run.
MERGED_STREAMS_FROM = 10000


def svc_name(i):
    return f"svc{i:05d}"


def write(path, text, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def sh_run(argv):
    """A runit/s6 run script that execs argv (so the service's pid is the run script's)."""
    quoted = " ".join("'" + a.replace("'", "'\\''") + "'" for a in argv)
    return f"#!/bin/sh\nexec {quoted}\n"


class System:
    name = "?"
    comms = set()  # comm of the supervisor's own processes
    logger_comms = set()  # extra processes that carry logs (svlogd, s6-log)
    benign = ()  # what its output always says, though it looks like a complaint
    static_children = False  # are the root's direct children supervise processes, never services?
    stop_how = ""
    restart_throttle = ""
    notes = []

    def __init__(self, tools):
        self.tools = tools  # dict: benchtool, vigild, vigilctl

    def available(self):
        return all(shutil.which(b) for b in self.binaries())

    def binaries(self):
        return []

    # services: list of (name, argv); opts: {"crash": bool, "log": (out_dir, ...)}
    def prepare(self, work, services, log=None, crash=False):
        raise NotImplementedError

    def start_argv(self, work):
        raise NotImplementedError

    def stop(self, proc, work):
        proc.send_signal(signal.SIGTERM)

    def status_argv(self, work, name):
        raise NotImplementedError

    def status_all_argv(self, work, n):
        """One command that shows the status of all n services; None when the system has none."""
        return None

    def log_files(self, outdir):
        """Output files of the log test, oldest first."""
        raise NotImplementedError

    def log_current(self, outdir):
        """The file that receives the newest lines."""
        raise NotImplementedError


class Vigil(System):
    name = "vigil"
    comms = {"vigild"}
    stop_how = "SIGTERM to vigild"
    restart_throttle = "vigil's backoff (unit defaults)"
    notes = [
        "vigil: the N services are independent, as under the peers, so root.json says "
        "`\"parallel\": true` (start and stop them together; the default is OTP's one at a "
        "time); crash-loop and restart trials also set intensity 1000000 per 1s so the root "
        "supervisor never gives up; all else is unit defaults.",
        f"vigil: fleets of {MERGED_STREAMS_FROM:,} or more services have "
        "`\"logs\": {\"stderr\": \"stdout\"}` in every unit (one pipe a service instead of "
        "two): separate streams need 20,256 descriptors at 10,000, above this machine's hard "
        "RLIMIT_NOFILE (ulimit -Hn), which root cannot raise without CAP_SYS_RESOURCE. Smaller "
        "fleets keep the default (separate).",
    ]

    def available(self):
        return bool(self.tools.get("vigild")) and os.access(self.tools["vigild"], os.X_OK)

    def prepare(self, work, services, log=None, crash=False, lenient=False):
        units = os.path.join(work, "units")
        os.makedirs(units, exist_ok=True)
        root = {"parallel": True}
        if crash or lenient:
            root.update({"intensity": 1000000, "period": "1s"})
        write(os.path.join(units, "root.json"), json.dumps(root) + "\n")
        # VIGIL_BENCH_UNIT_EXTRA: a JSON object merged into every vigil unit, for experiments
        # (e.g. '{"backoff": {"initial": "0ms"}}'); bench/run prints it under the table.
        extra = json.loads(os.environ.get("VIGIL_BENCH_UNIT_EXTRA") or "{}")
        for name, argv in services:
            unit = {"command": argv, **extra}
            if len(services) >= MERGED_STREAMS_FROM:
                unit["logs"] = {"stderr": "stdout"}
            if log:
                unit["logs"] = {"file": os.path.join(log, "out.log"), "max_size": "1GiB",
                                "keep": 2, "forward": False}
            write(os.path.join(units, name + ".json"), json.dumps(unit) + "\n")

    def start_argv(self, work):
        return [self.tools["vigild"], "--units", os.path.join(work, "units"),
                "--socket", os.path.join(work, "control.sock")]

    def status_argv(self, work, name):
        return [self.tools["vigilctl"], "--socket", os.path.join(work, "control.sock"),
                "status", name]

    def status_all_argv(self, work, n):
        return [self.tools["vigilctl"], "--socket", os.path.join(work, "control.sock"), "status"]

    def log_files(self, outdir):
        # Rotated files first (oldest = highest suffix), then the live file.
        names = [n for n in os.listdir(outdir) if n.startswith("out.log")]
        rotated = sorted((n for n in names if n != "out.log"),
                         key=lambda n: os.path.getmtime(os.path.join(outdir, n)))
        files = rotated + (["out.log"] if "out.log" in names else [])
        return [os.path.join(outdir, n) for n in files]

    def log_current(self, outdir):
        return os.path.join(outdir, "out.log")


class Runit(System):
    name = "runit"
    comms = {"runsvdir", "runsv"}
    logger_comms = {"svlogd"}
    static_children = True
    stop_how = "SIGHUP to runsvdir (TERM to every runsv, which stops its service and exits)"
    restart_throttle = "runsv: restarts at once if the run lasted >= 1 s, else waits 1 s"
    notes = ["runit: `runsvdir DIR`, one `runsv` per service, run scripts `exec` the service "
             "from /bin/sh; log test: `svlogd` with `s0` (no rotation) and default buffer. "
             "runsvdir starts at most 1,000 services (runsvdir(8); compiled in, no option "
             "raises it), so it cannot pass a fleet of 10,000; status of all: `sv status` with "
             "every service directory as an argument."]

    def binaries(self):
        return ["runsvdir", "runsv", "sv", "svlogd"]

    def prepare(self, work, services, log=None, crash=False, lenient=False):
        base = os.path.join(work, "sv")
        os.makedirs(base, exist_ok=True)
        for name, argv in services:
            write(os.path.join(base, name, "run"), sh_run(argv), 0o755)
            if log:
                write(os.path.join(base, name, "log", "run"),
                      sh_run(["svlogd", log]), 0o755)
                write(os.path.join(log, "config"), "s0\n")

    def start_argv(self, work):
        return ["runsvdir", os.path.join(work, "sv")]

    def stop(self, proc, work):
        proc.send_signal(signal.SIGHUP)

    def status_argv(self, work, name):
        return ["sv", "status", os.path.join(work, "sv", name)]

    def status_all_argv(self, work, n):
        return ["sv", "status"] + [os.path.join(work, "sv", svc_name(i)) for i in range(1, n + 1)]

    def log_files(self, outdir):
        rotated = sorted(n for n in os.listdir(outdir) if n.startswith("@"))
        return [os.path.join(outdir, n) for n in rotated + ["current"]]

    def log_current(self, outdir):
        return os.path.join(outdir, "current")


class S6(System):
    name = "s6"
    comms = {"s6-svscan", "s6-supervise"}
    logger_comms = {"s6-log"}
    static_children = True
    stop_how = "SIGTERM to s6-svscan"
    restart_throttle = "s6-supervise: waits 1 s between two spawns"
    notes = ["s6: `s6-svscan -c 2N+64 DIR` (the default limit is 500 services), one "
             "`s6-supervise` per service, run scripts `exec` the service from /bin/sh; log test: "
             "`s6-log n100 s268435455` (rotates every 256 MiB, keeps all). s6 has no command "
             "for the status of all services (`s6-svstat` takes one directory)."]

    def binaries(self):
        return ["s6-svscan", "s6-supervise", "s6-svstat", "s6-log"]

    def prepare(self, work, services, log=None, crash=False, lenient=False):
        base = os.path.join(work, "scan")
        os.makedirs(os.path.join(base, ".s6-svscan"), exist_ok=True)
        self.count = len(services)
        for name, argv in services:
            write(os.path.join(base, name, "run"), sh_run(argv), 0o755)
            if log:
                write(os.path.join(base, name, "log", "run"),
                      sh_run(["s6-log", "n100", "s268435455", log]), 0o755)

    def start_argv(self, work):
        return ["s6-svscan", "-c", str(2 * getattr(self, "count", 1) + 64),
                os.path.join(work, "scan")]

    def status_argv(self, work, name):
        return ["s6-svstat", os.path.join(work, "scan", name)]

    def log_files(self, outdir):
        rotated = sorted(n for n in os.listdir(outdir) if n.startswith("@"))
        return [os.path.join(outdir, n) for n in rotated + ["current"]]

    def log_current(self, outdir):
        return os.path.join(outdir, "current")


class Supervisord(System):
    name = "supervisord"
    comms = {"supervisord"}
    benign = ("running without any HTTP authentication",)
    stop_how = "SIGTERM to supervisord"
    restart_throttle = ("supervisord: backoff 1 s, 2 s, 3 s... while a run lasts < startsecs "
                        "(1 s), FATAL after startretries (3)")
    notes = ["supervisord: `supervisord -n`, programs with `stdout_logfile=NONE` "
             "(log test: `stdout_logfile=FILE`, `stdout_logfile_maxbytes=0`), "
             "minfds raised to 8 a program + 256 (at most the hard RLIMIT_NOFILE); fleets of "
             f"{MERGED_STREAMS_FROM:,} or more also `redirect_stderr=true`, as vigil's (2 pipes "
             "a program instead of 3: stdin and stdout; still above 20,000 descriptors at "
             "10,000); otherwise defaults (startsecs=1, startretries=3)."]

    def binaries(self):
        return ["supervisord", "supervisorctl"]

    def conf(self, work):
        return os.path.join(work, "supervisord.conf")

    def prepare(self, work, services, log=None, crash=False, lenient=False):
        os.makedirs(work, exist_ok=True)
        sock = os.path.join(work, "supervisor.sock")
        lines = [
            "[unix_http_server]", f"file={sock}", "",
            "[supervisord]", "nodaemon=true", "user=root",
            f"logfile={os.path.join(work, 'supervisord.log')}",
            f"pidfile={os.path.join(work, 'supervisord.pid')}",
            f"childlogdir={work}",
            f"minfds={self.minfds(len(services))}", "",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface", "",
            "[supervisorctl]", f"serverurl=unix://{sock}", "",
        ]
        for name, argv in services:
            lines += [f"[program:{name}]", "command=" + " ".join(argv), "autostart=true"]
            if log:
                lines += [f"stdout_logfile={os.path.join(log, 'out.log')}",
                          "stdout_logfile_maxbytes=0", "stderr_logfile=NONE",
                          "autorestart=false"]
            else:
                lines += ["stdout_logfile=NONE", "stderr_logfile=NONE", "autorestart=true"]
            if len(services) >= MERGED_STREAMS_FROM:
                lines.append("redirect_stderr=true")
            lines.append("")
        write(self.conf(work), "\n".join(lines))

    @staticmethod
    def minfds(count):
        """supervisord refuses to start when minfds is above the hard RLIMIT_NOFILE, and raises
        its soft limit to minfds: as many as it may need, but no more than it can get."""
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        want = max(1024, 8 * count + 256)
        return want if hard == resource.RLIM_INFINITY else min(want, hard)

    def start_argv(self, work):
        return ["supervisord", "-n", "-c", self.conf(work)]

    def status_argv(self, work, name):
        return ["supervisorctl", "-c", self.conf(work), "status", name]

    def status_all_argv(self, work, n):
        return ["supervisorctl", "-c", self.conf(work), "status"]

    def log_files(self, outdir):
        return [os.path.join(outdir, "out.log")]

    def log_current(self, outdir):
        return os.path.join(outdir, "out.log")


class Floor(System):
    """No supervisor at all: bench/floor posix_spawn()s the N services and, on SIGTERM, sends
    SIGTERM to each and reaps them. Only the start and stop of a fleet mean anything for it: the
    least work any supervisor can do, timed the same way (bench/run's "floor" column)."""

    name = "floor"
    comms = {"floor"}
    stop_how = "SIGTERM to floor (SIGTERM to each service, then waits for all)"
    restart_throttle = "none: nothing is restarted"
    notes = ["floor: `bench/floor N -- /bin/sleep 100000` (bench/floor.c): N posix_spawn() calls "
             "in a row, no pipes, no session or group, no supervision; stop = SIGTERM to each "
             "pid, then wait for all. Start and stop rows only."]

    def available(self):
        return bool(self.tools.get("floor")) and os.access(self.tools["floor"], os.X_OK)

    def prepare(self, work, services, log=None, crash=False, lenient=False):
        if log or crash or lenient:
            raise ValueError("floor only runs fleet trials (start and stop)")
        argvs = {tuple(argv) for _, argv in services}
        if len(argvs) != 1:
            raise ValueError("floor starts N copies of one command")
        self.count = len(services)
        self.argv = list(argvs.pop())

    def start_argv(self, work):
        return [self.tools["floor"], str(self.count), "--", *self.argv]

    def status_argv(self, work, name):
        return None


class Direct(System):
    """No supervisor: the log writer piped straight into `cat > FILE`, the log test's ceiling."""

    name = "direct"
    comms = {"cat"}

    def binaries(self):
        return ["cat"]

    def prepare(self, work, services, log=None, crash=False, lenient=False):
        argv = services[0][1]
        quoted = " ".join("'" + a + "'" for a in argv)
        self.cmd = f"exec {quoted} | cat > '{os.path.join(log, 'out.log')}'"

    def start_argv(self, work):
        return ["sh", "-c", self.cmd]

    def stop(self, proc, work):
        # The writer pauses once done; end the pipeline (this namespace holds nothing else).
        import procfs
        for pid in procfs.procs_by_comm({"benchtool", "cat", "sh"}):
            if pid not in (1, os.getpid()):
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass

    def log_files(self, outdir):
        return [os.path.join(outdir, "out.log")]

    def log_current(self, outdir):
        return os.path.join(outdir, "out.log")


class DirectSetsid(Direct):
    """The ceiling again, with the writer in a session of its own (`setsid`), as supervisors that
    start services with setsid() run them (vigil; supervisord only calls setpgrp()). With
    /proc/sys/kernel/sched_autogroup_enabled = 1 a session is a scheduling group of its own, and on
    a loaded machine every hand-over between writer and reader then waits for the scheduler."""

    name = "direct-setsid"
    comms = {"cat"}

    def prepare(self, work, services, log=None, crash=False, lenient=False):
        super().prepare(work, services, log=log, crash=crash, lenient=lenient)
        self.cmd = "exec setsid " + self.cmd[len("exec "):]


ALL = [Vigil, Runit, S6, Supervisord, Floor, Direct, DirectSetsid]


def make(name, tools):
    for cls in ALL:
        if cls.name == name:
            return cls(tools)
    raise KeyError(name)
