"""The container files: packaging/docker/Dockerfile and packaging/kubernetes/.

There is no container engine on the build machines, so this test checks what it can without one:

- DockerfileTest parses the Dockerfile the way the builder reads it (continuation lines,
  comments, exec form) and checks that every instruction is known, that every stage a COPY names
  exists above it, that every source copied from the build context exists in the tree and is
  not excluded by Dockerfile.dockerignore, that what is copied from the builder stage is what
  its ninja command builds, that ENTRYPOINT, CMD and HEALTHCHECK are in exec (JSON) form, and
  that the builder installs only packages .ci/deps.sh installs for CI.
- KubernetesTest loads every YAML file of packaging/kubernetes/ and checks that the pod's
  probes and Prometheus annotations use the paths vigild serves on the port of the --http
  option the container runs with (the manifest's args, or else the image's CMD), that vigild
  stays PID 1, and that the grace period covers the stop timeouts of the units the image ships.
- EntrypointTest runs the image's ENTRYPOINT + CMD, with each path the image's COPY lines put in
  place mapped back to the tree (the vigild and vigilctl under test, units/), as PID 1 of fresh
  PID, mount and network namespaces, with /run and /tmp private as in a container. It GETs
  /healthz and /readyz on the port the manifest probes, runs the HEALTHCHECK command inside the
  namespaces, then sends SIGTERM from outside and expects exit status 0 within the grace period.

Run by hand with:
    VIGILD=$B/src/daemon/vigild VIGILCTL=$B/src/cli/vigilctl \
        python3 tests/packaging/test_containers.py -v
"""

from __future__ import annotations

import dataclasses
import fnmatch
import glob
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
from typing import Optional

import yaml  # python3-yaml (.ci/deps.sh)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import harness  # noqa: E402
from harness import scaled, wait_until  # noqa: E402

DOCKERFILE = os.path.join(ROOT, "packaging", "docker", "Dockerfile")
DOCKERIGNORE = DOCKERFILE + ".dockerignore"
KUBERNETES = os.path.join(ROOT, "packaging", "kubernetes")
DEPS_SH = os.path.join(ROOT, ".ci", "deps.sh")

# Every Dockerfile instruction (docs.docker.com/reference/dockerfile/).
KNOWN_INSTRUCTIONS = {
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
    "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
}

# The tree's build outputs that the builder stage's ninja targets name, and the environment
# variable (set by meson) holding the one under test.
BUILD_OUTPUTS = {"src/daemon/vigild": "VIGILD", "src/cli/vigilctl": "VIGILCTL"}


# --------------------------------------------------------------------------- Dockerfile


@dataclasses.dataclass
class Instruction:
    line: int       # where it starts
    keyword: str    # as written
    args: str       # the rest, continuation lines joined


@dataclasses.dataclass
class Stage:
    index: int
    image: str
    name: Optional[str]
    instructions: list


def parse_dockerfile(text: str) -> list:
    """Instructions in order. Comment lines are dropped, also inside a continuation (as the
    builder does); a line ending in a backslash continues on the next."""
    out, buf, start = [], None, 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if buf is None:
            buf, start = "", number
        if raw.rstrip().endswith("\\"):
            buf += raw.rstrip()[:-1] + " "
            continue
        buf += raw
        keyword, _, args = buf.strip().partition(" ")
        out.append(Instruction(start, keyword, args.strip()))
        buf = None
    if buf is not None:
        raise AssertionError(f"Dockerfile:{start}: the last instruction ends in a backslash")
    return out


def stages(instructions: list) -> list:
    out = []
    for ins in instructions:
        if ins.keyword.upper() == "FROM":
            words = [w for w in ins.args.split() if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].lower() == "as" else None
            out.append(Stage(len(out), words[0], name, []))
        elif out:
            out[-1].instructions.append(ins)
        else:
            raise AssertionError(f"Dockerfile:{ins.line}: {ins.keyword} before the first FROM")
    return out


def exec_form(args: str) -> Optional[list]:
    """The argv of an exec-form (JSON array of strings) argument, or None for shell form."""
    if not args.lstrip().startswith("["):
        return None
    value = json.loads(args)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise AssertionError(f"not a JSON array of strings: {args}")
    return value


