"""Hostile: files a service can write, opened by vigild (docs/security.md §1): its log files and
its env_file.

Log files. The log folder belongs to the service's user (nobody), so the service can replace
its own log file, or the names rotation renames to, by symbolic links to files only root may
write. vigild must never write, create, truncate or rename through them as root: every open,
rename and removal of a log file happens with the service's identity, so the kernel refuses
what the service itself could not do.

The targets: a file in a root-only folder (0700: nobody cannot even look in) and a file in a
root folder anyone may read (0755, the file 0644: nobody can read it, not write it). A vigild
that opened or created as root would change a target or create a file in one of the folders;
each test compares both folders, names and bytes, before and after.

env_file. It is read at every spawn, as the unit's user, without blocking, and only when it is
a regular file of at most 1 MiB. A unit whose env_file is a link to /dev/zero, a FIFO nobody
writes, a 2 MiB file or a root-only file fails to start with an error that names the file,
while vigild goes on answering and spawning; a root-only secret never reaches the environment
of a service run as nobody.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import unittest
import uuid

from hostile import (FAST, NOBODY, PATIENT_ROOT, Daemon, HostileCase, TempGroup, environ_of,
                     harness, needs_root, public_copy, read_bytes, scaled, sh, wait_until)

# The service's side of the attack. It writes a few lines, then on each trigger file from the
# test (go1, go2, go3) plants symbolic links over its log file and the rotation targets and
# writes enough to rotate (max_size is 4 KiB). Every wait is bounded (30 s).
ATTACKER = r"""
set -u
L=$LOGDIR/$NAME.log
w() { i=0; while [ $i -lt $1 ]; do
        echo "$2 $i ................................................................"
        i=$((i+1)); done; }
wait_for() { n=0; while [ ! -e "$LOGDIR/$1" ]; do
               sleep 0.02; n=$((n+1)); [ $n -gt 1500 ] && exit 9; done; }
