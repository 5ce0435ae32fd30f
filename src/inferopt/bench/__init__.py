"""Measuring: in-process harness, open-loop load generator, latency statistics, cost."""
