"""Errors a user can act on. The CLI prints them as one line; everything else is a bug and keeps its traceback."""

from __future__ import annotations


class InferoptError(Exception):
    """Something the user can fix: says what was wrong and what to do."""

    def __init__(self, what: str, hint: str = "") -> None:
        self.what = what.rstrip(".")
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.what}. {self.hint}".strip()


class InputError(InferoptError):
    """A model directory, data file or flag that cannot be used."""


class ArtifactError(InferoptError):
    """An artifact that is missing, malformed or tampered with."""


class PlacementUnavailable(InferoptError):
    """This machine cannot give the placement an artifact was benchmarked on (runtime/placement.py)."""


class BudgetNotMet(InferoptError):
    """No variant stayed within the accuracy budget."""
