"""docs/vigil.unit.schema.json against the loader (Python 3, Debian's python3-jsonschema).

The schema is what editors use to complete and check unit files, so it must accept every unit
the loader accepts and reject what the loader rejects wherever JSON Schema can say so:

1. every example unit (units/*.json) and every good fixture of the loader's tests
   (tests/unit/fixtures/{good,fingerprint}) is valid;
2. every diagnostic of every bad fixture (tests/unit/fixtures/bad/<case>/expected) is matched by
   a schema error at the same place, except those listed in EXCEPTIONS with the reason a schema
   cannot express them (cross-file references, comparisons between two values, PCRE2...);
3. a corpus of single-field variants (VARIANTS) is given to the real loader (`vigild --check`,
   from the VIGILD environment variable) and to the schema: both must agree on each, except the
   KNOWN_DIFFERENCES, each of which must still differ (so the lists cannot go stale);
4. every default in docs/defaults.md is the schema's `default`.

That the schema and the loader know the same field names is checked by
tests/unit/schema_test.cpp, from the loader's own tables.

Run by hand: VIGILD=build/src/daemon/vigild python3 tests/docs/test_schema.py -v
"""

from __future__ import annotations

import copy
import grp
import json
import os
import pwd
import re
import subprocess
import sys
import tempfile
import unittest
from fractions import Fraction
from pathlib import Path

try:
    import jsonschema
except ImportError:  # a failure, not a skip: .ci/deps.sh installs python3-jsonschema
    sys.exit("python3-jsonschema is missing (apt-get install python3-jsonschema, or .ci/deps.sh)")

ROOT = Path(__file__).resolve().parents[2]
# Not in units/: the loader reads every *.json there as a unit (and the directory is meant to be
# copied to /etc/vigil/units/).
SCHEMA_PATH = ROOT / "docs" / "vigil.unit.schema.json"
FIXTURES = ROOT / "tests" / "unit" / "fixtures"


def load_schema() -> dict:
    with open(SCHEMA_PATH, encoding="utf-8") as f:
        return json.load(f)


SCHEMA = load_schema()


def validator_for(definition: str | None) -> jsonschema.Draft202012Validator:
    """The whole schema (what an editor uses), or one of its $defs as the entry point."""
    if definition is None:
        return jsonschema.Draft202012Validator(SCHEMA)
    wrapper = {"$schema": SCHEMA["$schema"], "$defs": SCHEMA["$defs"],
               "$ref": f"#/$defs/{definition}"}
    return jsonschema.Draft202012Validator(wrapper)


WHOLE = validator_for(None)
# The loader knows a unit's name from its file: root.json is the root supervisor, every other
# file a service or a supervisor. The whole schema cannot see the file name (see its
# description); these two can, and the fixture checks use them.
ROOT_ONLY = validator_for("root")
NON_ROOT = validator_for("unit")


def by_file_name(path: Path) -> jsonschema.Draft202012Validator:
    return ROOT_ONLY if path.name == "root.json" else NON_ROOT


def pointer(path) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


def describe(errors) -> str:
    return "; ".join(f"{pointer(e.absolute_path) or '/'}: {e.message[:160]}" for e in errors)


class SchemaIsValid(unittest.TestCase):
    def test_schema_is_draft_2020_12(self):
        self.assertEqual(SCHEMA["$schema"], "https://json-schema.org/draft/2020-12/schema")
        jsonschema.Draft202012Validator.check_schema(SCHEMA)

    def test_every_field_is_described(self):
        """Editors show `description` on hover and in completion: no field without one."""
        missing = []

        def walk(node, where):
            if isinstance(node, dict):
                for key, sub in node.get("properties", {}).items():
                    conditional = any(k in where for k in ("/if", "/then", "/else", "/dependentSchemas"))
                    if not conditional and where != "/$defs/single_success_probe" \
                            and "description" not in sub:
                        missing.append(f"{where}/properties/{key}")
                for key, sub in node.items():
                    walk(sub, f"{where}/{key}")
            elif isinstance(node, list):
                for i, sub in enumerate(node):
                    walk(sub, f"{where}/{i}")

        walk(SCHEMA, "")
        self.assertEqual(missing, [])


