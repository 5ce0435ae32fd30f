"""Runtimes: run arrays through a model. Knows nothing of HTTP, tokenizers or recipes."""

from inferopt.runtime.base import Backend, RuntimeSettings

__all__ = ["Backend", "RuntimeSettings"]
