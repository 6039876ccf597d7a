"""Example method plugin: the user's own recent items, newest first, then popular items.

Repeat consumption is a strong signal in many domains; on datasets with repeats removed (such as
the MQL4GRec processing of Amazon data) this method falls back to popularity almost entirely.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from clairo_bench.data.dataset import Dataset
from clairo_bench.data.split import Split
from clairo_bench.methods.base import Method, MethodConfig, Recommendations, RunContext


@dataclass(frozen=True)
class RecentItemsConfig(MethodConfig):
    """Settings of RecentItems.

    Attributes:
        recent_weight: score added to an item for each time it occurs in the history; popularity
            scores lie in [0, 1), so any weight >= 1 ranks history items first.
    """

    recent_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.recent_weight < 0:
            raise ValueError(f"recent_weight must be >= 0, got {self.recent_weight}.")


class RecentItems(Method):
    name = "recent-items"
    config_class = RecentItemsConfig
    description = "Example plugin: history items first, then popular items."
    profiles = {"smoke": {"recent_weight": 1.0}}

    def fit(self, dataset: Dataset, split: Split, context: RunContext) -> None:
        counts = split.item_popularity().astype(np.float64)
        self.popularity = counts / (counts.max() + 1.0)
        context.records["recent_weight"] = self.config.recent_weight

    def recommend(self, histories: Sequence[np.ndarray], k: int) -> Recommendations:
        scores = np.tile(self.popularity, (len(histories), 1))
        for row, history in enumerate(histories):
            np.add.at(scores[row], history, self.config.recent_weight)
        return Recommendations(scores=scores)
