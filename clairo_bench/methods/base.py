"""The `Method` interface: the only part of a recommender that the runner calls.

A method is configured from a frozen dataclass, fitted on the shared split, and asked for top-K
recommendations for batches of histories. Example of a complete method::

    @dataclass(frozen=True)
    class MostRecentConfig(MethodConfig):
        pass

    class MostRecent(Method):
        name = "most-recent"
        config_class = MostRecentConfig
        description = "Recommends the items of the history, newest first."

        def fit(self, dataset, split, context):
            self.n_items = split.n_items

        def recommend(self, histories, k):
            items = np.full((len(histories), k), -1, dtype=np.int64)
            for row, history in enumerate(histories):
                newest = list(dict.fromkeys(history[::-1].tolist()))[:k]
                items[row, : len(newest)] = newest
            return Recommendations(items=items)
"""

from __future__ import annotations

import abc
import dataclasses
import logging
import math
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from clairo_bench.data.dataset import Dataset
from clairo_bench.data.split import Split

logger = logging.getLogger(__name__)

PROFILES = ("smoke", "quick", "paper")


class ConfigError(ValueError):
    """An invalid configuration value or an unknown configuration key."""


@dataclass(frozen=True)
class MethodConfig:
    """Base class of method configurations; subclasses are frozen dataclasses.

    Field defaults are the `paper` profile unless a method documents otherwise. The class
    attribute `Method.profiles` lists the overrides of the other profiles.
    """


@dataclass
class Recommendations:
    """Output of `Method.recommend` for one batch of histories.

    Exactly one of `items` and `scores` is set.

    Attributes:
        items: (batch, k) int64 ranked item indices, best first; -1 marks an empty slot (for
            example when fewer than k valid items were generated).
        scores: (batch, n_items) float scores over the whole catalogue; higher is better.
        invalid_generations: generated candidates that mapped to no item (generative methods).
        total_generations: all generated candidates, so that the invalid rate can be reported.
    """

    items: np.ndarray | None = None
    scores: np.ndarray | None = None
    invalid_generations: int = 0
    total_generations: int = 0

    def __post_init__(self) -> None:
        if (self.items is None) == (self.scores is None):
            raise ValueError("Recommendations needs exactly one of `items` and `scores`.")


@dataclass
class RunContext:
    """What the runner gives a method while it fits.

    Attributes:
        seed: random seed of the job; the runner has already seeded Python, NumPy and torch.
        profile: "smoke", "quick" or "paper".
        device: torch device string ("cpu", "cuda", "cuda:0").
        work_dir: the method's private folder inside the run directory (checkpoints, artifacts);
            it survives interruptions, so a method resumes from what it finds there.
        cache_dir: shared cache for artifacts reused across runs (features, vocabularies); keys
            must include every input and setting that shaped an artifact.
        validate: scores the method on the validation pairs with the shared evaluator and returns
            metrics such as {"ndcg@10": ...}; methods use it for early stopping.
        log_epoch: appends one record (epoch, loss, validation metrics, ...) to the training log.
        records: free-form facts the method wants saved with the run (vocabulary statistics,
            which codes it used, departures from the published method); values must be JSON-serializable.
        progress: optional callback (description, completed, total) for long steps.
        final_validation: a method whose fitted state is exactly the state that one `validate`
            call scored (for example the restored best epoch) sets this to the dict that call
            returned. The runner then reports those metrics instead of scoring every validation
            user again. Validation and test hold one pair per user, so this saves about half of
            a generative method's decoding time after training.
            The runner accepts only a dict that its own `validate` returned in this process, so
            metrics of a validation subset or of a checkpoint from an earlier process are
            never reused.
    """

    seed: int
    profile: str
    device: str
    work_dir: Path
    cache_dir: Path
    validate: Callable[["Method"], dict[str, float]]
    log_epoch: Callable[[dict[str, Any]], None]
    records: dict[str, Any] = field(default_factory=dict)
    progress: Callable[[str, int, int], None] | None = None
    final_validation: dict[str, float] | None = None


