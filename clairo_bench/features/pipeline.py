"""The item-features pipeline: embeddings -> PCA -> fusion -> optional final PCA -> OPQ -> dedup.

This follows CLAIRO's item tokenization: per-modality PCA (384 dimensions each by default),
concatenation to one fused vector, and OPQ codes, optionally one quantizer per modality. A final
PCA after fusion is available but off by default because the CLAIRO paper reports that it hurts.
Every stage goes through `StageCache`, and PCA and OPQ are fit on the split's training items only
(`Split.train_items()`), then applied to all items.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clairo_bench.data.dataset import DataError, Dataset
from clairo_bench.data.split import Split
from clairo_bench.features.cache import StageCache, StageResult, hash_array, hash_strings
from clairo_bench.features.codes import (
    ItemFeatureSet,
    assemble_features,
    features_from_dataset_codes,
)
from clairo_bench.features.embeddings import (
    image_embedding_stage,
    image_folder,
    text_embedding_stage,
)
from clairo_bench.features.quantize import faiss_gpu_available, fit_pca, resolve_opq_bits, train_opq
from clairo_bench.features.settings import FeatureSettings, ProgressCallback
from clairo_bench.io import atomic_write_text

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingItems:
    """Item indices that PCA and OPQ are fit on, with their hash for cache keys."""

    items: np.ndarray
    key: str


def resolve_source(dataset: Dataset, settings: FeatureSettings) -> tuple[str, str]:
    """Decide between the dataset's shipped codes and content; return (choice, reason).

    Raises:
        DataError: source is "precomputed" but the dataset lacks codes for a modality.
    """
    missing = [m for m in settings.modalities if m not in dataset.codes]
    if settings.source == "content":
        return "content", "source=content"
    if settings.source == "precomputed":
        if missing:
            available = ", ".join(sorted(dataset.codes)) or "none"
            raise DataError(
                f"source=precomputed, but dataset {dataset.name!r} ships no "
                f"{', '.join(missing)} codes (available: {available}); use source=content or "
                "source=auto."
            )
        return "precomputed", "source=precomputed"
    if missing:
        return "content", f"source=auto and the dataset ships no {', '.join(missing)} codes"
    return "precomputed", "source=auto and the dataset ships codes for every modality"


def build_item_features(
    dataset: Dataset,
    split: Split,
    settings: FeatureSettings,
    cache_dir: Path,
    progress: ProgressCallback | None = None,
) -> ItemFeatureSet:
    """Build (or read from the cache) the discrete features of every item.

    Args:
        dataset: the items; features are aligned to its item indices.
        split: its training items are the only ones PCA and OPQ are fit on.
        settings: every setting that shapes the features.
        cache_dir: cache folder; stage outputs go to `<cache_dir>/features/`, downloaded images
            to `<cache_dir>/images/` unless settings.image_dir names another folder.
        progress: called with (task, done, total) while stages run.

    Raises:
        DataError: the split belongs to other data, or the input data is unusable.
        MissingWeightsError: encoder weights are missing and cannot be downloaded.
        ValueError: a setting does not fit the data (for example too few training items).
    """
    if split.n_items != dataset.n_items or split.dataset_name != dataset.name:
        raise DataError(
            f"Split of dataset {split.dataset_name!r} with {split.n_items} items does not belong "
            f"to dataset {dataset.name!r} with {dataset.n_items} items; build the split from "
            "this dataset."
        )
    choice, reason = resolve_source(dataset, settings)
    logger.info("Item features of %s: %s (%s).", dataset.name, choice, reason)
    if choice == "precomputed":
        features = features_from_dataset_codes(dataset, settings.modalities)
        provenance = dict(features.provenance, source_choice=f"precomputed ({reason})")
        return dataclasses.replace(features, provenance=provenance)
    return _build_from_content(dataset, split, settings, Path(cache_dir), progress, reason)


def _build_from_content(
    dataset: Dataset,
    split: Split,
    settings: FeatureSettings,
    cache_dir: Path,
    progress: ProgressCallback | None,
    reason: str,
) -> ItemFeatureSet:
    cache = StageCache(cache_dir)
    training = TrainingItems(split.train_items(), hash_array(split.train_items()))
    modalities = settings.content_modalities()

    embedded: dict[str, StageResult] = {}
    if "text" in modalities:
        text = text_embedding_stage(dataset, settings, cache, progress)
        embedded["text"] = _report(progress, text)
    if "image" in modalities:
        images = image_embedding_stage(dataset, settings, cache, cache_dir, progress)
        embedded["image"] = _report(progress, images)
        _check_missing_images(dataset, settings, images, cache_dir)

    reduced: dict[str, StageResult] = {}
    for modality in modalities:
        stage = _pca_stage(modality, embedded[modality], training, settings, cache)
        reduced[modality] = _report(progress, stage)

    quantized: list[tuple[str, StageResult]] = []
    if settings.layout == "fused":
        fused = _report(progress, _fuse_stage([reduced[m] for m in modalities], cache))
        if settings.final_pca_dim is not None:
            fused = _report(progress, _final_pca_stage(fused, training, settings, cache))
        stage = _opq_stage("fused", fused, training, settings, cache)
        quantized.append(("fused", _report(progress, stage)))
    else:
        for modality in modalities:
            stage = _opq_stage(modality, reduced[modality], training, settings, cache)
            quantized.append((modality, _report(progress, stage)))

    provenance = _content_provenance(
        dataset, settings, embedded, quantized, reason, len(training.items)
    )
    features = _report(progress, _dedup_stage(dataset, quantized, provenance, cache))
    provenance["stages"] = list(cache.records)
    provenance["cache_hits"] = sum(record["cache_hit"] for record in cache.records)
    return ItemFeatureSet(
        features=features.arrays["features"].astype(np.int64),
        category_modalities=tuple(features.meta["category_modalities"]),
        codebook_sizes=tuple(int(size) for size in features.meta["codebook_sizes"]),
        collision_rate=float(features.meta["collision_rate"]),
        provenance=provenance,
    )


def _report(progress: ProgressCallback | None, result: StageResult) -> StageResult:
    if progress is not None:
        progress(f"stage {result.stage}", 1, 1)
    return result


def _check_missing_images(
    dataset: Dataset, settings: FeatureSettings, images: StageResult, cache_dir: Path
) -> None:
    present = images.arrays["present"]
    absent = np.flatnonzero(~present)
    if len(absent) == dataset.n_items and dataset.n_items:
        if settings.image_embeddings is not None:
            raise DataError(
                f"None of the {dataset.n_items} items of dataset {dataset.name!r} has a row in "
                f"the image embedding file {settings.image_embeddings}; its identifiers must be "
                f"this dataset's item ids, such as {dataset.item_ids[0]!r}. Fix the file or its "
                "id list, or leave images out with modalities=text."
            )
        raise DataError(
            f"None of the {dataset.n_items} items of dataset {dataset.name!r} has a usable image "
            f"({images.meta.get('source')}, image folder {image_folder(settings, cache_dir)}). "
            "Check image_dir, download_images and the network, or leave images out with "
            "modalities=text."
        )
    if len(absent):
        logger.warning(
            "%d of %d items have no usable image; missing_image_policy=%s.",
            len(absent), dataset.n_items, settings.missing_image_policy,
        )
    if settings.missing_image_policy != "drop" or not len(absent):
        return
    listing = cache_dir / "features" / f"items-without-image-{images.key}.txt"
    atomic_write_text(listing, "".join(f"{dataset.item_ids[i]}\n" for i in absent))
    first = ", ".join(dataset.item_ids[i] for i in absent[:5])
    raise DataError(
        f"{len(absent)} of {dataset.n_items} items of dataset {dataset.name!r} have no usable "
        f"image (first: {first}; full list in {listing}). missing_image_policy=drop cannot "
        "remove them here, because item indices and the split are fixed once the dataset is "
        "loaded. Remove these items when the dataset is built, or set missing_image_policy to "
        "zero or text_only."
    )


def _uses_text_only(modality: str, settings: FeatureSettings) -> bool:
    return modality == "image" and settings.missing_image_policy == "text_only"


def _pca_stage(
    modality: str,
    embedded: StageResult,
    training: TrainingItems,
    settings: FeatureSettings,
    cache: StageCache,
) -> StageResult:
    """Reduce one modality with PCA fit on training items.

    Under the text_only policy, image PCA is fit on training items with an image, and items
    without one get the zero vector (the training mean).
    """
    dimension = settings.pca_dim(modality)
    text_only = _uses_text_only(modality, settings)
    inputs = {
        "embeddings": embedded.key,
        "pca_dim": dimension,
        "whiten": settings.pca_whiten if dimension is not None else None,
        "text_only": text_only,
        "train_items": training.key,
    }

    def build() -> tuple[dict[str, np.ndarray], dict]:
        vectors = embedded.arrays["vectors"]
        present = embedded.arrays["present"]
        fit_rows = training.items[present[training.items]] if text_only else training.items
        if dimension is None:
            output = vectors.astype(np.float32, copy=True)
            if text_only:
                output[~present] = vectors[fit_rows].mean(axis=0)
            meta: dict[str, Any] = {"pca_dim": None, "fit_items": int(len(fit_rows))}
        else:
            model = fit_pca(vectors[fit_rows], dimension, settings.pca_whiten, f"{modality} PCA")
            output = model.transform(vectors)
            if text_only:
                output[~present] = 0.0
            variance_share = float(
                model.variances.sum() / max(_total_variance(vectors[fit_rows]), 1e-30)
            )
            meta = {
                "pca_dim": dimension,
                "fit_items": int(len(fit_rows)),
                "variance_kept": variance_share,
            }
        return {"vectors": output, "present": present}, meta

    return cache.run(f"pca:{modality}", inputs, build)


def _total_variance(x: np.ndarray) -> float:
    return float(np.asarray(x, dtype=np.float64).var(axis=0, ddof=1).sum()) if len(x) > 1 else 0.0


def _fuse_stage(parts: list[StageResult], cache: StageCache) -> StageResult:
    inputs = {"parts": [part.key for part in parts]}

    def build() -> tuple[dict[str, np.ndarray], dict]:
        fused = np.concatenate([part.arrays["vectors"] for part in parts], axis=1)
        present = np.ones(fused.shape[0], dtype=bool)
        return {"vectors": fused, "present": present}, {"dimension": int(fused.shape[1])}

    return cache.run("fuse", inputs, build)


def _final_pca_stage(
    fused: StageResult,
    training: TrainingItems,
    settings: FeatureSettings,
    cache: StageCache,
) -> StageResult:
    inputs = {
        "fused": fused.key,
        "pca_dim": settings.final_pca_dim,
        "whiten": settings.pca_whiten,
        "train_items": training.key,
    }

    def build() -> tuple[dict[str, np.ndarray], dict]:
        vectors = fused.arrays["vectors"]
        model = fit_pca(
            vectors[training.items], settings.final_pca_dim, settings.pca_whiten, "final PCA"
        )
        output = model.transform(vectors)
        arrays = {"vectors": output, "present": fused.arrays["present"]}
        return arrays, {"pca_dim": settings.final_pca_dim}

    return cache.run("pca:final", inputs, build)


def _opq_stage(
    label: str,
    reduced: StageResult,
    training: TrainingItems,
    settings: FeatureSettings,
    cache: StageCache,
) -> StageResult:
    """Train OPQ on training items and encode every item.

    Under the text_only policy, the image quantizer trains on training items with an image,
    and items without one get the reserved code 2**bits in every image category.
    """
    text_only = _uses_text_only(label, settings)
    inputs = {
        "vectors": reduced.key,
        "subquantizers": settings.opq_subquantizers,
        "bits": settings.opq_bits,
        "small_train_policy": settings.small_train_policy,
        "opq_iterations": settings.opq_iterations,
        "pq_iterations": settings.pq_iterations,
        "seed": settings.seed,
        "text_only": text_only,
        "train_items": training.key,
    }

    def build() -> tuple[dict[str, np.ndarray], dict]:
        vectors = reduced.arrays["vectors"]
        present = reduced.arrays["present"]
        fit_rows = training.items[present[training.items]] if text_only else training.items
        bits = resolve_opq_bits(
            len(fit_rows), settings.opq_bits, settings.small_train_policy, f"{label} OPQ"
        )

        use_gpu = settings.device != "cpu" and faiss_gpu_available()
        quantizer = train_opq(
            vectors[fit_rows],
            settings.opq_subquantizers,
            bits,
            settings.opq_iterations,
            settings.pq_iterations,
            settings.seed,
            use_gpu,
        )
        codes = quantizer.encode(vectors)

        codebook_size = 2**bits
        reserved = None
        if text_only and not present.all():
            reserved = codebook_size
            codes[~present] = reserved
            codebook_size += 1

        meta = {
            "subquantizers": settings.opq_subquantizers,
            "bits": bits,
            "codebook_size": codebook_size,
            "reserved_code_without_image": reserved,
            "fit_items": int(len(fit_rows)),
            "faiss_gpu": use_gpu,
        }
        arrays = {"codes": codes, "rotation": quantizer.rotation, "centroids": quantizer.centroids}
        return arrays, meta

    return cache.run(f"opq:{label}", inputs, build)


def _dedup_stage(
    dataset: Dataset,
    quantized: list[tuple[str, StageResult]],
    provenance: dict[str, Any],
    cache: StageCache,
) -> StageResult:
    inputs = {
        "codes": [(label, result.key) for label, result in quantized],
        "items": hash_strings(dataset.item_ids),
    }

    def build() -> tuple[dict[str, np.ndarray], dict]:
        parts = []
        for label, result in quantized:
            codes = result.arrays["codes"]
            parts.append((label, codes, [result.meta["codebook_size"]] * codes.shape[1]))
        features = assemble_features(parts, dataset.item_ids, provenance)
        meta = {
            "category_modalities": list(features.category_modalities),
            "codebook_sizes": list(features.codebook_sizes),
            "collision_rate": features.collision_rate,
        }
        return {"features": features.features}, meta

    result = cache.run("dedup", inputs, build)
    if result.cache_hit:
        logger.info("Collision rate before de-duplication: %.4f", result.meta["collision_rate"])
    return result


def _content_provenance(
    dataset: Dataset,
    settings: FeatureSettings,
    embedded: dict[str, StageResult],
    quantized: list[tuple[str, StageResult]],
    reason: str,
    n_train_items: int,
) -> dict[str, Any]:
    embedding_sources = {m: result.meta.get("source") for m, result in embedded.items()}
    pca = {m: settings.pca_dim(m) for m in embedded}
    opq = {label: dict(result.meta) for label, result in quantized}
    quantizers = ", ".join(
        f"{label} {meta['subquantizers']}x{meta['bits']} bits" for label, meta in opq.items()
    )
    description = (
        "content: "
        + "; ".join(f"{m} {source}" for m, source in embedding_sources.items())
        + f"; PCA {pca} (whiten={settings.pca_whiten}, final={settings.final_pca_dim})"
        + f"; OPQ {quantizers}"
    )
    return {
        "source": description,
        "source_kind": "content",
        "source_choice": f"content ({reason})",
        "dataset": dataset.name,
        "layout": settings.layout,
        "modalities": list(settings.content_modalities()),
        "embeddings": {modality: dict(result.meta) for modality, result in embedded.items()},
        "pca": pca,
        "final_pca_dim": settings.final_pca_dim,
        "opq": opq,
        "train_items": n_train_items,
        "missing_image_policy": settings.missing_image_policy,
        "settings": dataclasses.asdict(settings),
    }
