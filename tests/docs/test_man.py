"""The man pages against the programs and the unit schema (Python 3 standard library).

- man/vigild.8: its OPTIONS are exactly the options `vigild --help` lists, and its SYNOPSIS
  shows each (help and version aside);
- man/vigilctl.1: its OPTIONS are exactly `vigilctl --help`'s global options (each in its
  SYNOPSIS too), its COMMANDS are exactly the subcommands, and each command's entry names
  every option of `vigilctl COMMAND --help` (and its synopsis no other);
- man/vigil.unit.5: every field of docs/vigil.unit.schema.json (which tests/unit/schema_test.cpp
  ties to the loader's own tables), at every level, and every enum value appears in bold, and
  the page's field entries name no field the schema lacks;
- every page names the programs' version in its .TH line, and renders without a warning from
  groff (-ww) or mandoc (-T lint, warnings and worse).

The options come from the programs themselves (CLI11's --help), taken from VIGILD and VIGILCTL.
Run by hand: VIGILD=build/src/daemon/vigild VIGILCTL=build/src/cli/vigilctl \
    python3 tests/docs/test_man.py -v
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAN = ROOT / "man"
SCHEMA_PATH = ROOT / "docs" / "vigil.unit.schema.json"
OPTION = re.compile(r"(?<![\w-])--?[A-Za-z][\w-]*")


def program(var: str) -> str:
    path = os.environ.get(var)
    if not path:
        raise AssertionError(f"{var} is not set (the path of the program)")
    return path


def run(argv) -> str:
    p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if p.returncode != 0:
        raise AssertionError(f"{argv} exited {p.returncode}: {p.stderr}")
    return p.stdout


def help_sections(text: str) -> dict[str, list[str]]:
    """CLI11's --help: section title ("Options", "Subcommands", ...) -> its entries' first
    tokens ("-u,--units", "status")."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        m = re.match(r"^([A-Z][A-Za-z ]*):$", line)
        if m:
            current = sections.setdefault(m[1], [])
        elif current is not None and re.match(r"^  \S", line):
            current.append(line.split()[0])
    return sections


def help_options(text: str) -> set[str]:
    return {o for entry in help_sections(text).get("Options", []) for o in entry.split(",")}


def plain(roff: str) -> str:
    """roff source with the escapes this project uses turned into text."""
    roff = re.sub(r"\\f[BIRP]|\\f\(..|\\f\[[^]]*\]", "", roff)
    return (roff.replace("\\-", "-").replace("\\(dq", '"').replace("\\(lq", '"')
            .replace("\\(rq", '"').replace("\\(>=", ">=").replace("\\e", "\\")
            .replace("\\&", "").replace("\\ ", " "))


def sections(page: Path) -> dict[str, list[str]]:
    """.SH title -> its source lines (roff, escapes kept: see plain())."""
    out: dict[str, list[str]] = {}
    current = out.setdefault("", [])
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith(".SH "):
            current = out.setdefault(plain(line[4:]).strip().strip('"'), [])
        else:
            current.append(line)
    return out


def tagged_entries(lines: list[str]) -> list[tuple[str, list[str]]]:
    """The .TP entries of a section: (tag line, the entry's following lines up to the next
    .TP at the same level or the end). Nested .RS/.RE blocks stay inside their entry."""
    entries: list[tuple[str, list[str]]] = []
    depth = 0
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith(".RS"):
            depth += 1
        elif line.startswith(".RE"):
            depth -= 1
        if line.startswith(".TP") and depth == 0 and i + 1 < len(lines):
            entries.append((lines[i + 1], []))
            i += 2
            continue
        if entries:
            entries[-1][1].append(line)
        i += 1
    return entries