class Method(abc.ABC):
    """A recommender that the harness can fit and score.

    Subclasses set `name`, `config_class` and `description`, and may set `profiles`, a mapping
    from profile name to field overrides of `config_class`.
    """

    name: ClassVar[str]
    config_class: ClassVar[type[MethodConfig]] = MethodConfig
    description: ClassVar[str] = ""
    profiles: ClassVar[Mapping[str, Mapping[str, Any]]] = {}

    def __init__(self, config: MethodConfig | None = None) -> None:
        if config is None:
            config = self.config_class()
        if not isinstance(config, self.config_class):
            raise ConfigError(
                f"Method {self.name!r} expects a {self.config_class.__name__}, "
                f"got {type(config).__name__}."
            )
        self.config = config

    @classmethod
    def resolve_config(
        cls, profile: str = "paper", overrides: Mapping[str, Any] | None = None
    ) -> MethodConfig:
        """Build the config of `profile` with `overrides` applied; string values are parsed."""
        if profile not in PROFILES:
            raise ConfigError(f"Unknown profile {profile!r}. Available: {', '.join(PROFILES)}.")
        values: dict[str, Any] = dict(cls.profiles.get(profile, {}))
        values.update(overrides or {})
        return build_config(cls.config_class, values, owner=cls.name)

    @abc.abstractmethod
    def fit(self, dataset: Dataset, split: Split, context: RunContext) -> None:
        """Train on `split` (training sequences; validation pairs through `context.validate`).

        The runner passes a `dataset` whose sequences hold only their training part (see
        `clairo_bench.data.split.training_view`); items, codes and metadata are complete.
        """

    @abc.abstractmethod
    def recommend(self, histories: Sequence[np.ndarray], k: int) -> Recommendations:
        """Rank items for each history (item indices, oldest first); return at least k items."""

    def save(self, directory: Path) -> None:
        """Store what `load` needs to recommend without refitting. Optional."""
        raise NotImplementedError(f"Method {self.name!r} cannot be saved for later use.")

    def load(self, directory: Path, dataset: Dataset, split: Split) -> None:
        """Restore a method stored by `save`. Optional."""
        raise NotImplementedError(
            f"Method {self.name!r} cannot be loaded from a run: it implements no save(directory) "
            "and load(directory, dataset, split); see docs/adding-a-method.md."
        )


def read_saved_description(directory: Path, method_name: str, version: int) -> dict[str, Any]:
    """Read `model.json` written by a method's `save` and check which method and format wrote it."""
    import json

    description_path = Path(directory) / "model.json"
    if not description_path.exists():
        raise FileNotFoundError(
            f"{description_path} not found; pass the model folder written by {method_name}.save()."
        )
    description: dict[str, Any] = json.loads(description_path.read_text())
    saved_by = (description.get("method"), description.get("version"))
    if saved_by != (method_name, version):
        raise ConfigError(
            f"{description_path} was saved by method {saved_by[0]!r} (format version "
            f"{saved_by[1]}), expected {method_name!r} (format version {version}); "
            "load it with the method that saved it."
        )
    return description


def build_config(
    config_class: type[MethodConfig], values: Mapping[str, Any], owner: str
) -> MethodConfig:
    """Instantiate `config_class` from `values`, rejecting unknown keys and parsing strings."""
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(
            f"Unknown setting(s) {', '.join(unknown)} for {owner!r}. "
            f"Available: {', '.join(sorted(fields)) or 'none'}."
        )
    hints = typing.get_type_hints(config_class)
    parsed = {key: parse_value(value, hints[key], f"{owner}.{key}") for key, value in values.items()}
    try:
        return config_class(**parsed)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"Invalid setting for {owner!r}: {error}") from error


def parse_value(value: Any, annotation: Any, key: str) -> Any:
    """Convert a command-line string to the type a config field declares."""
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if isinstance(value, list) and origin is tuple:
        return tuple(value)  # JSON turns tuples into lists; the config field wants a tuple
    if not isinstance(value, str):
        return value
    value = value.strip()
    if origin in (typing.Union, types.UnionType):
        if value.lower() in ("none", "null") and type(None) in arguments:
            return None
        for candidate in arguments:
            if candidate is type(None):
                continue
            try:
                return parse_value(value, candidate, key)
            except ConfigError:
                continue
        raise ConfigError(f"Invalid value {value!r} for {key}: expected {annotation}.")
    if origin is typing.Literal:
        if value not in arguments:
            raise ConfigError(
                f"Invalid value {value!r} for {key}. Allowed: {', '.join(map(str, arguments))}."
            )
        return value
    if origin in (tuple, list):
        items = [item for item in value.split(",") if item.strip()]
        item_type = arguments[0] if arguments else str
        parsed = [parse_value(item, item_type, key) for item in items]
        return tuple(parsed) if origin is tuple else parsed
    try:
        if annotation is bool:
            lowered = value.lower()
            if lowered in ("true", "1", "yes"):
                return True
            if lowered in ("false", "0", "no"):
                return False
            raise ValueError(value)
        if annotation is float:
            number = float(value)
            if not math.isfinite(number):
                raise ValueError(value)
            return number
        if annotation in (int, str):
            return annotation(value)
    except ValueError as error:
        raise ConfigError(
            f"Invalid value {value!r} for {key}: expected {annotation.__name__}."
        ) from error
    return value
