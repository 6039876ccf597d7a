"""Embedding stages: item text and images (or precomputed embedding files) to dense vectors.

Each stage returns (n_items, dimension) float32 vectors aligned to item indices and a `present`
mask. Text must be present for every item. Image vectors of items without a usable image are
zero and `present` is False there; the missing-image policy is applied downstream.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from clairo_bench.data.dataset import DataError, Dataset
from clairo_bench.features.cache import StageCache, StageResult, hash_file, hash_strings
from clairo_bench.features.encoders import (
    image_encoder_fingerprint,
    load_image_encoder,
    load_text_encoder,
    text_encoder_fingerprint,
)
from clairo_bench.features.images import download_images, find_image_file, load_image
from clairo_bench.features.precomputed import load_embeddings
from clairo_bench.features.settings import (
    SETTINGS_SYNTAX_HINT,
    FeatureSettings,
    ProgressCallback,
)

logger = logging.getLogger(__name__)


def item_texts(dataset: Dataset) -> list[str]:
    """Return `ItemMeta.text()` for each item index ("" for items without metadata).

    Raises:
        DataError: the dataset has no item metadata at all.
    """
    if dataset.item_meta is None:
        raise DataError(
            f"Dataset {dataset.name!r} has no item metadata, so text embeddings cannot be "
            "computed; set text_embeddings (with text_embedding_ids for a .npy file) to a file "
            "of precomputed embeddings, or use the dataset's codes (source=precomputed). "
            + SETTINGS_SYNTAX_HINT
        )
    texts = [meta.text() if meta is not None else "" for meta in dataset.item_meta]
    empty = sum(1 for text in texts if not text)
    if empty:
        logger.warning(
            "Dataset %s: %d of %d items have no text; they are encoded as empty strings.",
            dataset.name, empty, len(texts),
        )
    return texts


def text_embedding_stage(
    dataset: Dataset,
    settings: FeatureSettings,
    cache: StageCache,
    progress: ProgressCallback | None = None,
) -> StageResult:
    """Embed every item's text, or read the text embedding file, through the stage cache."""
    if settings.text_embeddings is not None:
        return _file_stage("embed:text", "text", dataset, settings, cache)
    texts = item_texts(dataset)
    inputs = {
        "items_and_texts": hash_strings(
            value for pair in zip(dataset.item_ids, texts) for value in pair
        ),
        "encoder": text_encoder_fingerprint(settings.text_model),
    }

    def build() -> tuple[dict[str, np.ndarray], dict]:
        encoder = load_text_encoder(settings.text_model, settings.device, settings.allow_download)
        vectors = encoder.encode(texts, settings.text_batch_size, progress)
        present = np.ones(len(texts), dtype=bool)
        return {"vectors": vectors, "present": present}, {"source": encoder.description}

    return cache.run("embed:text", inputs, build)


def image_folder(settings: FeatureSettings, cache_dir: Path) -> Path:
    """Return the folder of item images: image_dir, or `<cache_dir>/images` when it is unset."""
    return Path(settings.image_dir) if settings.image_dir else Path(cache_dir) / "images"


