"""The Debian package: packaging/debian built by packaging/build-deb.

The package is built once, from a copy of the tree (packaging/build-deb never writes into the
source tree), with DEB_BUILD_OPTIONS="nocheck noautodbgsym parallel=N": the package build does
not run the test suites (CI runs them in its own builds) and makes no -dbgsym package; -g0
after dpkg-buildflags' -g leaves out the debug information it would strip. Then:

- ContentsTest reads `dpkg-deb -c` and the control area (`dpkg-deb -e`): exactly the expected
  files with their modes and owners, each shipped file equal to its source in the tree, every
  example unit of units/, the conffiles, the version (meson.build's and debian/changelog's),
  Depends naming only libc6 (static_deps), Static-Built-Using, the systemd maintainer scripts.
- InstalledTest extracts the package into a throwaway root (`dpkg-deb -x`) and runs what it
  ships: the programs' NEEDED entries (libc only), `--version`, `vigild --check` on the example
  units and on /etc/vigil/units, the systemd unit's commands and options against `vigild --help`
  (and `systemd-analyze verify`'s parser, when present), and lintian (clean: every tag it still
  finds is overridden with a reason in packaging/debian/vigil.lintian-overrides).
- CompletionTest sources the shipped bash completion: it registers for vigilctl, offers every
  command and option that `vigilctl --help` lists, and completes unit names asked from a real
  vigild (the packaged one, PID 1 of a fresh PID namespace: harness.PidNamespace).

Needs dpkg-dev, debhelper, bash and (for its test) lintian; skipped without dpkg-buildpackage or
dh (.ci/deps.sh installs them). Every wait is bounded. Run by hand with:
    python3 tests/packaging/test_deb.py -v
"""

from __future__ import annotations

import configparser
import glob
import gzip
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

import harness  # noqa: E402  (tests/integration/harness.py)
from harness import wait_until  # noqa: E402

BUILD_TIMEOUT = 800  # seconds; meson's timeout (900) is the backstop
COMMAND_TIMEOUT = 30

PKG: dict = {}  # filled by setUpModule: deb, work, root, control, contents, build_seconds


def run(argv, timeout: float = COMMAND_TIMEOUT, check: bool = True, **kwargs):
    """A command's CompletedProcess (text), bounded; fails the test when check and rc != 0."""
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=timeout, stdin=subprocess.DEVNULL, **kwargs)
    if check and r.returncode != 0:
        raise AssertionError(f"{argv!r} exited {r.returncode}\nstdout:\n{r.stdout}\n"
                             f"stderr:\n{r.stderr}")
    return r


def project_version() -> str:
    with open(os.path.join(ROOT, "meson.build")) as f:
        m = re.search(r"^\s*version\s*:\s*'([^']+)'", f.read(), re.M)
    assert m, "no version in meson.build"
    return m.group(1)


def example_units() -> list:
    """The unit files of units/ (not the JSON Schema beside them)."""
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "units", "*.json"))
                  if not p.endswith(".schema.json"))


