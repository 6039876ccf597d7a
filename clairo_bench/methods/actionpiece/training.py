"""Training data with set permutation regularization (SPR) and the per-epoch training step.

ActionPiece (Hou et al., ICML 2025) segments each training history anew in every epoch. The
tokenizer draws a random order of the features inside each item before it applies the merges, so
the model is trained on many segmentations of the same actions. The target item is always encoded with the
deterministic segmentation, so that generation has one token sequence to aim for per item.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from clairo_bench.methods.actionpiece.model import collate_inputs, collate_labels

logger = logging.getLogger(__name__)

# Seconds between progress lines inside an epoch; a CPU epoch can take many minutes.
PROGRESS_INTERVAL_S = 60.0


def spr_generator(seed: int, epoch: int) -> np.random.Generator:
    """Return the generator of one epoch's batch order and segmentations.

    It depends only on (seed, epoch), so a resumed run draws the same segmentations as an
    uninterrupted one.
    """
    return np.random.default_rng([seed, epoch])


@dataclass
class TrainingBatch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor


class SPRTrainingData:
    """(history, next item) pairs that are re-segmented in every epoch.

    Args:
        tokenizer: an `ActionPieceTokenizer`.
        histories: item indices before each target, oldest first.
        targets: the next item of each history.
        seed: run seed; epoch e uses `spr_generator(seed, e)`.
    """

    def __init__(self, tokenizer, histories: Sequence[np.ndarray], targets: np.ndarray,
                 seed: int) -> None:
        if len(histories) != len(targets):
            raise ValueError(f"Got {len(histories)} histories but {len(targets)} targets.")
        if not len(targets):
            raise ValueError(
                "No training pairs: every training sequence has fewer than two items, so there "
                "is no (history, next item) pair; use a dataset with longer sequences."
            )
        self.tokenizer = tokenizer
        self.histories = [np.asarray(history, dtype=np.int64).tolist() for history in histories]
        self.targets = np.asarray(targets, dtype=np.int64)
        self.seed = seed
        self.target_tokens = {
            int(item): tokenizer.encode_item(int(item)) for item in np.unique(self.targets)
        }

    def __len__(self) -> int:
        return len(self.targets)

    def steps_per_epoch(self, batch_size: int) -> int:
        return -(-len(self) // batch_size)

    def segment_epoch(self, epoch: int) -> list[list[int]]:
        """Return the segmentation each history gets in `epoch`, in pair order.

        The generator calls match those of `batches`, so the result equals the training input.
        """
        rng = spr_generator(self.seed, epoch)
        order = rng.permutation(len(self))
        segmentations: list[list[int]] = [[] for _ in range(len(self))]
        for index in order.tolist():
            segmentations[index] = self.tokenizer.encode_sequence(self.histories[index], rng)
        return segmentations

    def batches(self, epoch: int, batch_size: int) -> Iterator[TrainingBatch]:
        """Yield the shuffled batches of `epoch`, segmenting each history as it is batched."""
        rng = spr_generator(self.seed, epoch)
        order = rng.permutation(len(self))
        for start in range(0, len(order), batch_size):
            indices = order[start : start + batch_size]
            inputs = [self.tokenizer.encode_sequence(self.histories[i], rng) for i in indices]
            labels = [self.target_tokens[int(self.targets[i])] for i in indices]
            input_ids, attention_mask = collate_inputs(inputs)
            yield TrainingBatch(input_ids, attention_mask, collate_labels(labels))


def train_one_epoch(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    data: SPRTrainingData,
    epoch: int,
    batch_size: int,
    device: str,
    max_grad_norm: float | None,
) -> float:
    """Train one epoch with teacher forcing; return the mean token cross-entropy of its batches."""
    total, steps = 0.0, 0
    planned = data.steps_per_epoch(batch_size)
    started = last_report = time.perf_counter()
    for batch in data.batches(epoch, batch_size):
        optimizer.zero_grad(set_to_none=True)
        output = model(
            input_ids=batch.input_ids.to(device),
            attention_mask=batch.attention_mask.to(device),
            labels=batch.labels.to(device),
        )
        output.loss.backward()
        if max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        total += float(output.loss.detach())
        steps += 1
        now = time.perf_counter()
        if now - last_report >= PROGRESS_INTERVAL_S:
            last_report = now
            logger.info("Epoch %d: step %d of %d, %.2f s per step, mean loss %.4f.",
                        epoch, steps, planned, (now - started) / steps, total / steps)
    return total / max(steps, 1)