def split_flags(args: str) -> tuple:
    """('--from=builder --chmod=755 a b' ->) ({'from': 'builder', 'chmod': '755'}, 'a b')."""
    flags = {}
    while True:
        m = re.match(r"--([a-z-]+)(?:=(\S*))?\s+", args)
        if not m:
            return flags, args
        flags[m.group(1)] = m.group(2) or ""
        args = args[m.end():]


@dataclasses.dataclass
class Copy:
    line: int
    stage: Optional[str]    # --from, or None for the build context
    sources: list
    dest: str


def copy_of(ins: Instruction) -> Copy:
    flags, rest = split_flags(ins.args)
    words = exec_form(rest) or shlex.split(rest)
    if len(words) < 2:
        raise AssertionError(f"Dockerfile:{ins.line}: COPY needs a source and a destination")
    return Copy(ins.line, flags.get("from"), words[:-1], words[-1])


def healthcheck_argv(ins: Instruction) -> Optional[list]:
    """The exec-form command of HEALTHCHECK [OPTIONS] CMD [...], None for HEALTHCHECK NONE."""
    _, rest = split_flags(ins.args)
    word, _, command = rest.partition(" ")
    if word.upper() == "NONE":
        return None
    if word.upper() != "CMD":
        raise AssertionError(f"Dockerfile:{ins.line}: HEALTHCHECK wants CMD or NONE, not {word}")
    argv = exec_form(command.strip())
    if argv is None:
        raise AssertionError(f"Dockerfile:{ins.line}: HEALTHCHECK CMD is not in exec form")
    return argv


def shell_commands(stage: Stage) -> list:
    """The simple commands (word lists, split at &&, || and ;) of the stage's shell-form RUNs."""
    out = []
    for ins in stage.instructions:
        if ins.keyword.upper() != "RUN" or exec_form(ins.args) is not None:
            continue
        command = []
        for word in shlex.split(ins.args) + ["&&"]:
            if word in ("&&", "||", ";"):
                if command:
                    out.append(command)
                command = []
            else:
                command.append(word)
    return out


def ninja_runs(stage: Stage) -> list:
    """(build directory, [targets]) of each `ninja -C DIR TARGET...` of the stage."""
    return [(c[2], c[3:]) for c in shell_commands(stage) if c[:2] == ["ninja", "-C"]]


def ninja_builds(stage: Stage) -> set:
    """Absolute paths of what the stage's ninja commands build."""
    return {os.path.join(d, t) for d, targets in ninja_runs(stage) for t in targets}


def builder_dir(stage: Stage) -> str:
    dirs = {d for d, _ in ninja_runs(stage)}
    if len(dirs) != 1:
        raise AssertionError(f"stage {stage.name}: expected one ninja build directory, got {dirs}")
    return dirs.pop()


def apt_packages(stage: Stage) -> set:
    """The packages the stage's `apt-get install` commands name."""
    return {w for c in shell_commands(stage) if c[:2] == ["apt-get", "install"]
            for w in c[2:] if not w.startswith("-")}


def ci_packages() -> set:
    """The packages of .ci/deps.sh's vigil_packages=( ... ) array."""
    with open(DEPS_SH) as f:
        text = f.read()
    body = re.search(r"^vigil_packages=\((.*?)^\)", text, re.S | re.M)
    if not body:
        raise AssertionError(".ci/deps.sh has no vigil_packages=( ... ) array")
    return {w for line in body.group(1).splitlines() for w in line.split("#")[0].split()}


def dockerignore_patterns() -> list:
    if not os.path.exists(DOCKERIGNORE):
        return []
    with open(DOCKERIGNORE) as f:
        return [line.strip() for line in f if line.strip() and not line.startswith("#")]


def ignored(path: str, patterns: list) -> bool:
    """Whether a context path (or a folder above it) matches an exclusion pattern. Enough for
    the patterns we write (no '!' exceptions)."""
    parts = os.path.normpath(path).split(os.sep)
    for n in range(1, len(parts) + 1):
        prefix = "/".join(parts[:n])
        for pattern in patterns:
            if fnmatch.fnmatch(prefix, pattern) or fnmatch.fnmatch(prefix, pattern.lstrip("*/")):
                return True
    return False


