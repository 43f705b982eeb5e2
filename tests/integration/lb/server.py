#!/usr/bin/env python3
"""A small HTTP server for one instance of an instanced unit: the service side of the
zero-downtime tests (tests/integration/test_zero_downtime.py) and benchmark (bench/rolling.py).
Python 3 standard library only.

Its listening socket:
- passed by the manager, as sd_listen_fds(3) documents: when LISTEN_PID is this process's pid
  and LISTEN_FDS is at least 1, fd 3 (SD_LISTEN_FDS_START) is a listening stream socket. The
  variables are removed from the environment afterwards (sd_listen_fds(unset_environment=1)),
  so a child of the server would not take them for its own. The socket is shared with the
  manager and with every other instance: the server only close()s its descriptor, never
  shutdown()s the socket, which would stop the other instances from accepting too. It sets
  O_NONBLOCK on it, a flag of the open file description every holder shares: each instance
  polls, and accept() fails with EAGAIN when another instance took the connection first
  (a blocking accept() there would keep a stopping instance waiting for the next client).
  vigild passes the socket blocking and never accepts on it, so the flag changes nothing else;
- otherwise (the "without listen" baseline) bound by the server itself on --host:--port with
  SO_REUSEPORT, so several instances can share the port, each with a socket (and an accept
  queue) of its own that goes away with it.

Start-up: it waits --ready-delay seconds (a warming-up application; connections that arrive
meanwhile wait in the socket's queue, or in the other instances'), then takes or binds the
socket, reports READY=1 through sd_notify (NOTIFY_SOCKET, a path or an abstract "@name") when
the variable is set, and accepts.

Each connection gets one request, whose reply (after --delay seconds: work in flight) is
`instance=I pid=P\n` with `Connection: close`. Requests are bounded: at most 8 KiB of header,
read within --io-timeout, at most --max-conns handled at once (more wait in the queue).

SIGTERM or SIGINT: stop accepting (close the listening descriptor), finish the requests in
flight, exit 0. A crash (SIGSEGV, SIGKILL) drops what was in flight: what the tests count.
"""

from __future__ import annotations

import argparse
import os
import resource
import select
import selectors
import signal
import socket
import sys
import threading
import time

LISTEN_FDS_START = 3
MAX_HEADER = 8192


def listen_fds() -> int:
    """sd_listen_fds(1): how many sockets the manager passed from fd 3 (0 when none or when
    they are not for this process), with the variables removed from the environment."""
    try:
        pid = int(os.environ.get("LISTEN_PID", ""))
        count = int(os.environ.get("LISTEN_FDS", ""))
    except ValueError:
        pid, count = 0, 0
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    if pid != os.getpid() or count < 1:
        return 0
    for fd in range(LISTEN_FDS_START, LISTEN_FDS_START + count):
        os.set_inheritable(fd, False)  # sd_listen_fds sets FD_CLOEXEC on each
    return count


def passed_socket() -> socket.socket | None:
    if listen_fds() < 1:
        return None
    sock = socket.socket(fileno=LISTEN_FDS_START)
    if sock.type != socket.SOCK_STREAM:
        sys.exit(f"server: fd {LISTEN_FDS_START} is not a stream socket (type {sock.type})")
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        sys.exit(f"server: fd {LISTEN_FDS_START} is not listening")
    return sock


