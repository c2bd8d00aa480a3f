"""The lock files agree with pyproject.toml.

``requirements.txt`` (runtime: what a PaaS buildpack installs) and ``requirements-dev.txt`` (runtime + the
``dev`` extra: what ``make`` and CI install) are compiled from ``pyproject.toml`` by ``make lock``. A change
to ``pyproject.toml`` without ``make lock`` fails here, naming what disagrees: a requirement with no pin or a
pin outside its specifier, a runtime pin the dev lock does not share, a pin without a hash, a header that
does not record the command that made the file.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_LOCK = "requirements.txt"
DEV_LOCK = "requirements-dev.txt"
DEV_EXTRA = "dev"

#: The platform the locks are compiled for (``make lock``): Heroku's and CI's Linux x86_64, CPython 3.11.
TARGET_PYTHON = "3.11"
TARGET_ENVIRONMENT: dict[str, str] = {key: str(value) for key, value in default_environment().items()} | {
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "os_name": "posix",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "python_version": TARGET_PYTHON,
}


@dataclass(frozen=True)
class Pin:
    version: str
    hashes: tuple[str, ...]


@dataclass(frozen=True)
class Lock:
    header: tuple[str, ...]  # the leading comment lines
    pins: dict[str, Pin]  # canonical name -> pin
    problems: tuple[str, ...]  # lines that are not hashed ``name==version`` pins


def parse_lock(text: str, name: str) -> Lock:
    """Read a pip requirements file as written by ``uv pip compile --generate-hashes``."""
    lines = text.splitlines()
    header: list[str] = []
    for line in lines:
        if not line.startswith("#"):
            break
        header.append(line.lstrip("#").strip())
    # Join backslash continuations, drop comments and blank lines.
    logical: list[str] = []
    current = ""
    for raw in lines:
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        if current.strip():
            logical.append(current.strip())
        current = ""
    pins: dict[str, Pin] = {}
    problems: list[str] = []
    for entry in logical:
        words = entry.split()
        hashes = tuple(word.removeprefix("--hash=") for word in words if word.startswith("--hash="))
        spec = " ".join(word for word in words if not word.startswith("--hash="))
        if spec.startswith("-"):
            problems.append(f"{name}: option line {spec!r}: a lock holds only hashed pins")
            continue
        try:
            requirement = Requirement(spec)
        except InvalidRequirement:
            problems.append(f"{name}: {spec!r} is not a requirement")
            continue
        specifiers = list(requirement.specifier)
        if len(specifiers) != 1 or specifiers[0].operator != "==" or "*" in specifiers[0].version:
            problems.append(f"{name}: {spec!r} is not pinned to one version (name==version)")
            continue
        key = canonicalize_name(requirement.name)
        if key in pins:
            problems.append(f"{name}: {requirement.name} is pinned twice")
        if not hashes:
            problems.append(f"{name}: {requirement.name}=={specifiers[0].version} has no --hash")
        pins[key] = Pin(specifiers[0].version, hashes)
    return Lock(tuple(header), pins, tuple(problems))


def declared(project: Mapping[str, Any], extras: Iterable[str] = ()) -> list[Requirement]:
    """``[project].dependencies`` plus the given extras, with self-references (``name[test]``) expanded."""
    own = canonicalize_name(project["name"])
    optional: Mapping[str, list[str]] = project.get("optional-dependencies", {})
    wanted, seen = list(extras), set()
    found = [Requirement(item) for item in project.get("dependencies", [])]
    while wanted:
        extra = wanted.pop()
        if extra in seen:
            continue
        seen.add(extra)
        if extra not in optional:
            raise KeyError(f"pyproject.toml has no extra {extra!r}")
        for item in optional[extra]:
            requirement = Requirement(item)
            if canonicalize_name(requirement.name) == own:
                wanted.extend(requirement.extras)
            else:
                found.append(requirement)
    return [r for r in found if r.marker is None or r.marker.evaluate({**TARGET_ENVIRONMENT, "extra": ""})]


def _unpinned(requirements: Iterable[Requirement], lock: Lock, name: str) -> list[str]:
    problems = []
    for requirement in requirements:
        pin = lock.pins.get(canonicalize_name(requirement.name))
        if pin is None:
            problems.append(f"{name}: {requirement} from pyproject.toml is not pinned")
        elif not requirement.specifier.contains(pin.version, prereleases=True):
            problems.append(f"{name}: {requirement.name}=={pin.version} does not satisfy {requirement}")
    return problems


def _header_problems(lock: Lock, name: str, must_have: Iterable[str]) -> list[str]:
    commands = [line for line in lock.header if line.startswith(("uv pip compile", "pip-compile"))]
    if not commands:
        return [f"{name}: the header does not record the command that made it (uv pip compile ...)"]
    words = commands[0].split()
    missing = [flag for flag in ("--generate-hashes", *must_have) if flag not in words]
    if not ({"-o", "--output-file"} & set(words) and name in words) and f"--output-file={name}" not in words:
        missing.append(f"-o {name}")
    return [f"{name}: the recorded command lacks {flag}" for flag in missing]


def lock_problems(project: Mapping[str, Any], runtime_text: str, dev_text: str) -> list[str]:
    """Everything on which the two lock files and ``[project]`` of pyproject.toml disagree."""
    runtime = parse_lock(runtime_text, RUNTIME_LOCK)
    dev = parse_lock(dev_text, DEV_LOCK)
    problems = [*runtime.problems, *dev.problems]
    problems += _header_problems(runtime, RUNTIME_LOCK, ["pyproject.toml"])
    problems += _header_problems(dev, DEV_LOCK, ["pyproject.toml", f"{DEV_EXTRA}"])
    problems += _unpinned(declared(project), runtime, RUNTIME_LOCK)
    problems += _unpinned(declared(project, [DEV_EXTRA]), dev, DEV_LOCK)
    for key, pin in sorted(runtime.pins.items()):
        other = dev.pins.get(key)
        if other is None:
            problems.append(f"{DEV_LOCK}: lacks {key}=={pin.version} of {RUNTIME_LOCK}")
        elif other.version != pin.version:
            problems.append(f"{DEV_LOCK}: {key}=={other.version} but {RUNTIME_LOCK} pins {pin.version}")
    return problems


def _pyproject() -> dict[str, Any]:
    project: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project


def test_locks_agree_with_pyproject() -> None:
    problems = lock_problems(_pyproject(), (ROOT / RUNTIME_LOCK).read_text(), (ROOT / DEV_LOCK).read_text())
    assert problems == [], "run `make lock`:\n" + "\n".join(problems)


def test_locks_are_made_for_the_python_the_platform_runs() -> None:
    """``.python-version`` (what Heroku's buildpack installs) is the version the locks were compiled for,
    and pyproject.toml allows it."""
    python = (ROOT / ".python-version").read_text().strip()
    assert python == TARGET_PYTHON
    assert SpecifierSet(_pyproject()["requires-python"]).contains(f"{python}.0")
    for name in (RUNTIME_LOCK, DEV_LOCK):
        header = " ".join(parse_lock((ROOT / name).read_text(), name).header)
        assert f"--python-version {python}" in header, name


# --- the checker itself, on a small project and locks made to disagree with it ---------------------------

PROJECT = {
    "name": "demo-app",
    "dependencies": ["flask>=3.1", "redis>=5.2", "pywin32>=300; sys_platform == 'win32'"],
    "optional-dependencies": {
        "test": ["pytest>=8.3"],
        "dev": ["demo-app[test]", "ruff>=0.8"],
    },
}
HASH = "    --hash=sha256:" + "0" * 64
RUNTIME_HEADER = (
    "# This file was autogenerated by uv via the following command:\n"
    "#    uv pip compile pyproject.toml --generate-hashes -o requirements.txt\n"
)
DEV_HEADER = (
    "# This file was autogenerated by uv via the following command:\n"
    "#    uv pip compile pyproject.toml --extra dev -c requirements.txt --generate-hashes -o requirements-dev.txt\n"
)


def _lock(header: str, *pins: str, hashed: bool = True) -> str:
    suffix = f" \\\n{HASH}\n" if hashed else "\n"
    return header + "".join(f"{pin}{suffix}    # via demo-app\n" for pin in pins)


def test_checker_accepts_locks_that_agree() -> None:
    runtime = _lock(RUNTIME_HEADER, "flask==3.1.3", "redis==8.1.0", "werkzeug==3.1.9")
    dev = _lock(DEV_HEADER, "flask==3.1.3", "redis==8.1.0", "werkzeug==3.1.9", "pytest==9.0.0", "ruff==0.9.1")
    assert lock_problems(PROJECT, runtime, dev) == []


def test_checker_names_every_disagreement() -> None:
    runtime = "flask==3.0.3 \\\n" + HASH + "\nwerkzeug==3.1.9\nclick>=8\n-e .\n"  # no header
    dev = _lock(DEV_HEADER.replace("--extra dev ", ""), "flask==3.1.3", "redis==8.1.0", "ruff==0.9.1")
    assert lock_problems(PROJECT, runtime, dev) == [
        "requirements.txt: werkzeug==3.1.9 has no --hash",
        "requirements.txt: 'click>=8' is not pinned to one version (name==version)",
        "requirements.txt: option line '-e .': a lock holds only hashed pins",
        "requirements.txt: the header does not record the command that made it (uv pip compile ...)",
        "requirements-dev.txt: the recorded command lacks dev",
        "requirements.txt: flask==3.0.3 does not satisfy flask>=3.1",
        "requirements.txt: redis>=5.2 from pyproject.toml is not pinned",
        "requirements-dev.txt: pytest>=8.3 from pyproject.toml is not pinned",
        "requirements-dev.txt: flask==3.1.3 but requirements.txt pins 3.0.3",
        "requirements-dev.txt: lacks werkzeug==3.1.9 of requirements.txt",
    ]


def test_checker_follows_self_referencing_extras() -> None:
    names = [r.name for r in declared(PROJECT, ["dev"])]
    assert names == ["flask", "redis", "ruff", "pytest"]  # pywin32 is not for Linux


def test_parse_lock_reads_uv_output() -> None:
    text = (ROOT / RUNTIME_LOCK).read_text()
    lock = parse_lock(text, RUNTIME_LOCK)
    assert lock.problems == ()
    assert len(lock.pins) == len(re.findall(r"^[A-Za-z0-9]", text, flags=re.M))
    assert all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for pin in lock.pins.values() for h in pin.hashes)
