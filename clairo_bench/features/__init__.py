"""Discrete item features: content embeddings, PCA, fusion, OPQ codes and de-duplication.

Importing this package does not import torch or the encoder libraries; they load when an encoder
is first needed.
"""

from clairo_bench.features.codes import ItemFeatureSet, deduplicate, features_from_dataset_codes
from clairo_bench.features.encoders import MissingWeightsError
from clairo_bench.features.pipeline import build_item_features, resolve_source
from clairo_bench.features.settings import FeatureSettings, ProgressCallback, apply_overrides

__all__ = [
    "FeatureSettings",
    "ItemFeatureSet",
    "MissingWeightsError",
    "ProgressCallback",
    "apply_overrides",
    "build_item_features",
    "deduplicate",
    "features_from_dataset_codes",
    "resolve_source",
]
