"""Every reference to a document or a repository file resolves (``docs/design.md`` §12).

The checker reads every tracked text file (``git ls-files``, plus new files git does not ignore; a walk of the
tree when git is absent) and finds, line by line:

* ``.md`` names: ``docs/contract.md``, ``bench/README.md``, and bare names such as ``contract.md``, which must
  then exist at the repository root;
* section citations right after a ``.md`` name: ``docs/agora.md §1.2``, ``§3.4-§3.8``, ``§1.6, §1.7``. Each
  needs a heading that starts with the number (``## 1.``, ``### 1.2``) in the cited file;
* anchors after a ``.md`` name: ``README.md#alerts`` needs a heading whose GitHub slug is ``alerts``;
* repository paths: ``workers/agora/client.py``, ``deploy/prometheus/alerts.yml``, ``workers/recordings/``, and
  a module followed by a name in it, ``tests/stack.Stack`` (then ``tests/stack.py`` must exist).

A path is this repository's when its first directory is a top-level directory of the repository; anything
else (Agora's ``cloud-recording/...`` pages, ``/proc/...``, ``application/json``, URL paths) is not checked.
URLs are removed before a line is read, and placeholders (``docs/<name>.md``, ``tests/test_<module>.py``) are
not paths. Pure file reading: no Redis, no processes.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
THIS = Path(__file__).resolve()

#: Not read: images, and directories of generated or installed files (when walking the tree); ignore files
#: hold patterns, not references.
SKIP_PREFIXES = ("docs/screenshots/",)
SKIP_NAMES = {".gitignore", ".dockerignore"}
WALK_SKIP = {
    ".git", ".venv", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis", "var",
    "build", "node_modules",
}  # fmt: skip
#: File extensions a repository path may end with; anything else after a dot is a name inside a module.
FILE_EXTENSIONS = {
    "py", "md", "yml", "yaml", "json", "toml", "txt", "cfg", "ini", "sh", "html", "css", "svg", "png", "lua",
    "lock", "conf", "js", "csv",
}  # fmt: skip

URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s`'\"<>()\[\]]*")
#: A ``.md`` name (not ``.mdx``), with an optional ``#anchor``.
MD_NAME = re.compile(r"(?<![\w/.\-*])((?:\.\.?/)?(?:[\w.\-]+/)*[\w.\-]+\.md)(?!\w)(#[\w\-]+)?")
_NUMBER = r"§\s?(\d+(?:\.\d+)*)"
#: Section numbers right after a ``.md`` name: ``§1.2``, ``§1.6, §1.7``, ``§3.4-§3.8``, ``§3.4-3.8``.
SECTIONS = re.compile(
    r"^[\s`'\"*_)\]:,]*" + _NUMBER + r"((?:\s*(?:,|and)\s*" + _NUMBER + r"|\s*[-–]\s*§?\s?\d+(?:\.\d+)*)*)"
)
SECTION_NUMBER = re.compile(r"\d+(?:\.\d+)*")
#: A path with at least one ``/``; which of them are this repository's is decided by the first directory.
PATH = re.compile(r"(?<![\w/.\-:@~$}\]])((?:[\w.\-]+/)+[\w.\-]*)")
PLACEHOLDER_AFTER = set("<{*[$")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
HEADING_NUMBER = re.compile(r"(\d+(?:\.\d+)*)\.?(?=\s|$)")
FENCE = re.compile(r"^\s*(```|~~~)")


@dataclass
class Headings:
    """The section numbers and anchor slugs of one Markdown file."""

    numbers: set[str] = field(default_factory=set)
    slugs: set[str] = field(default_factory=set)


def slug(text: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as ``-``."""
    text = re.sub(r"[`*_]", "", text.strip().lower())
    return re.sub(r"\s", "-", re.sub(r"[^\w\- ]", "", text))


def read_headings(path: Path) -> Headings:
    found = Headings()
    in_fence = False
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        match = None if in_fence else HEADING.match(line)
        if match is None:
            continue
        text = match.group(2)
        number = HEADING_NUMBER.match(text)
        if number:
            found.numbers.add(number.group(1))
        found.slugs.add(slug(text))
    return found


