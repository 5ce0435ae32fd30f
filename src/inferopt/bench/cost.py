"""What throughput means on the bill."""

from __future__ import annotations


def cost_per_million(items_per_second: float, price_per_hour: float) -> float | None:
    """Dollars per one million items at `price_per_hour` for the whole machine, kept busy."""
    if items_per_second <= 0:
        return None
    return price_per_hour / 3600.0 / items_per_second * 1e6
