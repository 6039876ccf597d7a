"""Machinery shared by the ID-based sequential baselines SASRec, GRU4Rec and BERT4Rec.

Token layout: token 0 is padding and item index i is token i + 1; BERT4Rec adds a [mask] token
after the items. Input rows are left-padded, so the most recent item is always the last column.

Training data: whole training sequences, not the pairs of `Split.train_pairs()`. Each sequence is
cut backwards from its end into windows, and one forward pass per window yields a prediction at
every position. For the next-item models (SASRec, GRU4Rec) a window contains `max_length + 1` items
and consecutive windows share one item, so every position >= 1 of a training sequence is a target
exactly once, as in `train_pairs()`. The context differs only for sequences longer than
`max_length + 1`: a target then sees the items of its own window before it (1 to `max_length`
items) instead of min(position, max_length) items. BERT4Rec cuts disjoint windows of `max_length`
items and predicts the items it masks.

Losses: "ce" is the cross-entropy of a softmax over the whole catalogue at every target position;
"bce" is binary cross-entropy of the target against one negative item drawn uniformly from the
other items (the loss of the original SASRec).
"""

from __future__ import annotations

import abc
import dataclasses
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from clairo_bench.data.dataset import DataError, Dataset
from clairo_bench.data.split import Split
from clairo_bench.io import atomic_path, atomic_write_json
from clairo_bench.methods.base import (
    ConfigError,
    Method,
    MethodConfig,
    Recommendations,
    RunContext,
    build_config,
    read_saved_description,
)
from clairo_bench.training import EarlyStopping, train_with_early_stopping

logger = logging.getLogger(__name__)

PADDING_TOKEN = 0
SAVED_MODEL_VERSION = 1
LOSSES = ("ce", "bce")



@dataclass(frozen=True)
class SequentialConfig(MethodConfig):
    """Settings shared by the sequential baselines; each method overrides the defaults.

    Attributes:
        hidden_size: units of the item embeddings and hidden states.
        num_layers: stacked transformer blocks or GRU layers.
        dropout: dropout probability.
        lr: AdamW learning rate per optimizer step.
        weight_decay: decoupled weight-decay coefficient of AdamW (0 gives plain Adam).
        batch_size: training windows per optimizer step.
        max_epochs: upper bound on passes over the training windows.
        patience: epochs without improvement of validation NDCG@10 before training stops.
        max_history_items: most recent items the model reads (its input positions); None uses
            the split's `max_history_items`.
        loss: "ce" (full-softmax cross-entropy) or "bce" (one sampled negative per target).
    """

    hidden_size: int = 64
    num_layers: int = 2
    dropout: float = 0.2
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 128
    max_epochs: int = 200
    patience: int = 10
    max_history_items: int | None = None
    loss: Literal["ce", "bce"] = "ce"

    def __post_init__(self) -> None:
        for name in ("hidden_size", "num_layers", "batch_size", "max_epochs", "patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}.")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}.")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}.")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}.")
        if self.max_history_items is not None and self.max_history_items < 1:
            raise ValueError(
                f"max_history_items must be at least 1 or None, got {self.max_history_items}."
            )
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}.")


def item_tokens(items: np.ndarray, max_items: int) -> np.ndarray:
    """Convert the last `max_items` item indices of a history to tokens (index + 1)."""
    items = np.asarray(items, dtype=np.int64)
    if max_items <= 0:
        return items[:0] + 1
    return items[-max_items:] + 1


def pad_left(rows: Sequence[np.ndarray], length: int | None = None) -> torch.Tensor:
    """Stack token rows into a (batch, length) int64 tensor, right-aligned, 0 on the left.

    `length` defaults to the longest row; longer rows keep their last `length` tokens.
    """
    if length is None:
        length = max((len(row) for row in rows), default=0)
    length = max(length, 1)
    batch = np.zeros((len(rows), length), dtype=np.int64)
    for index, row in enumerate(rows):
        row = row[-length:]
        if len(row):
            batch[index, length - len(row) :] = row
    return torch.from_numpy(batch)