def image_embedding_stage(
    dataset: Dataset,
    settings: FeatureSettings,
    cache: StageCache,
    cache_dir: Path,
    progress: ProgressCallback | None = None,
) -> StageResult:
    """Download and embed every item's image, or read the image embedding file.

    The stage key hashes the content of each item's image file, so a newly downloaded or
    replaced image recomputes the embeddings.
    """
    if settings.image_embeddings is not None:
        return _file_stage("embed:image", "image", dataset, settings, cache)
    folder = image_folder(settings, cache_dir)
    metas = dataset.item_meta or [None] * dataset.n_items
    download_summary = None
    if settings.download_images:
        urls = {
            item_id: meta.image_url if meta is not None else None
            for item_id, meta in zip(dataset.item_ids, metas)
        }
        report = download_images(
            urls,
            folder,
            retries=settings.download_retries,
            timeout_s=settings.download_timeout_s,
            backoff_s=settings.download_backoff_s,
            workers=settings.download_workers,
            progress=progress,
        )
        download_summary = {
            "downloaded": report.downloaded,
            "already_present": report.already_present,
            "no_url": report.no_url,
            "failed": len(report.failed),
        }
    files = [find_image_file(folder, item_id) for item_id in dataset.item_ids]
    digests = [hash_file(path) if path is not None else "" for path in files]
    inputs = {
        "items": hash_strings(dataset.item_ids),
        "image_files": hash_strings(digests),
        "encoder": image_encoder_fingerprint(
            settings.image_backend, settings.image_model, settings.image_weights,
            settings.image_size_px,
        ),
    }

    def build() -> tuple[dict[str, np.ndarray], dict]:
        encoder = load_image_encoder(
            settings.image_backend, settings.image_model, settings.image_weights,
            settings.image_size_px, settings.device, settings.allow_download,
        )
        vectors, present, undecodable = _encode_image_files(
            files, encoder, settings.image_batch_size, progress
        )
        meta = {
            "source": encoder.description,
            "image_dir": str(folder),
            "image_files": sum(path is not None for path in files),
            "undecodable": undecodable,
            "items_without_image": int((~present).sum()),
        }
        return {"vectors": vectors, "present": present}, meta

    result = cache.run("embed:image", inputs, build)
    if download_summary is not None:
        result.meta["download"] = download_summary
    return result


def _encode_image_files(
    files: list[Path | None], encoder, batch_size: int, progress: ProgressCallback | None
) -> tuple[np.ndarray, np.ndarray, int]:
    n_items = len(files)
    vectors = np.zeros((n_items, encoder.dimension), dtype=np.float32)
    present = np.zeros(n_items, dtype=bool)
    with_file = [index for index, path in enumerate(files) if path is not None]
    undecodable = 0
    for start in range(0, len(with_file), batch_size):
        batch_indices = []
        images = []
        for index in with_file[start : start + batch_size]:
            image = load_image(files[index])
            if image is None:
                undecodable += 1
                continue
            batch_indices.append(index)
            images.append(image)
        if images:
            vectors[batch_indices] = encoder.encode(images)
            present[batch_indices] = True
        if progress is not None:
            progress("encode images", min(start + batch_size, len(with_file)), len(with_file))
    return vectors, present, undecodable


def _file_stage(
    stage: str, modality: str, dataset: Dataset, settings: FeatureSettings, cache: StageCache
) -> StageResult:
    path = Path(getattr(settings, f"{modality}_embeddings"))
    ids_setting = getattr(settings, f"{modality}_embedding_ids")
    ids_path = Path(ids_setting) if ids_setting is not None else None
    if not path.is_file():
        raise DataError(
            f"{modality}_embeddings file {path} does not exist; check the path."
        )
    inputs = {
        "file": hash_file(path),
        "ids_file": hash_file(ids_path) if ids_path is not None and ids_path.is_file() else None,
        "id_column": settings.embedding_id_column if path.suffix == ".parquet" else None,
        "items": hash_strings(dataset.item_ids),
    }

    def build() -> tuple[dict[str, np.ndarray], dict]:
        joined = load_embeddings(path, ids_path, dataset.item_ids, settings.embedding_id_column)
        if modality == "text" and joined.missing:
            absent = [dataset.item_ids[i] for i in np.flatnonzero(~joined.present)[:5]]
            raise DataError(
                f"Text embedding file {path} has no row for {joined.missing} of "
                f"{dataset.n_items} items (first: {', '.join(absent)}); every item needs a text "
                "embedding, so regenerate the file for this dataset's items."
            )
        meta = {
            "source": f"embeddings file: {path}",
            "unknown_ids": joined.unknown_ids,
            "items_without_embedding": joined.missing,
        }
        if modality == "image":
            meta["items_without_image"] = joined.missing
        return {"vectors": joined.vectors, "present": joined.present}, meta

    return cache.run(stage, inputs, build)
