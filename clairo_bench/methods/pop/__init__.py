"""Pop: ranks items by their number of occurrences in the training sequences."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clairo_bench.data.dataset import DataError, Dataset
from clairo_bench.data.split import Split
from clairo_bench.methods.base import Method, MethodConfig, Recommendations, RunContext


@dataclass(frozen=True)
class PopConfig(MethodConfig):
    """Pop has no settings."""


class Pop(Method):
    name = "pop"
    config_class = PopConfig
    description = "Most popular items in the training sequences, the same list for every user."

    def fit(self, dataset: Dataset, split: Split, context: RunContext) -> None:
        counts = split.item_popularity().astype(np.float64)
        # Equal counts are ordered by item index so that the ranking is deterministic. The
        # offset stays below one count step, so it never reorders items with different counts.
        self.scores = counts - np.arange(len(counts)) / (len(counts) + 1.0)
        context.records["popularity_source"] = "training sequences"

    def recommend(self, histories: Sequence[np.ndarray], k: int) -> Recommendations:
        return Recommendations(scores=np.broadcast_to(self.scores, (len(histories), len(self.scores))))

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / "scores.npy", self.scores)

    def load(self, directory: Path, dataset: Dataset, split: Split) -> None:
        path = directory / "scores.npy"
        scores = np.load(path)
        if scores.shape != (split.n_items,) or not np.all(np.isfinite(scores)):
            raise DataError(
                f"{path} is invalid: it contains scores of shape {scores.shape} with "
                f"{int(np.sum(~np.isfinite(scores)))} non-finite values, expected {split.n_items} "
                f"finite scores, one per item of {dataset.name!r}. The file is damaged or belongs "
                "to another dataset; rerun the job to write it again."
            )
        self.scores = scores
