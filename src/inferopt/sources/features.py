"""A model's stored features, as the artifact describes them: feature groups, each one parameterized SQL query
over the tables a real system keeps apart (the applicant's profile, their accounts, the application being
scored), with how fresh it must be (its TTL).

Every query takes exactly two parameters, `$1` the tenant and `$2` the entity id, and returns at most one row,
whose columns are the group's features. A group with no row for the entity is `None` (the entity is unknown
to that group). Tables are unqualified: the server sets the schema (search_path) it reads them from.

The errors are HTTP-agnostic; serve maps them (EntityNotFound -> 404, FeaturesUnavailable -> 503 naming the
dependency).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from inferopt.errors import ArtifactError


@dataclass(frozen=True)
class FeatureGroup:
    name: str  # "profile", "accounts", ...
    sql: str  # SELECT ... WHERE tenant = $1 AND <entity> = $2: at most one row
    columns: tuple[str, ...]  # the features the row holds, in the query's column order
    ttl_s: float  # how old a cached copy may be and still be served as fresh

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "sql": self.sql, "columns": list(self.columns), "ttl_s": self.ttl_s}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureGroup:
        return cls(str(data["name"]), str(data["sql"]), tuple(str(c) for c in data["columns"]), float(data["ttl_s"]))


@dataclass(frozen=True)
class FeatureSpec:
    """The groups one entity's features are read from, fetched in parallel and merged (no column twice)."""

    entity: str  # what an id names, for messages: "application"
    groups: tuple[FeatureGroup, ...]
    dependency: str = "postgres"  # the name a 503 gives when the store is down

    def __post_init__(self) -> None:
        seen: dict[str, str] = {}
        for group in self.groups:
            for column in group.columns:
                if column in seen:
                    raise ArtifactError(
                        f"feature {column!r} is in groups {seen[column]!r} and {group.name!r}", "keep each in one"
                    )
                seen[column] = group.name

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(c for g in self.groups for c in g.columns)

    def group(self, name: str) -> FeatureGroup:
        return next(g for g in self.groups if g.name == name)

    def with_ttls(self, ttls: dict[str, float]) -> FeatureSpec:
        """The spec with some groups' TTLs overridden (serve's --feature-ttl GROUP=SECONDS)."""
        unknown = sorted(set(ttls) - {g.name for g in self.groups})
        if unknown:
            names = ", ".join(g.name for g in self.groups)
            raise ArtifactError(f"--feature-ttl names no group {unknown[0]!r}", f"the groups are {names}")
        groups = tuple(FeatureGroup(g.name, g.sql, g.columns, ttls.get(g.name, g.ttl_s)) for g in self.groups)
        return FeatureSpec(self.entity, groups, self.dependency)

    def to_dict(self) -> dict[str, Any]:
        return {"entity": self.entity, "dependency": self.dependency, "groups": [g.to_dict() for g in self.groups]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSpec:
        groups = tuple(FeatureGroup.from_dict(g) for g in data["groups"])
        return cls(str(data["entity"]), groups, str(data.get("dependency", "postgres")))


@dataclass(frozen=True)
class EntityRef:
    """A request's pointer to stored features: the entity and the tenant whose data it is."""

    tenant: str
    entity_id: int


@dataclass(frozen=True)
class GroupRead:
    """One group's values for one entity, and where they came from."""

    values: dict[str, Any] | None  # None: the store has no row for the entity
    age_s: float  # how long ago the store was read for them
    source: str  # memory | redis | postgres | stale (a cached copy past its TTL, served while the store is down)


@dataclass(frozen=True)
class FeatureRecord:
    """An entity's features, merged over its groups, with each group's age and source."""

    entity: EntityRef
    values: dict[str, Any]
    groups: dict[str, GroupRead]

    def debug(self) -> dict[str, Any]:
        return {name: {"age_s": round(read.age_s, 3), "source": read.source} for name, read in self.groups.items()}


class EntityNotFound(LookupError):
    """No stored features for this entity in this tenant (404)."""

    def __init__(self, entity: str, ref: EntityRef) -> None:
        super().__init__(f"{entity} {ref.entity_id} does not exist for tenant {ref.tenant!r}")
        self.message = str(self)


class FeaturesUnavailable(RuntimeError):
    """The feature store cannot be read and no cached copy is young enough to serve (503, naming it)."""

    def __init__(self, dependency: str, detail: str) -> None:
        super().__init__(f"the feature store ({dependency}) is unavailable: {detail}")
        self.dependency = dependency
        self.message = str(self)
