"""Epoch loop with early stopping on validation and resumable checkpoints, shared by all torch methods.

After every epoch the loop writes `last.pt` (model, optimizer, scheduler, epoch, the best weights
and score so far, RNG states) atomically into the method's work directory. Keeping the best
weights in the same file means a crash can never leave best weights that disagree with the
recorded best epoch. A job that is killed resumes from `last.pt` at the next epoch, and the model
returned at the end carries the weights of the epoch chosen on validation.
"""

from __future__ import annotations

import logging
import pickle
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clairo_bench.io import atomic_path

logger = logging.getLogger(__name__)

CHECKPOINT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint cannot be resumed from; the message names the file and what to do."""


@dataclass(frozen=True)
class EarlyStopping:
    """Settings of the epoch loop.

    Attributes:
        max_epochs: upper bound on training epochs.
        patience: epochs without improvement of the validation metric before stopping.
        metric: validation metric to maximize, as named by the evaluator (for example "ndcg@10").
        eval_every: validate every this many epochs (and after the last one).
    """

    max_epochs: int
    patience: int
    metric: str = "ndcg@10"
    eval_every: int = 1

    def __post_init__(self) -> None:
        for name in ("max_epochs", "patience", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}.")


@dataclass
class TrainingOutcome:
    """Result of `train_with_early_stopping`.

    Attributes:
        best_epoch: 1-based epoch whose weights were kept (chosen on validation only).
        best_score: its validation metric.
        epochs_run: epochs trained in total, across resumptions.
        history: one record per epoch (loss, validation metrics, seconds).
        best_metrics: the very dict that `validate()` returned for the best epoch, or None when
            that epoch was scored by an earlier process (a resumed run) or nothing was scored.
            Methods pass it on as `RunContext.final_validation`.
    """

    best_epoch: int
    best_score: float
    epochs_run: int
    history: list[dict[str, Any]]
    best_metrics: dict[str, float] | None = None


def _rng_state() -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def _restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _save(path: Path, payload: dict[str, Any]) -> None:
    with atomic_path(path) as temporary:
        torch.save(payload, temporary)


def train_with_early_stopping(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    train_epoch: Callable[[int], float],
    validate: Callable[[], dict[str, float]],
    settings: EarlyStopping,
    work_dir: Path,
    log_epoch: Callable[[dict[str, Any]], None],
    scheduler: Any | None = None,
    extra_state: Callable[[], dict[str, Any]] | None = None,
    restore_extra_state: Callable[[dict[str, Any]], None] | None = None,
) -> TrainingOutcome:
    """Train epoch by epoch, keep the best weights on validation, checkpoint after each epoch.

    `train_epoch(epoch)` trains one epoch (1-based) and returns its mean loss. `validate()`
    returns validation metrics that include `settings.metric`. `extra_state` and
    `restore_extra_state` carry method-specific state (for example a data-order generator)
    through a resumption.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    last_path = work_dir / "last.pt"
    start_epoch, best_epoch, best_score, history = 1, 0, -float("inf"), []
    best_weights: dict[str, torch.Tensor] | None = None
    best_metrics: dict[str, float] | None = None
    stale = 0

    if last_path.exists():
        fix = "Delete it to restart training from epoch 1, or restore it from a copy."
        try:
            state = torch.load(last_path, map_location="cpu", weights_only=False)
        # Checkpoints are written atomically, but a disk or copy error can still damage one.
        # torch's own messages name neither the file nor the fix.
        except (RuntimeError, EOFError, KeyError, ValueError, pickle.UnpicklingError) as error:
            raise CheckpointError(
                f"Checkpoint {last_path} is damaged ({type(error).__name__}: {error}). {fix}"
            ) from error
        if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
            raise CheckpointError(
                f"Checkpoint {last_path} has version "
                f"{state.get('version') if isinstance(state, dict) else None}, expected "
                f"{CHECKPOINT_VERSION}. {fix}"
            )
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            if scheduler is not None and state.get("scheduler") is not None:
                scheduler.load_state_dict(state["scheduler"])
            _restore_rng_state(state["rng"])
            if restore_extra_state is not None and state.get("extra") is not None:
                restore_extra_state(state["extra"])
            start_epoch = int(state["epoch"]) + 1
            best_epoch, best_score = int(state["best_epoch"]), float(state["best_score"])
            stale, history = int(state["stale"]), list(state["history"])
            best_weights = state.get("best_model")
        # Such a checkpoint is damaged, or was written by code whose profile gave the model
        # other settings under the same job key.
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            raise CheckpointError(
                f"Checkpoint {last_path} does not fit this job's model ({type(error).__name__}: "
                f"{str(error)[:300]}). {fix}"
            ) from error
        logger.info("Resuming from %s at epoch %d (best so far: epoch %d).",
                    last_path, start_epoch, best_epoch)
    else:
        # Checkpoints are written at the end of each epoch, so a job stopped in its first epoch
        # starts over. This log line shows the user that no resume was possible.
        logger.info("No checkpoint at %s; training starts at epoch 1.", last_path)

    epoch = start_epoch - 1
    for epoch in range(start_epoch, settings.max_epochs + 1):
        if stale >= settings.patience:
            break
        started = time.perf_counter()
        model.train()
        loss = train_epoch(epoch)
        record: dict[str, Any] = {"epoch": epoch, "train_loss": float(loss)}
        if epoch % settings.eval_every == 0 or epoch == settings.max_epochs:
            model.eval()
            with torch.no_grad():
                metrics = validate()
            if settings.metric not in metrics:
                raise KeyError(
                    f"Validation returned {sorted(metrics)}, which lacks the early-stopping "
                    f"metric {settings.metric!r}."
                )
            record.update({f"valid_{name}": value for name, value in metrics.items()})
            score = metrics[settings.metric]
            if score > best_score:
                best_epoch, best_score, stale = epoch, score, 0
                best_metrics = metrics
                best_weights = {name: value.detach().clone() for name, value in model.state_dict().items()}
            else:
                stale += settings.eval_every
        record["seconds"] = time.perf_counter() - started
        history.append(record)
        log_epoch(record)
        _save(
            last_path,
            {
                "version": CHECKPOINT_VERSION,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "rng": _rng_state(),
                "extra": extra_state() if extra_state is not None else None,
                "epoch": epoch,
                "best_model": best_weights,
                "best_epoch": best_epoch,
                "best_score": best_score,
                "stale": stale,
                "history": history,
            },
        )

    if best_weights is not None:
        model.load_state_dict(best_weights)
    model.eval()
    return TrainingOutcome(
        best_epoch=best_epoch, best_score=best_score, epochs_run=len(history), history=history,
        best_metrics=best_metrics,
    )
