"""The BERT4Rec network: a bidirectional transformer that predicts masked items."""

from __future__ import annotations

import torch
from torch import nn

from clairo_bench.methods.sequential import (
    PADDING_TOKEN,
    SequentialModel,
    attention_mask,
    init_embedding_weights,
    position_ids,
)


class BERT4RecModel(SequentialModel):
    """Post-LayerNorm transformer blocks with GELU, attending in both directions.

    Tokens: 0 padding, 1..n_items items, n_items + 1 the [mask] token. The output head is a
    dense layer with GELU and layer normalization (BERT's masked-LM head), followed by the tied
    item embeddings and a per-item bias.
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
        self.num_heads = num_heads
        self.mask_token = n_items + 1
        self.item_embedding = nn.Embedding(n_items + 2, hidden_size, padding_idx=PADDING_TOKEN)
        self.position_embedding = nn.Embedding(max_length, hidden_size)
        self.embedding_norm = nn.LayerNorm(hidden_size)
        self.embedding_dropout = nn.Dropout(dropout)
        block = nn.TransformerEncoderLayer(
            d_model=hidden_size,
            nhead=num_heads,
            dim_feedforward=4 * hidden_size,
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=False,
        )
        self.encoder = nn.TransformerEncoder(block, num_layers, enable_nested_tensor=False)
        self.head = nn.Sequential(
            nn.Linear(hidden_size, hidden_size), nn.GELU(), nn.LayerNorm(hidden_size)
        )
        self.bias = nn.Parameter(torch.zeros(n_items))
        # BERT initializes embeddings with standard deviation 0.02.
        init_embedding_weights(self, std=0.02)

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        states = self.item_embedding(tokens)
        states = states + self.position_embedding(position_ids(tokens, self.max_length))
        states = self.embedding_dropout(self.embedding_norm(states))
        mask = attention_mask(tokens, self.num_heads, causal=False)
        return self.head(self.encoder(states, mask=mask))

    def output_weight(self) -> torch.Tensor:
        return self.item_embedding.weight[1 : self.n_items + 1]

    def output_bias(self) -> torch.Tensor:
        return self.bias
