"""inferopt: make a trained model fast in production, and prove it.

`import inferopt` stays light: torch and onnxruntime are imported only by the modules that run models.
The Python API is reached lazily:
    inferopt.Predictor.from_artifact(path).predict(inputs)   # any task: one JSON-able result per input
    inferopt.Embedder.from_artifact(path).embed(texts)       # text encoders: an (n, dim) float32 array
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Embedder", "Predictor", "__version__"]

if TYPE_CHECKING:
    from inferopt.engine import Predictor


def __getattr__(name: str) -> Any:
    if name == "Predictor":
        from inferopt.engine import Predictor

        return Predictor
    from inferopt.tasks.registry import API

    if name in API:
        from inferopt.tasks.registry import api_class

        return api_class(name)
    raise AttributeError(f"module 'inferopt' has no attribute {name!r}")