def defaults_table():
    """docs/defaults.md's table: (field as written, qualifier, default as written), one row per
    field ("`intensity` / `period` | `5` per `10s`" gives two; the probes row five)."""
    rows = []
    text = (ROOT / "docs" / "defaults.md").read_text(encoding="utf-8")
    for line in text.splitlines():
        if not line.startswith("| ") or line.startswith("| field") or line.startswith("|---"):
            continue
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        fields = re.findall(r"`([^`]+)`", cells[0])
        qualifier = (re.findall(r"\((\w+)\)", cells[0]) or [None])[0]
        values = re.findall(r"`([^`]+)`", cells[1])
        if cells[0] == "probes":
            rows += [(f"probe.{v.split()[0]}", None, v.split()[1]) for v in values]
        elif len(fields) == 1 and values:
            rows.append((fields[0], qualifier, values[0]))
        elif len(fields) > 1:
            prefix = fields[0].rpartition(".")[0]
            for f, v in zip(fields, values):
                rows.append((f if "." in f or not prefix else f"{prefix}.{f}", qualifier, v))
    return rows


class DefaultsMatchTheDocs(unittest.TestCase):
    """Every default docs/defaults.md gives is the schema's (tests/unit/schema_test.cpp ties the
    schema's to the code's)."""

    def schema_default(self, field: str, qualifier: str | None):
        defs = SCHEMA["$defs"]
        head, *rest = field.split(".")
        if head == "probe":
            node = defs["probe"]["properties"][rest[0]]
        else:
            kind = qualifier or ("supervisor" if head in defs["supervisor"]["properties"]
                                 and head not in defs["service"]["properties"] else "service")
            node = defs[kind]["properties"][head]
            for part in rest:
                node = node["properties"][part]
        self.assertIn("default", node, f"{field} has no default in the schema")
        d = node["default"]
        return d if isinstance(d, str) else json.dumps(d)

    def test_every_documented_default(self):
        rows = defaults_table()
        self.assertGreater(len(rows), 25)
        for field, qualifier, value in rows:
            with self.subTest(field=field, qualifier=qualifier):
                self.assertEqual(self.schema_default(field, qualifier), value)


class GoodUnitsAreValid(unittest.TestCase):
    def good_files(self):
        files = sorted((ROOT / "units").glob("*.json"))
        files += sorted((FIXTURES / "good").glob("*/units/*.json"))
        files += sorted((FIXTURES / "fingerprint").glob("*/units/*.json"))
        return files

    def test_examples_and_good_fixtures(self):
        files = self.good_files()
        self.assertGreaterEqual(len(files), 7 + 10)  # the demo tree and the fixtures exist
        self.assertTrue(any(p.name == "root.json" for p in files))
        for path in files:
            with self.subTest(str(path.relative_to(ROOT))):
                unit = json.loads(path.read_text(encoding="utf-8"))
                for v in (WHOLE, by_file_name(path)):
                    errors = list(v.iter_errors(unit))
                    self.assertEqual(errors, [], describe(errors))


# "units/web.json:3:40: /backoff/max: message", "units/c.json:1:1: missing field ...",
# "units/-x.json: unit name ..." (a file-level problem without a position).
DIAGNOSTIC = re.compile(r"^units/(?P<file>[^:]+\.json)(?::(?P<line>\d+):(?P<col>\d+))?: "
                        r"(?:(?P<ptr>/[^:]*): )?(?P<message>.*)$")