def position_ids(tokens: torch.Tensor, max_length: int) -> torch.Tensor:
    """Number input columns so that the last column is always position `max_length - 1`.

    Rows are right-aligned, so a batch padded to fewer than `max_length` columns gets the same
    positions as if it had been padded to `max_length`.
    """
    length = tokens.shape[1]
    if length > max_length:
        raise ValueError(f"Input has {length} positions, more than max_length {max_length}.")
    offsets = torch.arange(length, device=tokens.device) + (max_length - length)
    return offsets.unsqueeze(0).expand_as(tokens)


def attention_mask(tokens: torch.Tensor, num_heads: int, causal: bool) -> torch.Tensor:
    """Build the boolean mask of `nn.TransformerEncoder` (True = may not attend).

    Each position attends to the non-padding positions (only earlier ones when `causal`) and
    always to itself, so padding rows never see an all-masked row, whose softmax would be NaN.
    Returns shape (batch * num_heads, length, length).
    """
    length = tokens.shape[1]
    allowed = (tokens != PADDING_TOKEN).unsqueeze(1).expand(-1, length, -1)
    diagonal = torch.eye(length, dtype=torch.bool, device=tokens.device)
    if causal:
        earlier = torch.ones(length, length, dtype=torch.bool, device=tokens.device).tril()
        allowed = allowed & earlier
    allowed = allowed | diagonal
    return (~allowed).repeat_interleave(num_heads, dim=0)


def training_windows(
    sequences: Sequence[np.ndarray], window_items: int, min_items: int
) -> list[np.ndarray]:
    """Cut sequences into token windows of at most `window_items` items (see the module docstring).

    Windows end at the sequence end, then every `window_items - 1` items before it when
    consecutive windows share one item (causal models, `min_items` 2), or every `window_items`
    items when they share none (BERT4Rec, `min_items` 1). Windows with fewer than `min_items`
    items are dropped.
    """
    stride = window_items - 1 if min_items >= 2 else window_items
    windows: list[np.ndarray] = []
    for sequence in sequences:
        tokens = np.asarray(sequence, dtype=np.int64) + 1
        end = len(tokens)
        while end > 0:
            window = tokens[max(0, end - window_items) : end]
            if len(window) >= min_items:
                windows.append(window)
            end -= stride
    return windows


