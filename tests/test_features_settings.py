"""Tests of FeatureSettings defaults, validation and string overrides."""

from __future__ import annotations

import pytest

from clairo_bench.features import FeatureSettings, apply_overrides
from clairo_bench.features.settings import parse_assignments


def test_defaults_follow_clairo_recipe():
    settings = FeatureSettings()
    assert (settings.text_pca_dim, settings.image_pca_dim) == (384, 384)
    assert settings.final_pca_dim is None
    assert 2**settings.opq_bits == 256


def test_default_models():
    settings = FeatureSettings()
    assert settings.text_model == "sentence-transformers/sentence-t5-base"
    assert (settings.image_backend, settings.image_model, settings.image_weights) == (
        "open_clip", "ViT-L-14", "openai"
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"layout": "stacked"}, "Invalid layout 'stacked'"),
        ({"source": "web"}, "Invalid source 'web'"),
        ({"missing_image_policy": "skip"}, "Invalid missing_image_policy 'skip'"),
        ({"modalities": ("text", "audio")}, "Unknown modality 'audio'"),
        ({"modalities": ("text", "text")}, "duplicates"),
        ({"modalities": ()}, "non-empty"),
        ({"text_pca_dim": 0}, "text_pca_dim must be an integer of at least 1"),
        ({"opq_bits": 17}, "opq_bits must be between 1 and 16"),
        ({"layout": "per_modality", "final_pca_dim": 64}, "final_pca_dim=64 applies to the fused"),
        ({"image_size_px": 64}, "cannot be used with open_clip"),
        ({"text_embeddings": "text.npy"}, "set text_embedding_ids"),
        ({"image_embedding_ids": "ids.txt"}, "without image_embeddings"),
        ({"text_pca_dim": 5, "image_pca_dim": 5}, "fused dimension .* = 10 is not divisible by"),
        ({"download_timeout_s": 0}, "download_timeout_s must be positive"),
    ],
)
def test_invalid_settings_raise(changes, message):
    with pytest.raises(ValueError, match=message):
        FeatureSettings(**changes)


def test_per_modality_checks_each_pca_dim():
    with pytest.raises(ValueError, match="text_pca_dim = 6 is not divisible"):
        FeatureSettings(layout="per_modality", text_pca_dim=6, image_pca_dim=8)


def test_fused_modality_allowed_for_shipped_codes():
    settings = FeatureSettings(source="precomputed", modalities=("fused",))
    assert settings.modalities == ("fused",)


def test_modalities_list_becomes_tuple():
    assert FeatureSettings(modalities=["text"]).modalities == ("text",)


def test_overrides_convert_types():
    settings = apply_overrides(
        FeatureSettings(),
        {
            "text_pca_dim": "256",
            "image_pca_dim": "256",
            "pca_whiten": "true",
            "final_pca_dim": "none",
            "download_timeout_s": "2.5",
            "modalities": "text, image",
        },
    )
    assert settings.text_pca_dim == 256
    assert settings.pca_whiten is True
    assert settings.final_pca_dim is None
    assert settings.download_timeout_s == 2.5
    assert settings.modalities == ("text", "image")


def test_override_of_optional_string_to_none():
    settings = apply_overrides(FeatureSettings(), {"image_weights": "none"})
    assert settings.image_weights is None


def test_override_unknown_key_lists_settings():
    with pytest.raises(ValueError, match="Unknown feature setting 'pca_size'.*text_pca_dim"):
        apply_overrides(FeatureSettings(), {"pca_size": "3"})


def test_override_invalid_integer_names_setting():
    with pytest.raises(ValueError, match="Invalid value 'big' for setting opq_bits"):
        apply_overrides(FeatureSettings(), {"opq_bits": "big"})


def test_parse_assignments_requires_equals_sign():
    with pytest.raises(ValueError, match="write it as key=value"):
        parse_assignments(["opq_bits"])


def test_parse_assignments_keeps_equals_in_value():
    assert parse_assignments(["text_model=/models/a=b"]) == {"text_model": "/models/a=b"}
