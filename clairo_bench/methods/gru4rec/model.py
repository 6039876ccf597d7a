"""The GRU4Rec network: item embeddings, stacked GRU layers, tied output embeddings."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from clairo_bench.methods.sequential import PADDING_TOKEN, SequentialModel, init_embedding_weights


class GRU4RecModel(SequentialModel):
    """A GRU over item embeddings; the hidden state at each position scores the next item.

    Rows are right-aligned, so the GRU would otherwise step through the padding before the first
    item. The rows are moved to the left and packed, so every history starts from a zero state.
    """

    def __init__(
        self, n_items: int, max_length: int, hidden_size: int, num_layers: int, dropout: float
    ) -> None:
        super().__init__(n_items, max_length)
        self.item_embedding = nn.Embedding(n_items + 1, hidden_size, padding_idx=PADDING_TOKEN)
        self.input_dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(
            hidden_size,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.output_dropout = nn.Dropout(dropout)
        # Entries of std 1/sqrt(hidden_size) give input vectors of about unit norm. With the 0.02
        # of the transformer models, the GRU learned little in its first epochs.
        init_embedding_weights(self, std=hidden_size**-0.5)

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        length = tokens.shape[1]
        lengths = (tokens != PADDING_TOKEN).sum(dim=1)
        columns = torch.arange(length, device=tokens.device).unsqueeze(0)
        # Column j of a left-aligned row is column j + padding of the right-aligned row. The
        # modulo maps the columns past the row's end to its padding.
        padding = (length - lengths).unsqueeze(1)
        left_aligned = tokens.gather(1, (columns + padding) % length)
        states = self.input_dropout(self.item_embedding(left_aligned))
        # An empty history is read as one padding token, so that it still gets a finite state.
        packed = pack_padded_sequence(
            states, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False
        )
        outputs, _ = self.gru(packed)
        outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=length)
        right_aligned_index = ((columns - padding) % length).unsqueeze(-1).expand_as(outputs)
        return self.output_dropout(outputs.gather(1, right_aligned_index))

    def output_weight(self) -> torch.Tensor:
        return self.item_embedding.weight[1:]
