"""The SASRec network: causal self-attention over item and position embeddings."""

from __future__ import annotations

import math

import torch
from torch import nn

from clairo_bench.methods.sequential import (
    PADDING_TOKEN,
    SequentialModel,
    attention_mask,
    init_embedding_weights,
    position_ids,
)


class SASRecModel(SequentialModel):
    """Pre-LayerNorm transformer blocks with a causal mask; item embeddings are tied to the output.

    Each block is multi-head self-attention and a point-wise feed-forward layer of `hidden_size`
    units with ReLU, each with a residual connection and dropout, as in SASRec.
    """

    def __init__(
        self,
        n_items: int,
        max_length: int,
        hidden_size: int,
        num_layers: int,
        num_heads: int,
        dropout: float,
    ) -> None:
        super().__init__(n_items, max_length)
        if hidden_size % num_heads:
            raise ValueError(
                f"hidden_size {hidden_size} must be divisible by num_heads {num_heads}."
            )
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.item_embedding = nn.Embedding(n_items + 1, hidden_size, padding_idx=PADDING_TOKEN)
        self.position_embedding = nn.Embedding(max_length, hidden_size)
        self.embedding_dropout = nn.Dropout(dropout)
        block = nn.TransformerEncoderLayer(
            d_model=hidden_size,
            nhead=num_heads,
            dim_feedforward=hidden_size,
            dropout=dropout,
            activation="relu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(
            block, num_layers, norm=nn.LayerNorm(hidden_size), enable_nested_tensor=False
        )
        # A small initial scale keeps the first logits near zero; items are scaled by sqrt(d).
        init_embedding_weights(self, std=0.02)

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        # SASRec scales item embeddings by sqrt(d) before adding the positions.
        states = self.item_embedding(tokens) * math.sqrt(self.hidden_size)
        states = states + self.position_embedding(position_ids(tokens, self.max_length))
        states = self.embedding_dropout(states)
        states = states * (tokens != PADDING_TOKEN).unsqueeze(-1)
        mask = attention_mask(tokens, self.num_heads, causal=True)
        return self.encoder(states, mask=mask)

    def output_weight(self) -> torch.Tensor:
        return self.item_embedding.weight[1:]
