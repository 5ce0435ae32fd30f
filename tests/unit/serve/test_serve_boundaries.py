"""The lines DESIGN.md says must never be crossed, checked on the source: web frameworks and grpc stay inside serve/,
serve/ never reaches into recipes/ or export.py, and registering the command loads no web framework."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[3] / "src" / "inferopt"
WEB = ("fastapi", "starlette", "uvicorn", "grpc")


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_web_frameworks_are_imported_only_inside_serve() -> None:
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if "serve" not in path.relative_to(PACKAGE).parts
        and any(name.split(".")[0] in WEB for name in imported_modules(path))
    ]
    assert offenders == []


def test_serve_never_imports_recipes_export_or_torch() -> None:
    for path in (PACKAGE / "serve").glob("*.py"):
        for name in imported_modules(path):
            assert not name.startswith(("inferopt.recipes", "inferopt.export", "torch")), (path.name, name)


def test_registering_the_serve_command_loads_no_web_framework() -> None:
    code = f"import sys, inferopt.cli; print(','.join(m for m in sys.modules if m.split('.')[0] in {WEB!r}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