def load_dockerfile() -> tuple:
    with open(DOCKERFILE) as f:
        instructions = parse_dockerfile(f.read())
    return instructions, stages(instructions)


def final_instruction(stage: Stage, keyword: str) -> Optional[Instruction]:
    """The last `keyword` instruction of the stage (the one in force), or None."""
    found = [i for i in stage.instructions if i.keyword.upper() == keyword]
    return found[-1] if found else None


class DockerfileTest(unittest.TestCase):
    def setUp(self) -> None:
        self.instructions, self.stages = load_dockerfile()

    def test_every_instruction_is_known_and_upper_case(self) -> None:
        self.assertTrue(self.instructions)
        for ins in self.instructions:
            self.assertIn(ins.keyword.upper(), KNOWN_INSTRUCTIONS, f"line {ins.line}")
            self.assertEqual(ins.keyword, ins.keyword.upper(), f"line {ins.line}")

    def test_a_debian_builder_and_a_slim_final_stage(self) -> None:
        self.assertGreaterEqual(len(self.stages), 2)
        self.assertEqual(self.stages[0].image, "debian:12")
        self.assertEqual(self.stages[-1].image, "debian:12-slim")
        names = [s.name for s in self.stages if s.name]
        self.assertEqual(len(names), len(set(names)), "stage names repeat")

    def test_copy_from_names_an_earlier_stage_and_what_it_builds(self) -> None:
        seen = {}
        for stage in self.stages:
            for ins in stage.instructions:
                if ins.keyword.upper() not in ("COPY", "ADD"):
                    continue
                copy = copy_of(ins)
                if copy.stage is None:
                    continue
                self.assertEqual(ins.keyword.upper(), "COPY", f"line {ins.line}: ADD --from")
                source_stage = seen.get(copy.stage)
                if source_stage is None and copy.stage.isdigit():
                    source_stage = self.stages[int(copy.stage)] if int(copy.stage) < stage.index \
                        else None
                self.assertIsNotNone(source_stage,
                                     f"line {ins.line}: --from={copy.stage} is no earlier stage")
                built = ninja_builds(source_stage)
                for src in copy.sources:
                    self.assertIn(src, built, f"line {ins.line}: stage {copy.stage} does not "
                                  f"build {src} (it builds {sorted(built)})")
            if stage.name:
                seen[stage.name] = stage
            seen[str(stage.index)] = stage

    def test_context_sources_exist_and_are_not_ignored(self) -> None:
        patterns = dockerignore_patterns()
        count = 0
        for ins in self.instructions:
            if ins.keyword.upper() in ("COPY", "ADD"):
                copy = copy_of(ins)
                if copy.stage is not None:
                    continue
                for src in copy.sources:
                    count += 1
                    self.assertTrue(glob.glob(os.path.join(ROOT, src)),
                                    f"line {ins.line}: {src} is not in the tree")
                    if os.path.normpath(src) != ".":
                        self.assertFalse(ignored(src, patterns),
                                         f"line {ins.line}: {src} is excluded by the dockerignore")
        self.assertGreater(count, 0)
        # What the builder compiles must not be excluded either.
        for needed in ("meson.build", "src", "include", "tests", "bench", "units"):
            self.assertFalse(ignored(needed, patterns), f"the dockerignore excludes {needed}")

    def test_entrypoint_cmd_and_healthcheck_are_exec_form(self) -> None:
        final = self.stages[-1]
        for keyword in ("ENTRYPOINT", "CMD", "HEALTHCHECK"):
            ins = final_instruction(final, keyword)
            self.assertIsNotNone(ins, f"the final stage has no {keyword}")
            argv = healthcheck_argv(ins) if keyword == "HEALTHCHECK" else exec_form(ins.args)
            # Shell form would make /bin/sh PID 1, and vigild would never see docker stop's
            # SIGTERM.
            self.assertTrue(argv, f"line {ins.line}: {keyword} is not in exec (JSON) form")
        for ins in self.instructions:
            if ins.args.lstrip().startswith("[") and ins.keyword.upper() in (
                    "RUN", "CMD", "ENTRYPOINT", "SHELL", "VOLUME"):
                exec_form(ins.args)  # raises when the JSON is malformed

    def test_entrypoint_is_the_copied_vigild(self) -> None:
        final = self.stages[-1]
        entrypoint = exec_form(final_instruction(final, "ENTRYPOINT").args)
        mapping = image_paths(self.stages)
        local = mapping.get(entrypoint[0])
        self.assertIsNotNone(local, f"{entrypoint[0]} is not put in place by a COPY")
        self.assertEqual(local, os.path.abspath(harness.vigild()))

    def test_builder_installs_only_ci_packages(self) -> None:
        wanted = apt_packages(self.stages[0])
        self.assertIn("meson", wanted)
        self.assertLessEqual(wanted, ci_packages(),
                             "the builder installs packages .ci/deps.sh does not")


