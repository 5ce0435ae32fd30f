"""Train the NeuMF recommender on MovieLens 100K: `python -m inferopt.tasks.recommendation.train --out DIR`.

Implicit feedback (every rating is an interaction), leave-last-out, binary cross-entropy against 4 negatives per
positive sampled afresh each epoch. Deterministic with --seed: one thread, seeded torch and numpy, the same
batches in the same order. The folder it writes is what `inferopt optimize DIR` takes (see model_dir.py); an
existing folder trained with the same settings is reused unless --force.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inferopt.errors import InferoptError
from inferopt.tasks.recommendation import model_dir, movielens, ranking
from inferopt.tasks.training import one_thread, zero_negligible


@dataclass(frozen=True)
class TrainSettings:
    seed: int = 0
    epochs: int = 12
    batch_size: int = 1024
    learning_rate: float = 2e-3
    weight_decay: float = 1e-6
    negatives_per_positive: int = 4
    gmf_dim: int = 32
    mlp_dim: int = 32
    hidden: tuple[int, ...] = (64, 32, 16)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "hidden": list(self.hidden)}


def train(split: movielens.Split, settings: TrainSettings, progress: Any = None) -> Any:
    """A trained NeuMF (eval mode). `progress(epoch, loss)` is called after each epoch."""
    import torch

    from inferopt.tasks.recommendation.model import Architecture, NeuMF

    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    data = split.data
    arch = Architecture(data.num_users, data.num_items, settings.gmf_dim, settings.mlp_dim, settings.hidden)
    model = NeuMF(arch)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    seen = np.zeros((data.num_users, data.num_items), bool)
    seen[split.train_users, split.train_items] = True
    loss_fn = torch.nn.BCEWithLogitsLoss()
    with one_thread(torch):
        for epoch in range(settings.epochs):
            users, items, labels = _epoch_samples(split, seen, settings.negatives_per_positive, rng)
            model.train()
            total = 0.0
            for start in range(0, len(users), settings.batch_size):
                batch = slice(start, start + settings.batch_size)
                optimizer.zero_grad()
                logits = model.pair_scores(torch.from_numpy(users[batch]), torch.from_numpy(items[batch]))
                loss = loss_fn(logits, torch.from_numpy(labels[batch]))
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(logits)
            if progress is not None:
                progress(epoch + 1, total / len(users))
    zero_negligible(model)
    return model.eval()


def _epoch_samples(
    split: movielens.Split, seen: np.ndarray, per_positive: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shuffled (user, item, label) triples: every training interaction, and `per_positive` items per
    interaction that its user has not seen in training (rejection-sampled, vectorized)."""
    users = np.repeat(split.train_users, per_positive)
    negatives = rng.integers(0, seen.shape[1], len(users))
    clash = seen[users, negatives]
    while clash.any():
        negatives[clash] = rng.integers(0, seen.shape[1], int(clash.sum()))
        clash = seen[users, negatives]
    all_users = np.concatenate([split.train_users, users])
    all_items = np.concatenate([split.train_items, negatives])
    labels = np.concatenate([np.ones(len(split.train_users)), np.zeros(len(users))]).astype(np.float32)
    order = rng.permutation(len(all_users))
    return all_users[order], all_items[order], labels[order]


def evaluate(model: Any, split: movielens.Split) -> dict[str, dict[str, dict[str, float]]]:
    """HR@10 / NDCG@10 of the model and of the popularity baseline (items by training interactions)."""
    import torch

    history = split.history()
    with torch.inference_mode():
        users = torch.arange(split.data.num_users)
        scores = model.catalogue_scores(users).numpy()
    popularity = np.broadcast_to(split.popularity().astype(np.float64), scores.shape)
    return {
        "neumf": ranking.evaluate_scores(scores, split.test_items, split.negatives, history),
        "popularity": ranking.evaluate_scores(popularity, split.test_items, split.negatives, history),
    }


def run(data_dir: Path | None, out: Path, settings: TrainSettings, *, force: bool, echo: Any = print) -> Path:
    """Train and write the model folder; a folder trained from the same settings is reused."""
    if not force and model_dir.trained_with(out, settings.to_dict()):
        echo(f"reusing {out} (trained with these settings; --force to train again)")
        return out
    started = time.perf_counter()
    data = movielens.read(data_dir)
    split = movielens.leave_last_out(data, settings.seed)
    echo(f"MovieLens 100K: {len(data):,} interactions, {data.num_users} users, {data.num_items} items")
    model = train(split, settings, lambda epoch, loss: echo(f"  epoch {epoch:2d}/{settings.epochs}  loss {loss:.4f}"))
    seconds = time.perf_counter() - started
    metrics = evaluate(model, split)
    model_dir.write(out, model, split, settings.to_dict(), metrics, seconds, force=force)
    for name, result in metrics.items():
        echo(
            f"  {name:<10} HR@10 {result['sampled_99']['hr@10']:.4f} NDCG@10 {result['sampled_99']['ndcg@10']:.4f}"
            f" (99 negatives); full ranking HR@10 {result['full']['hr@10']:.4f} NDCG@10 {result['full']['ndcg@10']:.4f}"
        )
    echo(f"trained in {seconds:.1f} s; wrote {out}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="the ml-100k folder (default: recbole's copy)")
    parser.add_argument("--out", type=Path, required=True, help="the model folder to write")
    parser.add_argument("--seed", type=int, default=TrainSettings.seed)
    parser.add_argument("--epochs", type=int, default=TrainSettings.epochs)
    parser.add_argument("--force", action="store_true", help="train again even if --out holds such a model")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error("--epochs must be at least 1")
    try:
        run(args.data, args.out, TrainSettings(seed=args.seed, epochs=args.epochs), force=args.force)
    except InferoptError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
