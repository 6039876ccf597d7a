"""Choice of the item features that ActionPiece and CLAIRO tokenize.

Precomputed codes shipped with a dataset (`Dataset.codes`) are used as they are, one block of
categories per modality, because such datasets carry no embeddings to quantize again. Otherwise
the features pipeline builds codes from item content or embedding files.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

from clairo_bench.data.dataset import Dataset
from clairo_bench.data.split import Split
from clairo_bench.features import (
    FeatureSettings,
    ItemFeatureSet,
    apply_overrides,
    build_item_features,
    resolve_source,
)
from clairo_bench.features.settings import parse_assignments
from clairo_bench.methods.base import ConfigError, RunContext

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeatureRequest:
    """Request of a method to the features pipeline.

    Attributes:
        source: "auto", "precomputed" or "content" (see `FeatureSettings.source`).
        modalities: content modalities, a subset of ("text", "image"), in category order.
        layout: "fused" or "per_modality"; only content features can be fused.
        settings: further `FeatureSettings` fields (PCA and OPQ sizes).
        overrides: "key=value" strings for any `FeatureSettings` field (embedding files, ...);
            they apply last.
        requires_content: name of the setting that only content features can honour (for example
            the final PCA), or None. With precomputed codes such a request raises ConfigError.
    """

    source: str
    modalities: tuple[str, ...]
    layout: str
    settings: dict[str, Any]
    overrides: tuple[str, ...] = ()
    requires_content: str | None = None


def feature_settings(request: FeatureRequest, device: str) -> FeatureSettings:
    """Build the `FeatureSettings` of a request; invalid values raise ConfigError."""
    try:
        settings = FeatureSettings(
            source=request.source,
            layout=request.layout,
            modalities=request.modalities,
            device=device,
            **request.settings,
        )
        return apply_overrides(settings, parse_assignments(list(request.overrides)))
    except ValueError as error:
        raise ConfigError(f"Invalid item-feature settings: {error}") from error


def resolve_item_features(
    dataset: Dataset, split: Split, request: FeatureRequest, context: RunContext
) -> tuple[ItemFeatureSet, dict[str, Any]]:
    """Build the item features of a request; return them with a record for the run.

    Raises:
        ConfigError: the request needs embeddings (`requires_content`) but the dataset only
            ships precomputed codes, or a feature setting is invalid.
    """
    precomputed_request = dataclasses.replace(request, layout="per_modality", settings={
        key: value for key, value in request.settings.items() if key != "final_pca_dim"
    })
    probe = feature_settings(precomputed_request, context.device)
    choice, reason = resolve_source(dataset, probe)
    if choice == "precomputed":
        if request.requires_content is not None:
            raise ConfigError(
                f"{request.requires_content} needs item embeddings, but dataset {dataset.name!r} "
                f"ships only precomputed {', '.join(request.modalities)} codes ({reason}). "
                "Run it on a dataset with item content or embedding files (feature_source="
                "content), or run `clairo`, which this setting would otherwise equal."
            )
        settings = probe
    else:
        settings = feature_settings(request, context.device)
    features = build_item_features(dataset, split, settings, context.cache_dir, context.progress)

    record: dict[str, Any] = {
        "source": choice,
        "source_reason": reason,
        "modalities": list(request.modalities),
        "layout_requested": request.layout,
        "layout_used": settings.layout if choice == "content" else "per_modality",
        "category_modalities": list(features.category_modalities),
        "codebook_sizes": list(features.codebook_sizes),
        "collision_rate": features.collision_rate,
        "provenance": features.provenance,
    }
    if choice == "precomputed":
        record["code_sources"] = {m: dataset.codes[m].source for m in request.modalities}
        if request.layout == "fused" and len(request.modalities) > 1:
            record["layout_note"] = (
                "The dataset ships per-modality codes and no embeddings, so the fused layout "
                "(OPQ on the concatenated embedding) cannot be built; the per-modality codes are "
                "used as separate feature categories instead."
            )
            logger.warning("Dataset %s: %s", dataset.name, record["layout_note"])
    return features, record