# Diagnostics a schema cannot give, by message: (pattern, reason). Each must be used, and the
# schema must indeed miss every diagnostic it excuses.
EXCEPTIONS = [
    (r"^JSON syntax error", "not JSON: a schema applies to a parsed document"),
    (r"^duplicate key", "a JSON parser keeps one of the values; the schema never sees the other"),
    (r"^unit name .* must match", "the file name, not the file's content"),
    (r"^(parent|ordering) cycle", "cross-file: a cycle through several units' parent or after"),
    (r"^unknown unit", "cross-file: whether another unit file exists (the schema checks the "
                       "name's syntax)"),
    (r"is a service; a parent must be a supervisor", "cross-file: the parent's kind"),
    (r"\" has parent \".*\": \"after\" orders siblings only", "cross-file: the other unit's parent"),
    (r"has auto_shutdown \"never\", so a significant child", "cross-file: the parent's auto_shutdown"),
    (r"^instance .* has the same name as the unit in", "cross-file: another file's name"),
    (r"^must not exceed \"hard\"", "compares two values (soft <= hard): not expressible"),
    (r"^\"max\" .* must not be less than \"initial\"", "compares two values (max >= initial): not "
                                                     "expressible"),
    (r"^invalid regular expression", "PCRE2 syntax: schema patterns are ECMA-262 and the schema "
                                     "does not assert `format`"),
    (r"^must be at least 64; got \"", "a size's minimum when written as a string (\"12\"): "
                                      "`minimum` applies to numbers only"),
    (r"^cannot run as (user|group) ", "whether a user or group exists is in this system's user "
                                      "and group databases, looked up when units are loaded"),
    (r"^with instances expanded ", "cross-file: a sum over every unit of the tree"),
    (r"^is one of the listen sockets' descriptors", "compares two fields (ready.fd against the "
                                                    "number of listen entries): not expressible"),
    (r"is listed twice \(one socket per address\)", "the same address in two spellings "
                                                     "(\"[0::1]\" and \"[::1]\"): uniqueItems "
                                                     "compares the text"),
    (r"two unit files cannot listen on one address", "cross-file: another unit's listen"),
    (r"^no such (user|group) ", "whether a user or group exists is in this system's user and "
                               "group databases, looked up when units are loaded"),
    (r"is more than the unit's \d+ instances?; at most", "compares two values (max_unavailable "
                                                         "<= instances): not expressible"),
    (r"^must be at most 1h; got \"", "stop.drain's 1h: the schema's duration pattern bounds "
                                     "digits, not a sum (as for \"1d1s\" above 1d)"),
]

# Where a rule about two fields reports, when the loader names the other field: message pattern
# -> the places a schema error may be instead.
RELOCATED = [
    (r"^a permanent unit cannot be significant", ["", "/restart"]),
]


def parent_and_key(ptr: str):
    if not ptr:
        return None, None
    head, _, key = ptr.rpartition("/")
    return head, key.replace("~1", "/").replace("~0", "~")


def with_context(error):
    """An error and the errors of the alternatives it failed (anyOf, oneOf), recursively."""
    yield error
    for c in error.context or []:
        yield from with_context(c)


def schema_catches(errors, ptr: str, message: str) -> bool:
    """Whether some schema error is about the same thing as the loader's diagnostic."""
    missing = re.match(r'^missing field "([^"]+)"', message)
    parent, key = parent_and_key(ptr)
    for e in errors:
        where = pointer(e.absolute_path)
        if missing:  # a `required` error at the object that lacks the field
            if where == ptr and any(c.validator == "required" and repr(missing.group(1)) in c.message
                                    for c in with_context(e)):
                return True
            continue
        if where == ptr:
            return True
        # Unknown or misplaced keys, and rules about a key's presence, are reported by a schema
        # at the object that holds the key.
        if key is not None and where == parent:
            if e.validator in ("additionalProperties", "oneOf") and repr(key) in e.message:
                return True
            if "propertyNames" in e.absolute_schema_path and repr(key) in e.message:
                return True
            if e.validator == "uniqueItems" and message.endswith("is listed twice"):
                return True
            if key in e.absolute_schema_path:  # e.g. dependentSchemas/timeout
                return True
        for pattern, places in RELOCATED:
            if re.search(pattern, message) and where in places:
                return True
    return False


