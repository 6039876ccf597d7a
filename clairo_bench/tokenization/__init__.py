"""Item tokenizers shared by the generative methods."""

from clairo_bench.tokenization.actionpiece import (
    CATEGORY_MODALITIES,
    PAIR_WEIGHT_KEYS,
    ActionPieceVocabulary,
    Merge,
)
from clairo_bench.tokenization.actionpiece_segment import ActionPieceTokenizer

__all__ = [
    "CATEGORY_MODALITIES",
    "PAIR_WEIGHT_KEYS",
    "ActionPieceTokenizer",
    "ActionPieceVocabulary",
    "Merge",
]
