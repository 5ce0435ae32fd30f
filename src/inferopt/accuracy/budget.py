"""The accuracy budget: a limit per measure, in the task's own terms (`--min-cosine 0.995`,
`--min-argmax-agreement 0.99`). The flags a user gives override the task's default budget; the rest keep it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from inferopt.accuracy.report import BY_NAME, AccuracyReport
from inferopt.errors import InputError

if TYPE_CHECKING:
    from inferopt.tasks.base import Metrics


@dataclass(frozen=True)
class Budget:
    limits: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        for name, value in self.limits:
            measure = BY_NAME.get(name)
            if measure is None:
                raise InputError(f"No measure is called {name!r}", f"budget one of {', '.join(BY_NAME)}")
            if not measure.low <= value <= measure.high:
                what = "is not a cosine" if measure.high == 1.0 and measure.low == -1.0 else "is out of range"
                bounds = f"[{measure.low:g}, {measure.high:g}]"
                raise InputError(f"{measure.flag or name} {value:g} {what}", f"give a value in {bounds}")

    @classmethod
    def of(cls, **limits: float | None) -> Budget:
        """Budget.of(mean_cosine=0.995, min_cosine=None): None leaves a measure to the task's default."""
        return cls(tuple((name, float(value)) for name, value in limits.items() if value is not None))

    def to_dict(self) -> dict[str, float]:
        return dict(self.limits)

    def for_task(self, metrics: Metrics) -> Budget:
        """The task's default budget with these limits over it; a limit on a measure the task does not report
        is the user's mistake, named by its flag."""
        known = {m.name for m in metrics.measures}
        for name, _ in self.limits:
            if name not in known:
                flag = BY_NAME[name].flag or name
                offered = ", ".join(m.flag for m in metrics.measures if m.flag)
                raise InputError(f"{flag} is not a measure of this task", f"its budget flags are {offered}")
        return Budget(tuple((metrics.default_budget | self.to_dict()).items()))

    def misses(self, accuracy: AccuracyReport) -> list[str]:
        """Each way `accuracy` misses this budget, with by how much."""
        out = []
        for name, limit in self.limits:
            value = accuracy.get(name)
            measure = BY_NAME[name]
            if value is not None and not measure.meets(value, limit):
                text = measure.miss(value, limit)
                out.append(
                    f"{accuracy.metric_name} drop {value:.2f} > {limit} points" if name == "metric_drop" else text
                )
        return out
