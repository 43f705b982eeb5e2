"""Reading /proc for the benchmark trials.

Every trial runs inside its own PID namespace with /proc remounted, so a scan of /proc sees only
the trial's processes: the namespace init (benchtool init), the trial driver, the supervisor under
test with its helper processes, and the services. Supervisor processes are recognised by their
`comm` (the executable's name, or the script's name for an interpreted supervisord).
"""

import os

CLK_TCK = os.sysconf("SC_CLK_TCK")


def pids():
    """All numeric entries of /proc (live processes and zombies)."""
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            out.append(int(name))
    return out


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm", "rb") as f:
            return f.read().decode(errors="replace").strip()
    except OSError:
        return None


def stat_fields(pid):
    """Fields of /proc/PID/stat after the command name: [state, ppid, ...]; None when gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode(errors="replace")
    except OSError:
        return None
    return raw[raw.rindex(")") + 2:].split()


def procs_by_comm(names):
    """Live (non-zombie) pids whose comm is in `names`."""
    found = []
    for pid in pids():
        c = comm(pid)
        if c in names:
            st = stat_fields(pid)
            if st and st[0] not in ("Z", "X"):
                found.append(pid)
    return found


def pss_kib(pid):
    """Proportional set size from smaps_rollup, in KiB (0 when gone)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_ticks(pid):
    """utime + stime of the whole thread group, in clock ticks."""
    st = stat_fields(pid)
    if not st:
        return 0
    # After "state" (index 0) the fields are ppid pgrp session tty tpgid flags minflt cminflt
    # majflt cmajflt utime stime: utime is stat field 14, i.e. index 11 here.
    return int(st[11]) + int(st[12])


def voluntary_switches(pid):
    """Sum of voluntary context switches over every thread of the process."""
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def thread_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


def sample(names):
    """One snapshot of the supervisor's own processes: {pid: (cpu_ticks, voluntary_switches)}."""
    return {p: (cpu_ticks(p), voluntary_switches(p)) for p in procs_by_comm(names)}


def sample_delta(before, after):
    """CPU seconds and voluntary switches spent between two samples (processes in both)."""
    cpu = 0
    sw = 0
    for pid, (c1, s1) in after.items():
        c0, s0 = before.get(pid, (c1, s1))
        cpu += c1 - c0
        sw += s1 - s0
    return cpu / CLK_TCK, sw
