"""inferopt: make a trained model fast in production, and prove it.

`import inferopt` stays light: torch and onnxruntime are imported only by the modules that run models.
The Python API is reached lazily:
    inferopt.Predictor.from_artifact(path).predict(inputs)   # any task: one JSON-able result per input
    inferopt.Embedder.from_artifact(path).embed(texts)       # one-output models (text encoders): (n, dim) array
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Embedder", "Predictor", "__version__"]

if TYPE_CHECKING:
    from inferopt.engine import Embedder, Predictor


def __getattr__(name: str) -> Any:
    if name in ("Predictor", "Embedder"):
        from inferopt import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'inferopt' has no attribute {name!r}")
