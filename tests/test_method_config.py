"""Config parsing from command-line strings and JSON, and early-stopping settings."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from clairo_bench.methods.base import ConfigError, MethodConfig, build_config
from clairo_bench.training import EarlyStopping


@dataclass(frozen=True)
class ExampleConfig(MethodConfig):
    lr: float = 0.1
    modalities: tuple[str, ...] = ("text",)
    layers: int = 2
    tied: bool = False


def test_tuple_items_are_stripped():
    config = build_config(ExampleConfig, {"modalities": "text, image"}, owner="example")
    assert config.modalities == ("text", "image")


def test_json_list_becomes_tuple():
    config = build_config(ExampleConfig, {"modalities": ["text", "image"]}, owner="example")
    assert config == ExampleConfig(modalities=("text", "image"))


def test_nan_float_is_rejected():
    with pytest.raises(ConfigError, match="nan"):
        build_config(ExampleConfig, {"lr": "nan"}, owner="example")


def test_bool_and_int_strings_parse():
    config = build_config(ExampleConfig, {"tied": "true", "layers": "4"}, owner="example")
    assert config.tied is True
    assert config.layers == 4


def test_zero_patience_is_rejected():
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping(max_epochs=3, patience=0)
