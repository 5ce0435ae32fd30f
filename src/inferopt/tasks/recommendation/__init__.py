"""Recommendations: a NeuMF ranking model trained on MovieLens 100K (train.py), served as "top k items for this
user", "rank these candidates for this user" and "the k items most like this one" (a product page).

A raw input is a Query: a user row (or an anchor item row), k, the candidate item rows (none: the whole
catalogue) and whether the user's already-seen items are excluded. Requests and responses speak the
catalogue's own ids (MovieLens user and item ids); rows are internal, and the id maps and the users' training
histories travel in the artifact (catalogue.json, history.json). The exported graph scores every item and
takes the top k in one call.

Bad input is a 422 that names the field: an unknown user or item id (there is no silent fallback to popular
items: a typo would look like a cold-start user), a non-integer id, k outside 1 .. the items the query can
return, candidates with duplicates or unknown ids.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from inferopt.errors import ArtifactError, InputError
from inferopt.tasks.base import (
    KSERVE_V1,
    NO_OPTIONS,
    OIP_V2,
    Arrays,
    EvalSet,
    FusionProfile,
    InvalidInput,
    IOSchema,
    Item,
    Metrics,
    ModelOptions,
    Source,
    Task,
    TensorSpec,
)
from inferopt.tasks.recommendation import model_dir
from inferopt.tasks.recommendation.catalogue import Catalogue

DEFAULT_K = 10
EVAL_K = 100  # results per eval query: the 99 negatives and the held-out item are all ranked
CALIBRATION_QUERIES = 128
DISTILLATION_QUERIES = 4096
QUERY_FIELDS = ("user_id", "item_id", "k", "candidates", "exclude_seen")
EVAL_ANCHORS = 300  # items whose neighbours the eval set asks for, spread over the catalogue
SIMILAR = 2  # the eval label of an item query
UNSET: Any = object()  # k not given: the default (10, or every candidate)


@dataclass(frozen=True, slots=True)
class Query:
    user: int  # user row (0, unused, for an item query)
    k: int
    candidates: tuple[int, ...] = ()  # item rows to rank; (): the whole catalogue
    exclude_seen: bool = True
    item: int | None = None  # the anchor item row of a "similar items" query
    explicit: frozenset[str] = field(default=frozenset(), compare=False)  # what the instance set itself
    field: str = field(default="query", compare=False)  # where the request held it: `instances[2]`


class RecommendationTask(Task):
    name = "recommendation"
    version = 1
    protocols = (KSERVE_V1, OIP_V2)

    def __init__(
        self, catalogue: Catalogue, *, label: str, location: str, folder: model_dir.ModelDir | None = None
    ) -> None:
        self.catalogue = catalogue
        self.label = label
        self.location = location
        self.folder = folder  # the trained model folder, read once (optimize only)

    # -- where it comes from ---------------------------------------------------------------------------------

    @classmethod
    def claims(cls, ref: str | None) -> bool:
        return ref is not None and model_dir.is_model_dir(Path(ref))

    @classmethod
    def from_model(cls, ref: str | None, options: ModelOptions = NO_OPTIONS) -> Task:
        options.refuse_others((), "a recommender (its folder says everything)")
        if ref is None:
            raise InputError(
                "The recommendation task needs MODEL: a folder written by its trainer", model_dir.TRAIN_HINT
            )
        folder = model_dir.read(Path(ref))
        catalogue = Catalogue(folder.user_ids, folder.item_ids, folder.history)
        return cls(catalogue, label="neumf-movielens-100k", location=ref, folder=folder)

    @property
    def model_name(self) -> str:
        return self.label

    def _folder(self) -> model_dir.ModelDir:
        if self.folder is None:
            raise InputError("This recommender was loaded from an artifact; optimize needs its model folder", "")
        return self.folder

    # -- optimize ----------------------------------------------------------------------------------------------

    def load_source(self) -> Source:
        module = self._folder().module()
        size = sum(p.numel() * p.element_size() for p in module.parameters())
        pad = self.catalogue.num_items
        example = {
            "user": np.array([0, 1], np.int64),
            "item": np.array([pad, 3], np.int64),
            "exclude": np.array([[0, 1, pad], [2, pad, pad]], np.int64),
            "candidates": np.full((2, 1), pad, np.int64),
            "k": np.array([DEFAULT_K, DEFAULT_K], np.int64),
        }
        return Source(self.model_name, self.location, module, None, example, size, FusionProfile("embedding"))

    def io_schema(self) -> IOSchema:
        return IOSchema(
            (
                TensorSpec("user", "int64", ("batch",)),
                TensorSpec("item", "int64", ("batch",)),
                TensorSpec("exclude", "int64", ("batch", "excluded")),
                TensorSpec("candidates", "int64", ("batch", "candidate")),
                TensorSpec("k", "int64", ("batch",)),
            ),
            (TensorSpec("items", "int64", ("batch", "top_k")), TensorSpec("scores", "float32", ("batch", "top_k"))),
        )

    def eval_data(self, path: Path | None, limit: int | None = None) -> EvalSet:
        """Per user, two queries on the held-out interactions: the top 100 of the whole catalogue (seen items
        excluded), and the held-out item ranked among its 99 sampled negatives; and the 100 items most like each
        of 300 items spread over the catalogue."""
        if path is not None:
            raise InputError(
                "--data is not taken by the recommendation task: it evaluates on the model folder's held-out "
                "interactions (leave-last-out)",
                "drop --data",
            )
        folder = self._folder()
        users = range(len(folder.test_items) if limit is None else min(limit, len(folder.test_items)))
        inputs: list[Query] = []
        labels: list[tuple[int, int]] = []  # (held-out item id, 1 for a candidate query, 2 for similar items)
        for user in users:
            test = folder.test_items[user]
            held_out = self.catalogue.item_ids[test]
            inputs.append(Query(user, EVAL_K, (), True, field=f"user {self.catalogue.user_ids[user]}"))
            candidates = (test, *folder.negatives[user])
            inputs.append(
                Query(user, len(candidates), candidates, False, field=f"user {self.catalogue.user_ids[user]}")
            )
            labels += [(held_out, 0), (held_out, 1)]
        anchors = EVAL_ANCHORS if limit is None else min(EVAL_ANCHORS, limit)
        for row in np.linspace(0, self.catalogue.num_items - 1, anchors).astype(int).tolist():
            inputs.append(Query(0, EVAL_K, (), False, row, field=f"item {self.catalogue.item_ids[row]}"))
            labels.append((-1, SIMILAR))
        summary = f"{len(users):,} held-out interactions, {anchors} items' neighbours, {len(inputs):,} queries"
        return EvalSet("MovieLens 100K held-out", tuple(inputs), np.array(labels, np.int64), summary)

    def calibration_inputs(self) -> list[Any]:
        """Queries other than the eval set's: random users, half over the whole catalogue, half ranking random
        candidates."""
        rng = np.random.default_rng(1)
        catalogue, queries = self.catalogue, []
        for n in range(CALIBRATION_QUERIES):
            user = int(rng.integers(catalogue.num_users))
            if n % 2:
                picked = rng.choice(catalogue.num_items, EVAL_K, replace=False)
                queries.append(Query(user, EVAL_K, tuple(int(i) for i in picked), False, field=f"calibration[{n}]"))
            else:
                queries.append(Query(user, EVAL_K, (), True, field=f"calibration[{n}]"))
        return queries

    def distillation_inputs(self) -> list[Any]:
        """Whole-catalogue queries of users drawn in proportion to their training interactions, as traffic
        would be (a fixed seed; DISTILLATION_QUERIES of them). User ids are a closed set, so the eval's users
        are among them: a student learns the teacher's scores over the whole input domain, and the eval then
        checks that fit query by query, with its own exclusions and candidate lists."""
        catalogue = self.catalogue
        weights = np.array([len(catalogue.seen(user)) for user in range(catalogue.num_users)], np.float64)
        weights = weights if weights.sum() > 0 else np.ones_like(weights)
        users = np.random.default_rng(0).choice(catalogue.num_users, DISTILLATION_QUERIES, p=weights / weights.sum())
        return [Query(int(user), DEFAULT_K, (), True, field=f"sampled {n + 1}") for n, user in enumerate(users)]

    def distillation_targets(self, module: Any) -> Any:
        """The whole catalogue's scores: the top-k rows the model returns are chosen from them."""
        from inferopt.tasks.recommendation.model import CatalogueScores

        return CatalogueScores(module)

    def metrics(self) -> Metrics:
        from inferopt.tasks.recommendation.metrics import RecommendationMetrics

        return RecommendationMetrics()

    # -- serve -------------------------------------------------------------------------------------------------

    def preprocess(self, raws: Sequence[Any]) -> list[Item]:
        items = []
        for raw in raws:
            query = raw if isinstance(raw, Query) else self.instance(raw, "input")
            if query.item is not None:
                exclude = np.array([query.item], np.int64)  # never the item itself
            else:
                exclude = self.catalogue.seen(query.user) if query.exclude_seen else self.catalogue.nothing
            candidates = np.array(query.candidates, np.int64)
            anchor = self.catalogue.num_items if query.item is None else query.item
            items.append(Item((query.user, exclude, candidates, query.k, anchor)))
        return items

    def collate(self, items: Sequence[Item]) -> Arrays:
        pad = self.catalogue.num_items
        rows = len(items)
        excluded = max(1, max(len(item.data[1]) for item in items))
        asked = max(1, max(len(item.data[2]) for item in items))
        exclude = np.full((rows, excluded), pad, np.int64)
        candidates = np.full((rows, asked), pad, np.int64)
        for row, item in enumerate(items):
            _, seen, wanted, _, _ = item.data
            exclude[row, : len(seen)] = seen
            candidates[row, : len(wanted)] = wanted
        return {
            "user": np.array([item.data[0] for item in items], np.int64),
            "item": np.array([item.data[4] for item in items], np.int64),
            "exclude": exclude,
            "candidates": candidates,
            "k": np.array([item.data[3] for item in items], np.int64),
        }

    def split(self, outputs: Arrays, items: Sequence[Item]) -> list[Arrays]:
        """Each query's own k results, as catalogue ids (the batch ran to its largest k)."""
        results = []
        for row, item in enumerate(items):
            k = item.data[3]
            rows, scores = outputs["items"][row, :k], outputs["scores"][row, :k]
            keep = np.isfinite(scores)  # never more than k is asked than can be returned; this is a last guard
            results.append({"items": self.catalogue.item_id_array[rows[keep]], "scores": scores[keep].copy()})
        return results

    def drift_signals(self, items: Sequence[Item], outputs: Arrays) -> dict[str, np.ndarray]:
        """The best candidate's score: what the ranking believes of its top pick."""
        return {"output.top_score": outputs["scores"].reshape(len(items), -1)[:, 0].astype(np.float64)}

    def postprocess(self, outputs: Arrays, item: Item) -> Any:
        return {"items": outputs["items"].tolist(), "scores": [round(float(s), 6) for s in outputs["scores"]]}

    def canonical(self, raw: Any) -> bytes:
        """The user (or anchor item) row, k, the exclusion flag and the candidate rows: one entry per entity and
        k."""
        query = raw if isinstance(raw, Query) else self.instance(raw, "input")
        entity = b"u%d" % query.user if query.item is None else b"i%d" % query.item
        head = b"%s:k%d:x%d:" % (entity, query.k, query.exclude_seen)
        return head + np.array(query.candidates, np.int64).tobytes()

    def instance(self, value: Any, field: str) -> Any:
        """{"user_id": 42, "k": 10}, with "candidates": [item ids] to rank those, "exclude_seen": false to keep
        what the user has seen (the default excludes it unless candidates are given); {"item_id": 50, "k": 10}
        for the items most like item 50 (never itself), optionally among "candidates"."""
        if not isinstance(value, dict):
            raise InvalidInput(f'{field} must be an object such as {{"user_id": 42, "k": 10}}', field)
        unknown = sorted(set(value) - set(QUERY_FIELDS))
        if unknown:
            raise InvalidInput(f"{field} has unknown fields {unknown}; a query takes {list(QUERY_FIELDS)}", field)
        if ("user_id" in value) == ("item_id" in value):
            which = "holds both user_id and item_id; give one" if "user_id" in value else "needs user_id or item_id"
            raise InvalidInput(f"{field} {which} (a user's items, or the items similar to one)", field)
        if "item_id" in value:
            return self._similar(value, field)
        user = self.catalogue.user_row(value["user_id"], f"{field}.user_id")
        candidates = self._candidates(value, field)
        exclude = value.get("exclude_seen", not candidates)
        if not isinstance(exclude, bool):
            raise InvalidInput(f"{field}.exclude_seen must be true or false, got {exclude!r}", f"{field}.exclude_seen")
        query = Query(user, 0, candidates, exclude, explicit=frozenset(value), field=field)
        return self._with_k(query, value.get("k", UNSET), f"{field}.k")

    def _similar(self, value: dict[str, Any], field: str) -> Query:
        if "exclude_seen" in value:
            raise InvalidInput(
                f"{field}.exclude_seen is for user queries; an item query never returns the item",
                f"{field}.exclude_seen",
            )
        anchor = self.catalogue.item_row(value["item_id"], f"{field}.item_id")
        candidates = self._candidates(value, field)
        query = Query(0, 0, candidates, False, anchor, explicit=frozenset(value) | {"exclude_seen"}, field=field)
        return self._with_k(query, value.get("k", UNSET), f"{field}.k")

    def _candidates(self, value: dict[str, Any], field: str) -> tuple[int, ...]:
        if "candidates" not in value:
            return ()
        return self.catalogue.candidate_rows(value["candidates"], f"{field}.candidates")

    def _with_k(self, query: Query, k: Any, field: str) -> Query:
        """The query with `k` checked against what it can return (UNSET: the default)."""
        if query.item is not None:
            available = self.catalogue.available_like(query.item, query.candidates)
        else:
            available = self.catalogue.available(query.user, query.candidates, query.exclude_seen)
        if k is UNSET and query.candidates and not available:
            if query.item is not None:
                why = f"nothing to rank besides item {self.catalogue.item_ids[query.item]} itself"
            else:
                why = f"user {self.catalogue.user_ids[query.user]} has seen every one (exclude_seen)"
            raise InvalidInput(f"{query.field}.candidates: {why}", f"{query.field}.candidates")
        if k is UNSET:
            k = available if query.candidates else DEFAULT_K
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise InvalidInput(f"{field} must be a whole number of at least 1, got {k!r}", field)
        if k > available:
            raise InvalidInput(f"{field} is {k}, more than {self.catalogue.describe_available(query)}", field)
        return replace(query, k=k)

    def to_instance(self, raw: Any) -> Any:
        query = raw if isinstance(raw, Query) else self.instance(raw, "input")
        if query.item is not None:
            instance: dict[str, Any] = {"item_id": self.catalogue.item_ids[query.item], "k": query.k}
        else:
            instance = {"user_id": self.catalogue.user_ids[query.user], "k": query.k}
        if query.candidates:
            instance["candidates"] = [self.catalogue.item_ids[i] for i in query.candidates]
        if query.item is None and query.exclude_seen == bool(query.candidates):
            instance["exclude_seen"] = query.exclude_seen
        return instance

    def parameters(self, raws: list[Any], given: dict[str, Any], field: str) -> list[Any]:
        """Request-level k and exclude_seen: defaults for the instances that do not set their own."""
        unknown = sorted(set(given) - {"k", "exclude_seen"})
        if unknown:
            raise InvalidInput(
                f"unknown parameter {unknown[0]!r}; a recommender takes k and exclude_seen", f"{field}.{unknown[0]}"
            )
        out = []
        for raw in raws:
            query = raw
            if "exclude_seen" in given and "exclude_seen" not in query.explicit:
                if not isinstance(given["exclude_seen"], bool):
                    raise InvalidInput(f"{field}.exclude_seen must be true or false", f"{field}.exclude_seen")
                query = replace(query, exclude_seen=given["exclude_seen"])
            k = _whole(given["k"]) if "k" in given and "k" not in query.explicit else query.k
            out.append(self._with_k(query, k, f"{field}.k" if "k" in given else f"{query.field}.k"))
        return out

    def from_tensors(self, tensors: dict[str, Any]) -> list[Any]:
        """user_id or item_id INT64 [n]; optional k INT64 [n] (one value for the whole request: the response is
        one tensor), candidates INT64 [n, c] and exclude_seen BOOL [n]."""
        from inferopt.tasks.recommendation.v2 import queries_from_tensors

        return queries_from_tensors(self, tensors)

    def v2_inputs(self) -> list[dict[str, Any]]:
        return [
            {"name": "user_id", "datatype": "INT64", "shape": [-1]},
            {"name": "item_id", "datatype": "INT64", "shape": [-1]},
            {"name": "k", "datatype": "INT64", "shape": [-1]},
            {"name": "candidates", "datatype": "INT64", "shape": [-1, -1]},
            {"name": "exclude_seen", "datatype": "BOOL", "shape": [-1]},
        ]

    def warmup_batches(self, max_batch: int, max_cost: int) -> list[Arrays]:
        """One user and a full batch, excluding the longest history a user has."""
        longest = max(1, self.catalogue.longest_seen)
        pad = self.catalogue.num_items
        return [
            {
                "user": np.zeros(rows, np.int64),
                "item": np.full(rows, pad, np.int64),
                "exclude": np.full((rows, longest), pad, np.int64),
                "candidates": np.full((rows, 1), pad, np.int64),
                "k": np.full(rows, DEFAULT_K, np.int64),
            }
            for rows in sorted({1, max_batch})
        ]

    # -- the artifact ------------------------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "source": self.location,
            "num_users": self.catalogue.num_users,
            "num_items": self.catalogue.num_items,
        }

    def assets(self, work: Path) -> dict[str, Path]:
        folder = self._folder().path
        names = (model_dir.CATALOGUE, model_dir.HISTORY)
        for name in names:
            shutil.copyfile(folder / name, work / name)
        return {name: work / name for name in names}

    @classmethod
    def from_artifact(cls, config: dict[str, Any], directory: Path) -> Task:
        catalogue = Catalogue.read(directory / model_dir.CATALOGUE, directory / model_dir.HISTORY)
        if (catalogue.num_users, catalogue.num_items) != (config.get("num_users"), config.get("num_items")):
            raise ArtifactError(f"{directory}: catalogue.json does not match the model's tables", "optimize again")
        return cls(catalogue, label=str(config.get("label", "recommender")), location=str(config.get("source", "")))


def _whole(value: Any) -> Any:
    """A query string's k arrives as text."""
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 9:
        return int(value)
    return value
