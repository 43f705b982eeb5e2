"""Hostile: a service's output (docs/security.md §2, §3 and §6).

Output is read on vigild's loop and matched against the unit's patterns there, and copied to
vigild's standard output. Two ways to freeze PID 1 through it:

- A pattern that backtracks exponentially (`^(\\w+\\s?)*$` on a line of word characters that
  ends otherwise) run on kilobytes of output: without PCRE2's limits and a CPU budget per block
  of output, vigild spends seconds per line while nothing else is served.
- vigild's own standard output on a pipe nobody reads (a container runtime's log reader that
  hung): a blocking write would stop the loop; forwarded lines must be dropped and counted
  instead, while the ring, followers, readiness and supervision go on.
"""

from __future__ import annotations

import json
import os
import threading
import time
import unittest

from hostile import (FAST, PATIENT_ROOT, Daemon, HostileCase, harness, scaled, sh,
                     wait_until)

EVIL = r"^(\w+\s?)*$"

# Waits for the test's trigger file, then prints the attack text, pauses (so that the last
# line comes in a block of its own), prints a line the pattern matches, and sleeps.
ATTACK = r"""
n=0; while [ ! -e "$GO" ]; do sleep 0.02; n=$((n+1)); [ $n -gt 1500 ] && exit 9; done
cat "$TEXT"
sleep 0.5
echo "ready now"
exec sleep 100000
"""

FILLER = "filler-" * 70   # with " seq=N", a line of 500 bytes (vigil-testsvc's are < 512)

# One line every 50 ms, numbered.
TALKER = 'i=0; while :; do i=$((i+1)); echo "tick $i"; sleep 0.05; done'


