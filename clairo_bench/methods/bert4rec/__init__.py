"""BERT4Rec: bidirectional transformer trained by masked-item prediction.

Sun, F., Liu, J., Wu, J., Pei, C., Lin, X., Ou, W. and Jiang, P. "BERT4Rec: Sequential
Recommendation with Bidirectional Encoder Representations from Transformer." CIKM 2019.
Training hides random items of a sequence behind a [mask] token and predicts them from both
sides (the Cloze task). At inference a [mask] token is appended to the history, and its output
scores the next item.

The `paper` profile uses the published settings: 64 hidden units, 2 blocks, 2 heads, dropout
0.1, Adam with lr 1e-4 and weight decay 0.01, batch size 256, and mask proportion 0.6 (the
paper's value for the sparse Amazon Beauty dataset).

NOTE: the paper decays the learning rate linearly and adds training samples in which only the
last item is masked; neither is implemented here. Training stops early on validation NDCG@10
instead of after a fixed number of steps, and `loss=bce` (one sampled negative per masked item)
is available besides the paper's full-softmax cross-entropy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from clairo_bench.methods.bert4rec.model import BERT4RecModel
from clairo_bench.methods.sequential import (
    PADDING_TOKEN,
    SequentialConfig,
    SequentialMethod,
    item_tokens,
    pad_left,
)

__all__ = ["BERT4Rec", "BERT4RecConfig", "BERT4RecModel"]


@dataclass(frozen=True)
class BERT4RecConfig(SequentialConfig):
    """BERT4Rec settings; defaults are the `paper` profile (see `SequentialConfig` for units).

    Attributes:
        num_heads: attention heads per block; must divide hidden_size.
        mask_probability: probability that a training item is replaced by [mask]; every
            training window gets at least one masked item.
    """

    hidden_size: int = 64
    num_layers: int = 2
    dropout: float = 0.1
    lr: float = 1e-4
    weight_decay: float = 0.01
    batch_size: int = 256
    max_epochs: int = 200
    patience: int = 20
    num_heads: int = 2
    mask_probability: float = 0.6

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_heads < 1 or self.hidden_size % self.num_heads:
            raise ValueError(
                f"num_heads must be >= 1 and divide hidden_size {self.hidden_size}, "
                f"got {self.num_heads}."
            )
        if not 0.0 < self.mask_probability <= 1.0:
            raise ValueError(f"mask_probability must be in (0, 1], got {self.mask_probability}.")


class BERT4Rec(SequentialMethod):
    name = "bert4rec"
    config_class = BERT4RecConfig
    description = "Bidirectional transformer trained on masked items (Sun et al., CIKM 2019)."
    profiles = {
        "smoke": {"hidden_size": 16, "num_layers": 1, "num_heads": 1, "dropout": 0.1,
                  "lr": 5e-3, "weight_decay": 0.0, "batch_size": 32, "max_epochs": 2,
                  "patience": 1, "mask_probability": 0.4},
        "quick": {"hidden_size": 64, "num_layers": 2, "num_heads": 2, "dropout": 0.2,
                  "lr": 1e-3, "weight_decay": 0.01, "batch_size": 128, "max_epochs": 30,
                  "patience": 4, "mask_probability": 0.4},
    }
    window_extra_items = 0
    min_window_items = 1
    training_data = (
        "whole training sequences in disjoint windows of max_length items; each item is "
        "masked and predicted with probability mask_probability, at least one per window"
    )
    departures = (
        "no linear learning-rate decay",
        "no extra training samples that mask only the last item",
        "early stopping on validation NDCG@10 instead of a fixed number of steps",
    )

    def build_model(self, n_items: int, max_length: int) -> BERT4RecModel:
        config = self.config
        return BERT4RecModel(
            n_items=n_items,
            max_length=max_length,
            hidden_size=config.hidden_size,
            num_layers=config.num_layers,
            num_heads=config.num_heads,
            dropout=config.dropout,
        )

    def make_batch(
        self, windows: Sequence[np.ndarray], generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask items at random; targets are the hidden items, 0 elsewhere."""
        assert self.model is not None
        tokens = pad_left(windows)
        real = tokens != PADDING_TOKEN
        draws = torch.rand(tokens.shape, generator=generator)
        masked = real & (draws < self.config.mask_probability)
        # A window without a masked item would train nothing, so mask its highest-draw item.
        unmasked_rows = ~masked.any(dim=1)
        forced = draws.masked_fill(~real, -1.0).argmax(dim=1)
        masked[unmasked_rows, forced[unmasked_rows]] = True
        targets = torch.where(masked, tokens, torch.zeros_like(tokens))
        inputs = torch.where(masked, torch.full_like(tokens, self.model.mask_token), tokens)
        return inputs, targets

    def inference_tokens(self, histories: Sequence[np.ndarray]) -> torch.Tensor:
        """Append [mask] to the last max_length - 1 items of each history."""
        assert self.model is not None
        mask = np.array([self.model.mask_token], dtype=np.int64)
        rows = [
            np.concatenate([item_tokens(h, self.model.max_length - 1), mask]) for h in histories
        ]
        return pad_left(rows)
