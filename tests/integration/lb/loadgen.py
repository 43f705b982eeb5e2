#!/usr/bin/env python3
"""A bounded HTTP load generator for loopback servers: the client side of the zero-downtime
tests (tests/integration/test_zero_downtime.py) and benchmark (bench/rolling.py). Python 3
standard library only; importable (LoadGen) and runnable (`loadgen.py --port 8080 -d 5`).

N client threads each send one GET at a time, on a new connection per request, so that a
socket nobody listens on shows as a refused connection instead of hiding in a kept-alive one.
Each request ends as exactly one of:
- ok: a complete `HTTP/1.x 200` reply (its body says which instance and pid answered);
- refused: connect() failed with ECONNREFUSED: no socket listens on the port;
- reset: ECONNRESET or EPIPE, or EOF before the first byte of a reply: the connection was
  accepted, or queued on a socket, that went away (a killed process, a closed accept queue);
- failed: anything else: a bad or partial reply, a timeout (connect or reply), another error.
Every outcome carries its time (time.monotonic(), CLOCK_MONOTONIC: the same clock in every
process of the machine), so a test can tell in which phase a failure fell; successes also
carry their latency (connect to the reply's end).

Bounds: loopback addresses only; at most 256 clients; every request ends within `timeout`
seconds (connect and each read); the run ends at stop() or after `max_seconds`, whichever
comes first, and stop() waits at most `timeout` + 1 s for the clients. After a refusal or a
reset a client pauses `pause` seconds (default 5 ms), so a closed port costs little CPU; the
count of refusals is therefore a count of attempts at that pace, not of users turned away.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import ipaddress
import json
import re
import socket
import sys
import threading
import time
from typing import Optional

KINDS = ("ok", "refused", "reset", "failed")
MAX_CLIENTS = 256
MAX_REPLY = 64 * 1024


@dataclasses.dataclass(frozen=True)
class Outcome:
    t: float              # time.monotonic() when the request ended
    kind: str             # one of KINDS
    latency: float        # seconds from connect() to the end
    detail: str = ""      # why it failed, or the body of a success ("instance=2 pid=123")


def percentile(sorted_values: list, p: float) -> Optional[float]:
    """Nearest-rank percentile of an ascending list; None when empty."""
    if not sorted_values:
        return None
    rank = max(1, min(len(sorted_values), int(-(-p * len(sorted_values) // 100))))
    return sorted_values[rank - 1]


class Report:
    """What a run saw. `outcomes` is in completion order (each client's are in order)."""

    def __init__(self, outcomes: list, started: float, ended: float, clients: int) -> None:
        self.outcomes = sorted(outcomes, key=lambda o: o.t)
        self.started, self.ended, self.clients = started, ended, clients

    def select(self, t0: float = float("-inf"), t1: float = float("inf")) -> list:
        return [o for o in self.outcomes if t0 <= o.t < t1]

    def counts(self, t0: float = float("-inf"), t1: float = float("inf")) -> dict:
        out = {k: 0 for k in KINDS}
        for o in self.select(t0, t1):
            out[o.kind] += 1
        return out

    def failures(self, t0: float = float("-inf"), t1: float = float("inf")) -> list:
        return [o for o in self.select(t0, t1) if o.kind != "ok"]

    def latencies(self, t0: float = float("-inf"), t1: float = float("inf")) -> list:
        return sorted(o.latency for o in self.select(t0, t1) if o.kind == "ok")

    def per_second(self) -> list:
        """Successes completed in each whole second of the run, from its start."""
        n = max(1, int(self.ended - self.started + 0.999))
        out = [0] * n
        for o in self.outcomes:
            if o.kind == "ok":
                out[min(n - 1, max(0, int(o.t - self.started)))] += 1
        return out

    def pids(self, t0: float = float("-inf"), t1: float = float("inf")) -> set:
        return {o.detail.split("pid=")[1].split()[0] for o in self.select(t0, t1)
                if o.kind == "ok" and "pid=" in o.detail}

    def summary(self, t0: float = float("-inf"), t1: float = float("inf")) -> dict:
        lat = self.latencies(t0, t1)
        lo, hi = max(t0, self.started), min(t1, self.ended)
        secs = max(hi - lo, 1e-9)
        ms = (lambda v: None if v is None else round(v * 1000, 2))
        return {**self.counts(t0, t1), "seconds": round(secs, 3),
                "rps": round(len(lat) / secs, 1), "p50_ms": ms(percentile(lat, 50)),
                "p90_ms": ms(percentile(lat, 90)), "p99_ms": ms(percentile(lat, 99)),
                "max_ms": ms(lat[-1] if lat else None), "clients": self.clients,
                "failures": [{"t": round(o.t - self.started, 4), "kind": o.kind,
                              "detail": o.detail} for o in self.failures(t0, t1)][:50]}


def check_loopback(host: str) -> None:
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise ValueError(f"loadgen: {host}: not a loopback address (127.0.0.0/8 or ::1)")


_STATUS = re.compile(rb"^HTTP/1\.[01] (\d{3}) ")


def one_request(host: str, port: int, timeout: float, path: str) -> tuple:
    """(kind, detail) of one GET on a new connection."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    got = b""
    try:
        try:
            sock.connect((host, port))
        except ConnectionRefusedError:
            return "refused", "ECONNREFUSED"
        except socket.timeout:
            return "failed", "connect timeout"
        sock.sendall(b"GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
                     % (path.encode(), host.encode()))
        while len(got) < MAX_REPLY:
            chunk = sock.recv(MAX_REPLY - len(got))
            if not chunk:
                break
            got += chunk
    except (ConnectionResetError, BrokenPipeError) as e:
        return "reset", f"{errno.errorcode.get(e.errno, e.errno)} after {len(got)} bytes"
    except socket.timeout:
        return "failed", f"timeout after {len(got)} bytes"
    except OSError as e:
        return "failed", f"{e.strerror or e} after {len(got)} bytes"
    finally:
        sock.close()
    if not got:
        return "reset", "EOF before a reply"
    m = _STATUS.match(got)
    head, sep, body = got.partition(b"\r\n\r\n")
    length = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
    if not m or m.group(1) != b"200" or not sep or not length or len(body) != int(length.group(1)):
        return "failed", f"bad reply: {got[:80]!r}"
    return "ok", body.decode("utf-8", "replace").strip()


class LoadGen:
    def __init__(self, port: int, host: str = "127.0.0.1", clients: int = 8,
                 timeout: float = 5.0, max_seconds: float = 60.0, path: str = "/",
                 pause: float = 0.005) -> None:
        check_loopback(host)
        if not 1 <= clients <= MAX_CLIENTS:
            raise ValueError(f"loadgen: clients: {clients}: expected 1..{MAX_CLIENTS}")
        if not 0 < timeout <= 600 or not 0 < max_seconds <= 3600:
            raise ValueError("loadgen: timeout is 0..600 s, max_seconds 0..3600 s")
        self.host, self.port, self.clients, self.timeout = host, port, clients, timeout
        self.max_seconds, self.path, self.pause = max_seconds, path, pause
        self._stop = threading.Event()
        self._threads: list = []
        self._results: list = []
        self.started = self.ended = 0.0

    def _client(self, sink: list) -> None:
        deadline = self.started + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            t0 = time.monotonic()
            kind, detail = one_request(self.host, self.port, self.timeout, self.path)
            t1 = time.monotonic()
            sink.append(Outcome(t1, kind, t1 - t0, detail))
            if kind in ("refused", "reset"):
                self._stop.wait(self.pause)

    def start(self) -> "LoadGen":
        self.started = time.monotonic()
        for _ in range(self.clients):
            sink: list = []
            self._results.append(sink)
            t = threading.Thread(target=self._client, args=(sink,), daemon=True)
            self._threads.append(t)
            t.start()
        return self

    def stop(self) -> Report:
        self._stop.set()
        self.ended = time.monotonic()
        for t in self._threads:
            t.join(max(0.0, self.ended + self.timeout + 1 - time.monotonic()))
        stuck = sum(t.is_alive() for t in self._threads)
        if stuck:
            raise RuntimeError(f"loadgen: {stuck} clients still run past their timeout")
        return Report([o for sink in self._results for o in sink], self.started,
                      time.monotonic(), self.clients)

    def __enter__(self) -> "LoadGen":
        return self.start()

    def __exit__(self, *exc) -> None:
        if self._threads and not self._stop.is_set():
            self.stop()


def main(argv: list) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("-c", "--clients", type=int, default=8)
    ap.add_argument("-d", "--duration", type=float, default=5.0, help="seconds (at most 3600)")
    ap.add_argument("--timeout", type=float, default=5.0, help="seconds per request")
    ap.add_argument("--json", action="store_true", help="the summary as JSON")
    args = ap.parse_args(argv)
    gen = LoadGen(args.port, args.host, args.clients, args.timeout, args.duration).start()
    time.sleep(args.duration)
    report = gen.stop()
    s = report.summary()
    if args.json:
        s["per_second"] = report.per_second()
        print(json.dumps(s, indent=1))
    else:
        print(f"{s['ok']} ok, {s['refused']} refused, {s['reset']} reset, {s['failed']} failed "
              f"in {s['seconds']} s: {s['rps']} req/s, p50 {s['p50_ms']} ms, "
              f"p99 {s['p99_ms']} ms, max {s['max_ms']} ms")
        for f in s["failures"][:10]:
            print(f"  +{f['t']:.3f}s {f['kind']}: {f['detail']}")
    return 0 if s["refused"] + s["reset"] + s["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