def bound_socket(host: str, port: int, backlog: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    return sock


def sd_notify(state: str) -> bool:
    """Sends `state` to NOTIFY_SOCKET; False when there is none (not under a manager)."""
    path = os.environ.get("NOTIFY_SOCKET", "")
    if not path:
        return False
    addr = "\0" + path[1:] if path.startswith("@") else path
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        s.connect(addr)
        s.sendall(state.encode())
    return True


class Server:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.instance = args.instance or os.environ.get("VIGIL_INSTANCE", "0")
        self.slots = threading.BoundedSemaphore(args.max_conns)
        self.active: set = set()
        self.lock = threading.Lock()
        self.stop_r, self.stop_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self.stopping = False
        self.served = 0

    def on_signal(self, signo: int, _frame) -> None:
        self.stopping = True
        try:
            os.write(self.stop_w, b"x")
        except BlockingIOError:
            pass

    def handle(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(self.args.io_timeout)
            head = b""
            while b"\r\n\r\n" not in head and len(head) < MAX_HEADER:
                chunk = conn.recv(MAX_HEADER - len(head))
                if not chunk:
                    return
                head += chunk
            if self.args.delay > 0:
                time.sleep(self.args.delay)
            if not head.startswith(b"GET "):
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                             b"Connection: close\r\n\r\n")
                return
            body = f"instance={self.instance} pid={os.getpid()}\n".encode()
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                         b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
            with self.lock:
                self.served += 1
        except OSError:
            pass
        finally:
            conn.close()
            with self.lock:
                self.active.discard(threading.current_thread())
            self.slots.release()

    def serve(self, sock: socket.socket) -> None:
        sock.setblocking(False)  # see the module's comment: shared, and raced for
        sel = selectors.DefaultSelector()
        sel.register(sock, selectors.EVENT_READ)
        sel.register(self.stop_r, selectors.EVENT_READ)
        while not self.stopping:
            if not self.slots.acquire(timeout=0.5):
                continue
            events = [key.fileobj for key, _ in sel.select()]
            if self.stopping or sock not in events:
                self.slots.release()
                continue
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                self.slots.release()  # another instance took it, or the client left
                continue
            except OSError as e:  # EMFILE, ENOBUFS...: try again a little later
                print(f"server: accept: {e}", file=sys.stderr, flush=True)
                self.slots.release()
                time.sleep(0.05)
                continue
            t = threading.Thread(target=self.handle, args=(conn,), daemon=True)
            with self.lock:
                self.active.add(t)
            t.start()
        sel.close()
        sock.close()  # our descriptor only: a passed socket stays open in the manager

    def drain(self) -> None:
        """Waits for the requests in flight (each bounded by the I/O timeout and the delay)."""
        deadline = time.monotonic() + self.args.io_timeout * 2 + self.args.delay + 1
        while time.monotonic() < deadline:
            with self.lock:
                left = list(self.active)
            if not left:
                return
            left[0].join(max(0.0, deadline - time.monotonic()))


def parse_args(argv: list) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1", help="address to bind without LISTEN_FDS")
    ap.add_argument("--port", type=int, default=0, help="port to bind without LISTEN_FDS")
    ap.add_argument("--backlog", type=int, default=128)
    ap.add_argument("--instance", default="", help="default: $VIGIL_INSTANCE")
    ap.add_argument("--ready-delay", type=float, default=0.0,
                    help="seconds of start-up before READY=1 and the first accept()")
    ap.add_argument("--delay", type=float, default=0.0, help="seconds of work per request")
    ap.add_argument("--io-timeout", type=float, default=5.0)
    ap.add_argument("--max-conns", type=int, default=64)
    args = ap.parse_args(argv)
    if not 1 <= args.max_conns <= 1024 or not 0 <= args.delay <= 60:
        ap.error("--max-conns is 1..1024, --delay 0..60 s")
    if not 0 <= args.ready_delay <= 60 or not 0 < args.io_timeout <= 60:
        ap.error("--ready-delay is 0..60 s, --io-timeout 0..60 s")
    return args


def main(argv: list) -> int:
    args = parse_args(argv)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # the tests crash it on purpose
    server = Server(args)
    signal.signal(signal.SIGTERM, server.on_signal)
    signal.signal(signal.SIGINT, server.on_signal)
    sock = passed_socket()
    if args.ready_delay > 0:  # a signal ends it early (on_signal writes to the pipe)
        select.select([server.stop_r], [], [], args.ready_delay)
    if server.stopping:
        return 0
    how = "passed (LISTEN_FDS)"
    if sock is None:
        if args.port == 0:
            sys.exit("server: no LISTEN_FDS and no --port to bind")
        sock = bound_socket(args.host, args.port, args.backlog)
        how = "bound (SO_REUSEPORT)"
    name = sock.getsockname()
    print(f"instance {server.instance} pid {os.getpid()}: listening on {name} {how}", flush=True)
    sd_notify(f"READY=1\nSTATUS=serving on {name}")
    server.serve(sock)
    server.drain()
    print(f"instance {server.instance} pid {os.getpid()}: stopped after {server.served} "
          f"requests", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
