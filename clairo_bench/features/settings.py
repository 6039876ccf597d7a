"""Settings of the item-features pipeline: encoders, images, PCA, OPQ and the feature source.

Defaults follow the CLAIRO recipe. Sentence-T5 text and CLIP ViT-L/14 image embeddings are each
reduced by PCA to 384 dimensions and concatenated to a 768-d fused vector, which OPQ quantizes with
sub-quantizers of 256 codes each. There is no final PCA by default, because the CLAIRO paper
reports that a PCA after fusion hurts.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, Callable, Mapping

SOURCES = ("auto", "precomputed", "content")
LAYOUTS = ("fused", "per_modality")
CONTENT_MODALITIES = ("text", "image")
IMAGE_BACKENDS = ("open_clip", "timm", "efficientnet_lite")
MISSING_IMAGE_POLICIES = ("zero", "drop", "text_only")
SMALL_TRAIN_POLICIES = ("error", "reduce_bits")
MAX_OPQ_BITS = 16

# Appended to messages that ask for a feature setting, because the syntax differs between the
# commands. The field names come from the method configs (SemanticIdConfig, ActionPieceConfig).
SETTINGS_SYNTAX_HINT = (
    "`clairo-bench features build` takes each feature setting as --set KEY=VALUE. "
    "`clairo-bench run` takes them as one comma-separated list per method, for example "
    "--set tiger.features=text_embeddings=A.npy,text_embedding_ids=A.txt; the list is called "
    "features in tiger and mql4grec and feature_settings in actionpiece and clairo."
)

ProgressCallback = Callable[[str, int, int], None]
"""Progress report: (task description, units done, units in total)."""


@dataclass(frozen=True)
class FeatureSettings:
    """Every setting that shapes the discrete item features.

    Each stage's cache key includes the settings that shape that stage's output. Batch sizes,
    download settings and the device are left out of the keys because they do not change results
    beyond floating-point noise.

    Attributes:
        source: "precomputed" uses the codes shipped with the dataset (`Dataset.codes`),
            "content" builds codes from item text and images (or precomputed embeddings), and
            "auto" uses the shipped codes when every requested modality has them, else content.
        layout: "fused" trains one OPQ on the fused vector. "per_modality" trains one OPQ per
            modality, so an item's features hold its text codes followed by its image codes.
        modalities: content modalities in fusion order, a non-empty subset of ("text", "image").
            With source "precomputed" they name the `Dataset.codes` entries to use.
        text_model: sentence-transformers model name (looked up in the local Hugging Face cache)
            or path of a local sentence-transformers model folder.
        text_embeddings: .npy or .parquet file of precomputed text embeddings; replaces the text
            encoder. Rows are joined to items by identifier.
        text_embedding_ids: item identifiers of the .npy rows, as a .txt file (one per line) or
            a .json list or {identifier: row} object. Required for .npy, unused for .parquet.
        text_batch_size: texts per encoder call.
        image_backend: "open_clip", "timm" (any timm model name) or "efficientnet_lite" (the
            `efficientnet-lite-pytorch` package).
        image_model: model name for the backend, for example "ViT-L-14" or "efficientnet-lite0".
            open_clip also accepts "local-dir:/path" and "hf-hub:org/name".
        image_weights: open_clip pretrained tag (looked up in the local cache) or checkpoint file.
            For timm and efficientnet_lite, a checkpoint file. None means random weights, which
            only serve to test the plumbing.
        image_size_px: input side length in pixels for timm and efficientnet_lite; None uses the
            model's default. open_clip models have a fixed input size.
        image_embeddings, image_embedding_ids: precomputed image embeddings, as for text. Items
            missing from the file count as items without an image.
        image_batch_size: images per encoder call.
        image_dir: folder of item images named by item identifier; None means
            `<cache_dir>/images`.
        download_images: download images that are not in `image_dir` yet from the metadata URLs.
            Transient failures are retried on every build, so set it to false on a machine
            without network access.
        download_retries: extra attempts after a failed download (timeouts, connection errors,
            HTTP 5xx, 408 and 429 only).
        download_timeout_s: timeout of one HTTP request in seconds.
        download_backoff_s: wait before the first retry in seconds, doubled on each retry.
        download_workers: parallel download threads.
        missing_image_policy: what an item without a usable image gets. "zero": a zero image
            embedding that passes through PCA and OPQ like any other. "text_only": no image
            information, so it is left out of image PCA and OPQ training. Its image block of the
            fused vector is 0 (the training mean), and in the per_modality layout its image
            codes are a reserved extra code. "drop": raise an error that lists those items,
            because items cannot be removed once item indices and the split exist. Remove them
            when the dataset is built instead.
        embedding_id_column: identifier column of .parquet embedding files.
        allow_download: let encoders download missing weights from the Hugging Face hub. Off by
            default, so missing weights fail at once instead of waiting on the network.
        device: "auto" (CUDA when available), "cpu", "cuda" or "cuda:N". Also selects faiss GPU
            training when faiss is built with GPU support.
        text_pca_dim, image_pca_dim: PCA output dimensions per modality; None keeps the raw
            embedding.
        pca_whiten: scale every PCA component to unit variance on the training items.
        final_pca_dim: PCA dimension after fusion (fused layout only); None skips it.
        opq_subquantizers: OPQ sub-quantizers M per quantizer; each gives one feature category.
        opq_bits: bits per sub-quantizer; each category has 2**opq_bits codes.
        opq_iterations: OPQ rotation iterations (faiss `OPQMatrix.niter`).
        pq_iterations: k-means iterations of the final product quantizer.
        small_train_policy: what happens when a quantizer has fewer training items than
            2**opq_bits codes: "error" raises, "reduce_bits" lowers the bits to
            floor(log2(training items)) for that quantizer and logs a warning.
        seed: seed of the k-means initialisation.
    """

    source: str = "auto"
    layout: str = "fused"
    modalities: tuple[str, ...] = CONTENT_MODALITIES

    text_model: str = "sentence-transformers/sentence-t5-base"
    text_embeddings: str | None = None
    text_embedding_ids: str | None = None
    text_batch_size: int = 64

    image_backend: str = "open_clip"
    image_model: str = "ViT-L-14"
    image_weights: str | None = "openai"
    image_size_px: int | None = None
    image_embeddings: str | None = None
    image_embedding_ids: str | None = None
    image_batch_size: int = 32
    image_dir: str | None = None
    download_images: bool = True
    download_retries: int = 3
    download_timeout_s: float = 10.0
    download_backoff_s: float = 1.0
    download_workers: int = 8
    missing_image_policy: str = "zero"

    embedding_id_column: str = "item_id"
    allow_download: bool = False
    device: str = "auto"

    text_pca_dim: int | None = 384
    image_pca_dim: int | None = 384
    pca_whiten: bool = False
    final_pca_dim: int | None = None

    opq_subquantizers: int = 4
    opq_bits: int = 8
    opq_iterations: int = 50
    pq_iterations: int = 25
    small_train_policy: str = "error"
    seed: int = 0

    def __post_init__(self) -> None:
        _check_choice("source", self.source, SOURCES)
        _check_choice("layout", self.layout, LAYOUTS)
        _check_choice("image_backend", self.image_backend, IMAGE_BACKENDS)
        _check_choice("missing_image_policy", self.missing_image_policy, MISSING_IMAGE_POLICIES)
        _check_choice("small_train_policy", self.small_train_policy, SMALL_TRAIN_POLICIES)
        self._check_modalities()

        for name in ("text_batch_size", "image_batch_size", "download_workers",
                     "opq_subquantizers", "opq_iterations", "pq_iterations"):
            _check_at_least(name, getattr(self, name), 1)
        _check_at_least("download_retries", self.download_retries, 0)
        for name in ("text_pca_dim", "image_pca_dim", "final_pca_dim", "image_size_px"):
            if getattr(self, name) is not None:
                _check_at_least(name, getattr(self, name), 1)
        if self.download_timeout_s <= 0:
            raise ValueError(
                f"download_timeout_s must be positive, got {self.download_timeout_s}."
            )
        if self.download_backoff_s < 0:
            raise ValueError(
                f"download_backoff_s must be 0 or more, got {self.download_backoff_s}."
            )

        if not 1 <= self.opq_bits <= MAX_OPQ_BITS:
            raise ValueError(
                f"opq_bits must be between 1 and {MAX_OPQ_BITS}, got {self.opq_bits}; "
                "8 bits give the usual 256 codes per sub-quantizer."
            )
        if self.final_pca_dim is not None and self.layout != "fused":
            raise ValueError(
                f"final_pca_dim={self.final_pca_dim} applies to the fused vector, but layout is "
                f"{self.layout!r}; set final_pca_dim to none or use layout=fused."
            )
        if self.image_size_px is not None and self.image_backend == "open_clip":
            raise ValueError(
                f"image_size_px={self.image_size_px} cannot be used with open_clip, whose models "
                "have a fixed input size; set image_size_px to none."
            )

        for modality in CONTENT_MODALITIES:
            embeddings = getattr(self, f"{modality}_embeddings")
            ids = getattr(self, f"{modality}_embedding_ids")
            if ids is not None and embeddings is None:
                raise ValueError(
                    f"{modality}_embedding_ids={ids!r} is set without {modality}_embeddings; "
                    f"set {modality}_embeddings to the .npy file those identifiers describe. "
                    + SETTINGS_SYNTAX_HINT
                )
            if embeddings is not None and embeddings.endswith(".npy") and ids is None:
                raise ValueError(
                    f"{modality}_embeddings={embeddings!r} is a .npy file, which stores no item "
                    f"identifiers; set {modality}_embedding_ids to a .txt or .json id list. "
                    + SETTINGS_SYNTAX_HINT
                )

        self._check_quantizer_dimensions()

    def _check_modalities(self) -> None:
        if isinstance(self.modalities, list):
            # Configs read from TOML or JSON give lists; a tuple keeps the settings hashable.
            object.__setattr__(self, "modalities", tuple(self.modalities))
        if isinstance(self.modalities, str) or not self.modalities:
            raise ValueError(
                f"modalities must be a non-empty tuple such as ('text', 'image'), "
                f"got {self.modalities!r}."
            )
        if len(set(self.modalities)) != len(self.modalities):
            raise ValueError(f"modalities contains duplicates: {self.modalities!r}.")
        allowed = CONTENT_MODALITIES
        if self.source == "precomputed":
            allowed = CONTENT_MODALITIES + ("fused",)
        for modality in self.modalities:
            if modality not in allowed:
                raise ValueError(
                    f"Unknown modality {modality!r} in modalities; use {', '.join(allowed)}."
                )

    def _check_quantizer_dimensions(self) -> None:
        """Check divisibility by the sub-quantizer count where the input dimension is known now."""
        m = self.opq_subquantizers
        if self.layout == "fused":
            if self.final_pca_dim is not None:
                known = {"final_pca_dim": self.final_pca_dim}
            else:
                dims = [self.pca_dim(modality) for modality in self.content_modalities()]
                if any(d is None for d in dims):
                    return
                known = {"fused dimension (sum of the PCA dimensions)": sum(dims)}
        else:
            known = {
                f"{modality}_pca_dim": self.pca_dim(modality)
                for modality in self.content_modalities()
                if self.pca_dim(modality) is not None
            }
        for name, dimension in known.items():
            if dimension % m:
                raise ValueError(
                    f"{name} = {dimension} is not divisible by opq_subquantizers = {m}; "
                    "OPQ splits the vector into equal sub-vectors, so change one of them."
                )

    def content_modalities(self) -> tuple[str, ...]:
        """Return the modalities that have content encoders (text, image), in fusion order."""
        return tuple(m for m in self.modalities if m in CONTENT_MODALITIES)

    def pca_dim(self, modality: str) -> int | None:
        return getattr(self, f"{modality}_pca_dim")


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"Invalid {name} {value!r}; use one of {', '.join(choices)}.")


def _check_at_least(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer of at least {minimum}, got {value!r}.")


def apply_overrides(settings: FeatureSettings, overrides: Mapping[str, str]) -> FeatureSettings:
    """Return `settings` with fields replaced by string values such as those of `--set key=value`.

    Values are converted to the field's type: "none" or "null" gives None for optional fields,
    "true"/"false" (also 1/0, yes/no) for booleans, and comma-separated lists for tuples.
    """
    hints = typing.get_type_hints(FeatureSettings)
    changes: dict[str, Any] = {}
    for key, raw in overrides.items():
        if key not in hints:
            available = ", ".join(sorted(f.name for f in dataclasses.fields(FeatureSettings)))
            raise ValueError(f"Unknown feature setting {key!r}; available settings: {available}.")
        changes[key] = _parse_value(key, raw, hints[key])
    return dataclasses.replace(settings, **changes)


def parse_assignments(assignments: list[str]) -> dict[str, str]:
    """Split "key=value" strings into a dict; raise ValueError on an item without "="."""
    parsed = {}
    for assignment in assignments:
        key, separator, value = assignment.partition("=")
        if not separator or not key.strip():
            raise ValueError(f"Invalid setting {assignment!r}; write it as key=value.")
        parsed[key.strip()] = value.strip()
    return parsed


def _parse_value(key: str, raw: str, annotation: Any) -> Any:
    arguments = typing.get_args(annotation)
    if type(None) in arguments:
        if raw.lower() in ("none", "null", ""):
            return None
        annotation = next(a for a in arguments if a is not type(None))
    origin = typing.get_origin(annotation)
    try:
        if origin is tuple:
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        if annotation is bool:
            return _parse_bool(raw)
        if annotation is int:
            return int(raw)
        if annotation is float:
            return float(raw)
    except ValueError as error:
        raise ValueError(f"Invalid value {raw!r} for setting {key}: {error}") from error
    return raw


def _parse_bool(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise ValueError("expected true or false")
