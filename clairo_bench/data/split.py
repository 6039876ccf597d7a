"""The one leave-one-out split that every method trains and is scored on.

For a user with chronological sequence s of length n:
- test: history s[:n-1], target s[n-1];
- validation: history s[:n-2], target s[n-2];
- training: the sequence s[:n-2], from which methods draw (prefix, next item) pairs.
Histories are capped at the `max_history_items` most recent items. Users with fewer than three
interactions cannot give all three parts; they are dropped, counted and logged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import dataclasses
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from clairo_bench.io import atomic_write_npz
from clairo_bench.data.dataset import DataError, Dataset
from clairo_bench.data.store import CACHE_READ_ERRORS

logger = logging.getLogger(__name__)

SPLIT_FORMAT_VERSION = 1
MIN_SEQUENCE_LENGTH = 3


@dataclass(frozen=True)
class SplitSettings:
    """Settings that shape the split; all of them enter its cache key."""

    max_history_items: int = 20

    def __post_init__(self) -> None:
        if self.max_history_items < 1:
            raise ValueError(
                f"max_history_items must be at least 1, got {self.max_history_items}."
            )


@dataclass(frozen=True)
class EvalPairs:
    """Histories and their single targets for one evaluation stage.

    Attributes:
        users: user index of each pair.
        histories: item indices before the target, oldest first, at most max_history_items long.
        targets: the held-out item index of each pair.
    """

    users: np.ndarray
    histories: list[np.ndarray]
    targets: np.ndarray

    def __len__(self) -> int:
        return len(self.targets)


@dataclass(frozen=True)
class Split:
    """Leave-one-out split of one dataset.

    Attributes:
        dataset_name: name of the dataset it was built from.
        dataset_hash: `Dataset.content_hash()` of that dataset.
        settings: the settings it was built with.
        n_items: catalogue size; item indices are 0..n_items-1.
        train_users: user index of each training sequence.
        train_sequences: each user's training part (all but the last two items), uncapped.
        valid: validation pairs (second-last item as target).
        test: test pairs (last item as target).
        dropped_users: users left out because their sequence was shorter than three items.
    """

    dataset_name: str
    dataset_hash: str
    settings: SplitSettings
    n_items: int
    train_users: np.ndarray
    train_sequences: list[np.ndarray]
    valid: EvalPairs
    test: EvalPairs
    dropped_users: int

    @property
    def key(self) -> str:
        """Identify the split: equal keys mean identical data and split settings."""
        return split_key(self.dataset_name, self.dataset_hash, self.settings)

    def train_pairs(self) -> tuple[list[np.ndarray], np.ndarray]:
        """Expand training sequences into (capped prefix, next item) pairs, one per position >= 1."""
        cap = self.settings.max_history_items
        histories: list[np.ndarray] = []
        targets: list[int] = []
        for sequence in self.train_sequences:
            for position in range(1, len(sequence)):
                histories.append(sequence[max(0, position - cap) : position])
                targets.append(int(sequence[position]))
        return histories, np.asarray(targets, dtype=np.int64)

    def item_popularity(self) -> np.ndarray:
        """Count each item's occurrences in the training sequences."""
        counts = np.zeros(self.n_items, dtype=np.int64)
        for sequence in self.train_sequences:
            np.add.at(counts, sequence, 1)
        return counts

    def train_items(self) -> np.ndarray:
        """Return the sorted item indices that occur in at least one training sequence."""
        return np.flatnonzero(self.item_popularity() > 0)

    def save(self, path: Path) -> None:
        """Write the split to an .npz file (atomically)."""
        arrays: dict[str, np.ndarray] = {
            "train_users": self.train_users,
            "train_lengths": np.array([len(s) for s in self.train_sequences], dtype=np.int64),
            "train_items": _concat(self.train_sequences),
        }
        for stage in ("valid", "test"):
            pairs: EvalPairs = getattr(self, stage)
            arrays[f"{stage}_users"] = pairs.users
            arrays[f"{stage}_targets"] = pairs.targets
            arrays[f"{stage}_lengths"] = np.array([len(h) for h in pairs.histories], dtype=np.int64)
            arrays[f"{stage}_items"] = _concat(pairs.histories)
        meta = {
            "version": SPLIT_FORMAT_VERSION,
            "dataset_name": self.dataset_name,
            "dataset_hash": self.dataset_hash,
            "settings": asdict(self.settings),
            "n_items": self.n_items,
            "dropped_users": self.dropped_users,
        }
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        atomic_write_npz(path, arrays)

    @classmethod
    def load(cls, path: Path) -> "Split":
        """Read a split written by `save`."""
        with np.load(path) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            if meta.get("version") != SPLIT_FORMAT_VERSION:
                raise ValueError(
                    f"Split cache {path} has format version {meta.get('version')}, expected "
                    f"{SPLIT_FORMAT_VERSION}; delete the file so that it is rebuilt."
                )
            stages = {}
            for stage in ("valid", "test"):
                stages[stage] = EvalPairs(
                    users=data[f"{stage}_users"],
                    histories=_unconcat(data[f"{stage}_items"], data[f"{stage}_lengths"]),
                    targets=data[f"{stage}_targets"],
                )
            return cls(
                dataset_name=meta["dataset_name"],
                dataset_hash=meta["dataset_hash"],
                settings=SplitSettings(**meta["settings"]),
                n_items=meta["n_items"],
                train_users=data["train_users"],
                train_sequences=_unconcat(data["train_items"], data["train_lengths"]),
                valid=stages["valid"],
                test=stages["test"],
                dropped_users=meta["dropped_users"],
            )


