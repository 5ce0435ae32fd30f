"""No module outside tasks/ imports a particular task: the pipeline reaches tasks through the contract
(tasks.base) and the registry only, so adding a task is a folder under tasks/ and one registry line."""

from __future__ import annotations

import ast
from pathlib import Path

import inferopt

PACKAGE = Path(inferopt.__file__).parent
ALLOWED = {"inferopt.tasks", "inferopt.tasks.base", "inferopt.tasks.registry"}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names if node.module == "inferopt.tasks"}
    return names


def test_no_module_outside_tasks_imports_a_particular_task() -> None:
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.is_relative_to(PACKAGE / "tasks"):
            continue
        tasks = {m for m in imported_modules(path) if m.startswith("inferopt.tasks") and m not in ALLOWED}
        if tasks:
            offenders[str(path.relative_to(PACKAGE))] = sorted(tasks)
    assert offenders == {}


def test_the_check_would_catch_an_import_of_a_task(tmp_path: Path) -> None:
    module = tmp_path / "leaky.py"
    module.write_text(
        "from inferopt.tasks.text_embedding import TextEmbeddingTask\nfrom inferopt.tasks import tensor\n"
    )
    assert {"inferopt.tasks.text_embedding", "inferopt.tasks.tensor"} <= imported_modules(module)


def test_every_registered_task_meets_the_contract() -> None:
    from inferopt.tasks.base import Task
    from inferopt.tasks.registry import names, task_class

    for name in names():
        cls = task_class(name)
        assert issubclass(cls, Task) and cls.name == name and not getattr(cls, "__abstractmethods__", None)
