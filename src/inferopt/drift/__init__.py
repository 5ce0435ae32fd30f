"""Drift: how far live traffic has moved from the data an artifact was checked on. `reference` is what optimize
records in the artifact (per signal: quantile bins and a sample), `stats` the two measures served (PSI and the
two-sample Kolmogorov-Smirnov statistic), and serve/drift.py the live windows that are compared with it."""