class BadFixturesAreRejected(unittest.TestCase):
    def test_field_level_problems_are_schema_errors(self):
        used = set()
        checked = 0
        cases = sorted(p for p in (FIXTURES / "bad").iterdir() if p.is_dir())
        self.assertGreater(len(cases), 20)
        for case in cases:
            for line in (case / "expected").read_text(encoding="utf-8").splitlines():
                m = DIAGNOSTIC.match(line)
                self.assertIsNotNone(m, f"{case.name}: unparsed diagnostic {line!r}")
                path = case / "units" / m["file"]
                excuse = next((i for i, (pat, _) in enumerate(EXCEPTIONS)
                               if re.search(pat, m["message"])), None)
                with self.subTest(f"{case.name}: {line}"):
                    try:
                        unit = json.loads(path.read_text(encoding="utf-8"))
                    except (json.JSONDecodeError, UnicodeDecodeError):
                        unit = None
                    caught = unit is not None and schema_catches(
                        list(by_file_name(path).iter_errors(unit)), m["ptr"] or "", m["message"])
                    if excuse is not None:
                        used.add(excuse)
                        self.assertFalse(caught, "the schema now catches this: drop the exception "
                                                 f"{EXCEPTIONS[excuse][0]!r}")
                    else:
                        checked += 1
                        errors = list(by_file_name(path).iter_errors(unit)) if unit is not None else []
                        self.assertTrue(caught, "the loader rejects this, the schema does not "
                                                f"(schema errors: {describe(errors) or 'none'})")
        self.assertGreater(checked, 60)
        unused = [EXCEPTIONS[i][0] for i in range(len(EXCEPTIONS)) if i not in used]
        self.assertEqual(unused, [], "exceptions no fixture needs")

    def test_what_the_whole_schema_reads_as_root_json(self):
        """The whole schema's blind spot, stated: it cannot see file names. It reads a file as
        root.json when it has no kind, only root.json's fields and at least one supervisor
        setting; anything else is a service or a supervisor, so that an editor completes a new,
        empty file as a service."""
        root_like = {"description": "x", "strategy": "one_for_all"}
        self.assertEqual(list(WHOLE.iter_errors(root_like)), [])  # the loader: web.json lacks
        self.assertNotEqual(list(NON_ROOT.iter_errors(root_like)), [])  # kind and command
        self.assertNotEqual(list(WHOLE.iter_errors(dict(root_like, env={}))), [])
        # An empty root.json, or one with only a description, is valid for the loader; the
        # whole schema asks for a command (ROOT_ONLY, chosen by file name, does not).
        for doc in ({}, {"description": "x"}):
            self.assertEqual(list(ROOT_ONLY.iter_errors(doc)), [])
            self.assertEqual([e.message for e in WHOLE.iter_errors(doc)],
                             ["'command' is a required property"])


# ---- the loader and the schema on the same values ----------------------------------------

SERVICE = {"command": ["true"]}
SUPERVISOR = {"kind": "supervisor"}
WITH_PROBE = {"command": ["true"], "liveness": {"tcp": {"port": 8080}}}

DURATIONS = ["0", "0s", "00", "1", "1s", "10s", "1.5s", "1.25s", "1.125s", "1.0625s", "1.5000s",
             "1.0001s", "250ms", "1.5ms", "1.0ms", "0.5ms", "1m30s", "1h30m", "30m1h", "1m1m",
             "1d2h3m4s5ms", "1.5m", "0.0001m", "1.5h", "2d", "", " 1s", "1S", "1sec", "1 s",
             "infinity", "1.s", ".5s", "-1s", "1ms1s", "0.001s", "0.0005s", "0.00001m",
             "99999999999999999999d", "123456789012345678901s", "10s\n", 10, None, True]
SIZES = ["0", "1", "1.5", "1.0", "1B", "1.5B", "1.0B", "1.5K", "1.5KiB", "64KiB", "10MiB", "1G",
         "2T", "1GB", "1 KiB", "1kib", "1k", "KiB", "", "-1", -1, 0, 4096, 1.5, "4KiB", "4096",
         "8192", 100000, "1e3", "0x10", "1.0000001K", "18446744073709551616", "1K\n"]
SIGNALS = ["SIGTERM", "TERM", "term", "Hup", "sigkill", "15", "015", "0", "64", "65", "SIG",
           "SIGIO", "IOT", "poll", "SIGRTMIN", "SIGRTMIN+3", "RTMIN+30", "RTMIN+31", "RTMAX",
           "rtmax-30", "RTMAX-31", "RTMIN-1", "RTMAX+1", "SIGSIGTERM", "SIG15", "SIGFOO", "",
           15, 15.0, 0, 64, 65, -9, "KILL ", "TERM\n", True]
# app (a supervisor), peer (a service) and root exist; the others are not unit files.
NAMES = ["app", "peer", "root", "Web", "-x", "a b", "", "x@1", "a.b_c-d", "app\n", 7]
REGEXES = ["^ready", "", "(", "[a-", "\\d+ms", "(?<name>x)", 5]
INTEGERS = [0, 1, 2, 3, 1023, 1024, 10000, 10001, 1000000, 1000001, -1, 1.5, 2.0, "2", None]
NUMBERS = [0, 0.5, 1, 1.5, 2, 99.5, 100, 100.5, -1, "2", None]
BOOLEANS = [True, False, 0, 1, "true", None]
STRINGS = ["x", "", "/abs", "rel", "-", "-/etc/x", "--x", 5, None, ["a"]]


