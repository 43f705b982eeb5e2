"""Hostile: values of every wrong type at every field (docs/security.md §6).

An exception that reaches a libuv callback is caught and logged as "internal error" (and the
work it was doing is lost); one that escapes kills PID 1. A type confusion in a parser is the
usual source: nlohmann::json throws type_error when a number is read as a string, and a
handler that does not check first takes the whole request down. So every argument of every
control command, and every field of a unit file (from docs/vigil.unit.schema.json), gets
values of every JSON type and a few extremes; vigild must answer each request with a reply
that says ok or names the error, never "internal", refuse the unit files with diagnostics,
and log no internal error.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import unittest

from hostile import HostileCase, Raw, harness, scaled
from test_http import free_port

WEIRD = [None, True, False, 0, -1, 1.5, 1e308, -1e308, 2 ** 63, 2 ** 64, -(2 ** 63) - 1, "",
         "x" * 300, "\u0000", "-", "*", [], [None], [[[]]], {}, {"a": 1}, {"": []}]

# The commands and their arguments (vigilctl(1) PROTOCOL). shutdown is only sent with wrong
# arguments (a well-formed one would end the test's vigild).
COMMANDS = {
    "status": ["units"], "tree": [], "version": [], "reload": [],
    "events": ["unit", "units", "lines", "follow", "since"],
    "logs": ["unit", "units", "lines", "follow", "reopen", "since"],
    "start": ["units"], "stop": ["units"], "restart": ["units"],
    "signal": ["signal", "units"],
}

SCHEMA = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__)))), "docs", "vigil.unit.schema.json")


def field_paths(schema: dict) -> list:
    """Every field of a service and of a supervisor as a path of keys ("0" for an array's
    first element), from the JSON Schema."""
    defs = schema["$defs"]

    def resolve(node: dict) -> dict:
        while "$ref" in node:
            node = defs[node["$ref"].rsplit("/", 1)[1]]
        return node

    out: list = []

    def walk(node: dict, path: list, depth: int) -> None:
        node = resolve(node)
        if depth > 4:
            return
        for key, sub in node.get("properties", {}).items():
            out.append(path + [key])
            walk(sub, path + [key], depth + 1)
        items = node.get("items")
        if isinstance(items, dict):
            out.append(path + ["0"])
            walk(items, path + ["0"], depth + 1)
        for alt in node.get("oneOf", []) + node.get("anyOf", []):
            walk(alt, path, depth + 1)
    for kind in ("service", "supervisor"):
        walk(defs[kind], [], 0)
    unique, seen = [], set()
    for p in out:
        if tuple(p) not in seen:
            seen.add(tuple(p))
            unique.append(p)
    return unique


def unit_with(path: list, value) -> dict:
    """A unit with `value` at `path` (objects and arrays made on the way): a service, or a
    supervisor for the supervisors' fields."""
    def build(keys: list):
        if not keys:
            return value
        if keys[0] == "0":
            return [build(keys[1:])]
        return {keys[0]: build(keys[1:])}
    if path[0] in ("strategy", "intensity", "period", "auto_shutdown", "parallel"):
        unit: dict = {"kind": "supervisor"}
    else:
        unit = {"command": ["sleep", "1000"]}
    unit.update(build(path))
    return unit


