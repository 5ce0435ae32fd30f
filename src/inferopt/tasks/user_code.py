"""A user's own code, loaded by import path (`package.module:function`): the model builders and example functions
every task that takes a user's PyTorch module shares. Every mistake is one line that names what was wrong."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from inferopt.errors import InputError


def resolve(path: str, flag: str) -> Callable[[], Any]:
    """The callable at `module:function` (the current directory is importable, as `python -m` has it)."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise InputError(f"{flag} {path!r} is not an import path", "write it as package.module:function")
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(f"{flag} {path!r}: cannot import {module_name} ({exc})", "check the module path") from None
    except Exception as exc:  # the user's module fails as it is imported
        raise InputError(f"{flag} {path!r}: importing {module_name} raised {type(exc).__name__}: {exc}", "") from None
    target = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise InputError(f"{flag} {path!r}: {module_name} has no attribute {attr!r}", "check the function name")
        target = getattr(target, part)
    if not callable(target):
        raise InputError(f"{flag} {path!r} is not callable", "point it at a function that takes no arguments")
    return target


def call(function: Callable[[], Any], path: str, flag: str) -> Any:
    try:
        return function()
    except Exception as exc:
        raise InputError(f"{flag} {path}() raised {type(exc).__name__}: {exc}", "fix the function") from None


def build_module(path: str) -> Any:
    """A fresh nn.Module from `module:function`, in eval mode."""
    import torch

    module = call(resolve(path, "MODEL"), path, "MODEL")
    if not isinstance(module, torch.nn.Module):
        raise InputError(
            f"MODEL {path}() returned {type(module).__name__}, not a torch.nn.Module",
            "return the model itself (an nn.Module) from that function",
        )
    return module.eval()


def parameter_bytes(module: Any) -> int:
    return int(sum(t.numel() * t.element_size() for t in module.state_dict().values()))


def has_convolutions(module: Any) -> bool:
    import torch

    return any(isinstance(m, torch.nn.modules.conv._ConvNd) for m in module.modules())
