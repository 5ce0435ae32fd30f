"""The German credit data as the tables a lending system keeps apart, and the feature groups read from them.

    applicants      (tenant, applicant_id)    who the person is: age, job, housing, ...     profile, 15 min
    accounts        (tenant, applicant_id, kind)  one row per account that exists            accounts, 5 min
    credit_history  (tenant, applicant_id)    the bureau's view: past credits, guarantors    history, 15 min
    applications    (tenant, application_id)  the request being scored, and its applicant   application, 30 s

An entity is an application; its id is the data set's row number from 1 (the data has no ids), and so is its
applicant's. The profile, accounts and history groups join through the application to its applicant; the
accounts group pivots the account rows (an applicant with no checking account has no such row, which reads as
the data set's "no checking account"). Every query is parameterized: $1 the tenant, $2 the application id.
The TTLs say how fresh each group must be, the seed's 30 s / 5 min / 15 min.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from inferopt.sources.features import FeatureGroup, FeatureSpec
from inferopt.tasks.tabular.german_credit import FEATURES, NO_CHECKING, NO_SAVINGS, Dataset

DEFAULT_SCHEMA = "inferopt_risk"
DEFAULT_TENANT = "default"
TTL_S = {"application": 30.0, "accounts": 300.0, "history": 900.0, "profile": 900.0}


def _names(group: str) -> list[str]:
    return [f.name for f in FEATURES if f.group == group]


def _sql_type(name: str) -> str:
    feature = next(f for f in FEATURES if f.name == name)
    return "double precision" if feature.numeric else "text"


def ddl() -> list[str]:
    """CREATE TABLE IF NOT EXISTS for each table (idempotent), in dependency order."""

    def columns(group: str) -> str:
        return "".join(f", {name} {_sql_type(name)}" for name in _names(group))

    return [
        "CREATE TABLE IF NOT EXISTS applicants (tenant text NOT NULL, applicant_id bigint NOT NULL"
        f"{columns('profile')}, PRIMARY KEY (tenant, applicant_id))",
        "CREATE TABLE IF NOT EXISTS accounts (tenant text NOT NULL, applicant_id bigint NOT NULL, kind text NOT NULL,"
        " status text NOT NULL, PRIMARY KEY (tenant, applicant_id, kind),"
        " FOREIGN KEY (tenant, applicant_id) REFERENCES applicants ON DELETE CASCADE)",
        "CREATE TABLE IF NOT EXISTS credit_history (tenant text NOT NULL, applicant_id bigint NOT NULL"
        f"{columns('history')}, PRIMARY KEY (tenant, applicant_id),"
        " FOREIGN KEY (tenant, applicant_id) REFERENCES applicants ON DELETE CASCADE)",
        "CREATE TABLE IF NOT EXISTS applications (tenant text NOT NULL, application_id bigint NOT NULL,"
        f" applicant_id bigint NOT NULL{columns('application')}, created_at timestamptz NOT NULL DEFAULT now(),"
        " PRIMARY KEY (tenant, application_id),"
        " FOREIGN KEY (tenant, applicant_id) REFERENCES applicants ON DELETE CASCADE)",
    ]


TABLES = ("applications", "credit_history", "accounts", "applicants")  # children first, for deletes


def rows(data: Dataset, tenant: str) -> dict[str, list[tuple[Any, ...]]]:
    """Each table's rows for `tenant`: entity i + 1 is data.records[i], applicant and application alike."""
    out: dict[str, list[tuple[Any, ...]]] = {"applicants": [], "accounts": [], "credit_history": [], "applications": []}
    for number, record in enumerate(data.records, start=1):
        out["applicants"].append((tenant, number, *(record[n] for n in _names("profile"))))
        for kind, status, none in (
            ("checking", record["checking_account"], NO_CHECKING),
            ("savings", record["savings"], NO_SAVINGS),
        ):
            if status != none:
                out["accounts"].append((tenant, number, kind, status))
        out["credit_history"].append((tenant, number, *(record[n] for n in _names("history"))))
        out["applications"].append((tenant, number, number, *(record[n] for n in _names("application"))))
    return out


def insert_columns(table: str) -> list[str]:
    return {
        "applicants": ["tenant", "applicant_id", *_names("profile")],
        "accounts": ["tenant", "applicant_id", "kind", "status"],
        "credit_history": ["tenant", "applicant_id", *_names("history")],
        "applications": ["tenant", "application_id", "applicant_id", *_names("application")],
    }[table]


def feature_spec() -> FeatureSpec:
    via_applicant = (
        "FROM applications a JOIN {table} t ON t.tenant = a.tenant AND t.applicant_id = a.applicant_id "
        "WHERE a.tenant = $1 AND a.application_id = $2"
    )

    def select(group: str, table: str) -> str:
        columns = ", ".join(f"t.{n}" for n in _names(group))
        return f"SELECT {columns} " + via_applicant.format(table=table)

    accounts = (
        f"SELECT coalesce(max(c.status) FILTER (WHERE c.kind = 'checking'), '{NO_CHECKING}') AS checking_account, "
        f"coalesce(max(c.status) FILTER (WHERE c.kind = 'savings'), '{NO_SAVINGS}') AS savings "
        "FROM applications a LEFT JOIN accounts c ON c.tenant = a.tenant AND c.applicant_id = a.applicant_id "
        "WHERE a.tenant = $1 AND a.application_id = $2 GROUP BY a.application_id"
    )
    application = (
        f"SELECT {', '.join(_names('application'))} FROM applications WHERE tenant = $1 AND application_id = $2"
    )
    groups = (
        FeatureGroup("application", application, tuple(_names("application")), TTL_S["application"]),
        FeatureGroup("accounts", accounts, tuple(_names("accounts")), TTL_S["accounts"]),
        FeatureGroup("history", select("history", "credit_history"), tuple(_names("history")), TTL_S["history"]),
        FeatureGroup("profile", select("profile", "applicants"), tuple(_names("profile")), TTL_S["profile"]),
    )
    return FeatureSpec("application", groups)


def iter_tables() -> Iterator[str]:
    yield from reversed(TABLES)  # parents first, for inserts