class Garbage(HostileCase):
    def test_every_control_argument_with_every_type(self):
        d = self.vigil()
        c = Raw(d.sock)
        self.addCleanup(c.close)
        requests = []
        for cmd, keys in COMMANDS.items():
            for value in WEIRD:
                requests.append({"id": 1, "cmd": cmd, "args": value})
                for key in keys + ["bogus"]:
                    requests.append({"id": 1, "cmd": cmd, "args": {key: value}})
            requests.append({"id": 1, "cmd": "shutdown", "args": {"bogus": 1}})
        for value in WEIRD:
            requests.append({"id": value, "cmd": "version"})
            requests.append({"id": 1, "cmd": value})
            requests.append({"id": 1, "cmd": "shutdown", "args": value if value not in (
                None, {}) else {"x": 1}})
        requests.append([])
        requests.append("status")
        requests.append(17)
        internal = []
        for req in requests:
            line = json.dumps(req).encode() + b"\n"
            c.send(line)
            follow = isinstance(req, dict) and isinstance(req.get("args"), dict) and \
                req["args"].get("follow") is True
            # A valid follow of every unit may have nothing stored to send first: no read.
            reply = {} if follow and req["cmd"] in ("logs", "events") else c.read()
            if reply.get("stream") is not None or follow:
                # A stream that started (a valid logs/events request): skip to its end, or,
                # for follow, drop the connection (the stream never ends).
                c.close()
                c = Raw(d.sock)
                continue
            self.assertIn("ok", reply, (req, reply))
            if not reply["ok"] and reply["error"]["code"] == "internal":
                internal.append((req, reply))
        self.assertEqual(internal, [], "requests answered with an internal error")
        self.assertEqual(d.main_pid("bystander"), d.base.bystander)
        c.close()
        self.after_attack(d)

    def test_every_unit_field_with_every_type(self):
        with open(SCHEMA) as f:
            paths = field_paths(json.load(f))
        self.assertGreater(len(paths), 60, "the schema walk found too few fields")
        units = tempfile.mkdtemp(prefix="vigil-hx-garbage-")
        self.addCleanup(shutil.rmtree, units, True)
        n = 0
        for path in paths:
            for value in WEIRD:
                with open(os.path.join(units, f"u{n:05d}.json"), "w") as f:
                    json.dump(unit_with(path, value), f)
                n += 1
        r = subprocess.run([harness.vigild(), "--check", "--units", units],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=scaled(60))
        self.assertIn(r.returncode, (0, 1), r.stderr[-3000:])
        text = r.stdout + r.stderr
        for bad in ("internal error", "terminate called", "exception", "Sanitizer",
                    "runtime error"):
            self.assertNotIn(bad, text, text[max(0, text.find(bad) - 500):][:1500])
        self.assertEqual(r.returncode, 1, "none of the wrong values was refused")

        # The same folder through a reload of a running vigild: refused, nothing changes.
        d = self.vigil()
        for name in os.listdir(units):
            shutil.copy(os.path.join(units, name), d.units_dir)
        r = d.ctl("reload", timeout=60)
        self.assertEqual(r.returncode, 1, r.stdout[-2000:])
        for name in os.listdir(units):
            os.unlink(os.path.join(d.units_dir, name))
        self.after_attack(d)

    def test_garbage_http_requests(self):
        port = free_port()
        d = self.vigil(args=("--http", f"127.0.0.1:{port}"))
        heads = [b"GET / HTTP/1.1\r\n\r\n", b"\x00\xff\r\n\r\n", b"GET\r\n\r\n",
                 b"GET /healthz HTTP/9.9\r\n\r\n", b"GET /healthz HTTP/1.1\r\nHost: " +
                 b"\xff" * 100 + b"\r\n\r\n", b"GET /%00%zz?%%%% HTTP/1.1\r\n\r\n",
                 b"GET " + b"/" * 8000 + b" HTTP/1.1\r\n\r\n",
                 b"POST /status HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
                 b"POST /status HTTP/1.1\r\nContent-Length: 18446744073709551616\r\n\r\n",
                 b"GET /metrics HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
                 b"GET /readyz HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
                 b"CONNECT vigil:443 HTTP/1.1\r\n\r\n", b"GET /status HTTP/1.0\r\n\r\n",
                 b"\r\n" * 1000, b"GET /healthz HTTP/1.1\r\n" + b"X: y\r\n" * 2000 + b"\r\n"]
        for head in heads:
            s = socket.create_connection(("127.0.0.1", port), timeout=scaled(7))
            try:
                s.sendall(head)
                s.shutdown(socket.SHUT_WR)
                data = b""
                while True:
                    try:
                        chunk = s.recv(65536)
                    except (ConnectionResetError, socket.timeout):
                        break
                    if not chunk:
                        break
                    data += chunk
                self.assertNotIn(b" 500 ", data.split(b"\r\n", 1)[0], (head[:80], data[:200]))
            finally:
                s.close()
        self.after_attack(d)


if __name__ == "__main__":
    unittest.main()