def setUpModule() -> None:
    for tool in ("dpkg-buildpackage", "dh", "dpkg-deb", "readelf", "bash"):
        if shutil.which(tool) is None:
            raise unittest.SkipTest(f"{tool} not installed (see .ci/deps.sh)")
    work = tempfile.mkdtemp(prefix="vigil-test-deb-")
    PKG["work"] = work
    # The sources the package ships, read just before build-deb copies the tree: what the
    # package must contain even if the tree is edited while the package builds.
    sources = {}
    for _mode, src in expected_files().values():
        if src is not None:
            with open(os.path.join(ROOT, src), "rb") as f:
                sources[src] = f.read()
    PKG["sources"] = sources
    env = dict(os.environ)
    env["DEB_BUILD_OPTIONS"] = f"nocheck noautodbgsym parallel={max(2, os.cpu_count() or 1)}"
    # No debug information (dpkg-buildflags' -g, then -g0): the package strips it anyway, the
    # test reads none, and it is a good part of an -O2 compile (bench/README.md, "CI time").
    env["DEB_CFLAGS_APPEND"] = env["DEB_CXXFLAGS_APPEND"] = "-g0"
    env["TMPDIR"] = work
    log_path = os.path.join(work, "build.log")
    started = time.monotonic()
    with open(log_path, "w") as log:
        try:
            rc = subprocess.run([os.path.join(ROOT, "packaging", "build-deb"), "-o",
                                 os.path.join(work, "out")], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, timeout=BUILD_TIMEOUT).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    PKG["build_seconds"] = time.monotonic() - started
    with open(log_path) as log:
        tail = "".join(log.readlines()[-60:])
    if rc != 0:
        shutil.rmtree(work, ignore_errors=True)
        raise AssertionError(f"packaging/build-deb failed ({rc}); its output ends with:\n{tail}")
    sys.stderr.write(f"package built in {PKG['build_seconds']:.0f} s\n")
    debs = [p for p in glob.glob(os.path.join(work, "out", "*.deb")) if "-dbgsym_" not in p]
    assert len(debs) == 1, f"expected one .deb, got {debs}"
    PKG["deb"] = debs[0]
    control = os.path.join(work, "control")
    run(["dpkg-deb", "-e", PKG["deb"], control])
    PKG["control"] = control
    root = os.path.join(work, "root")
    run(["dpkg-deb", "-x", PKG["deb"], root])
    PKG["root"] = root
    contents = {}
    for line in run(["dpkg-deb", "-c", PKG["deb"]]).stdout.splitlines():
        # -rwxr-xr-x root/root   3469240 2026-11-26 12:00 ./usr/sbin/vigild
        mode, owner, _size, _date, _time, path = line.split(None, 5)
        contents[path.split(" -> ")[0].removeprefix(".")] = (mode, owner)
    PKG["contents"] = contents


def tearDownModule() -> None:
    if "work" in PKG:
        shutil.rmtree(PKG["work"], ignore_errors=True)


def in_root(path: str) -> str:
    return os.path.join(PKG["root"], path.lstrip("/"))


def control_fields() -> dict:
    """The binary package's control fields (continuation lines joined)."""
    fields, key = {}, None
    with open(os.path.join(PKG["control"], "control")) as f:
        for line in f:
            if line[:1] in (" ", "\t") and key:
                fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, value = line.split(":", 1)
                fields[key] = value.strip()
    return fields


EXPECTED_FILES = {
    # path: (mode, source in the tree, or None when generated)
    "/usr/sbin/vigild": ("-rwxr-xr-x", None),
    "/usr/bin/vigilctl": ("-rwxr-xr-x", None),
    "/usr/share/man/man8/vigild.8.gz": ("-rw-r--r--", "man/vigild.8"),
    "/usr/share/man/man1/vigilctl.1.gz": ("-rw-r--r--", "man/vigilctl.1"),
    "/usr/share/man/man5/vigil.unit.5.gz": ("-rw-r--r--", "man/vigil.unit.5"),
    "/usr/share/bash-completion/completions/vigilctl":
        ("-rw-r--r--", "packaging/bash-completion/vigilctl"),
    "/lib/systemd/system/vigild.service": ("-rw-r--r--", "packaging/vigild.service"),
    "/etc/vigil/units/README": ("-rw-r--r--", "packaging/debian/units/README"),
    "/usr/share/doc/vigil/README.Debian": ("-rw-r--r--", "packaging/debian/README.Debian"),
    "/usr/share/doc/vigil/copyright": ("-rw-r--r--", "packaging/debian/copyright"),
    "/usr/share/doc/vigil/changelog.gz": ("-rw-r--r--", "packaging/debian/changelog"),
    "/usr/share/vigil/vigil.unit.schema.json": ("-rw-r--r--", "docs/vigil.unit.schema.json"),
    "/usr/share/lintian/overrides/vigil":
        ("-rw-r--r--", "packaging/debian/vigil.lintian-overrides"),
}


def expected_files() -> dict:
    files = dict(EXPECTED_FILES)
    for name in example_units():
        files[f"/usr/share/doc/vigil/examples/units/{name}"] = ("-rw-r--r--", f"units/{name}")
    return files