def split_key(dataset_name: str, dataset_hash: str, settings: SplitSettings) -> str:
    """Hash everything that shapes a split into its cache key."""
    payload = json.dumps(
        {
            "dataset": dataset_name,
            "dataset_hash": dataset_hash,
            "settings": asdict(settings),
            "version": SPLIT_FORMAT_VERSION,
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _concat(arrays: list[np.ndarray]) -> np.ndarray:
    if not arrays:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([np.asarray(a, dtype=np.int64) for a in arrays])


def _unconcat(flat: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    return [flat[bounds[i] : bounds[i + 1]] for i in range(len(lengths))]


def build_split(dataset: Dataset, settings: SplitSettings | None = None) -> Split:
    """Build the leave-one-out split of `dataset`."""
    settings = settings or SplitSettings()
    cap = settings.max_history_items
    train_users, train_sequences = [], []
    stage_users: dict[str, list[int]] = {"valid": [], "test": []}
    stage_histories: dict[str, list[np.ndarray]] = {"valid": [], "test": []}
    stage_targets: dict[str, list[int]] = {"valid": [], "test": []}
    dropped = 0
    for user, sequence in enumerate(dataset.sequences):
        sequence = np.asarray(sequence, dtype=np.int64)
        n = len(sequence)
        if n < MIN_SEQUENCE_LENGTH:
            dropped += 1
            continue
        train_users.append(user)
        train_sequences.append(sequence[: n - 2])
        for stage, target_position in (("valid", n - 2), ("test", n - 1)):
            stage_users[stage].append(user)
            stage_histories[stage].append(sequence[max(0, target_position - cap) : target_position])
            stage_targets[stage].append(int(sequence[target_position]))
    if dropped:
        logger.warning(
            "Dataset %s: dropped %d of %d users with fewer than %d interactions "
            "(leave-one-out needs a training, a validation and a test item).",
            dataset.name, dropped, dataset.n_users, MIN_SEQUENCE_LENGTH,
        )
    if not train_users:
        users = f"all {dataset.n_users} users have fewer" if dataset.n_users else "it has no users"
        raise DataError(
            f"Dataset {dataset.name!r} has no user with at least {MIN_SEQUENCE_LENGTH} "
            f"interactions ({users}), so no leave-one-out split can be built. For the raw "
            f"source, set k_core to {MIN_SEQUENCE_LENGTH} or more in [processing] of its card; "
            "for a released source, check that the interaction file is complete."
        )

    def pairs(stage: str) -> EvalPairs:
        return EvalPairs(
            users=np.asarray(stage_users[stage], dtype=np.int64),
            histories=stage_histories[stage],
            targets=np.asarray(stage_targets[stage], dtype=np.int64),
        )

    return Split(
        dataset_name=dataset.name,
        dataset_hash=dataset.content_hash(),
        settings=settings,
        n_items=dataset.n_items,
        train_users=np.asarray(train_users, dtype=np.int64),
        train_sequences=train_sequences,
        valid=pairs("valid"),
        test=pairs("test"),
        dropped_users=dropped,
    )


def training_view(dataset: Dataset, split: Split) -> Dataset:
    """Return `dataset` with every sequence cut to its training part.

    The runner passes this view to `Method.fit`, so a method cannot read the validation or test
    targets through `dataset.sequences`. Users that the split dropped get empty sequences.
    Items, codes and metadata are shared, not copied.
    """
    if dataset.content_hash() != split.dataset_hash:
        raise DataError(
            f"The split of {split.dataset_name!r} was built from data with hash "
            f"{split.dataset_hash}, not {dataset.content_hash()}; rebuild the split."
        )
    sequences = [np.asarray(sequence, dtype=np.int64)[:0] for sequence in dataset.sequences]
    for user, sequence in zip(split.train_users.tolist(), split.train_sequences):
        sequences[user] = sequence
    return dataclasses.replace(dataset, sequences=sequences)


def load_or_build_split(dataset: Dataset, settings: SplitSettings, cache_dir: Path) -> Split:
    """Return the cached split for (dataset content, settings), building it on a miss."""
    key = split_key(dataset.name, dataset.content_hash(), settings)
    path = Path(cache_dir) / "splits" / f"{dataset.name}-{key}.npz"
    if path.exists():
        try:
            cached = Split.load(path)
        except CACHE_READ_ERRORS as error:
            logger.warning(
                "Split cache file %s is unreadable (%s: %s); rebuilding it.",
                path, type(error).__name__, error,
            )
        else:
            logger.info("Split cache hit: %s", path)
            return cached
    split = build_split(dataset, settings)
    split.save(path)
    logger.info("Split built and cached: %s", path)
    return split