# --------------------------------------------------------------------------- path mapping


def image_paths(all_stages: list) -> dict:
    """Image path -> path in the tree, from the final stage's COPY instructions: a build output
    maps to the binary under test (VIGILD, VIGILCTL), a context path to the tree."""
    final = all_stages[-1]
    by_name = {s.name: s for s in all_stages if s.name}
    by_name.update({str(s.index): s for s in all_stages})
    out = {}
    for ins in final.instructions:
        if ins.keyword.upper() != "COPY":
            continue
        copy = copy_of(ins)
        for src in copy.sources:
            if copy.stage is not None:
                rel = os.path.relpath(src, builder_dir(by_name[copy.stage]))
                var = BUILD_OUTPUTS.get(rel)
                if var is None:
                    raise AssertionError(f"line {ins.line}: no binary under test for {rel}")
                local = os.path.abspath(os.environ.get(var, ""))
            else:
                local = os.path.join(ROOT, os.path.normpath(src))
            dest = copy.dest
            if dest.endswith("/") and not os.path.isdir(local):
                dest += os.path.basename(src)
            out[dest.rstrip("/")] = local
    return out


def map_text(text: str, mapping: dict) -> str:
    """Replaces every image path of `mapping` in text (an argv word or a shell command) by its
    place in the tree; the longest path wins."""
    keys = sorted(mapping, key=len, reverse=True)
    pattern = re.compile("(" + "|".join(re.escape(k) for k in keys) + r")(?=/|\s|$|')")
    return pattern.sub(lambda m: mapping[m.group(1)], text)


# --------------------------------------------------------------------------- Kubernetes


def workloads() -> list:
    """(file, document) for every Pod and pod template of packaging/kubernetes/*.yaml."""
    out = []
    for path in sorted(glob.glob(os.path.join(KUBERNETES, "*.yaml"))):
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if isinstance(doc, dict) and doc.get("kind") in (
                        "Pod", "Deployment", "StatefulSet", "DaemonSet"):
                    out.append((os.path.basename(path), doc))
    return out


def pod_of(doc: dict) -> tuple:
    """(pod metadata, pod spec) of a Pod or of a workload's template."""
    if doc["kind"] == "Pod":
        return doc.get("metadata", {}), doc["spec"]
    template = doc["spec"]["template"]
    return template.get("metadata", {}), template["spec"]


def http_option(args: list) -> tuple:
    """(host, port) of vigild's --http HOST:PORT in args."""
    for i, arg in enumerate(args):
        value = None
        if arg == "--http" and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith("--http="):
            value = arg.split("=", 1)[1]
        if value is not None:
            host, _, port = value.rpartition(":")
            return host, int(port)
    raise AssertionError(f"vigild runs without --http: {args}")


def container_args(container: dict, final: Stage) -> list:
    """vigild's argv after the program: the container's args, else the image's CMD."""
    if "args" in container:
        return list(container["args"])
    return exec_form(final_instruction(final, "CMD").args)