class ContentsTest(unittest.TestCase):
    def test_files_modes_and_owners(self) -> None:
        contents = PKG["contents"]
        files = {p: m for p, m in contents.items() if not m[0].startswith("d")}
        expected = expected_files()
        self.assertEqual(sorted(files), sorted(expected), "the package's files")
        for path, (mode, _src) in expected.items():
            self.assertEqual(files[path][0], mode, path)
        for path, (_mode, owner) in contents.items():
            self.assertEqual(owner, "root/root", path)
        for d in ("/etc/vigil/units/", "/usr/share/bash-completion/completions/"):
            self.assertEqual(contents[d][0], "drwxr-xr-x", d)

    def test_shipped_files_are_the_trees(self) -> None:
        for path, (_mode, src) in expected_files().items():
            if src is None:
                continue
            want = PKG["sources"][src]
            opener = gzip.open if path.endswith(".gz") else open
            with opener(in_root(path), "rb") as f:
                got = f.read()
            if src.endswith("changelog"):
                self.assertIn(want.strip(), got, path)
            elif src.endswith("lintian-overrides"):
                # dh_lintian copies the file as it is.
                self.assertEqual(got, want, path)
            else:
                self.assertEqual(got, want, f"{path} differs from {src}")

    def test_version(self) -> None:
        version = project_version()
        self.assertEqual(control_fields()["Version"], version)
        with open(os.path.join(ROOT, "packaging", "debian", "changelog")) as f:
            first = f.readline()
        self.assertRegex(first, rf"^vigil \({re.escape(version)}\) ")
        self.assertTrue(os.path.basename(PKG["deb"]).startswith(f"vigil_{version}_"))

    def test_control_fields(self) -> None:
        fields = control_fields()
        self.assertEqual(fields["Package"], "vigil")
        self.assertEqual(fields["Section"], "admin")
        arch = run(["dpkg", "--print-architecture"]).stdout.strip()
        self.assertEqual(fields["Architecture"], arch)
        # static_deps: libuv, PCRE2, http-parser and the C++ runtime are linked in; dpkg-shlibdeps
        # finds libc alone.
        depends = [d.strip() for d in fields["Depends"].split(",")]
        self.assertEqual([re.split(r"[ (]", d)[0] for d in depends], ["libc6"], depends)
        built_using = fields.get("Static-Built-Using", "")
        for source in ("libuv1", "pcre2", "http-parser", "gcc-"):
            self.assertRegex(built_using, rf"(^|, ){re.escape(source)}\S* \(= [^)]+\)")
        self.assertIn("vigild", fields["Description"])

    def test_conffiles(self) -> None:
        with open(os.path.join(PKG["control"], "conffiles")) as f:
            self.assertEqual(f.read().split(), ["/etc/vigil/units/README"])

    def test_systemd_maintainer_scripts(self) -> None:
        # dh_installsystemd: enable and start vigild.service on install, stop it on removal.
        with open(os.path.join(PKG["control"], "postinst")) as f:
            postinst = f.read()
        self.assertIn("deb-systemd-helper", postinst)
        self.assertRegex(postinst, r"deb-systemd-invoke \$_dh_action '?vigild\.service")
        with open(os.path.join(PKG["control"], "prerm")) as f:
            self.assertRegex(f.read(), r"deb-systemd-invoke stop '?vigild\.service")


def help_options(text: str) -> list:
    """The options CLI11's --help lists ("-s,--socket TEXT ..." -> ["-s", "--socket"])."""
    opts, section = [], None
    for line in text.splitlines():
        if re.match(r"^\S.*:$", line):
            section = line
            continue
        m = re.match(r"^  (-[\w-]+(?:,-[\w-]+)*)", line)
        if section == "Options:" and m:
            opts += m.group(1).split(",")
    return opts


def help_subcommands(text: str) -> list:
    lines = text.split("\nSubcommands:\n", 1)[1].splitlines()
    return [m.group(1) for m in (re.match(r"^  (\w+)\s", l) for l in lines) if m]


