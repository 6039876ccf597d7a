"""Use a finished run: reload its method and rank items for a new history."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clairo_bench.data.dataset import DataError, Dataset
from clairo_bench.io import DamagedFileError, read_json_file
from clairo_bench.methods.base import ConfigError, Method, build_config
from clairo_bench.methods.registry import get_method_class, register_plugin

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RankedItem:
    rank: int
    item_index: int
    item_id: str
    title: str | None


@dataclass(frozen=True)
class TrainedRun:
    """A finished run's method, reloaded with its dataset and its split's history cap."""

    method: Method
    dataset: Dataset
    max_history_items: int


def load_trained_method(run_dir: Path, cache_dir: Path) -> TrainedRun:
    """Rebuild the method of a finished run from its recorded config and saved model."""
    from clairo_bench.data.catalog import load_dataset
    from clairo_bench.data.split import SplitSettings, load_or_build_split

    run_dir = Path(run_dir)
    config_path = run_dir / "config.json"
    if not config_path.exists():
        raise FileNotFoundError(
            f"{config_path} not found; pass a run directory written by `clairo-bench run`."
        )
    if not (run_dir / "summary.json").exists():
        raise FileNotFoundError(
            f"Run {run_dir} has not finished (no summary.json); rerun the `clairo-bench run` command "
            "that started it, which resumes it from its last checkpoint."
        )
    rerun = (f"delete {run_dir / 'summary.json'} and rerun the `clairo-bench run` command that "
             "made the run: it resumes from the run's checkpoint and writes these files again")
    try:
        config = read_json_file(config_path)
        job = read_json_file(run_dir / "job.json")
        method_name = config["method"]
        method_values = config["method_config"]
        dataset_name = config["dataset"]["name"]
        dataset_hash = config["dataset"]["content_hash"]
        split_settings = build_config(SplitSettings, {"max_history_items": config["split"]["max_history_items"]},
                                      owner="split")
        plugins = list(job.get("plugins", []))
    except (DamagedFileError, FileNotFoundError) as error:
        raise DataError(f"{error}; {rerun}.") from None
    except KeyError as error:
        raise DataError(f"{config_path} is damaged: it lacks the field {error}; {rerun}.") from None
    except (TypeError, ValueError, ConfigError) as error:
        problem = str(error).rstrip(".")
        raise DataError(f"{config_path} or job.json is damaged: {problem}; {rerun}.") from None
    for reference in plugins:
        register_plugin(reference)
    method_class = get_method_class(method_name)
    try:
        method_config = build_config(method_class.config_class, method_values, owner=method_name)
    except (ConfigError, TypeError, ValueError) as error:
        problem = str(error).rstrip(".")
        raise DataError(f"{config_path} has an invalid method_config: {problem}; {rerun}.") from None

    dataset = load_dataset(dataset_name)
    if dataset.content_hash() != dataset_hash:
        raise DataError(
            f"Dataset {dataset.name!r} has changed since run {run_dir} (content hash "
            f"{dataset.content_hash()} instead of {dataset_hash}); "
            "re-run the job on the current data."
        )
    split = load_or_build_split(dataset, split_settings, cache_dir)
    method = method_class(method_config)
    try:
        method.load(run_dir / "model", dataset, split)
    except (NotImplementedError, ConfigError, DataError):
        raise
    except Exception as error:  # torch, numpy and json each raise their own types for a bad file
        raise DataError(
            f"The saved model in {run_dir / 'model'} cannot be loaded ({type(error).__name__}: "
            f"{error}); {rerun}."
        ) from error
    return TrainedRun(method, dataset, split_settings.max_history_items)


def parse_history(tokens: list[str], dataset: Dataset) -> np.ndarray:
    """Map item identifiers (ASINs, or item indices written as #N) to item indices."""
    index = dataset.item_index()
    items = []
    for token in (token.strip() for token in tokens):
        if not token:  # "A,,B" or a trailing comma
            continue
        if re.fullmatch(r"#[0-9]+", token) and int(token[1:]) < dataset.n_items:
            items.append(int(token[1:]))
        elif token in index:
            items.append(index[token])
        else:
            same_but_case = [item_id for item_id in (token.upper(), token.lower()) if item_id in index]
            if same_but_case:
                raise DataError(
                    f"Item {token!r} is not in dataset {dataset.name!r}, but {same_but_case[0]!r} "
                    "is; identifiers are case-sensitive."
                )
            if token.isdigit():
                raise DataError(
                    f"Item {token!r} is not in dataset {dataset.name!r}; write item indices with a "
                    f"hash, as #{token}."
                )
            raise DataError(
                f"Item {token!r} is not in dataset {dataset.name!r}; give identifiers such as "
                f"{dataset.item_ids[0]} or item indices #0 to #{dataset.n_items - 1}. "
                f"`clairo-bench datasets items {dataset.name} --search TEXT` lists them."
            )
    if not items:
        raise DataError(
            "The history is empty; give at least one item, for example "
            f"--history {dataset.item_ids[0]} or --history #0."
        )
    return np.asarray(items, dtype=np.int64)


def recommend_for_history(
    method: Method, dataset: Dataset, history: np.ndarray, k: int,
    max_history_items: int | None = None, exclude_history: bool = False,
) -> list[RankedItem]:
    """Rank the top-k items for one history (oldest first) with a trained method.

    Args:
        max_history_items: keep only this many most recent items, as the run's split did for
            training and evaluation; None passes the whole history.
        exclude_history: leave out every item of the (whole) history from the ranking.
    """
    model_input = history if max_history_items is None else history[-max_history_items:]
    seen = set(history.tolist()) if exclude_history else set()
    # Ask for enough items that k remain after the history is removed.
    output = method.recommend([model_input], k + len(seen))
    if output.scores is not None:
        ranking = np.argsort(-output.scores[0], kind="stable").tolist()
    else:
        ranking = [item for item in output.items[0].tolist() if 0 <= item < dataset.n_items]
    order = [item for item in ranking if item not in seen][:k]
    titles = dataset.item_meta
    return [
        RankedItem(
            rank=position + 1,
            item_index=int(item),
            item_id=dataset.item_ids[item],
            title=(titles[item].title if titles is not None and titles[item] is not None else None),
        )
        for position, item in enumerate(order)
    ]
