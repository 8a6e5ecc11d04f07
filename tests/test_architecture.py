"""The import rules of ARCHITECTURE.md that a machine can check."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "trajectories"
# What presentation code may take from the store: types, never the store itself.
STORE_TYPES = {"AnnotationChange", "StoreBusy", "UNSET", "ResultPage", "ScopeTooLarge"}


def _imports(path: Path) -> list[tuple[str, set[str]]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.module, {alias.name for alias in node.names}))
        elif isinstance(node, ast.Import):
            found.extend((alias.name, set()) for alias in node.names)
    return found


def _modules(folder: str) -> list[Path]:
    return sorted((PACKAGE / folder).rglob("*.py")) if folder else [PACKAGE]


def test_only_the_store_imports_lancedb():
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if any(module.split(".")[0] in {"lancedb", "lance"} for module, _ in _imports(path))
        and "store" not in path.relative_to(PACKAGE).parts
    ]
    assert offenders == []


TEXT_PARSERS = ("content.py", "textquery.py", "highlight.py", "embedding.py", "derived.py")
TEXT_MODULES = (
    "trajectories.content",
    "trajectories.textquery",
    "trajectories.highlight",
    "trajectories.embedding",
    "trajectories.derived",
)


def test_the_catalogue_and_the_parsers_stand_alone():
    assert [m for m, _ in _imports(PACKAGE / "fields.py") if m.startswith("trajectories")] == []
    assert [m for m, _ in _imports(PACKAGE / "priority.py") if m.startswith("trajectories")] == []
    taken = {(m, frozenset(names)) for m, names in _imports(PACKAGE / "query.py") if m.startswith("trajectories")}
    assert all(m in ("trajectories.fields", "trajectories.textquery") or names == {"fields"} for m, names in taken), (
        taken
    )
    # The text parsers (`q`, tokens, highlighting) stand on each other alone.
    for name in TEXT_PARSERS:
        taken = {(m, frozenset(names)) for m, names in _imports(PACKAGE / name) if m.startswith("trajectories")}
        allowed = {*TEXT_MODULES, "trajectories.fields"}
        assert all(m in allowed or names <= {"content"} for m, names in taken), (name, taken)
    taken = {(m, frozenset(names)) for m, names in _imports(PACKAGE / "analysis.py") if m.startswith("trajectories")}
    assert all(m in ("trajectories.fields", "trajectories.query") or names == {"fields"} for m, names in taken), taken


def test_the_store_imports_only_the_catalogue_and_the_parsers():
    for path in _modules("store"):
        outside = {
            (m, name)
            for m, names in _imports(path)
            if m.startswith("trajectories") and not m.startswith("trajectories.store")
            for name in (names if m == "trajectories" else [""])
        }
        allowed = {"trajectories.fields", "trajectories.query", "trajectories.analysis", *TEXT_MODULES}
        named = {("trajectories", "fields"), ("trajectories", "priority"), ("trajectories", "content")}
        assert outside <= {(m, "") for m in allowed} | named, (
            path.name,
            outside,
        )


def test_pages_and_api_read_through_the_read_path():
    for folder in ("pages", "api"):
        for path in _modules(folder):
            source = path.read_text()
            assert "get_store" not in source and "TrajectoryStore" not in source, path.name
            for module, names in _imports(path):
                if module.startswith("trajectories.store"):
                    assert names <= STORE_TYPES, (path.name, names - STORE_TYPES)


def test_import_workers_load_neither_lancedb_nor_django():
    """What an import worker process loads (`chunks` and what it imports) stays light: LanceDB would
    cost each worker a second and ~100 MB, and Django settings are not configured there."""
    probe = (
        "import sys, trajectories.importing.chunks; "
        "print(sorted(name for name in ('lancedb', 'django.db') if name in sys.modules))"
    )
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run([sys.executable, "-c", probe], cwd=PACKAGE.parent, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
