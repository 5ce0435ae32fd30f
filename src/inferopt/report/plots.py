"""The three plots of the report, as PNG bytes (matplotlib, no display needed)."""

from __future__ import annotations

import io
from typing import Any

from inferopt.results import RunResult


def new_figure(size: tuple[float, float] = (7.5, 4.5)) -> tuple[Any, Any]:
    """A matplotlib (figure, axes) on the Agg backend: no display needed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=size, dpi=110)


def png_bytes(fig: Any) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def accuracy_vs_throughput(result: RunResult) -> bytes:
    fig, ax = new_figure()
    chosen = result.selection.chosen if result.selection else None
    for v in result.measured:
        x, y = v.bench.best.items_per_second, v.accuracy.fidelity.mean_cosine  # type: ignore[union-attr]
        ax.scatter([x], [y], s=80 if v.name == chosen else 40, marker="*" if v.name == chosen else "o")
        ax.annotate(v.name, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.axhline(result.budget["min_mean_cosine"], color="red", linestyle="--", linewidth=1, label="budget")
    ax.set_xlabel("best throughput (items/s)")
    ax.set_ylabel("mean cosine to FP32")
    ax.set_title("Accuracy vs throughput (★ = chosen)")
    ax.legend(loc="lower left")
    ax.grid(alpha=0.3)
    return png_bytes(fig)


def throughput_vs_batch(result: RunResult) -> bytes:
    fig, ax = new_figure()
    for v in result.measured:
        best_per_batch: dict[int, float] = {}
        for point in v.bench.sweep:  # type: ignore[union-attr]
            best_per_batch[point.batch_size] = max(best_per_batch.get(point.batch_size, 0.0), point.items_per_second)
        sizes = sorted(best_per_batch)
        ax.plot(sizes, [best_per_batch[s] for s in sizes], marker="o", label=v.name)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size (best thread layout)")
    ax.set_ylabel("items/s")
    ax.set_title("Throughput vs batch size")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return png_bytes(fig)


def latency_distribution(result: RunResult) -> bytes:
    fig, ax = new_figure()
    measured = result.measured
    ax.boxplot([v.bench.latency_samples_ms for v in measured], whis=(1, 99), showfliers=False)  # type: ignore[union-attr]
    ax.set_xticks(range(1, len(measured) + 1), [v.name for v in measured], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("single-request latency (ms)")
    ax.set_title("Latency distribution, batch 1 (box: p25-p75, whiskers: p1-p99)")
    ax.grid(alpha=0.3, axis="y")
    return png_bytes(fig)
