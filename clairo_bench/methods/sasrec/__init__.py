"""SASRec: self-attentive sequential recommendation.

Kang, W.-C. and McAuley, J. "Self-Attentive Sequential Recommendation." ICDM 2018.
A causal transformer reads the most recent items and predicts the next one at every position;
the item embeddings double as output embeddings.

The `paper` profile uses the published settings for the sparse Amazon datasets: 50 hidden units,
2 blocks, 1 head, dropout 0.5, Adam with lr 0.001, batch size 128. The paper reads the last 50
items; here the input length defaults to the split's history cap (set
`split.max_history_items=50` to match).

NOTE: the default loss is full-softmax cross-entropy over the catalogue. The paper trains with
binary cross-entropy against one sampled negative per position, available as `loss=bce`. Here the
negative is drawn uniformly from all items except the target, so it may be another item of the
user's sequence, which the SASRec sampler excludes. The paper trains a fixed number of epochs, while here training
stops early on validation NDCG@10. The blocks are PyTorch's pre-LayerNorm
`nn.TransformerEncoderLayer`, not a port of the authors' TensorFlow layers, so details such as
where layer normalization sits inside the attention may differ.
"""

from __future__ import annotations

from dataclasses import dataclass

from clairo_bench.methods.sasrec.model import SASRecModel
from clairo_bench.methods.sequential import SequentialConfig, SequentialMethod

__all__ = ["SASRec", "SASRecConfig", "SASRecModel"]


@dataclass(frozen=True)
class SASRecConfig(SequentialConfig):
    """SASRec settings; defaults are the `paper` profile (see `SequentialConfig` for units).

    Attributes:
        num_heads: attention heads per block; must divide hidden_size.
    """

    hidden_size: int = 50
    num_layers: int = 2
    dropout: float = 0.5
    lr: float = 1e-3
    batch_size: int = 128
    max_epochs: int = 200
    patience: int = 20
    num_heads: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_heads < 1 or self.hidden_size % self.num_heads:
            raise ValueError(
                f"num_heads must be >= 1 and divide hidden_size {self.hidden_size}, "
                f"got {self.num_heads}."
            )


class SASRec(SequentialMethod):
    name = "sasrec"
    config_class = SASRecConfig
    description = "Causal self-attention over the item history (Kang & McAuley, ICDM 2018)."
    profiles = {
        "smoke": {"hidden_size": 16, "num_layers": 1, "dropout": 0.1, "lr": 5e-3,
                  "batch_size": 32, "max_epochs": 2, "patience": 1},
        "quick": {"hidden_size": 64, "num_layers": 2, "dropout": 0.5, "lr": 1e-3,
                  "batch_size": 128, "max_epochs": 30, "patience": 4},
    }
    departures = (
        "loss defaults to full-softmax cross-entropy; the paper uses BCE with one sampled "
        "negative (loss=bce)",
        "sampled negatives may be items of the user's sequence",
        "early stopping on validation NDCG@10 instead of a fixed number of epochs",
        "PyTorch pre-LayerNorm transformer blocks instead of the authors' TensorFlow layers",
    )

    def build_model(self, n_items: int, max_length: int) -> SASRecModel:
        config = self.config
        return SASRecModel(
            n_items=n_items,
            max_length=max_length,
            hidden_size=config.hidden_size,
            num_layers=config.num_layers,
            num_heads=config.num_heads,
            dropout=config.dropout,
        )