def bold_words(lines: list[str]) -> set[str]:
    """Words set in bold: .B lines, the bold halves of .BR/.RB/.BI/.IB, and \\fB...\\fR."""
    words: set[str] = set()

    def add(text: str):
        words.update(re.findall(r"[$A-Za-z0-9_][\w.]*", plain(text)))

    for line in lines:
        m = re.match(r"^\.(B|BR|RB|BI|IB)\s+(.*)$", line)
        if not m:
            continue
        args = re.findall(r'"[^"]*"|\S+', m[2])
        args = [a[1:-1] if a.startswith('"') and a.endswith('"') and len(a) > 1 else a
                for a in args]
        if m[1] == "B":
            add(" ".join(args))
        else:
            first_bold = m[1] in ("BR", "BI")
            for k, a in enumerate(args):
                if (k % 2 == 0) == first_bold:
                    add(a)
    return words


def inline_bold(source: str) -> set[str]:
    words: set[str] = set()
    for chunk in re.findall(r"\\fB(.*?)\\f[RIP]", source):
        words.update(re.findall(r"[$A-Za-z0-9_][\w.]*", plain(chunk)))
    return words


def synopsis_misses(help_text: str, page: Path) -> list[str]:
    """Help entries ("-g,--group") none of whose names the page's SYNOPSIS shows (help and
    version aside)."""
    shown = set(OPTION.findall(plain("\n".join(sections(page)["SYNOPSIS"]))))
    return [entry for entry in help_sections(help_text).get("Options", [])
            if entry not in ("-h,--help", "--version") and not shown & set(entry.split(","))]


class Vigild(unittest.TestCase):
    def test_synopsis_shows_every_option(self):
        self.assertEqual(synopsis_misses(run([program("VIGILD"), "--help"]), MAN / "vigild.8"), [])

    def test_options_section_matches_help(self):
        options = help_options(run([program("VIGILD"), "--help"]))
        self.assertIn("--units", options)
        documented = {o for tag, _ in tagged_entries(sections(MAN / "vigild.8")["OPTIONS"])
                      for o in OPTION.findall(plain(tag))}
        self.assertEqual(sorted(options - documented), [], "options missing from man/vigild.8")
        self.assertEqual(sorted(documented - options), [], "man/vigild.8 documents options "
                                                           "vigild does not have")


class Vigilctl(unittest.TestCase):
    def setUp(self):
        self.help = run([program("VIGILCTL"), "--help"])
        self.page = sections(MAN / "vigilctl.1")
        self.commands = dict(tagged_entries(self.page["COMMANDS"]))

    def test_synopsis_shows_every_global_option(self):
        self.assertEqual(synopsis_misses(self.help, MAN / "vigilctl.1"), [])

    def test_global_options(self):
        options = help_options(self.help)
        self.assertIn("--socket", options)
        documented = {o for tag, _ in tagged_entries(self.page["OPTIONS"])
                      for o in OPTION.findall(plain(tag))}
        self.assertEqual(sorted(options - documented), [], "options missing from man/vigilctl.1")
        self.assertEqual(sorted(documented - options), [], "man/vigilctl.1 documents options "
                                                           "vigilctl does not have")

    def test_every_command_and_its_options(self):
        subcommands = help_sections(self.help).get("Subcommands", [])
        self.assertIn("status", subcommands)
        documented = {plain(tag).split()[1] if tag.startswith(".") else plain(tag).split()[0]:
                      (plain(tag), plain("\n".join(body))) for tag, body in self.commands.items()}
        self.assertEqual(sorted(set(subcommands) - set(documented)), [],
                         "commands missing from man/vigilctl.1 COMMANDS")
        self.assertEqual(sorted(set(documented) - set(subcommands)), [],
                         "man/vigilctl.1 documents commands vigilctl does not have")
        globals_ = help_options(self.help)
        for sub in subcommands:
            with self.subTest(sub):
                own = help_options(run([program("VIGILCTL"), sub, "--help"])) - globals_
                tag, body = documented[sub]
                in_tag = set(OPTION.findall(tag))
                in_entry = in_tag | set(OPTION.findall(body))
                self.assertEqual(sorted(own - in_entry), [],
                                 f"options of '{sub}' missing from its entry")
                self.assertEqual(sorted(in_tag - own), [],
                                 f"the '{sub}' entry's synopsis names options it does not have")