class InstalledTest(unittest.TestCase):
    def test_programs_need_only_libc(self) -> None:
        for prog in ("/usr/sbin/vigild", "/usr/bin/vigilctl"):
            dyn = run(["readelf", "-d", in_root(prog)]).stdout
            needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dyn)
            extra = [n for n in needed if not re.match(r"^(libc|libm|ld-linux[\w.-]*)\.so", n)]
            self.assertEqual(extra, [], f"{prog} needs more than libc: {needed}")

    def test_versions(self) -> None:
        version = project_version()
        self.assertEqual(run([in_root("/usr/sbin/vigild"), "--version"]).stdout.strip(),
                         f"vigild {version}")
        self.assertEqual(run([in_root("/usr/bin/vigilctl"), "--version"]).stdout.strip(),
                         f"vigilctl {version}")

    def test_check_shipped_units(self) -> None:
        vigild = in_root("/usr/sbin/vigild")
        examples = in_root("/usr/share/doc/vigil/examples/units")
        tree = run([vigild, "--check", "--units", examples]).stdout
        for name in example_units():
            self.assertRegex(tree, rf"\b{re.escape(name[:-5])}\b", f"{name} not in the tree")
        # The README in /etc/vigil/units is not a unit: an empty tree, not an error.
        tree = run([vigild, "--check", "--units", in_root("/etc/vigil/units")]).stdout
        self.assertTrue(tree.startswith("root (supervisor)"), tree)
        self.assertEqual(len(tree.strip().splitlines()), 1, tree)

    def service(self) -> configparser.ConfigParser:
        cp = configparser.ConfigParser(interpolation=None, strict=True)
        cp.optionxform = str  # systemd keys are case-sensitive
        cp.read(in_root("/lib/systemd/system/vigild.service"))
        return cp

    def test_service_commands_use_vigilds_options(self) -> None:
        cp = self.service()
        svc = cp["Service"]
        vigild = in_root("/usr/sbin/vigild")
        known = help_options(run([vigild, "--help"]).stdout)
        self.assertIn("--units", known)
        for key in ("ExecStartPre", "ExecStart"):
            argv = shlex.split(svc[key])
            self.assertEqual(argv[0], "/usr/sbin/vigild", key)
            for arg in argv[1:]:
                if arg.startswith("-"):
                    self.assertIn(arg.split("=")[0], known, f"{key}: {arg} is not vigild's")
            self.assertEqual(argv[argv.index("--units") + 1], "/etc/vigil/units", key)
        # The check it runs before starting passes on the package's /etc/vigil/units.
        pre = shlex.split(svc["ExecStartPre"])
        pre = [vigild] + [in_root(a) if a == "/etc/vigil/units" else a for a in pre[1:]]
        run(pre)
        self.assertIn("HUP", svc["ExecReload"])
        self.assertEqual(svc["KillMode"], "mixed")
        self.assertEqual(cp["Install"]["WantedBy"], "multi-user.target")
        for page in re.findall(r"man:(\S+)\((\d)\)", cp["Unit"]["Documentation"]):
            self.assertIn(f"/usr/share/man/man{page[1]}/{page[0]}.{page[1]}.gz", PKG["contents"])

    @unittest.skipIf(shutil.which("systemd-analyze") is None, "systemd-analyze not installed")
    def test_service_parses(self) -> None:
        # verify also complains that the binaries and man pages are not installed on this host
        # and, without a running systemd, about missing targets: only its parser's messages
        # ("FILE:LINE: ...") are about the file itself.
        r = run(["systemd-analyze", "verify", "--man=no",
                 in_root("/lib/systemd/system/vigild.service")], check=False)
        problems = [l for l in (r.stdout + r.stderr).splitlines()
                    if re.search(r"vigild\.service:\d+:", l)]
        self.assertEqual(problems, [])

    @unittest.skipIf(shutil.which("lintian") is None, "lintian not installed")
    def test_lintian_clean(self) -> None:
        # --pedantic -I: every tag, down to pedantic and info; overridden tags are not shown.
        r = run(["lintian", "--pedantic", "-I", "--no-tag-display-limit", PKG["deb"]],
                timeout=300, check=False)
        tags = [l for l in r.stdout.splitlines() if re.match(r"^[EWIPX]: ", l)]
        self.assertEqual(tags, [], "lintian tags; fix or override them with a reason in "
                         "packaging/debian/vigil.lintian-overrides:\n" + r.stdout + r.stderr)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)