plant() {
  ln -sfn "$SECRET/target" "$L"
  ln -sfn "$SECRET/created" "$L.1"
  ln -sfn "$PUBLIC/created" "$L.2"
  ln -sfn "$PUBLIC/target" "$L.3"
}
w 10 before
wait_for go1
plant
w 300 rotate
touch "$LOGDIR/$NAME.done1"
wait_for go2
plant
touch "$LOGDIR/$NAME.planted2"
wait_for go3
w 100 reopened
touch "$LOGDIR/$NAME.done3"
exec sleep 100000
"""


def snapshot(folder: str) -> dict:
    """name -> (bytes, mode, uid, mtime) of every entry of folder."""
    out = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        st = os.lstat(path)
        out[name] = (read_bytes(path), st.st_mode, st.st_uid, st.st_mtime_ns)
    return out


class LogFiles(HostileCase):
    def prepare_folders(self, d: Daemon) -> None:
        os.chmod(d.dir, 0o755)
        d.logdir = os.path.join(d.dir, "logs")
        os.mkdir(d.logdir, 0o755)
        os.chown(d.logdir, NOBODY, NOBODY)
        d.secret = os.path.join(d.dir, "secret")      # root-only: nobody cannot look in
        os.mkdir(d.secret, 0o700)
        d.public = os.path.join(d.dir, "public")      # readable by all, writable by root
        os.mkdir(d.public, 0o755)
        for folder in (d.secret, d.public):
            path = os.path.join(folder, "target")
            with open(path, "w") as f:
                f.write("root's own file: must stay byte-identical\n")
            os.chmod(path, 0o644)

    def attacker(self, d: Daemon, name: str, keep: int) -> dict:
        return {"command": sh(ATTACKER), "user": "nobody", "cwd": "/",
                "env": {"LOGDIR": d.logdir, "NAME": name, "SECRET": d.secret,
                        "PUBLIC": d.public},
                "logs": {"file": os.path.join(d.logdir, name + ".log"), "max_size": "4KiB",
                         "keep": keep}}

    def log_daemon(self, args: tuple = ()) -> Daemon:
        def build(d: Daemon) -> dict:
            self.prepare_folders(d)
            # keep 2 rotates by renaming; keep 0 truncates the file in place.
            return {"victim": self.attacker(d, "victim", 2),
                    "victim0": self.attacker(d, "victim0", 0)}
        return self.vigil(build, args=args, wait_running=("victim", "victim0"))

    def wait_marker(self, d: Daemon, name: str, what: str, timeout: float = 20) -> None:
        path = os.path.join(d.logdir, f"{name}.{what}")
        wait_until(lambda: os.path.exists(path), timeout, f"{name} to reach {what}")

    def wait_read(self, d: Daemon, name: str, prefix: str) -> None:
        """Until vigild has read the service's last line of a phase (its ring has it)."""
        def seen():
            r = d.ctl("logs", "--raw", "-n", "1", name)
            return r.returncode == 0 and r.stdout.startswith(prefix)
        wait_until(seen, 20, f"vigild to read {name}'s line {prefix!r}")

    def touch(self, d: Daemon, name: str) -> None:
        open(os.path.join(d.logdir, name), "w").close()

    @needs_root
    def test_symlinks_at_the_log_file_and_rotation_targets_never_reach_root_files(self):
        d = self.log_daemon()
        before = {f: snapshot(f) for f in (d.secret, d.public)}
        for name in ("victim", "victim0"):
            wait_until(lambda: b"before 9" in read_bytes(os.path.join(d.logdir, name + ".log")),
                       10, f"{name}'s first lines in its file")

        # Phase 1: symlinks planted, then 30 KB written: the file rotates (or, keep 0, is
        # truncated) several times with the links in place.
        self.touch(d, "go1")
        for name in ("victim", "victim0"):
            self.wait_marker(d, name, "done1")
            self.wait_read(d, name, "rotate 299")
        # The attack was exercised: rotation (or truncation) met the planted link and a new
        # log file, the service's, took its place.
        for name in ("victim", "victim0"):
            path = os.path.join(d.logdir, name + ".log")
            wait_until(lambda: not os.path.islink(path), 10, f"{name}'s file to rotate")
            self.assertEqual(os.lstat(path).st_uid, NOBODY)

        # Phase 2: links planted again, then vigild is asked to reopen the files: by the
        # control socket and by SIGUSR2.
        self.touch(d, "go2")
        for name in ("victim", "victim0"):
            self.wait_marker(d, name, "planted2")
        for name in ("victim", "victim0"):
            r = d.ctl("logs", "--reopen", name)
            self.assertLess(r.returncode, 128, r.stderr)
        d.ns.signal_init(signal.SIGUSR2)
        self.touch(d, "go3")
        for name in ("victim", "victim0"):
            self.wait_marker(d, name, "done3")
            self.wait_read(d, name, "reopened 99")
        # The log writer thread works behind the ring: let it catch up before comparing (a
        # reopen through the links would have happened by the time the status answers).
        self.status_time(d)

        after = {f: snapshot(f) for f in (d.secret, d.public)}
        self.assertEqual(after, before, "a root-owned file or folder changed through a "
                         "symlink the service planted")
        for name in ("victim", "victim0"):
            st = d.status(name)
            self.assertEqual(st["state"], "running", st)
        self.after_attack(d)

    @needs_root
    def test_a_read_only_socket_group_member_may_not_reopen_log_files(self):
        group = TempGroup(self)
        d = self.log_daemon(args=("--socket-group", group.name))
        ctl = public_copy(d, harness.vigilctl())
        journal = len(self.journal(d))
        r = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}",
                            f"--groups={group.gid}", ctl, "--socket", d.sock,
                            "logs", "--reopen", "victim"],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=scaled(10))
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("may only run", r.stderr)
        self.assertEqual(r.stdout, "")
        # Refused, logged, and not done: no "reopen" in the journal after the refusal.
        wait_until(lambda: any("refused uid 65534" in line
                               for line in self.journal_since(d, journal)), 5,
                   "vigild to log the refusal")
        self.assertFalse(any("reopen" in line and "refused" not in line
                             for line in self.journal_since(d, journal)),
                         self.journal_since(d, journal))
        # A read-only command still works for the member (the refusal is about reopen).
        r = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}",
                            f"--groups={group.gid}", ctl, "--socket", d.sock,
                            "logs", "--raw", "-n", "1", "victim"],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=scaled(10))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.after_attack(d)


