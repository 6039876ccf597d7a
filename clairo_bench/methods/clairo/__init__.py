"""CLAIRO: ActionPiece tokenization over multimodal item features.

CLAIRO extends ActionPiece (Hou et al., ICML 2025) with item images:
- Sentence-T5 text embeddings and CLIP ViT-L/14 image embeddings are each reduced by PCA to 384
  dimensions and concatenated to a 768-d vector;
- FAISS OPQ turns that vector into discrete codes. No PCA follows the concatenation by default,
  because the CLAIRO paper reports that one costs 37-42%;
- a de-duplication feature keeps items distinct;
- ActionPiece's merge rules build the vocabulary over each item's multimodal feature set.
The T5 model, SPR training and inference are ActionPiece's (the `ActionPiece` class).

Layouts:
- "fused": one OPQ on the 768-d fused vector; needs item content or embedding files.
- "per_modality": text codes and image codes as separate categories of one feature set. Datasets
  that ship precomputed text and image codes instead of embeddings always use this layout, and
  the run records note it.

Ablation variants, each a registered method: `clairo-text-only`, `clairo-image-only` and
`clairo-final-pca`. Each fixes one setting and records the change in `records["ablation"]`.
`clairo-final-pca` raises ConfigError on datasets that ship only codes, because a PCA of
embeddings that do not exist cannot be applied, and a run equal to `clairo` would be mislabelled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from clairo_bench.features import ItemFeatureSet
from clairo_bench.features.settings import CONTENT_MODALITIES, LAYOUTS
from clairo_bench.methods.actionpiece import ActionPiece, ActionPieceConfig
from clairo_bench.methods.actionpiece.item_features import FeatureRequest
from clairo_bench.methods.base import ConfigError

# NOTE: the final PCA size of the CLAIRO ablation is not known here; 128 is the PCA size of
# ActionPiece's own text features.
FINAL_PCA_DIM = 128
"""Final PCA size of `clairo-final-pca`."""


@dataclass(frozen=True)
class ClairoConfig(ActionPieceConfig):
    """Settings of CLAIRO: ActionPiece's plus the multimodal feature recipe.

    Attributes:
        layout: "fused" (one OPQ on the concatenated vector) or "per_modality".
        modalities: content modalities in category order, a non-empty subset of
            ("text", "image").
        text_pca_dim, image_pca_dim: PCA dimension per modality before fusion.
        pca_whiten: scale PCA components to unit variance.
        final_pca_dim: PCA dimension after fusion (fused layout only); None skips it.
        text_text_weight, image_image_weight, text_image_weight: multipliers of the
            co-occurrence weight of token pairs by the modalities of their two tokens, applied
            when the vocabulary is built; 1.0 leaves ActionPiece's weights unchanged.
    """

    layout: str = "fused"
    modalities: tuple[str, ...] = ("text", "image")
    text_pca_dim: int | None = 384
    image_pca_dim: int | None = 384
    pca_whiten: bool = False
    final_pca_dim: int | None = None
    text_text_weight: float = 1.0
    image_image_weight: float = 1.0
    text_image_weight: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.modalities, str):
            object.__setattr__(self, "modalities", tuple(self.modalities))
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}.")
        if isinstance(self.modalities, str) or not self.modalities:
            raise ValueError(f"modalities must be a non-empty tuple, got {self.modalities!r}.")
        for modality in self.modalities:
            if modality not in CONTENT_MODALITIES:
                raise ValueError(
                    f"Unknown modality {modality!r} in modalities; "
                    f"use {', '.join(CONTENT_MODALITIES)}."
                )
        if len(set(self.modalities)) != len(self.modalities):
            raise ValueError(f"modalities contains duplicates: {self.modalities!r}.")
        for name in ("text_text_weight", "image_image_weight", "text_image_weight"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}.")


@dataclass(frozen=True)
class ClairoTextOnlyConfig(ClairoConfig):
    modalities: tuple[str, ...] = ("text",)


@dataclass(frozen=True)
class ClairoImageOnlyConfig(ClairoConfig):
    modalities: tuple[str, ...] = ("image",)


@dataclass(frozen=True)
class ClairoFinalPCAConfig(ClairoConfig):
    final_pca_dim: int | None = FINAL_PCA_DIM


class Clairo(ActionPiece):
    name = "clairo"
    config_class = ClairoConfig
    description = (
        "CLAIRO: ActionPiece's vocabulary, T5 and inference over fused text and image codes "
        "(Sentence-T5 and CLIP embeddings, PCA, OPQ)."
    )

    ablation: ClassVar[dict[str, Any]] = {}
    """Settings a variant fixes, with their values; empty for `clairo` itself."""

    config: ClairoConfig

    def __init__(self, config: ClairoConfig | None = None) -> None:
        super().__init__(config)
        for key, value in self.ablation.items():
            if getattr(self.config, key) != value:
                raise ConfigError(
                    f"{self.name} fixes {key}={value!r}, got {getattr(self.config, key)!r}; "
                    f"run `clairo` with {key} set to change it."
                )

    def feature_request(self) -> FeatureRequest:
        config = self.config
        return FeatureRequest(
            source=config.feature_source,
            modalities=tuple(config.modalities),
            layout=config.layout,
            settings={
                "text_pca_dim": config.text_pca_dim,
                "image_pca_dim": config.image_pca_dim,
                "pca_whiten": config.pca_whiten,
                "final_pca_dim": config.final_pca_dim,
                "opq_subquantizers": config.opq_subquantizers,
                "opq_bits": config.opq_bits,
            },
            overrides=config.feature_settings,
            requires_content=(
                f"final_pca_dim={config.final_pca_dim} (a PCA of the fused embedding)"
                if config.final_pca_dim is not None else None
            ),
        )

    def pair_weights(self) -> dict[str, float]:
        config = self.config
        return {
            "text-text": config.text_text_weight,
            "image-image": config.image_image_weight,
            "text-image": config.text_image_weight,
        }

    def statistics_notes(self, features: ItemFeatureSet) -> dict[str, Any]:
        if {"text", "image"} <= set(features.category_modalities):
            return {}
        return {
            "modality_note": (
                "No text-only, image-only or cross-modal shares: the feature categories are "
                f"{sorted(set(features.category_modalities))}, so no token can span text and "
                "image categories. Fused codes mix both modalities inside every code."
            )
        }

    def extra_records(self) -> dict[str, Any]:
        if not self.ablation:
            return {}
        reference = ClairoConfig()
        return {
            "ablation": {
                "variant_of": Clairo.name,
                "changed": {
                    key: {Clairo.name: _json_value(getattr(reference, key)),
                          self.name: _json_value(value)}
                    for key, value in self.ablation.items()
                },
            }
        }


class ClairoTextOnly(Clairo):
    name = "clairo-text-only"
    config_class = ClairoTextOnlyConfig
    description = "CLAIRO ablation: text features only (no image codes)."
    ablation = {"modalities": ("text",)}


class ClairoImageOnly(Clairo):
    name = "clairo-image-only"
    config_class = ClairoImageOnlyConfig
    description = "CLAIRO ablation: image features only (no text codes)."
    ablation = {"modalities": ("image",)}


class ClairoFinalPCA(Clairo):
    name = "clairo-final-pca"
    config_class = ClairoFinalPCAConfig
    description = (
        f"CLAIRO ablation: PCA to {FINAL_PCA_DIM} dimensions after fusion, before OPQ; needs "
        "item embeddings."
    )
    ablation = {"final_pca_dim": FINAL_PCA_DIM}


def _json_value(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


__all__ = [
    "Clairo",
    "ClairoConfig",
    "ClairoFinalPCA",
    "ClairoImageOnly",
    "ClairoTextOnly",
]