def variants():
    """(base unit, JSON pointer, value): the base with one field set to value."""
    out = []
    for value in DURATIONS:
        for ptr in ("/watchdog", "/backoff/initial", "/backoff/reset_after", "/stop/timeout",
                    "/ready/timeout", "/liveness/initial_delay", "/liveness/period",
                    "/patterns/0/within"):
            base = dict(SERVICE, ready={"notify": True}, liveness={"tcp": {"port": 1}},
                        patterns=[{"match": "x"}], backoff={"max": "1d"})
            out.append((base, ptr, value))
        out.append((SUPERVISOR, "/period", value))
        out.append((SUPERVISOR, "/stop/timeout", value))
    for value in SIZES:
        for ptr in ("/logs/max_size", "/logs/ring", "/logs/max_line", "/limits/stack"):
            out.append((SERVICE, ptr, value))
    for value in SIGNALS:
        out.append((SERVICE, "/stop/signal", value))
        out.append((SUPERVISOR, "/stop/signal", value))
    for value in NAMES:
        out.append((SERVICE, "/parent", value))
        out.append((SERVICE, "/after", [value]))
        out.append((SERVICE, "/after", ["peer", value]))
    for value in REGEXES:
        out.append((SERVICE, "/ready/log", value))
        out.append((SERVICE, "/patterns", [{"match": value}]))
    for value in INTEGERS:
        for ptr in ("/instances", "/ready/fd", "/logs/keep", "/liveness/failure_threshold",
                    "/liveness/success_threshold", "/readiness/success_threshold",
                    "/liveness/tcp/port", "/patterns/0/count", "/user", "/group",
                    "/limits/nofile"):
            out.append((dict(WITH_PROBE, readiness={"exec": ["true"]}, patterns=[{"match": "x"}]),
                        ptr, value))
        out.append((SUPERVISOR, "/intensity", value))
    for value in NUMBERS:
        out.append((SERVICE, "/backoff/factor", value))
        out.append((SERVICE, "/backoff/jitter", value))
    for value in BOOLEANS:
        for ptr in ("/significant", "/logs/forward", "/logs/timestamps", "/ready/notify"):
            out.append((dict(SERVICE, restart="transient"), ptr, value))
        out.append((SUPERVISOR, "/parallel", value))
        out.append((SERVICE, "/parallel", value))
    for value in STRINGS:
        for ptr in ("/cwd", "/env_file", "/user", "/group", "/description", "/logs/file",
                    "/umask", "/env/A", "/liveness/tcp/host", "/liveness/http/path", "/command/0",
                    "/liveness/exec/0", "/ready/probe/http/headers/H"):
            base = copy.deepcopy(WITH_PROBE)
            if "http" in ptr:
                base["liveness"] = {"http": {"port": 80}}
                base["ready"] = {"probe": {"http": {"port": 80}}}
            if "exec" in ptr:
                base["liveness"] = {"exec": ["true"]}
            out.append((base, ptr, value))
    for value in ["022", "0022", "0777", "0778", "1777", "00222", "22", "7777", 18, "0o22", "022\n"]:
        out.append((SERVICE, "/umask", value))
    for value in [{"A": "1"}, {"": "1"}, {"A=B": "1"}, {"A": 1}, [], "A=1"]:
        out.append((SERVICE, "/env", value))
    for value in [[], ["a"], [""], ["", "x"], ["a", 1], "true", None]:
        out.append(({}, "/command", value))
        out.append((SERVICE, "/liveness/exec", value))
    for value in ["permanent", "transient", "temporary", "always", None]:
        out.append((SERVICE, "/restart", value))
        out.append((dict(SERVICE, significant=True), "/restart", value))
    for value in ["service", "supervisor", "daemon", None]:
        out.append((SERVICE, "/kind", value))
        out.append(({"strategy": "one_for_all"}, "/kind", value))
    for value in ["one_for_one", "one_for_all", "rest_for_one", "one_for_none"]:
        out.append((SUPERVISOR, "/strategy", value))
        out.append((SERVICE, "/strategy", value))
    for value in ["never", "any_significant", "all_significant", "always"]:
        out.append((SUPERVISOR, "/auto_shutdown", value))
    for ptr, value in [("/patterns/0/stream", "stdout"), ("/patterns/0/stream", "stdin"),
                       ("/patterns/0/action", "restart"), ("/patterns/0/action", "reboot"),
                       ("/patterns/0/action", "unhealthy"), ("/patterns/0/extra", 1)]:
        out.append((dict(SERVICE, patterns=[{"match": "x"}]), ptr, value))
    for value in [{"tcp": {"port": 1}}, {"http": {"port": 1}}, {"exec": ["x"]}, {},
                  {"exec": ["x"], "tcp": {"port": 1}}, {"tcp": {}}, {"tcp": {"port": 1, "path": "/"}},
                  {"http": {"port": 1, "path": "/x", "headers": {"A": "b"}}},
                  {"http": {"port": 1, "headers": {"A": 1}}}, {"tcp": {"port": 1}, "verb": 1}, []]:
        for ptr in ("/liveness", "/readiness", "/startup", "/ready/probe"):
            out.append((SERVICE, ptr, value))
    for value in [{"nofile": 1}, {"nofiles": 1}, {"core": {"soft": 0, "hard": "infinity"}},
                  {"core": {"soft": 2, "hard": 1}}, {"core": {"soft": 1}},
                  {"core": {"soft": 1, "hard": 1, "x": 1}}, {"as": "infinity"}, {"as": "inf"},
                  {"rttime": "8MiB"}, {"nice": -1}, []]:
        out.append((SERVICE, "/limits", value))
    for value in [{"notify": False}, {"fd": 3}, {"timeout": "5s"}, {"notify": False, "timeout": "5s"},
                  {"log": "x", "timeout": "5s"}, {}, {"probe": {"exec": ["x"]}, "timeout": "1s"},
                  {"when": 1}, "yes"]:
        out.append((SERVICE, "/ready", value))
    for value in [{"initial": "1s", "max": "2s"}, {"initial": "1m", "max": "10s"}, {"max": "50ms"},
                  {"initial": "1m"}, {"max": "0s", "initial": "0s"}, {"reset": "1s"}, 5]:
        out.append((SERVICE, "/backoff", value))
    for value in [{"signal": "INT", "timeout": "infinity"}, {"grace": "1s"}, {}, "TERM"]:
        out.append((SERVICE, "/stop", value))
        out.append((SUPERVISOR, "/stop", value))
    for ptr in ("/command", "/cwd", "/backoff", "/logs", "/watchdog", "/instances", "/env"):
        out.append((SUPERVISOR, ptr, SERVICE_SAMPLE[ptr]))
    for ptr in ("/strategy", "/intensity", "/period", "/auto_shutdown", "/xyzzy", "/comand"):
        out.append((SERVICE, ptr, SUPERVISOR_SAMPLE.get(ptr, 1)))
    return out


