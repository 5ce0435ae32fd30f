"""Embedding rows merged by lookups: the rarest ids share one fallback row, common ids keep theirs exactly, a
table read whole is left alone, and the pruned model exports with the same inputs."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from inferopt.export import export_onnx  # noqa: E402
from inferopt.recipes.rows import RemappedEmbedding, prune_rows  # noqa: E402
from inferopt.recipes.structure import CannotPrune, Probe  # noqa: E402
from inferopt.tasks.base import IOSchema, Source, TensorSpec  # noqa: E402

USERS, ITEMS, DIM = 20, 12, 4


class TwoTower(nn.Module):
    """Users looked up by id; every item scored from the item table's whole weight (a catalogue)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.users = nn.Embedding(USERS, DIM)
        self.items = nn.Embedding(ITEMS, DIM)

    def forward(self, user: torch.Tensor) -> torch.Tensor:
        return self.users(user) @ self.items.weight.T


def traffic(seed: int = 0) -> Probe:
    """User 0 often, users 1-9 now and then, users 10-19 never."""
    rng = np.random.default_rng(seed)
    users = np.concatenate([np.zeros(40, np.int64), rng.integers(1, 10, size=88)])
    return Probe(("user",), tuple({"user": users[i : i + 32]} for i in range(0, 128, 32)))


def test_the_rarest_ids_share_one_fallback_row_and_the_rest_keep_theirs() -> None:
    model, probe = TwoTower(), traffic()
    before = model.users.weight.detach().clone()
    assert prune_rows(model, 0.5, probe) == {"users": [11, 20]}
    users = model.users
    assert isinstance(users, RemappedEmbedding) and isinstance(model.items, nn.Embedding)  # items are read whole
    common = torch.arange(10)
    assert torch.equal(users(common), before[common])
    never = torch.arange(10, 20)  # the ten never looked up are the half that goes
    fallback = users(never)
    assert torch.allclose(fallback, before[never].mean(dim=0).expand(10, DIM))
    assert users.weight.shape == (USERS, DIM) and torch.equal(users.weight[:10], before[:10])


def test_the_pruned_model_exports_with_the_same_inputs(tmp_path) -> None:
    import onnxruntime as ort

    model, probe = TwoTower(), traffic()
    prune_rows(model, 0.25, probe)
    user = np.array([0, 3, 15], np.int64)
    schema = IOSchema((TensorSpec("user", "int64", ("batch",)),), (TensorSpec("scores", "float32", ("batch", ITEMS)),))
    path = export_onnx(Source("two-tower", "test", module=model, example={"user": user}), schema, tmp_path / "m.onnx")
    (got,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"user": user})
    np.testing.assert_allclose(got, model(torch.from_numpy(user)).detach().numpy(), rtol=1e-5, atol=1e-6)


def test_a_model_whose_tables_are_never_looked_up_is_refused() -> None:
    class Catalogue(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.items = nn.Embedding(ITEMS, DIM)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x @ self.items.weight.T

    probe = Probe(("x",), ({"x": np.ones((2, DIM), np.float32)},))
    with pytest.raises(CannotPrune, match=r"no embedding table is looked up by id.*items are read whole"):
        prune_rows(Catalogue(), 0.5, probe)
    with pytest.raises(CannotPrune, match=r"has no nn\.Embedding"):
        prune_rows(nn.Linear(2, 2), 0.5, Probe(("x",), ({"x": np.ones((1, 2), np.float32)},)))