def stop_timeouts_ms(vigild: str, units: str) -> list:
    """Each service's effective stop timeout in ms, from `vigild --check`, which prints the
    resolved tree with the defaults filled in."""
    r = subprocess.run([vigild, "--check", "--units", units], capture_output=True, text=True,
                       timeout=scaled(10))
    if r.returncode != 0:
        raise AssertionError(f"vigild --check failed: {r.stdout}{r.stderr}")
    out = []
    # e.g. "web (service) restart=permanent stop=SIGINT stop_timeout=5s" (or 1m30s, infinity).
    # Supervisors have no timeout of their own: they wait for their services, counted here.
    for line in r.stdout.splitlines():
        if "(service)" not in line:
            continue
        m = re.search(r"\bstop_timeout=(\S+)", line)
        if m is None:
            raise AssertionError(f"no stop_timeout in: {line}")
        parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", m.group(1))
        if "".join(n + u for n, u in parts) != m.group(1):
            raise AssertionError(f"a stop timeout no grace period covers: {line}")
        factor = {"ms": 1, "s": 1000, "m": 60000, "h": 3600000, "d": 86400000}
        out.append(sum(float(n) * factor[u] for n, u in parts))
    if not out:
        raise AssertionError(f"no service in vigild --check's output:\n{r.stdout}")
    return out


class KubernetesTest(unittest.TestCase):
    def setUp(self) -> None:
        _, self.stages = load_dockerfile()
        self.final = self.stages[-1]
        self.workloads = workloads()

    def containers(self):
        for name, doc in self.workloads:
            meta, spec = pod_of(doc)
            for c in spec["containers"]:
                yield name, meta, spec, c

    def test_there_is_a_workload(self) -> None:
        self.assertTrue(self.workloads, "no Pod or Deployment in packaging/kubernetes/")

    def test_vigild_is_pid_1(self) -> None:
        entrypoint = exec_form(final_instruction(self.final, "ENTRYPOINT").args)
        for name, _, spec, c in self.containers():
            self.assertIs(spec.get("shareProcessNamespace"), False, name)
            self.assertIn(c.get("command", entrypoint), (entrypoint,), name)

    def test_probes_and_scrape_annotations_use_vigilds_http_port(self) -> None:
        for name, meta, _, c in self.containers():
            host, port = http_option(container_args(c, self.final))
            # The kubelet probes the pod's address, not the container's loopback.
            self.assertNotIn(host, ("127.0.0.1", "localhost", "[::1]"), name)
            named = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
            self.assertIn(port, named.values(), f"{name}: port {port} is not declared")

            def probe(kind: str, path: str) -> None:
                get = c[kind]["httpGet"]
                self.assertEqual(get["path"], path, f"{name}: {kind}")
                probed = named.get(get["port"], get["port"])
                self.assertEqual(probed, port, f"{name}: {kind} probes another port")

            probe("livenessProbe", "/healthz")
            probe("readinessProbe", "/readyz")
            notes = meta.get("annotations", {})
            self.assertEqual(notes.get("prometheus.io/scrape"), "true", name)
            self.assertEqual(notes.get("prometheus.io/path"), "/metrics", name)
            self.assertEqual(notes.get("prometheus.io/port"), str(port), name)

    def test_grace_period_covers_the_shipped_units_stop_timeouts(self) -> None:
        mapping = image_paths(self.stages)
        for name, _, spec, c in self.containers():
            args = [map_text(a, mapping) for a in container_args(c, self.final)]
            units = args[args.index("--units") + 1]
            total_ms = sum(stop_timeouts_ms(harness.vigild(), units))
            grace = spec.get("terminationGracePeriodSeconds", 30)
            # vigild stops services one at a time: the worst case is the sum.
            self.assertGreater(grace * 1000, total_ms, name)


# --------------------------------------------------------------------------- the entrypoint

# Runs as PID 1 of the new PID namespace before vigild ($1: a folder to show as /tmp, then
# vigild's argv). Like a container: a private /run (where vigild, as root, puts its control
# socket), a private /tmp, and a network namespace of its own with only loopback, so the fixed
# port cannot clash with anything on the host. `unshare --net` and both execs keep PID 1.
PRELUDE = r'''
set -e
mount -t tmpfs -o mode=0755 tmpfs /run
mount --bind "$1" /tmp
shift
exec unshare --net -- sh -c 'ip link set lo up && exec "$@"' sh "$@"
'''

# GETs argv[1]; prints the status code (0 when no answer) and the body.
GET = r'''
import sys, urllib.error, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
        print(r.status); print(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code); print(e.read().decode())
except OSError as e:
    print(0); print(e)
'''


