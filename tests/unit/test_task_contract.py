"""The Task contract is enough: a tiny task defined here, registered with one line, goes through the whole
pipeline (optimize: export, recipes, verify, select, artifact) and the server (KServe v1, OIP v2), with no
code of inferopt's own knowing it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console

from inferopt.tasks import registry
from inferopt.tasks.base import (
    KSERVE_V1,
    NO_OPTIONS,
    OIP_V2,
    Arrays,
    EvalSet,
    InvalidInput,
    IOSchema,
    Item,
    Metrics,
    ModelOptions,
    Source,
    Task,
    TensorSpec,
)

WORDS = ["one", "two words", "now three words", "and this makes four", "a b c d e", "x", "y z"]


class Scaler:
    """A torch module made on demand (torch is imported only by optimize's side)."""

    @staticmethod
    def build() -> Any:
        import torch

        class Scale(torch.nn.Module):
            def forward(self, counts: torch.Tensor) -> torch.Tensor:
                return torch.cat([counts * 2.0, counts + 1.0], dim=1)

        return Scale().eval()


class WordCountTask(Task):
    """A raw input is a sentence; the model turns its word count into [2 * count, count + 1]."""

    name = "word-count"
    protocols = (KSERVE_V1, OIP_V2)

    @classmethod
    def from_model(cls, ref: str | None, options: ModelOptions = NO_OPTIONS) -> Task:
        return cls()

    def load_source(self) -> Source:
        return Source("word-count", "tests", Scaler.build(), None, {"counts": np.ones((2, 1), np.float32)})

    def io_schema(self) -> IOSchema:
        return IOSchema(
            (TensorSpec("counts", "float32", ("batch", 1)),), (TensorSpec("scaled", "float32", ("batch", 2)),)
        )

    def eval_data(self, path: Path | None, limit: int | None = None) -> EvalSet:
        return EvalSet("words", tuple(WORDS), None, f"{len(WORDS)} sentences")

    def calibration_inputs(self) -> list[Any]:
        return list(WORDS)

    def metrics(self) -> Metrics:
        from inferopt.tasks.tensor.metrics import TensorMetrics

        return TensorMetrics()

    def preprocess(self, raws: Sequence[Any]) -> list[Item]:
        return [Item(float(len(raw.split()))) for raw in raws]

    def collate(self, items: Sequence[Item]) -> Arrays:
        return {"counts": np.array([[item.data] for item in items], np.float32)}

    def postprocess(self, outputs: Arrays, item: Item) -> Any:
        return {"double": float(outputs["scaled"][0]), "plus_one": float(outputs["scaled"][1])}

    def canonical(self, raw: Any) -> bytes:
        return " ".join(raw.split()).encode()

    def instance(self, value: Any, field: str) -> Any:
        if not isinstance(value, str):
            raise InvalidInput(f"{field} must be a sentence", field)
        return value

    def from_tensors(self, tensors: dict[str, Any]) -> list[Any]:
        return [self.instance(t, f"sentence[{i}]") for i, t in enumerate(tensors.get("sentence", []))]

    def v2_inputs(self) -> list[dict[str, Any]]:
        return [{"name": "sentence", "datatype": "BYTES", "shape": [-1]}]

    def warmup_batches(self, max_batch: int, max_cost: int) -> list[Arrays]:
        return [self.collate([Item(1.0)] * max_batch)]

    def config(self) -> dict[str, Any]:
        return {}

    def assets(self, work: Path) -> dict[str, Path]:
        return {}

    @classmethod
    def from_artifact(cls, config: dict[str, Any], directory: Path) -> Task:
        return cls()


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.TASKS, "word-count", f"{__name__}:WordCountTask")


def test_a_new_task_optimizes_and_serves_through_the_contract_alone(registered: None, tmp_path: Path) -> None:
    import httpx

    import inferopt
    from inferopt.artifact import load_artifact
    from inferopt.config import OptimizeConfig
    from inferopt.optimize import run_optimize
    from inferopt.recipes.graph import GraphConfig
    from inferopt.recipes.torch_eager import TorchEagerConfig
    from inferopt.serve.model import ServingModel
    from inferopt.serve.testing import ServerThread

    config = OptimizeConfig(
        task="word-count", out=tmp_path / "out", quick=True, recipes=(TorchEagerConfig(), GraphConfig())
    )
    outcome = run_optimize(config, Console(quiet=True))
    assert outcome.result.selection is not None and outcome.result.selection.chosen == "onnx-fp32"
    artifact = load_artifact(outcome.artifact_dir)  # type: ignore[arg-type]
    assert artifact.task == "word-count" and artifact.io.output_names == ["scaled"]

    with inferopt.Predictor.from_artifact(artifact) as predictor:
        assert predictor.predict(["a b c", "d"]) == [{"double": 6.0, "plus_one": 4.0}, {"double": 2.0, "plus_one": 2.0}]

    with ServerThread(ServingModel.from_artifact(artifact)) as server, httpx.Client(base_url=server.url) as client:
        name = artifact.model_name
        predicted = client.post(f"/v1/models/{name}:predict", json={"instances": ["one two", "three"]})
        inferred = client.post(
            f"/v2/models/{name}/infer",
            json={"inputs": [{"name": "sentence", "datatype": "BYTES", "shape": [2], "data": ["a b", "c"]}]},
        )
        refused = client.post(f"/v1/models/{name}:predict", json={"instances": [7]})
    assert predicted.json() == {"predictions": [{"double": 4.0, "plus_one": 3.0}, {"double": 2.0, "plus_one": 2.0}]}
    assert inferred.json()["outputs"][0]["data"] == [4.0, 3.0, 2.0, 2.0]
    assert refused.status_code == 422 and refused.json() == {"error": "instances[0] must be a sentence"}


def test_an_unknown_task_name_is_a_clear_error() -> None:
    from inferopt.errors import InputError

    with pytest.raises(InputError, match="There is no task 'image-segmentation'"):
        registry.for_model(None, task="image-segmentation")
