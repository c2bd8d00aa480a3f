"""The packages depend one way (README, "Layout"): read from the source, every import of the project."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: What each package of ``workers`` may import from the project, besides itself.
ALLOWED = {
    "workers.core": set(),
    "workers.agora": {"workers.core"},
    "workers.ncs": {"workers.core", "workers.agora"},
    "workers.recordings": {"workers.core", "workers.agora", "workers.ncs"},
}
#: The package faces the web process imports through (never their modules).
FACES = {"workers.recordings", "workers.ncs", "workers.agora"}


def imports_of(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, module, names) of every import in a file, relative imports resolved; function-level ones too."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module, [alias.name for alias in node.names]))
    return found


def package_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "workers" and len(parts) > 1 else parts[0]


def layering_problems(files: dict[str, Path]) -> list[str]:
    """Every import that breaks the layering; ``files`` maps a module name to its file."""
    problems = []
    for module, path in sorted(files.items()):
        home = package_of(module)
        for line, imported, names in imports_of(path):
            targets = [imported] if imported != "workers" else [f"workers.{n}" for n in names]
            for target in targets:
                where = f"{path.relative_to(ROOT)}:{line}: {module} imports {target}"
                if module.startswith("workers") and target.split(".")[0] == "webhook_service":
                    problems.append(where + " (workers never import webhook_service)")
                if home in ALLOWED and target.startswith("workers"):
                    other = package_of(target)
                    if other != home and other not in ALLOWED[home]:
                        problems.append(
                            where + f" ({home} may import only {sorted(ALLOWED[home]) or 'nothing'})"
                        )
                if home == "webhook_service" and any(target.startswith(face + ".") for face in FACES):
                    problems.append(where + " (the web imports a package through its face)")
    return problems


def project_modules() -> dict[str, Path]:
    files = {}
    for top in ("workers", "webhook_service"):
        for path in (ROOT / top).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            files[".".join(parts)] = path
    return files


def test_packages_depend_one_way() -> None:
    assert layering_problems(project_modules()) == []


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        (
            "workers.core.logs",
            "from workers.ncs.envelope import parse_event\n",
            "workers.core may import only nothing",
        ),
        ("workers.agora.client", "from workers.ncs import envelope\n", "workers.agora may import only"),
        ("workers.ncs.drain", "from workers.recordings.routing import wake\n", "workers.ncs may import only"),
        ("workers.recordings.store", "import webhook_service\n", "workers never import webhook_service"),
        ("webhook_service.api.x", "from workers.recordings.store import load\n", "through its face"),
        ("workers.core.x", "from workers import jobs\n", "workers.core may import only nothing"),
    ],
)
def test_the_check_finds_each_kind_of_wrong_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str, source: str, expected: str
) -> None:
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    path = tmp_path / "m.py"
    path.write_text(source)
    [problem] = layering_problems({module: path})
    assert expected in problem


def test_allowed_imports_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    path = tmp_path / "m.py"
    path.write_text("from workers.core import schema\nfrom workers.agora import AgoraClient\nimport redis\n")
    assert layering_problems({"workers.ncs.inbox": path, "webhook_service.api.y": path}) == []