def attack_text() -> str:
    """64 KiB of ordinary text the pattern does not match (each line backtracks
    exponentially) and a few long lines (one over the 16 KiB line limit)."""
    words = ["supervisor", "restarted", "worker", "connection", "timeout", "request",
             "handler", "queue", "backlog", "daemon"]
    lines, size, i = [], 0, 0
    while size < 64 * 1024:
        line = " ".join(words[(i + k) % len(words)] for k in range(6)) + "!"
        lines.append(line)
        size += len(line) + 1
        i += 1
        if i % 7 == 0:
            lines.append("a" * 60 + "!")   # one word, no space: the worst case
    for n in (4000, 12000, 20000):
        lines.append(("word " * (n // 5)).strip() + "!")
    return "\n".join(lines) + "\n"


def drain(fd: int) -> bytearray:
    """Reads fd to its end in a thread; returns the buffer it fills."""
    got = bytearray()

    def run():
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            got.extend(chunk)
    threading.Thread(target=run, daemon=True).start()
    return got


class Output(HostileCase):
    def test_a_backtracking_pattern_and_ready_log_on_64k_of_text(self):
        def build(d: Daemon) -> dict:
            os.chmod(d.dir, 0o755)
            text = os.path.join(d.dir, "attack.txt")
            with open(text, "w") as f:
                f.write(attack_text())
            d.go = os.path.join(d.dir, "go")
            env = {"GO": d.go, "TEXT": text}
            return {
                "root": PATIENT_ROOT,
                "pattern": {"command": sh(ATTACK), "env": env,
                            "patterns": [{"match": EVIL, "action": "event"}]},
                "readylog": {"command": sh(ATTACK), "env": env,
                             "ready": {"log": EVIL, "timeout": "60s"}},
                "talker": {"command": sh(TALKER)},
            }
        d = self.vigil(build, wait_running=("pattern", "talker"))
        self.assertEqual(d.status("readylog")["state"], "starting")

        open(d.go, "w").close()
        t_attack = time.time()
        worst, samples = 0.0, 0

        def done():
            r = d.ctl("logs", "--raw", "-n", "1", "pattern")
            q = d.ctl("logs", "--raw", "-n", "1", "readylog")
            return "ready now" in r.stdout and "ready now" in q.stdout
        deadline = time.monotonic() + scaled(30)
        while not done():
            self.assertLess(time.monotonic(), deadline, "vigild never read the whole attack")
            worst = max(worst, self.status_time(d))
            samples += 1
            time.sleep(0.02)
        self.assertGreater(samples, 0)
        self.assertLess(worst, scaled(0.1), f"status took {worst * 1000:.0f} ms during the "
                                            "attack")

        # readylog's last line (a block of its own) matched: it is ready.
        st = wait_until(lambda: (lambda s: s if s["ready"] and s["state"] == "running"
                                 else None)(d.status("readylog")), 10, "readylog to be ready")
        self.assertEqual(st["state"], "running")

        # The talker's lines kept flowing: vigild read them with no gap longer than 500 ms
        # (it prints one every 50 ms) while it matched the attack.
        r = d.ctl("--json", "logs", "-n", "1000", "talker")
        self.assertEqual(r.returncode, 0, r.stderr)
        times = [json.loads(line)["time"] / 1000 for line in r.stdout.splitlines()]
        during = [t for t in times if t >= t_attack - 0.2]
        self.assertGreater(len(during), 5, "the talker's lines stopped")
        gaps = [b - a for a, b in zip(during, during[1:])]
        self.assertLess(max(gaps), scaled(0.5), f"the talker's lines waited {max(gaps):.2f} s")
        self.after_attack(d)

    def stuck_streams_daemon(self, stderr_too: bool):
        """vigild with its stdout (and, with stderr_too, its stderr: the journal) on pipes
        nobody reads. Units: "chatty" prints 10000 lines of 500 bytes on a trigger (5 MB: more
        than the forwarder's 4 MiB queue; as JSON for a follower, 6 MB: less than the 8 MiB a
        follower may have waiting, so an honest follower is never dropped), then its ready line;
        "beat" crashes every 100 ms."""
        out_r, out_w = os.pipe()
        self.addCleanup(os.close, out_r)
        fds = [out_w]
        err_r = None
        if stderr_too:
            err_r, err_w = os.pipe()
            self.addCleanup(os.close, err_r)
            fds.append(err_w)

        def build(d: Daemon) -> dict:
            d.go = os.path.join(d.dir, "go")
            script = ('n=0; while [ ! -e "$GO" ]; do sleep 0.02; n=$((n+1)); '
                      '[ $n -gt 1500 ] && exit 9; done; '
                      'exec "$@"')
            return {
                "root": PATIENT_ROOT,
                "chatty": {"command": sh(script) + ["sh"] + d.svc(
                               "chatty", "lines", "10000", FILLER, "lines", "1", "READY",
                               "sleep"),
                           "env": {"GO": d.go},
                           "ready": {"log": "^READY seq=1$", "timeout": "60s"}},
                "beat": {"command": d.svc("beat", "crash-after", "100"), "backoff": FAST},
            }
        try:
            d = self.vigil(build, stdout_fd=out_w, stderr_fd=err_w if stderr_too else None)
        finally:
            for fd in fds:
                os.close(fd)
        return d, out_r, err_r

    def run_stuck_stdout(self, stderr_too: bool) -> None:
        d, out_r, err_r = self.stuck_streams_daemon(stderr_too)
        follower = harness.Run([harness.vigilctl(), "--socket", d.sock, "logs", "--raw", "-f", "-n", "0",
                                "chatty"])
        self.addCleanup(follower.close)
        wait_until(lambda: d.ctl("--json", "status", "chatty").returncode in (0, 3), 5)
        time.sleep(0.2)   # the follower has subscribed
        restarts = d.status("beat")["restarts"]
        open(d.go, "w").close()

        worst = 0.0

        def ready():
            nonlocal worst
            worst = max(worst, self.status_time(d))
            st = d.status("chatty")
            return st if st["ready"] and st["state"] == "running" else None
        st = wait_until(ready, 30, "chatty to become ready with vigild's stdout stuck")
        # When it fails, vigild's own longest loop turn says whose time it was: vigild's, or
        # the machine's (the client, or vigild, not scheduled).
        self.assertLess(worst, scaled(0.1), f"status took {worst * 1000:.0f} ms; vigild's "
                        f"longest loop turn: "
                        f"{d.request('version')['result']['loop_stall_max_ms']} ms")
        self.assertGreater(st["forward_dropped"], 0, "nothing dropped: was stdout stuck?")
        wait_until(lambda: b"READY seq=1" in follower.stdout, 10, "the follower's lines")
        self.assertEqual(follower.stdout.count(FILLER.encode()), 10000)
        wait_until(lambda: d.status("beat")["restarts"] > restarts + 3, 10,
                   "beat to be restarted while stdout is stuck")
        follower.close()
        if err_r is not None:
            # The journal was stuck too: read it from now on, so that the after-attack check
            # sees it.
            journal = drain(err_r)
            d.stderr = lambda: bytes(journal).decode("utf-8", "replace")
        # The attack ends when the reader reads again: the forwarder's queue (4 MiB, held on
        # purpose while stdout is stuck) drains, and the memory must come back.
        forwarded = drain(out_r)
        wait_until(lambda: b"lines dropped" in forwarded, 10, "the marker of dropped lines")
        self.after_attack(d)

    def test_shutdown_with_stdout_stuck_ends(self):
        # The forwarder's thread may be stuck in a write for good: a shutdown must not wait for
        # it for ever (it flushes for a bounded time, then leaves).
        d, out_r, _ = self.stuck_streams_daemon(False)
        open(d.go, "w").close()
        wait_until(lambda: d.status("chatty")["forward_dropped"] > 0, 20, "dropped lines")
        r = d.ctl("shutdown")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(d.wait_exit(20), 0, "\n".join(self.journal(d)[-10:]))
        self.assert_clean_journal(d)

    def test_stuck_stdout_costs_forwarded_lines_not_supervision(self):
        self.run_stuck_stdout(stderr_too=False)

    def test_stuck_stdout_and_journal_cost_lines_not_supervision(self):
        self.run_stuck_stdout(stderr_too=True)


if __name__ == "__main__":
    unittest.main()