class EntrypointTest(unittest.TestCase):
    def setUp(self) -> None:
        _, self.stages = load_dockerfile()
        final = self.stages[-1]
        self.mapping = image_paths(self.stages)
        argv = exec_form(final_instruction(final, "ENTRYPOINT").args) + \
            exec_form(final_instruction(final, "CMD").args)
        name, doc = workloads()[0]
        _, spec = pod_of(doc)
        container = spec["containers"][0]
        self.port = http_option(container_args(container, final))[1]
        self.grace = spec.get("terminationGracePeriodSeconds", 30)
        self.tmp = tempfile.TemporaryDirectory(prefix="vigil-ct-")
        # The prelude hides the host's /tmp: what the image holds (a clone or build under /tmp,
        # as in CI) is staged under /dev/shm first, as `docker build` would copy it.
        self.stage = None
        for dest, path in list(self.mapping.items()):
            if not os.path.realpath(path).startswith("/tmp/"):
                continue
            if self.stage is None:
                self.stage = tempfile.TemporaryDirectory(prefix="vigil-ct-image-", dir="/dev/shm")
            copy = os.path.join(self.stage.name, dest.lstrip("/"))
            os.makedirs(os.path.dirname(copy), exist_ok=True)
            if os.path.isdir(path):
                shutil.copytree(path, copy, symlinks=True)
            else:
                shutil.copy2(path, copy)
            self.mapping[dest] = copy
        self.argv = [map_text(a, self.mapping) for a in argv]
        self.health = [map_text(a, self.mapping)
                       for a in healthcheck_argv(final_instruction(final, "HEALTHCHECK"))]

    def tearDown(self) -> None:
        self.tmp.cleanup()
        if self.stage is not None:
            self.stage.cleanup()

    def enter(self, ns: harness.PidNamespace, argv: list) -> subprocess.CompletedProcess:
        """Runs argv in the container's namespaces (network, mount, PID; user when not root)."""
        cmd = ["nsenter", f"--target={ns.init_pid}", "--net", "--mount", "--pid"]
        if not harness.as_root():
            cmd += ["--user", "--preserve-credentials"]
        return subprocess.run(cmd + ["--"] + argv, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=scaled(15))

    def get(self, ns: harness.PidNamespace, path: str) -> tuple:
        r = self.enter(ns, [sys.executable, "-c", GET, f"http://127.0.0.1:{self.port}{path}"])
        code, _, body = r.stdout.partition("\n")
        return (int(code) if code.isdigit() else 0), body

    def test_the_image_command_serves_probes_and_stops_cleanly(self) -> None:
        argv = ["sh", "-c", PRELUDE, "sh", self.tmp.name] + self.argv
        with harness.PidNamespace(argv, init_name="vigild") as ns:
            # The port is the container's own: vigild listens in a network namespace of its own.
            self.assertNotEqual(os.readlink(f"/proc/{ns.init_pid}/ns/net"),
                                os.readlink("/proc/self/ns/net"))
            def answers(path: str, code: int = 200):
                def check():
                    got = self.get(ns, path)
                    return got if got[0] == code else None
                return check

            wait_until(answers("/healthz"), 15, "GET /healthz to answer 200")
            _, body = wait_until(answers("/readyz"), 30, "GET /readyz to answer 200")
            self.assertEqual(json.loads(body).get("ready"), True, body)
            _, metrics = wait_until(answers("/metrics"), 10, "GET /metrics to answer 200")
            self.assertIn("vigil_build_info", metrics)

            health = self.enter(ns, self.health)
            self.assertEqual(health.returncode, 0, f"HEALTHCHECK {self.health}: {health.stderr}")
            # Services' output reaches vigild's stdout, which is what `docker logs` shows.
            wait_until(lambda: b"web | " in bytes(ns.stdout), 10, "web's output on stdout")

            started = time.monotonic()
            ns.signal_init(signal.SIGTERM)
            rc = ns.wait(self.grace)
            took = time.monotonic() - started
            self.assertEqual(rc, 0, bytes(ns.stderr).decode(errors="replace")[-2000:])
            self.assertLess(took, scaled(self.grace))
        self.assertTrue(os.path.exists(os.path.join(self.tmp.name, "vigil-demo", "queue")),
                        "the demo units did not write to the container's /tmp")


if __name__ == "__main__":
    unittest.main()
