"""A small T5 encoder-decoder over a method's own token vocabulary (Hugging Face transformers).

ActionPiece, CLAIRO, MQL4GRec and TIGER all use a 4+4-layer T5 with d_model 128, d_ff 1024,
6 heads and d_kv 64 in their papers; `T5Settings` defaults to those values.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import T5Config, T5ForConditionalGeneration


@dataclass(frozen=True)
class T5Settings:
    """Size of the T5 model.

    Attributes:
        num_layers: encoder layers; the decoder has `num_decoder_layers`.
        d_model: hidden size; d_ff: feed-forward size; d_kv: size of one attention head.
        dropout_rate: dropout probability in every layer.
    """

    num_layers: int = 4
    num_decoder_layers: int = 4
    d_model: int = 128
    d_ff: int = 1024
    num_heads: int = 6
    d_kv: int = 64
    dropout_rate: float = 0.1


def build_t5(settings: T5Settings, vocab_size: int, pad_token_id: int = 0,
             eos_token_id: int = 1, decoder_start_token_id: int = 0) -> T5ForConditionalGeneration:
    """Create a randomly initialised T5 whose embeddings cover `vocab_size` token ids."""
    config = T5Config(
        vocab_size=vocab_size,
        d_model=settings.d_model,
        d_kv=settings.d_kv,
        d_ff=settings.d_ff,
        num_layers=settings.num_layers,
        num_decoder_layers=settings.num_decoder_layers,
        num_heads=settings.num_heads,
        dropout_rate=settings.dropout_rate,
        feed_forward_proj="relu",
        pad_token_id=pad_token_id,
        eos_token_id=eos_token_id,
        decoder_start_token_id=decoder_start_token_id,
        tie_word_embeddings=True,
    )
    return T5ForConditionalGeneration(config)