SERVICE_SAMPLE = {"/command": ["x"], "/cwd": "/", "/backoff": {}, "/logs": {}, "/watchdog": "1s",
                  "/instances": 2, "/env": {}}
SUPERVISOR_SAMPLE = {"/strategy": "one_for_all", "/intensity": 1, "/period": "1s",
                     "/auto_shutdown": "never"}


def set_pointer(doc, ptr, value):
    doc = copy.deepcopy(doc)
    parts = ptr.lstrip("/").split("/")
    node = doc
    for part in parts[:-1]:
        if isinstance(node, list):
            node = node[int(part)]
        else:
            node = node.setdefault(part, {})
    if isinstance(node, list):
        node[int(parts[-1])] = value
    else:
        node[parts[-1]] = value
    return doc


# Values the loader rejects and the schema accepts: (pointer regex, value, reason). Each must
# still occur, and every other variant must get the same verdict from both.
KNOWN_DIFFERENCES = [
    (r"^/(stop/signal|instances|ready/fd|logs/keep|liveness/\w+_threshold|readiness/"
     r"success_threshold|liveness/tcp/port|patterns/0/count|user|group|limits/nofile|intensity)$",
     "float:integral", "JSON Schema's integer admits 1.0; the loader wants an integer literal"),
    (r"^/logs/max_(size|line)$", "string:below-minimum",
     "a size's minimum when written as a string: `minimum` applies to numbers only"),
    (r"^/(ready/log|patterns)$", "regex:invalid", "PCRE2 syntax is checked by compiling"),
    (r"^/limits$", "soft>hard", "compares two values"),
    (r"^/backoff$", "max<initial", "compares two values"),
    (r"^/(parent|after)$", "cross-file", "whether a unit exists, and its kind, is in other files"),
    (r".", "inexact", "a fraction of m, h, d (or of a size unit) that is not a whole number of "
                      "milliseconds (bytes): the schema checks this for s, ms and bare bytes only"),
    (r"^/limits/\w+$", "overflow", "a limit beyond 2^64-1"),
    (r"^/(watchdog|backoff/\w+|stop/timeout|ready/timeout|liveness/\w+|period|patterns/0/within|"
     r"logs/(ring|max_size|max_line))$", "above-maximum",
     "a duration or size above the field's maximum that the schema's pattern cannot tell: it "
     "bounds the digits of each number (\"2d\" for at most 1d, \"2T\" for at most 1TiB), the "
     "loader the sum"),
    (r"^/(user|group)$", "unresolved", "users and groups are looked up when units are loaded, "
                                       "in this system's user and group databases"),
]
INEXACT = {"0.00001m", "1.0000001K"}
OVERFLOW = {"18446744073709551616"}
NAME = re.compile(r"^[a-z0-9][a-z0-9._@-]*$")

