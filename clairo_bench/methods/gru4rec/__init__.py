"""GRU4Rec: a recurrent network over the item history.

Hidasi, B., Karatzoglou, A., Baltrunas, L. and Tikk, D. "Session-based Recommendations with
Recurrent Neural Networks." ICLR 2016.
A GRU reads the items of a history one by one, and its hidden state scores the next item.

The `paper` profile uses one GRU layer of 100 units, the smaller of the two sizes in the paper.
Its dropout, learning rate and batch size were chosen for this harness, not taken from the paper.

NOTE: this is GRU4Rec as a user-sequence baseline, not the session-parallel original. It trains
on whole training sequences, where every position predicts the next item, with full-softmax
cross-entropy instead of the TOP1 or BPR ranking losses over in-batch negatives. It uses AdamW
instead of Adagrad. Its output embeddings are tied to the input item embeddings, whereas the paper
feeds one-hot items and learns separate output weights. `loss=bce` trains against one uniformly
sampled negative per target instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from clairo_bench.methods.gru4rec.model import GRU4RecModel
from clairo_bench.methods.sequential import SequentialConfig, SequentialMethod

__all__ = ["GRU4Rec", "GRU4RecConfig", "GRU4RecModel"]


@dataclass(frozen=True)
class GRU4RecConfig(SequentialConfig):
    """GRU4Rec settings; defaults are the `paper` profile (see `SequentialConfig` for units).

    `dropout` applies to the GRU input and output and between stacked GRU layers.
    """

    hidden_size: int = 100
    num_layers: int = 1
    dropout: float = 0.25
    lr: float = 1e-3
    batch_size: int = 128
    max_epochs: int = 200
    patience: int = 20


class GRU4Rec(SequentialMethod):
    name = "gru4rec"
    config_class = GRU4RecConfig
    description = "GRU over the item history (Hidasi et al., ICLR 2016)."
    profiles = {
        "smoke": {"hidden_size": 16, "num_layers": 1, "dropout": 0.1, "lr": 1e-2,
                  "batch_size": 32, "max_epochs": 2, "patience": 1},
        "quick": {"hidden_size": 64, "num_layers": 1, "dropout": 0.25, "lr": 1e-3,
                  "batch_size": 128, "max_epochs": 30, "patience": 4},
    }
    departures = (
        "full-softmax cross-entropy over whole user sequences instead of TOP1/BPR with "
        "session-parallel mini-batches and sampled negatives",
        "Adam (AdamW) instead of Adagrad",
        "output embeddings tied to the input item embeddings",
    )

    def build_model(self, n_items: int, max_length: int) -> GRU4RecModel:
        config = self.config
        return GRU4RecModel(
            n_items=n_items,
            max_length=max_length,
            hidden_size=config.hidden_size,
            num_layers=config.num_layers,
            dropout=config.dropout,
        )
