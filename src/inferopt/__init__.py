"""inferopt: make a trained model fast in production, and prove it.

`import inferopt` stays light: torch and onnxruntime are imported only by the modules that run models.
The Python API is reached lazily: `inferopt.Embedder.from_artifact(path).embed(texts)`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Embedder", "__version__"]

if TYPE_CHECKING:
    from inferopt.engine import Embedder


def __getattr__(name: str) -> Any:
    if name == "Embedder":
        from inferopt.engine import Embedder

        return Embedder
    raise AttributeError(f"module 'inferopt' has no attribute {name!r}")