DAY = 86_400_000
# The maxima of src/unit (include/vigil/unit/bounds.hpp), in milliseconds and bytes.
DURATION_MAX = {"/patterns/0/within": 365 * DAY}
SIZE_MAX = {"/logs/ring": 64 << 20, "/logs/max_line": 1 << 20, "/logs/max_size": 1 << 40}
DURATION_UNITS = [("d", DAY), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)]
SIZE_UNITS = {None: 1, "B": 1, "K": 1024, "KiB": 1024, "KB": 1000, "M": 1 << 20, "MiB": 1 << 20,
              "MB": 10**6, "G": 1 << 30, "GiB": 1 << 30, "GB": 10**9, "T": 1 << 40,
              "TiB": 1 << 40, "TB": 10**12}
NUMBER = r"[0-9]{1,20}(?:\.[0-9]{1,9})?"


def duration_ms(text: str):
    """The loader's reading of a duration, without its ceiling (None: not a duration)."""
    if text == "0":
        return 0
    m = re.fullmatch("".join(f"(?:({NUMBER}){u})?" for u, _ in DURATION_UNITS), text)
    if not text or not m:
        return None
    total = Fraction(0)
    for (_, factor), number in zip(DURATION_UNITS, m.groups()):
        total += Fraction(number) * factor if number else 0
    return int(total) if total.denominator == 1 else None


def size_bytes(text: str):
    """The loader's reading of a size, without its ceiling (None: not a size)."""
    m = re.fullmatch(f"({NUMBER})(KiB|MiB|GiB|TiB|KB|MB|GB|TB|K|M|G|T|B)?", text)
    if not m:
        return None
    n = Fraction(m[1]) * SIZE_UNITS[m[2]]
    return int(n) if n.denominator == 1 else None


def maximum(ptr):
    if ptr in SIZE_MAX:
        return SIZE_MAX[ptr], size_bytes
    if re.search(r"^/(watchdog|backoff/(initial|max|reset_after)|stop/timeout|ready/timeout|"
                 r"liveness/(initial_delay|period|timeout)|period|patterns/0/within)$", ptr):
        return DURATION_MAX.get(ptr, DAY), duration_ms
    return None


def resolvable(ptr, value) -> bool:
    """Whether the loader finds this user or group (a numeric group is not looked up; a numeric
    user without a passwd entry needs a group, which the variants do not give)."""
    numeric = isinstance(value, int) or value.isdigit()
    try:
        if ptr == "/group":
            return numeric or bool(grp.getgrnam(value))
        return bool(pwd.getpwuid(int(value)) if numeric else pwd.getpwnam(value))
    except KeyError:
        return False


