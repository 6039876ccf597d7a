"""ActionPiece (Hou et al., ICML 2025): contextual action tokenization for generative recommendation."""

from clairo_bench.methods.actionpiece.config import ActionPieceConfig
from clairo_bench.methods.actionpiece.method import ActionPiece

__all__ = ["ActionPiece", "ActionPieceConfig"]
