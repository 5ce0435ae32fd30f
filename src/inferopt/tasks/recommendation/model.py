"""The ranking model: NeuMF (He et al., "Neural Collaborative Filtering", 2017), user and item embedding tables
with two interaction paths, a generalized matrix factorization (element-wise product) and an MLP over the
concatenated embeddings, joined by one linear layer into a score.

Training scores (user, item) pairs (`pair_scores`). Serving asks for a user's best items, so `forward` scores the
whole catalogue for a batch of users and takes the top k in the same graph: the exported ONNX model answers "top
k for these users" or "rank these candidates" in one call, with no Python loop over items. It computes exactly
what `pair_scores` does for every item, arranged so the item side of the first MLP layer and of the GMF path is a
product of weights alone (ONNX Runtime folds such products into constants when it loads the graph).

A query row asks for a user's items, or, when `item` holds an item row (not the padding row `num_items`), for
the items most like that one (the product page's "similar items"): cosine similarity of the items' learned
embeddings, both paths' tables side by side. Masks use item row `num_items` as padding: `exclude` lists rows
never to return (already seen; the item itself), `candidates` rows to rank (a row of padding only: the whole
catalogue).
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class Architecture:
    num_users: int
    num_items: int
    gmf_dim: int = 32
    mlp_dim: int = 32
    hidden: tuple[int, ...] = (64, 32, 16)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "hidden": list(self.hidden)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Architecture:
        return cls(
            int(data["num_users"]),
            int(data["num_items"]),
            int(data["gmf_dim"]),
            int(data["mlp_dim"]),
            tuple(int(h) for h in data["hidden"]),
        )


class NeuMF(nn.Module):
    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        self.arch = arch
        self.user_gmf = nn.Embedding(arch.num_users, arch.gmf_dim)
        self.item_gmf = nn.Embedding(arch.num_items, arch.gmf_dim)
        self.user_mlp = nn.Embedding(arch.num_users, arch.mlp_dim)
        self.item_mlp = nn.Embedding(arch.num_items, arch.mlp_dim)
        widths = (2 * arch.mlp_dim, *arch.hidden)
        self.mlp = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(widths))
        self.out = nn.Linear(arch.gmf_dim + arch.hidden[-1], 1)
        for table in (self.user_gmf, self.item_gmf, self.user_mlp, self.item_mlp):
            nn.init.normal_(table.weight, std=0.01)

    def pair_scores(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """The logit of each (user, item) pair: what training fits."""
        gmf = self.user_gmf(users) * self.item_gmf(items)
        h = torch.cat([self.user_mlp(users), self.item_mlp(items)], dim=-1)
        for layer in self.mlp:
            h = torch.relu(layer(h))
        return self.out(torch.cat([gmf, h], dim=-1)).squeeze(-1)

    def catalogue_scores(self, users: torch.Tensor) -> torch.Tensor:
        """pair_scores of every item for each user: (users, items)."""
        d = self.arch.gmf_dim
        w_gmf, w_mlp = self.out.weight[0, :d], self.out.weight[0, d:]
        gmf = self.user_gmf(users) @ (self.item_gmf.weight * w_gmf).T
        first: nn.Linear = self.mlp[0]  # type: ignore[assignment]
        m = self.arch.mlp_dim
        user_side = self.user_mlp(users) @ first.weight[:, :m].T  # (users, h1)
        item_side = self.item_mlp.weight @ first.weight[:, m:].T + first.bias  # (items, h1)
        h = torch.relu(user_side[:, None, :] + item_side[None, :, :])  # (users, items, h1)
        rows, items, width = h.shape
        # One (users x items, width) matrix through the MLP, and the last layer as a matrix of one column: ONNX
        # Runtime runs a MatMul of a 3-D tensor and a 1-D weight as many small products, and that one op took
        # half the time (2.4x fewer items/s for the whole graph, 1.3x for PyTorch eager).
        h = h.reshape(rows * items, width)
        for layer in self.mlp[1:]:
            h = torch.relu(layer(h))
        return gmf + (h @ w_mlp[:, None]).reshape(rows, items) + self.out.bias

    def item_similarity(self, anchors: torch.Tensor) -> torch.Tensor:
        """Cosine similarity of each anchor item's embeddings to every item's: (anchors, items)."""
        vectors = torch.cat([self.item_gmf.weight, self.item_mlp.weight], dim=1)
        vectors = vectors / vectors.norm(dim=1, keepdim=True).clamp(min=1e-12)
        return vectors[anchors] @ vectors.T

    def forward(
        self,
        user: torch.Tensor,
        item: torch.Tensor,
        exclude: torch.Tensor,
        candidates: torch.Tensor,
        k: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(item rows, scores) of each row's k best items, best first; k is the largest of the batch's `k`."""
        items = self.arch.num_items
        by_item = item < items
        scores = torch.where(
            by_item[:, None], self.item_similarity(item.clamp(max=items - 1)), self.catalogue_scores(user)
        )
        return self.top_k(scores, exclude, candidates, k)

    @staticmethod
    def top_k(
        scores: torch.Tensor, exclude: torch.Tensor, candidates: torch.Tensor, k: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The k best allowed items of each row of `scores`: (item rows, scores), best first."""
        rows, items = scores.shape
        slot = torch.zeros((rows, items + 1), dtype=scores.dtype)  # the last column is where padding lands
        asked = slot.scatter(1, candidates, 1.0)[:, :items] > 0
        restricted = (candidates < items).any(dim=1, keepdim=True)
        blocked = slot.scatter(1, exclude, 1.0)[:, :items] > 0
        allowed = (asked | ~restricted) & ~blocked
        masked = torch.where(allowed, scores, torch.full_like(scores, float("-inf")))
        top_scores, top_items = torch.topk(masked, k.max(), dim=1)  # type: ignore[arg-type]  # a tensor K exports as a dynamic TopK
        return top_items, top_scores


class CatalogueScores(nn.Module):
    """A NeuMF's whole-catalogue scores for its queries' users, taking forward's inputs: what a distilled student
    is trained to match (the item rows forward returns are chosen from these scores and carry no gradient)."""

    def __init__(self, model: NeuMF) -> None:
        super().__init__()
        self.model = model

    def forward(self, user: torch.Tensor, *_: torch.Tensor) -> torch.Tensor:
        return self.model.catalogue_scores(user)