def classify(ptr, value) -> str | None:
    """Which KNOWN_DIFFERENCES kind a variant's value is, if any (else None)."""
    if isinstance(value, float) and value.is_integer():
        return "float:integral"
    if isinstance(value, str) and value in INEXACT:
        return "inexact"
    if isinstance(value, str) and value in OVERFLOW:
        return "overflow"
    if isinstance(value, str) and maximum(ptr):
        limit, read = maximum(ptr)
        if (n := read(value)) is not None and n > limit:
            return "above-maximum"
    if ptr in ("/user", "/group") and ((isinstance(value, int) and not isinstance(value, bool)
                                        and value >= 0) or (isinstance(value, str) and value)):
        if not resolvable(ptr, value):
            return "unresolved"
    if ptr in ("/parent", "/after"):
        names = value if isinstance(value, list) else [value]
        known = {"app", "root"} if ptr == "/parent" else {"app", "peer"}
        if any(isinstance(n, str) and NAME.match(n) and n not in known for n in names):
            return "cross-file"
    if ptr in ("/logs/max_size", "/logs/max_line") and isinstance(value, str):
        minimum = 4096 if ptr.endswith("size") else 64
        m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)(KiB|MiB|GiB|TiB|KB|MB|GB|TB|K|M|G|T|B)?", value)
        scale = {None: 1, "B": 1, "K": 1024, "KiB": 1024, "KB": 1000, "M": 1 << 20, "MiB": 1 << 20,
                 "MB": 10**6, "G": 1 << 30, "GiB": 1 << 30, "GB": 10**9, "T": 1 << 40,
                 "TiB": 1 << 40, "TB": 10**12}
        if m and float(m[1]) * scale[m[2]] < minimum:
            return "string:below-minimum"
    if isinstance(value, str) and value in ("(", "[a-"):
        return "regex:invalid"
    if isinstance(value, list) and value and isinstance(value[0], dict) and \
            value[0].get("match") in ("(", "[a-"):
        return "regex:invalid"
    if isinstance(value, dict) and any(isinstance(v, dict) and isinstance(v.get("soft"), int)
                                       and isinstance(v.get("hard"), int) and v["soft"] > v["hard"]
                                       for v in value.values()):
        return "soft>hard"
    if ptr == "/backoff" and isinstance(value, dict):
        ms = {"1m": 60000, "30s": 30000, "10s": 10000, "2s": 2000, "1s": 1000, "100ms": 100,
              "50ms": 50, "0s": 0}
        if ms[value.get("max", "30s")] < ms[value.get("initial", "100ms")]:
            return "max<initial"
    return None


class LoaderAndSchemaAgree(unittest.TestCase):
    def test_single_field_variants(self):
        vigild = os.environ.get("VIGILD")
        if not vigild:
            self.fail("VIGILD is not set (the path of the vigild binary)")
        cases = variants()
        self.assertGreater(len(cases), 600)
        with tempfile.TemporaryDirectory(prefix="vigil-schema-") as tmp:
            units = Path(tmp) / "units"
            units.mkdir()
            # What the variants may refer to: a sibling, a supervisor, a root that makes
            # significant children meaningful.
            (units / "peer.json").write_text('{"command": ["true"]}')
            (units / "app.json").write_text('{"kind": "supervisor", "auto_shutdown": "any_significant"}')
            (units / "root.json").write_text('{"auto_shutdown": "any_significant"}')
            docs = {}
            for i, (base, ptr, value) in enumerate(cases):
                name = f"v{i:04d}"
                doc = set_pointer(base, ptr, value)
                docs[name] = (ptr, value, doc)
                (units / f"{name}.json").write_text(json.dumps(doc))
            run = subprocess.run([vigild, "--check", "--units", str(units)], capture_output=True,
                                 text=True, timeout=60)
            output = run.stdout + run.stderr
        rejected_by_loader = set(re.findall(r"units/(v\d{4})\.json", output))
        for name in ("peer", "app", "root"):
            self.assertNotIn(f"units/{name}.json", output)
        used = set()
        for name, (ptr, value, doc) in sorted(docs.items()):
            errors = list(NON_ROOT.iter_errors(doc))
            loader_ok, schema_ok = name not in rejected_by_loader, not errors
            with self.subTest(f"{ptr} = {json.dumps(value)}"):
                if loader_ok == schema_ok:
                    continue
                kind = classify(ptr, value)
                known = next((i for i, (pat, k, _) in enumerate(KNOWN_DIFFERENCES)
                              if k == kind and re.search(pat, ptr)), None)
                if known is not None and not loader_ok and schema_ok:
                    used.add(known)
                    continue
                loader_says = [l for l in output.splitlines() if f"units/{name}.json" in l]
                self.fail(f"loader {'accepts' if loader_ok else 'rejects'} {json.dumps(doc)}, "
                          f"schema {'accepts' if schema_ok else 'rejects'}: "
                          f"{loader_says or describe(errors)}")
        unused = [KNOWN_DIFFERENCES[i][1] for i in range(len(KNOWN_DIFFERENCES)) if i not in used]
        self.assertEqual(unused, [], "known differences no variant shows")


if __name__ == "__main__":
    unittest.main()