class CompletionTest(unittest.TestCase):
    """The shipped completion, sourced into a plain bash (no bash-completion framework), with
    the packaged vigilctl first on PATH."""

    script = staticmethod(lambda: in_root("/usr/share/bash-completion/completions/vigilctl"))

    def env(self, **extra) -> dict:
        env = {k: v for k, v in os.environ.items() if k != "VIGIL_SOCKET"}
        env["PATH"] = in_root("/usr/bin") + os.pathsep + env.get("PATH", "/usr/bin:/bin")
        env.update(extra)
        return env

    def function(self) -> str:
        out = run(["bash", "-c", 'source "$1" && complete -p vigilctl', "_", self.script()],
                  env=self.env()).stdout
        m = re.match(r"^complete -F (\S+) vigilctl$", out.strip())
        self.assertIsNotNone(m, f"not registered for vigilctl: {out!r}")
        return m.group(1)

    def complete(self, *words: str, **env) -> list:
        """What the completion offers for the command line `words` (the last one is the word
        being completed), as bash-completion would call it."""
        fn = self.function()
        script = ('source "$1"; shift; fn=$1; shift; COMP_WORDS=("$@"); '
                  'COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}; '
                  '"$fn" vigilctl "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"; '
                  'printf "%s\\n" "${COMPREPLY[@]}"')
        out = run(["bash", "-c", script, "_", self.script(), fn, "vigilctl", *words],
                  env=self.env(**env), timeout=10).stdout
        return [w for w in out.splitlines() if w]

    def test_registered(self) -> None:
        self.assertTrue(self.function())

    def test_offers_every_command_and_option(self) -> None:
        vigilctl = in_root("/usr/bin/vigilctl")
        top = run([vigilctl, "--help"]).stdout
        commands = help_subcommands(top)
        self.assertIn("status", commands)
        self.assertEqual(sorted(self.complete("")), sorted(commands))
        self.assertEqual(self.complete("st"), ["status", "start", "stop"])
        globals_ = help_options(top)
        self.assertIn("--socket", globals_)
        self.assertLessEqual(set(globals_), set(self.complete("-")))
        for cmd in commands:
            opts = help_options(run([vigilctl, cmd, "--help"]).stdout)
            offered = set(self.complete(cmd, "-"))
            self.assertLessEqual(set(opts), offered, f"vigilctl {cmd}")
            # Global options may follow the command (CLI11 fallthrough).
            self.assertLessEqual({"--socket", "--json"}, offered, f"vigilctl {cmd}")
        self.assertIn("TERM", self.complete("signal", ""))
        self.assertEqual(self.complete("signal", "US"), ["USR1", "USR2"])

    def test_socket_option_completes_paths(self) -> None:
        with tempfile.TemporaryDirectory(prefix="vigil-comp-") as d:
            open(os.path.join(d, "control.sock"), "w").close()
            self.assertEqual(self.complete("--socket", os.path.join(d, "con")),
                             [os.path.join(d, "control.sock")])
            self.assertEqual(self.complete("-s", "=", os.path.join(d, "c")),
                             [os.path.join(d, "control.sock")])

    def test_unit_names_from_a_running_vigild(self) -> None:
        d = tempfile.mkdtemp(prefix="vigil-comp-")
        ns = None
        try:
            units = os.path.join(d, "units")
            os.mkdir(units)
            sleeper = {"command": ["sleep", "300"], "stop": {"timeout": "1s"}}
            for name, body in {"db": sleeper, "web-1": sleeper, "web-2": sleeper,
                               "grp": {"kind": "supervisor"},
                               "inner": dict(sleeper, parent="grp")}.items():
                with open(os.path.join(units, name + ".json"), "w") as f:
                    json.dump(body, f)
            sock = os.path.join(d, "run", "control.sock")
            ns = harness.PidNamespace([in_root("/usr/sbin/vigild"), "--units", units,
                                       "--socket", sock])
            vigilctl = in_root("/usr/bin/vigilctl")

            def all_running() -> bool:
                r = run([vigilctl, "--socket", sock, "--timeout", "2", "status"], check=False)
                return r.returncode == 0 and r.stdout.count(" running ") == 5

            wait_until(all_running, 10, "vigild runs the five units")
            every = ["db", "grp", "inner", "web-1", "web-2"]
            self.assertEqual(sorted(self.complete("-s", sock, "start", "")), every)
            self.assertEqual(sorted(self.complete("--socket", "=", sock, "stop", "w")),
                             ["web-1", "web-2"])
            self.assertEqual(sorted(self.complete("restart", "", VIGIL_SOCKET=sock)), every)
            self.assertEqual(self.complete("-s", sock, "signal", "TERM", "i"), ["inner"])
            self.assertEqual(sorted(self.complete("logs", "--socket", sock, "")), every)
            self.assertEqual(sorted(self.complete("-s", sock, "logs", "db", "")), every)
            self.assertEqual(sorted(self.complete("-s", sock, "status", "web-1", "")), every)
            self.assertEqual(self.complete("-s", sock, "tree", ""), [])
            # Without a daemon there is nothing to offer, at once.
            started = time.monotonic()
            self.assertEqual(self.complete("-s", os.path.join(d, "none.sock"), "start", ""), [])
            self.assertLess(time.monotonic() - started, 5)
        finally:
            if ns is not None:
                ns.close()
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
