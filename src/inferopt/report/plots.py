"""The three plots of the report, as PNG bytes (matplotlib, no display needed)."""

from __future__ import annotations

import io
import math
from typing import Any

from inferopt.results import RunResult

# Label positions tried around a point, in points from it: close first (right, left, above, below), then on
# rings further out in twelve directions; the first that overlaps nothing wins.
LABEL_OFFSETS = [(6.0, 4.0), (-6.0, 4.0), (6.0, -12.0), (-6.0, -12.0), (0.0, 10.0), (0.0, -18.0)] + [
    (round(radius * math.cos(math.radians(angle)), 1), round(radius * math.sin(math.radians(angle)), 1))
    for radius in (22, 34, 48, 64, 82, 100)
    for angle in range(0, 360, 30)
]


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
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def place_labels(fig: Any, ax: Any, points: list[tuple[float, float, str]]) -> list[Any]:
    """Annotate each (x, y, label) where its text overlaps no label placed before it and no point: the first
    free position of LABEL_OFFSETS, else the least crowded one. Returns the label boxes (display coordinates)."""
    from matplotlib.text import Text

    fig.tight_layout()
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    marks = [ax.transData.transform((x, y)) for x, y, _ in points]
    placed: list[Any] = []
    for x, y, label in sorted(points, key=lambda p: (-p[1], p[0])):
        best, best_overlaps = None, None
        for dx, dy in LABEL_OFFSETS:
            text = ax.annotate(
                label, (x, y), textcoords="offset points", xytext=(dx, dy), fontsize=7,
                ha="left" if dx > 0 else ("right" if dx < 0 else "center"),
                arrowprops={"arrowstyle": "-", "color": "0.6", "lw": 0.5} if abs(dx) > 6 or abs(dy) > 18 else None,
            )  # fmt: skip
            text.update_positions(renderer)  # where the offset puts it; then the words' box, not the leader line's
            box = Text.get_window_extent(text, renderer).expanded(1.05, 1.15)
            overlaps = (
                sum(box.overlaps(other) for other in placed)
                + sum(box.contains(mx, my) for mx, my in marks)
                + (not ax.bbox.contains(box.x0, box.y0) or not ax.bbox.contains(box.x1, box.y1))
            )
            if best_overlaps is None or overlaps < best_overlaps:
                if best is not None:
                    best[0].remove()
                best, best_overlaps = (text, box), overlaps
            else:
                text.remove()
            if overlaps == 0:
                break
        assert best is not None
        placed.append(best[1])
    return placed


def accuracy_vs_throughput(result: RunResult) -> bytes:
    fig, ax = new_figure((8.5, 5.0))
    chosen = result.selection.chosen if result.selection else None
    points = []
    for v in result.measured:
        x, y = v.bench.best.items_per_second, v.accuracy.get("mean_cosine")  # type: ignore[union-attr]
        if y is None:
            continue
        ax.scatter([x], [y], s=90 if v.name == chosen else 36, marker="*" if v.name == chosen else "o", zorder=3)
        points.append((x, y, v.name))
    limit = result.budget.get("mean_cosine")
    if limit is not None:
        ax.axhline(limit, color="red", linestyle="--", linewidth=1, label=f"budget: mean cosine {limit:g}")
        ax.legend(loc="lower left", fontsize=8)
    ax.set_xlabel("best throughput (items/s)")
    ax.set_ylabel("mean cosine to FP32 (worse batching pass)")
    ax.set_title("Accuracy vs throughput (★ = chosen)")
    ax.grid(alpha=0.3)
    ax.margins(x=0.18, y=0.12)
    place_labels(fig, ax, points)
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
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return png_bytes(fig)


def latency_distribution(result: RunResult) -> bytes:
    fig, ax = new_figure()
    measured = result.measured
    ax.boxplot([v.bench.latency_samples_ms for v in measured], whis=(1, 99), showfliers=False)  # type: ignore[union-attr]
    ax.set_xticks(range(1, len(measured) + 1), [v.name for v in measured], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("single-request latency (ms)")
    ax.set_title("Latency distribution, batch 1 (box: p25-p75, whiskers: p1-p99)")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return png_bytes(fig)