def listed_files(root: Path) -> list[str]:
    """Paths (relative, ``/``-separated) of the files to read: git's tracked and unignored files, else a walk."""
    try:
        listing = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            capture_output=True,
            check=True,
            timeout=30,
        ).stdout.decode("utf-8", "surrogateescape")
        names = sorted({name for name in listing.split("\0") if name})
        if names:
            return [name for name in names if (root / name).is_file()]
    except (OSError, subprocess.SubprocessError):
        pass
    names = []
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if d not in WALK_SKIP and not d.endswith(".egg-info"))
        for name in files:
            names.append(Path(directory, name).relative_to(root).as_posix())
    return sorted(names)


def read_text(path: Path) -> str | None:
    """The file as text, or None for a binary file."""
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


class Checker:
    """Finds the references of a repository's files that do not resolve."""

    def __init__(self, root: Path, files: list[str]) -> None:
        self.root = root
        self.files = files
        self.top = {name.split("/", 1)[0] for name in files if "/" in name}
        self._headings: dict[Path, Headings] = {}

    def headings(self, path: Path) -> Headings:
        if path not in self._headings:
            self._headings[path] = read_headings(path)
        return self._headings[path]

    def offenders(self) -> list[str]:
        found = []
        for name in self.files:
            if name.startswith(SKIP_PREFIXES) or name.rpartition("/")[2] in SKIP_NAMES:
                continue
            if (self.root / name).resolve() == THIS:
                continue
            text = read_text(self.root / name)
            if text is not None:
                found += self.check_text(name, text)
        return found

    def check_text(self, source: str, text: str) -> list[str]:
        """``source:line: reference: why`` for each broken reference in ``text`` (the contents of ``source``)."""
        lines = [URL.sub(" ", line) for line in text.splitlines()]
        found = []
        for number, line in enumerate(lines, 1):
            following = lines[number] if number < len(lines) else ""
            for reference, problem in self._check_line(source, line, following):
                found.append(f"{source}:{number}: {reference}: {problem}")
        return found

    def _check_line(self, source: str, line: str, following: str) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        for match in MD_NAME.finditer(line):
            name, anchor = match.group(1), match.group(2)
            target = self._md_target(source, name)
            if target is None:
                continue  # another repository's file (a path whose first directory is not ours)
            rest = line[match.end() :]
            if not rest.strip(" \t`'\"*_):,"):
                rest = following.lstrip(" \t#*/>-")  # a citation wrapped onto the next line
            sections = SECTIONS.match(rest)
            cited = name + (anchor or "") + (f" {sections.group(0).strip(' `:,')}" if sections else "")
            if not target.is_file():
                where = "the repository root" if "/" not in name else "the repository"
                problems.append((cited, f"no such file in {where}"))
                continue
            headings = self.headings(target)
            if anchor and anchor[1:].lower() not in headings.slugs:
                problems.append((cited, f"no heading with anchor {anchor} in {name}"))
            if sections:
                for section in SECTION_NUMBER.findall(sections.group(0)):
                    if section not in headings.numbers:
                        why = f"no section {section} (a heading '## {section}.' or '### {section}') in {name}"
                        problems.append((cited, why))
        for match in PATH.finditer(line):
            path = match.group(1).rstrip(".-")
            after = line[match.end() : match.end() + 1]
            if path.split("/", 1)[0] not in self.top or after in PLACEHOLDER_AFTER or path.endswith(".md"):
                continue
            if not self._path_exists(path):
                problems.append((path, "no such file or directory in the repository"))
        return problems

    def _md_target(self, source: str, name: str) -> Path | None:
        if name.startswith(("./", "../")):
            return (self.root / source).parent / name
        if "/" not in name:
            return self.root / name
        return self.root / name if name.split("/", 1)[0] in self.top else None

    def _path_exists(self, path: str) -> bool:
        """True when ``path`` names something that exists, or is not a path after all."""
        if path.endswith("/"):
            return (self.root / path).is_dir()
        if (self.root / path).exists():
            return True
        stem, dot, extension = path.rpartition(".")
        if "/" in extension or not dot:
            # No extension: a directory or an extensionless file (``.ci/run``) when its parent exists, else
            # words joined by slashes ("workers/web/redis/emulator"), not a path.
            return not (self.root / path).parent.is_dir()
        # ``tests/stack.Stack``: a module, then a name defined in it.
        return extension not in FILE_EXTENSIONS and (self.root / f"{stem}.py").is_file()


