"""Every task by name. Adding a task is a folder under tasks/ and one line in TASKS.

Task modules are imported on first use, and import no torch at module level, so `import inferopt` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

from inferopt.errors import ArtifactError, InputError
from inferopt.tasks.base import NO_OPTIONS, ModelOptions, Task

TASKS = {
    "text-embedding": "inferopt.tasks.text_embedding:TextEmbeddingTask",
    "image-classification": "inferopt.tasks.image_classification:ImageClassificationTask",
    "tensor": "inferopt.tasks.tensor:TensorTask",
    "recommendation": "inferopt.tasks.recommendation:RecommendationTask",
    "tabular": "inferopt.tasks.tabular:TabularTask",
}
DEFAULT_TASK = "text-embedding"  # optimize with no MODEL: the bundled all-MiniLM-L6-v2
DETECTION_ORDER = (
    "image-classification",
    "recommendation",
    "tabular",
    "tensor",
    "text-embedding",
)  # the more particular claims first


def names() -> list[str]:
    return list(TASKS)


def _load(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def task_class(name: str) -> type[Task]:
    if name not in TASKS:
        raise InputError(f"There is no task {name!r}", f"tasks: {', '.join(TASKS)}")
    cls: type[Task] = _load(TASKS[name])
    return cls


def for_model(ref: str | None, *, task: str | None = None, options: ModelOptions = NO_OPTIONS) -> Task:
    """The task of optimize's MODEL argument: the one `--task` names, else the first that claims it."""
    if task is None:
        task = DEFAULT_TASK if ref is None else next((n for n in DETECTION_ORDER if task_class(n).claims(ref)), None)
    if task is None:
        raise InputError(
            f"Cannot tell what kind of model {ref!r} is",
            "pass a model folder, a .onnx file or module:function, or name it with --task",
        )
    return task_class(task).from_model(ref, options)


def for_artifact(manifest: dict[str, Any], directory: Any) -> Task:
    """The task an artifact was optimized for, as serve needs it."""
    section = manifest["task"]
    name = section.get("name")
    if name not in TASKS:
        raise ArtifactError(
            f"The artifact's task {name!r} is not one this inferopt knows", f"tasks: {', '.join(TASKS)}"
        )
    cls = task_class(name)
    if int(section.get("version", 0)) > cls.version:
        raise ArtifactError(
            f"The artifact's {name} task is version {section.get('version')}, this inferopt reads {cls.version}",
            "upgrade inferopt or re-run optimize with this one",
        )
    return cls.from_artifact(section.get("config", {}), directory)
