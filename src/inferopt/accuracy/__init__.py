"""How close a variant stays to FP32 (fidelity), how well it does the task (metric), and the budget."""

from inferopt.accuracy.budget import Budget
from inferopt.accuracy.measures import Fidelity, fidelity, row_cosine, sqnr_db
from inferopt.accuracy.report import AccuracyReport, Measure

__all__ = ["AccuracyReport", "Budget", "Fidelity", "Measure", "fidelity", "row_cosine", "sqnr_db"]
