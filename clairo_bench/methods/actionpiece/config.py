"""Settings of the ActionPiece method and its profiles.

Defaults are the `paper` profile of ActionPiece (Hou et al., ICML 2025), taken from the authors'
public code (GitHub hyp1231/action_piece, files genrec/default.yaml and
genrec/models/ActionPiece/config.yaml):
- model: 4+4-layer T5, d_model 128, d_ff 1024, 6 heads of 64 dimensions, dropout 0.1;
- training: AdamW with learning rate 0.003 and weight decay 0.1, cosine schedule after 10,000
  warm-up steps, batch 256, gradient norm clipped at 1.0, up to 200 epochs with patience 20 on
  validation NDCG@10;
- tokens: a 40,000-token vocabulary, 50 beams and 5 segmentations at inference;
- item text features: Sentence-T5 embeddings, PCA to 128 whitened dimensions, OPQ with 4
  sub-quantizers of 256 codes, plus one de-duplication feature.
The reproduction commands in that repository's README change the learning rate to 0.005 (Sports)
or 0.001 (Beauty, CDs) and the weight decay to 0.15 or 0.07. The defaults here are the values of
the configuration files, because no command is given for the datasets of this benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass

from clairo_bench.generative.t5 import T5Settings
from clairo_bench.methods.base import MethodConfig

FEATURE_SOURCES = ("auto", "precomputed", "content")


@dataclass(frozen=True)
class ActionPieceConfig(MethodConfig):
    """Settings of ActionPiece; CLAIRO extends them.

    Attributes:
        feature_source: "precomputed" uses the codes shipped with the dataset (`Dataset.codes`),
            "content" builds codes from item content or embedding files, and "auto" uses the
            shipped codes when every modality the method needs has them, else content.
        text_pca_dim: PCA dimension of text embeddings before OPQ (content features only).
        pca_whiten: scale PCA components to unit variance (content features only).
        opq_subquantizers: OPQ sub-quantizers, one feature category each (content features only).
        opq_bits: bits per sub-quantizer, so each category has 2**opq_bits codes.
        feature_settings: further `FeatureSettings` fields as "key=value" strings, for example
            "text_embeddings=/data/text.npy"; they apply after the fields above.
        vocab_size: target size of the ActionPiece vocabulary, initial tokens included.
        num_layers, num_decoder_layers, d_model, d_ff, num_heads, d_kv, dropout_rate: T5 size
            (see `T5Settings`).
        lr: peak learning rate of AdamW, reached after the warm-up.
        weight_decay: AdamW weight decay.
        warmup_steps: optimizer steps of linear warm-up before the cosine decay; the decay ends
            at zero after max_epochs epochs.
        batch_size: training (history, next item) pairs per optimizer step.
        length_grouping: 0 draws training batches uniformly at random (the `paper` profile).
            N > 0 sorts each random window of N batches by history length before cutting
            it into batches, so a batch needs less padding (see `SPRTrainingData`).
        max_epochs: upper bound on training epochs.
        patience: epochs without a better validation NDCG@10 before training stops.
        eval_every: validate every this many epochs.
        max_grad_norm: gradient norm clipping threshold; None disables clipping.
        num_beams: beams of the beam search per segmentation.
        inference_segmentations: random segmentations of each history decoded at inference;
            their ranked lists are fused.
        generation_batch_size: histories per beam-search call (each brings
            inference_segmentations x num_beams decoder rows).
        validation_users: validate on a fixed random subset of this many validation users during
            training (early stopping only); None uses every validation user through the runner.
    """

    feature_source: str = "auto"
    text_pca_dim: int | None = 128
    pca_whiten: bool = True
    opq_subquantizers: int = 4
    opq_bits: int = 8
    feature_settings: tuple[str, ...] = ()

    vocab_size: int = 40_000

    num_layers: int = 4
    num_decoder_layers: int = 4
    d_model: int = 128
    d_ff: int = 1024
    num_heads: int = 6
    d_kv: int = 64
    dropout_rate: float = 0.1

    lr: float = 0.003
    weight_decay: float = 0.1
    warmup_steps: int = 10_000
    batch_size: int = 256
    length_grouping: int = 0
    max_epochs: int = 200
    patience: int = 20
    eval_every: int = 1
    max_grad_norm: float | None = 1.0

    num_beams: int = 50
    inference_segmentations: int = 5
    generation_batch_size: int = 32
    validation_users: int | None = None

    def __post_init__(self) -> None:
        # A config rebuilt from JSON carries lists; tuples keep equality and hashing stable.
        object.__setattr__(self, "feature_settings", tuple(self.feature_settings))
        if self.feature_source not in FEATURE_SOURCES:
            raise ValueError(
                f"feature_source must be one of {', '.join(FEATURE_SOURCES)}, "
                f"got {self.feature_source!r}."
            )
        for name in ("vocab_size", "num_layers", "num_decoder_layers", "d_model", "d_ff",
                     "num_heads", "d_kv", "batch_size", "max_epochs", "patience", "eval_every",
                     "num_beams", "inference_segmentations", "generation_batch_size"):
            value = getattr(self, name)
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}.")
        if self.length_grouping < 0:
            raise ValueError(f"length_grouping must be 0 or more, got {self.length_grouping}.")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be 0 or more, got {self.warmup_steps}.")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}.")
        if not 0.0 <= self.dropout_rate < 1.0:
            raise ValueError(f"dropout_rate must be in [0, 1), got {self.dropout_rate}.")
        if self.validation_users is not None and self.validation_users < 1:
            raise ValueError(
                f"validation_users must be at least 1 or none, got {self.validation_users}."
            )
        for assignment in self.feature_settings:
            if "=" not in assignment:
                raise ValueError(
                    f"feature_settings entry {assignment!r} is not key=value, "
                    "for example text_embeddings=/data/text.npy."
                )

    def t5_settings(self) -> T5Settings:
        return T5Settings(
            num_layers=self.num_layers,
            num_decoder_layers=self.num_decoder_layers,
            d_model=self.d_model,
            d_ff=self.d_ff,
            num_heads=self.num_heads,
            d_kv=self.d_kv,
            dropout_rate=self.dropout_rate,
        )


# The quick profile targets Instruments (17,112 users, 84,890 training pairs) on 2 CPU cores,
# every validation and test user included in the final evaluations. Measured with one torch
# thread while another process shared the cores, a step of 256 length-grouped pairs takes
# 0.27 s for ActionPiece (0.83 s without grouping). CLAIRO's items carry twice the features,
# so its step takes 0.70 s (3.05 s without grouping). Inference scores 140 (ActionPiece) and
# 77 (CLAIRO) histories per second. An exploratory run without grouping reached the validation
# NDCG@10 of Pop (0.044) after 2 epochs and 0.055 after 5, so 6 epochs are planned.
QUICK_PROFILE = {
    "vocab_size": 4_000,
    "num_layers": 2,
    "num_decoder_layers": 2,
    "d_model": 64,
    "d_ff": 256,
    "num_heads": 4,
    "d_kv": 16,
    "lr": 0.005,
    "warmup_steps": 100,
    "length_grouping": 50,
    "max_epochs": 6,
    "patience": 3,
    "num_beams": 20,
    "inference_segmentations": 2,
    "generation_batch_size": 64,
    "validation_users": 500,
}

# Sized for seconds on a tiny dataset. vocab_size must be at least the number of initial tokens,
# which is 1,834 for Instruments with its shipped text and image codes plus the de-dup code.
SMOKE_PROFILE = {
    "vocab_size": 3_000,
    "num_layers": 1,
    "num_decoder_layers": 1,
    "d_model": 32,
    "d_ff": 64,
    "num_heads": 2,
    "d_kv": 16,
    "lr": 0.01,
    "warmup_steps": 10,
    "batch_size": 64,
    "max_epochs": 2,
    "patience": 1,
    "num_beams": 5,
    "inference_segmentations": 2,
    "generation_batch_size": 64,
    "validation_users": 200,
}