class EnvFile(HostileCase):
    def prepare(self, d: Daemon) -> None:
        os.chmod(d.dir, 0o755)
        d.envs = os.path.join(d.dir, "envs")
        os.mkdir(d.envs, 0o755)
        os.symlink("/dev/zero", os.path.join(d.envs, "zero"))
        os.mkfifo(os.path.join(d.envs, "fifo"), 0o666)
        with open(os.path.join(d.envs, "big"), "w") as f:   # 2 MiB, 2048 valid lines
            for i in range(2048):
                f.write(f"BIG{i}=" + "x" * (1024 - len(f"BIG{i}=") - 1) + "\n")
        with open(os.path.join(d.envs, "many"), "w") as f:  # 5000 variables, 44 KiB
            f.write("".join(f"V{i}=1\n" for i in range(5000)))
        d.secret_value = "vigil-secret-" + uuid.uuid4().hex
        secret_dir = os.path.join(d.dir, "secret")               # root-only folder
        os.mkdir(secret_dir, 0o700)
        d.secret_file = os.path.join(secret_dir, "env")
        with open(d.secret_file, "w") as f:
            f.write(f"VIGIL_SECRET={d.secret_value}\n")
        os.chmod(d.secret_file, 0o600)
        os.symlink(d.secret_file, os.path.join(d.envs, "secret-link"))
        d.root_only = os.path.join(d.envs, "root-only")          # a root 0600 file, in view
        with open(d.root_only, "w") as f:
            f.write(f"VIGIL_SECRET={d.secret_value}\n")
        os.chmod(d.root_only, 0o600)

    def unit(self, d: Daemon, ident: str, env_file: str, **fields) -> dict:
        # Restarts are slow (1 s) so that a failed unit waits in backoff with its reason.
        unit = {"command": d.svc(ident, "sleep"), "env_file": env_file,
                "backoff": {"initial": "1s", "max": "1s", "jitter": 0}}
        unit.update(fields)
        return unit

    @needs_root
    def test_hostile_env_files_fail_the_start_with_a_clear_error_and_vigild_stays_free(self):
        d = self.vigil(lambda d: {"root": PATIENT_ROOT,
                                  "other": {"command": d.svc("other", "sleep"),
                                            "backoff": FAST}},
                       prepare=self.prepare, wait_running=("other",))
        e = d.envs
        attacks = {
            "zero": self.unit(d, "zero", os.path.join(e, "zero")),
            "fifo": self.unit(d, "fifo", os.path.join(e, "fifo")),
            "big": self.unit(d, "big", os.path.join(e, "big")),
            "many": self.unit(d, "many", os.path.join(e, "many")),
            "secret-link": self.unit(d, "secret-link", os.path.join(e, "secret-link"),
                                     user="nobody"),
            "root-only": self.unit(d, "root-only", d.root_only, user="nobody"),
        }
        units = {"root": PATIENT_ROOT, "other": {"command": d.svc("other", "sleep"),
                                                 "backoff": FAST},
                 "bystander": self.bystander(d)}
        units.update(attacks)
        d.write_units(units)
        r = d.ctl("reload", "--no-wait")  # the units fail to start: their errors are checked below
        self.assertEqual(r.returncode, 0, r.stderr)
        t_added = time.monotonic()

        # While the FIFO's spawn is pending (or failed), vigild answers at once and can still
        # spawn: a restart of "other" gets a new process.
        for _ in range(5):
            self.assert_answers_quickly(d, "while an env_file FIFO is pending")
        old = d.main_pid("other")
        r = d.ctl("restart", "other")
        self.assertEqual(r.returncode, 0, r.stderr)
        d.wait_pid("other", other_than=old, timeout=2)

        expect = {"zero": "zero", "fifo": "fifo", "big": "big", "many": "many",
                  "secret-link": "secret-link", "root-only": "root-only"}
        for name, path_part in expect.items():
            def failed():
                st = d.status(name)
                return st if st["last_reason"] else None
            st = wait_until(failed, 10, f"{name} to fail its start")
            self.assertNotEqual(st["state"], "running", st)
            self.assertIn("env_file", st["last_reason"], st)
            self.assertIn(path_part, st["last_reason"], st)
            self.assertIsNone(d.main_pid(name), f"{name} runs: {st}")
        # Each failed within a few seconds (a blocking read of the FIFO would hang its spawn
        # until the spawner's 30 s deadline).
        self.assertLess(time.monotonic() - t_added, scaled(10))
        for line in self.journal(d):
            self.assertNotIn(d.secret_value, line)
        self.after_attack(d)

    @needs_root
    def test_a_root_only_env_file_never_reaches_a_nobody_service(self):
        # With "-", a file that cannot be read may be skipped and the service may start: then
        # its environment must not hold the secret (a vigild reading env_file as root would
        # pass it on). Without "-" the start fails, as in the test above.
        d = self.vigil(lambda d: {"root": PATIENT_ROOT}, prepare=self.prepare)
        units = {"root": PATIENT_ROOT, "bystander": self.bystander(d),
                 "link": self.unit(d, "link", "-" + os.path.join(d.envs, "secret-link"),
                                   user="nobody"),
                 "direct": self.unit(d, "direct", "-" + d.root_only, user="nobody")}
        d.write_units(units)
        r = d.ctl("reload", "--no-wait")  # the units fail to start: their errors are checked below
        self.assertEqual(r.returncode, 0, r.stderr)
        secret = d.secret_value.encode()
        for name in ("link", "direct"):
            def settled():
                st = d.status(name)
                if st["state"] == "running" and d.main_pid(name):
                    return "running"
                return "failed" if st["last_reason"] else None
            outcome = wait_until(settled, 10, f"{name} to start or fail")
            if outcome == "running":
                env = environ_of(d.main_pid(name))
                self.assertIn(b"VIGIL_UNIT=" + name.encode(), env)  # really its environ
                self.assertNotIn(secret, env, f"{name}'s environment holds the secret")
            else:
                self.assertIn("env_file", d.status(name)["last_reason"])
            self.assertNotIn(d.secret_value, d.ctl("--json", "status", name).stdout)
        for line in self.journal(d):
            self.assertNotIn(d.secret_value, line)
        self.after_attack(d)


if __name__ == "__main__":
    unittest.main()