class SequentialModel(nn.Module, abc.ABC):
    """An encoder of token rows whose hidden states score items through output embeddings.

    Attributes:
        n_items: catalogue size; outputs cover item indices 0..n_items-1.
        max_length: input positions the model accepts.
    """

    def __init__(self, n_items: int, max_length: int) -> None:
        super().__init__()
        self.n_items = n_items
        self.max_length = max_length

    @abc.abstractmethod
    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Map (batch, length) right-aligned tokens to (batch, length, hidden) states."""

    @abc.abstractmethod
    def output_weight(self) -> torch.Tensor:
        """Return the (n_items, hidden) output embeddings; row i scores item index i."""

    def output_bias(self) -> torch.Tensor | None:
        """Return a (n_items,) output bias, or None."""
        return None

    def item_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Score every item: (..., hidden) -> (..., n_items)."""
        logits = hidden @ self.output_weight().T
        bias = self.output_bias()
        return logits if bias is None else logits + bias

    def pair_logits(self, hidden: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Score one item per hidden state: (n, hidden) and (n,) item indices -> (n,)."""
        logits = (hidden * self.output_weight()[items]).sum(-1)
        bias = self.output_bias()
        return logits if bias is None else logits + bias[items]


def init_embedding_weights(module: nn.Module, std: float) -> None:
    """Initialize every embedding of `module` from N(0, std^2) and zero its padding row."""
    for child in module.modules():
        if isinstance(child, nn.Embedding):
            nn.init.normal_(child.weight, std=std)
            if child.padding_idx is not None:
                with torch.no_grad():
                    child.weight[child.padding_idx].zero_()


def targets_loss(
    model: SequentialModel,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    loss: str,
    generator: torch.Generator,
) -> tuple[torch.Tensor, int]:
    """Compute the mean loss over target positions (target token > 0); return it and their count."""
    hidden = model.encode(inputs)
    selected = targets > PADDING_TOKEN
    hidden = hidden[selected]
    target_items = targets[selected] - 1
    count = int(target_items.numel())
    if loss == "ce":
        return F.cross_entropy(model.item_logits(hidden), target_items), count
    # Drawing from n_items - 1 values and shifting those >= the target skips the target exactly.
    negatives = torch.randint(0, model.n_items - 1, (count,), generator=generator)
    negatives = negatives.to(target_items.device)
    negatives = negatives + (negatives >= target_items).long()
    positive_logits = model.pair_logits(hidden, target_items)
    negative_logits = model.pair_logits(hidden, negatives)
    positive_loss = F.binary_cross_entropy_with_logits(positive_logits, torch.ones_like(positive_logits))
    negative_loss = F.binary_cross_entropy_with_logits(negative_logits, torch.zeros_like(negative_logits))
    return positive_loss + negative_loss, count


def shifted_batch(windows: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Make next-item (inputs, targets) for causal models: every item predicts its successor."""
    padded = pad_left(windows)
    inputs, targets = padded[:, :-1], padded[:, 1:].clone()
    # The first item of a window has no predecessor in the window, so it is no target.
    targets[inputs == PADDING_TOKEN] = PADDING_TOKEN
    return inputs, targets


class SequentialMethod(Method):
    """Fit, recommend, save and load for an ID-based sequential model.

    Subclasses set the class attributes below and implement `build_model`; BERT4Rec also
    overrides `make_batch` and `inference_tokens`.

    Class attributes:
        window_extra_items: items a training window contains beyond `max_length` (1 for next-item
            models, whose inputs drop the last item; 0 for BERT4Rec).
        min_window_items: shortest window that contains a target.
        training_data: how the training sequences become targets; stored in the run records.
        departures: where the implementation differs from the method's paper (cited in its
            module docstring); stored in the run records.
    """

    config_class: ClassVar[type[SequentialConfig]] = SequentialConfig
    window_extra_items: ClassVar[int] = 1
    min_window_items: ClassVar[int] = 2
    training_data: ClassVar[str] = (
        "whole training sequences in windows of max_length + 1 items, one forward pass per "
        "window; every position >= 1 of a sequence is a next-item target exactly once"
    )
    departures: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: SequentialConfig | None = None) -> None:
        super().__init__(config)
        self.model: SequentialModel | None = None
        self.device = torch.device("cpu")

    @abc.abstractmethod
    def build_model(self, n_items: int, max_length: int) -> SequentialModel:
        """Create the untrained model for a catalogue of `n_items` and `max_length` inputs."""

    def make_batch(
        self, windows: Sequence[np.ndarray], generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Turn training windows into (inputs, targets); target 0 marks a position without loss."""
        return shifted_batch(windows)

    def inference_tokens(self, histories: Sequence[np.ndarray]) -> torch.Tensor:
        """Turn histories into model inputs whose last column is the prediction position."""
        assert self.model is not None
        return pad_left([item_tokens(h, self.model.max_length) for h in histories])

    def fit(self, dataset: Dataset, split: Split, context: RunContext) -> None:
        config = self.config
        if config.loss == "bce" and split.n_items < 2:
            raise ConfigError(
                f"loss 'bce' needs a negative item, but the split of {split.dataset_name!r} has "
                f"{split.n_items} item(s); use loss=ce."
            )
        max_length = config.max_history_items or split.settings.max_history_items
        # NOTE: tested on CPU only; the CUDA path (context.device "cuda") has not been run.
        self.device = torch.device(context.device)
        self.model = self.build_model(split.n_items, max_length).to(self.device)
        windows = training_windows(
            split.train_sequences, max_length + self.window_extra_items, self.min_window_items
        )
        if not windows:
            raise DataError(
                f"Split of dataset {split.dataset_name!r} has no training sequence with "
                f"{self.min_window_items} or more items, so {self.name} has nothing to learn from."
            )
        generator = torch.Generator().manual_seed(context.seed)
        optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        context.records.update(
            {
                "loss": config.loss,
                "training_data": self.training_data,
                "training_windows": len(windows),
                "max_length": max_length,
                "parameters": sum(p.numel() for p in self.model.parameters()),
                "departures_from_paper": list(self.departures),
            }
        )

        def train_epoch(epoch: int) -> float:
            return self._train_epoch(windows, optimizer, generator, epoch, context)

        outcome = train_with_early_stopping(
            model=self.model,
            optimizer=optimizer,
            train_epoch=train_epoch,
            validate=lambda: context.validate(self),
            settings=EarlyStopping(max_epochs=config.max_epochs, patience=config.patience),
            work_dir=context.work_dir,
            log_epoch=context.log_epoch,
            extra_state=lambda: {"generator": generator.get_state()},
            restore_extra_state=lambda state: generator.set_state(state["generator"]),
        )
        context.records["best_epoch"] = outcome.best_epoch
        context.records["epochs_run"] = outcome.epochs_run
        context.final_validation = outcome.best_metrics

    def _train_epoch(
        self,
        windows: list[np.ndarray],
        optimizer: torch.optim.Optimizer,
        generator: torch.Generator,
        epoch: int,
        context: RunContext,
    ) -> float:
        """Run one pass over the windows in an order drawn from `generator`; return the mean loss."""
        assert self.model is not None
        batch_size = self.config.batch_size
        order = torch.randperm(len(windows), generator=generator).tolist()
        n_batches = math.ceil(len(order) / batch_size)
        total_loss, total_targets = 0.0, 0
        for batch_number, start in enumerate(range(0, len(order), batch_size), start=1):
            batch_windows = [windows[i] for i in order[start : start + batch_size]]
            inputs, targets = self.make_batch(batch_windows, generator)
            loss, count = targets_loss(
                self.model,
                inputs.to(self.device),
                targets.to(self.device),
                self.config.loss,
                generator,
            )
            if count == 0:
                continue
            if not torch.isfinite(loss):
                raise RuntimeError(
                    f"{self.name}: training loss became {loss.item()} in epoch {epoch}, batch "
                    f"{batch_number}; lower lr (now {self.config.lr}) and start a new run."
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * count
            total_targets += count
            if context.progress is not None:
                context.progress(f"{self.name} epoch {epoch}", batch_number, n_batches)
        return total_loss / max(total_targets, 1)

    def recommend(self, histories: Sequence[np.ndarray], k: int) -> Recommendations:
        if self.model is None:
            raise RuntimeError(f"{self.name} has no model; call fit() or load() first.")
        self.model.eval()
        with torch.no_grad():
            tokens = self.inference_tokens(histories).to(self.device)
            hidden = self.model.encode(tokens)[:, -1]
            scores = self.model.item_logits(hidden)
        return Recommendations(scores=scores.float().cpu().numpy())

    def save(self, directory: Path) -> None:
        """Write the weights (model.pt) and the config and sizes (model.json) to `directory`."""
        if self.model is None:
            raise RuntimeError(f"{self.name} has no model to save; call fit() first.")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(directory / "model.pt") as temporary:
            torch.save(self.model.state_dict(), temporary)
        atomic_write_json(
            directory / "model.json",
            {
                "version": SAVED_MODEL_VERSION,
                "method": self.name,
                "config": dataclasses.asdict(self.config),
                "n_items": self.model.n_items,
                "max_length": self.model.max_length,
            },
        )

    def load(self, directory: Path, dataset: Dataset, split: Split) -> None:
        """Restore a model written by `save`, on the CPU, with the config it was trained with."""
        directory = Path(directory)
        description_path = directory / "model.json"
        description = read_saved_description(directory, self.name, SAVED_MODEL_VERSION)

        if description["n_items"] != split.n_items:
            raise DataError(
                f"{description_path} was trained on {description['n_items']} items, but the "
                f"split of {split.dataset_name!r} has {split.n_items}; use the run's dataset."
            )
        saved_config = build_config(self.config_class, description["config"], owner=self.name)
        if saved_config != self.config:
            logger.warning(
                "%s: using the config saved in %s instead of the one given.",
                self.name, description_path,
            )
            self.config = saved_config

        self.device = torch.device("cpu")
        self.model = self.build_model(description["n_items"], description["max_length"])
        state = torch.load(directory / "model.pt", map_location="cpu", weights_only=True)
        self.model.load_state_dict(state)
        self.model.eval()

