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
        length_grouping: 0 draws every batch uniformly at random. N > 0 cuts the shuffled pairs
            into windows of N batches, sorts each window by history length, cuts it into
            batches and shuffles the batches. A batch then contains histories of similar length,
            so it needs less padding. Each epoch still visits every pair once, in a new random order.
    """

    def __init__(self, tokenizer, histories: Sequence[np.ndarray], targets: np.ndarray,
                 seed: int, length_grouping: int = 0) -> None:
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
        if length_grouping < 0:
            raise ValueError(f"length_grouping must be 0 or more, got {length_grouping}.")
        self.length_grouping = length_grouping
        self.lengths = np.array([len(history) for history in self.histories], dtype=np.int64)
        self.target_tokens = {
            int(item): tokenizer.encode_item(int(item)) for item in np.unique(self.targets)
        }

    def __len__(self) -> int:
        return len(self.targets)

    def steps_per_epoch(self, batch_size: int) -> int:
        return -(-len(self) // batch_size)

    def batch_indices(self, epoch: int, batch_size: int) -> tuple[np.random.Generator, list[np.ndarray]]:
        """Return the generator of `epoch` and its batches of pair indices, in training order.

        The generator has drawn the order only; the segmentations come next from the same
        generator, so `segment_epoch` and `batches` see identical draws.
        """
        rng = spr_generator(self.seed, epoch)
        order = rng.permutation(len(self))
        if not self.length_grouping:
            return rng, [order[start : start + batch_size]
                         for start in range(0, len(order), batch_size)]
        window = batch_size * self.length_grouping
        batches = []
        for start in range(0, len(order), window):
            chunk = order[start : start + window]
            # A stable sort keeps the random order among histories of equal length.
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches.extend(chunk[offset : offset + batch_size]
                           for offset in range(0, len(chunk), batch_size))
        return rng, [batches[index] for index in rng.permutation(len(batches))]

    def segment_epoch(self, epoch: int, batch_size: int = 256) -> list[list[int]]:
        """Return the segmentation each history gets in `epoch`, in pair order.

        The generator calls match those of `batches` with the same batch size, so the result
        equals the training input.
        """
        rng, batches = self.batch_indices(epoch, batch_size)
        segmentations: list[list[int]] = [[] for _ in range(len(self))]
        for indices in batches:
            for index in indices.tolist():
                segmentations[index] = self.tokenizer.encode_sequence(self.histories[index], rng)
        return segmentations

    def batches(self, epoch: int, batch_size: int) -> Iterator[TrainingBatch]:
        """Yield the batches of `epoch`, segmenting each history as it is batched."""
        rng, batches = self.batch_indices(epoch, batch_size)
        for indices in batches:
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