def schema_fields(schema: dict) -> tuple[set[str], set[str]]:
    """Every property name at any depth (conditions excluded), and every enum value."""
    fields: set[str] = set()
    values: set[str] = set()

    def walk(node, key=None):
        if isinstance(node, dict):
            for k, sub in node.items():
                if k in ("if", "then", "else", "dependentSchemas"):
                    continue
                if k == "properties":
                    fields.update(sub)
                    for sub2 in sub.values():
                        walk(sub2)
                elif k == "enum":
                    values.update(v for v in sub if isinstance(v, str))
                else:
                    walk(sub)
        elif isinstance(node, list):
            for sub in node:
                walk(sub)

    walk(schema)
    return fields, values


class UnitPage(unittest.TestCase):
    FIELD_SECTIONS = ("FIELDS OF EVERY UNIT", "SERVICE FIELDS", "SUPERVISOR FIELDS", "PROBES")

    def setUp(self):
        with open(SCHEMA_PATH, encoding="utf-8") as f:
            self.fields, self.values = schema_fields(json.load(f))
        self.source = (MAN / "vigil.unit.5").read_text(encoding="utf-8")
        self.page = sections(MAN / "vigil.unit.5")
        lines = [l for s in self.page.values() for l in s]
        self.bold = bold_words(lines) | inline_bold(self.source)

    def test_every_field_and_value_is_in_bold(self):
        self.assertGreater(len(self.fields), 60)
        self.assertEqual(sorted(self.fields - self.bold), [], "fields missing from vigil.unit(5)")
        self.assertEqual(sorted(self.values - self.bold), [],
                         "enum values missing from vigil.unit(5)")

    def test_field_entries_name_only_schema_fields(self):
        tags = set()
        for name in self.FIELD_SECTIONS:
            self.assertIn(name, self.page)
            lines = self.page[name]
            # Tags of .TP entries at every depth (the .RS blocks of stop, backoff, logs...).
            for i, line in enumerate(lines[:-1]):
                if line.startswith(".TP"):
                    tags |= bold_words([lines[i + 1]])
        self.assertGreater(len(tags), 40)
        self.assertEqual(sorted(tags - self.fields), [],
                         "vigil.unit(5) describes fields the schema does not have")


class Pages(unittest.TestCase):
    PAGES = ("vigild.8", "vigilctl.1", "vigil.unit.5")

    def test_version_in_title_lines(self):
        version = run([program("VIGILD"), "--version"]).split()[-1]
        for page in self.PAGES:
            with self.subTest(page):
                th = next(l for l in (MAN / page).read_text().splitlines() if l.startswith(".TH"))
                self.assertIn(f'"vigil {version}"', th)

    def test_groff_renders_without_warnings(self):
        groff = shutil.which("groff")
        self.assertIsNotNone(groff, "groff is missing (groff-base)")
        for page in self.PAGES:
            with self.subTest(page):
                p = subprocess.run([groff, "-man", "-ww", "-z", str(MAN / page)],
                                   capture_output=True, text=True, timeout=60)
                self.assertEqual((p.returncode, p.stderr), (0, ""))

    def test_mandoc_lint_finds_no_warning(self):
        mandoc = shutil.which("mandoc")
        self.assertIsNotNone(mandoc, "mandoc is missing (.ci/deps.sh installs it)")
        for page in self.PAGES:
            with self.subTest(page):
                # STYLE messages (source lines over 80 bytes) are below -W warning.
                p = subprocess.run([mandoc, "-T", "lint", "-W", "warning", str(MAN / page)],
                                   capture_output=True, text=True, timeout=60)
                self.assertEqual((p.returncode, p.stdout + p.stderr), (0, ""))


if __name__ == "__main__":
    unittest.main()