def test_every_reference_resolves() -> None:
    """Every .md name, section citation, anchor and repository path in the repository's files resolves."""
    checker = Checker(ROOT, listed_files(ROOT))
    assert len(checker.files) > 20, "the file listing found almost nothing"
    offenders = checker.offenders()
    assert not offenders, f"{len(offenders)} references do not resolve:\n" + "\n".join(offenders)


def test_the_checker_reports_broken_references(tmp_path: Path) -> None:
    """A synthetic repository: each kind of broken reference is reported with its line, and nothing else is."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "real.md").write_text(
        "# Real\n\n## 1. One\n\n### 1.2 Two\n\n```\n## 4. In a fence\n```\n"
    )
    (tmp_path / "README.md").write_text("# Readme\n\n### Alerts\n")
    (tmp_path / "workers").mkdir()
    (tmp_path / "workers" / "thing.py").write_text("")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "stack.py").write_text("")
    source = "\n".join(
        [
            "Fine: `docs/real.md` §1.2, docs/real.md §1 and §1.2, see docs/real.md.",  # 1
            "Broken section: ``docs/real.md`` §1.3",  # 2
            "Missing file: docs/missing.md",  # 3
            "Bare name: ``contract.md`` §2",  # 4
            "Anchors: README.md#alerts, README.md#nope",  # 5
            "Code: `workers/thing.py`, workers/gone.py, tests/stack.Stack, workers/, tests/gone/",  # 6
            "URLs: https://example.com/docs/missing.md and http://127.0.0.1:8000/workers/gone.py",  # 7
            "Not ours: `cloud-recording/reference/common-errors.md`, `shared/x.mdx`, application/json, /proc/1/stat",
            "Words and placeholders: issue 12, #12, `docs/<name>.md`, tests/test_<module>.py, .venv/bin/python",  # 9
            "Range: docs/real.md §1.2-§1.9 and docs/real.md §1.2-1.8",  # 10
            "Wrapped: cites ``docs/real.md``",  # 11
            "    §4.1 here (a heading in a code fence is not a section)",  # 12
            "Root file in prose: README.md; the issue tracker's words: item 4",  # 13
            "Slashes as 'and': CPU s: workers/web/redis/emulator; but workers/gone and .ci/run",  # 14
        ]
    )
    (tmp_path / "workers" / "cites.py").write_text(source + "\nA .gitignore is not read: bench/results/\n")
    (tmp_path / ".gitignore").write_text("bench/results/\n")
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "soak.py").write_text("")
    (tmp_path / ".ci").mkdir()
    (tmp_path / ".ci" / "run").write_text("make test\n")
    checker = Checker(tmp_path, listed_files(tmp_path))
    assert "workers/cites.py" in checker.files
    assert checker.top == {".ci", "bench", "docs", "workers", "tests"}
    found = [line.split(": ", 2)[:2] for line in checker.offenders()]
    assert found == [
        ["workers/cites.py:2", "docs/real.md §1.3"],
        ["workers/cites.py:3", "docs/missing.md"],
        ["workers/cites.py:4", "contract.md §2"],
        ["workers/cites.py:5", "README.md#nope"],
        ["workers/cites.py:6", "workers/gone.py"],
        ["workers/cites.py:6", "tests/gone/"],
        ["workers/cites.py:10", "docs/real.md §1.2-§1.9"],
        ["workers/cites.py:10", "docs/real.md §1.2-1.8"],
        ["workers/cites.py:11", "docs/real.md §4.1"],
        ["workers/cites.py:14", "workers/gone"],
        ["workers/cites.py:15", "bench/results/"],
    ]


def test_headings_and_slugs() -> None:
    """Section numbers come from numbered headings; anchors are GitHub's slugs."""
    assert slug("What it does with a callback") == "what-it-does-with-a-callback"
    assert slug("`make run`: the *whole* service") == "make-run-the-whole-service"
    assert HEADING_NUMBER.match("1.2 Envelope").group(1) == "1.2"  # type: ignore[union-attr]
    assert HEADING_NUMBER.match("2. Agora's practices").group(1) == "2"  # type: ignore[union-attr]
    assert HEADING_NUMBER.match("Alerts") is None
