"""Generation of top-K items from several random segmentations of a history.

ActionPiece (Hou et al., ICML 2025) segments each history several times with set permutation
regularization, decodes every segmentation with beam search, and fuses the ranked lists.

Fusion rule, as in the authors' code (GitHub hyp1231/action_piece, `ActionPiece.generate` in
genrec/models/ActionPiece/model.py):
- the beam at 0-based position j of a segmentation gives its item the weight 1 / log2(j + 2),
  the DCG discount;
- an item's fused score is the mean of its weights over the segmentations, counting 0 where a
  segmentation does not generate it, and items are ranked by that score;
- beams that map to no item keep their positions but give no weight;
- an item generated twice by one segmentation counts once, at its first position;
- ties go to the item that appears first when the lists are read position by position
  (`clairo_bench.generative.fusion.fuse_ranked_lists`).
The authors' code differs in two details: it adds up the weights of an item that one
segmentation generates twice, and it breaks ties by insertion order. Both matter only for items
with repeated generations or equal scores.

A generation that maps to no item is counted in `Recommendations.invalid_generations` and is
never replaced; when fewer than k distinct items remain, the list is padded with -1.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from clairo_bench.generative.fusion import fuse_ranked_lists
from clairo_bench.methods.actionpiece.model import beam_search, collate_inputs
from clairo_bench.methods.base import Recommendations

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class InferenceSettings:
    """Settings of generation.

    Attributes:
        num_beams: beams per segmentation.
        segmentations: random segmentations decoded per history.
        batch_size: histories per beam-search call.
        max_new_tokens: decoding steps; one more than the longest item encoding leaves room
            for EOS.
        seed: seed of the segmentation draws.
    """

    num_beams: int
    segmentations: int
    batch_size: int
    max_new_tokens: int
    seed: int


def segmentation_generator(seed: int, history: Sequence[int]) -> np.random.Generator:
    """Return the generator of one history's inference segmentations.

    It depends only on the seed and the history, so a history gets the same segmentations
    whatever batch it arrives in, and a saved model reproduces its recommendations.
    """
    return np.random.default_rng([seed, len(history), *history])


def dcg_weight(position: int) -> float:
    """Weight of the beam at 0-based `position`: 1 / log2(position + 2)."""
    return 1.0 / math.log2(position + 2)


@dataclass
class SegmentationList:
    """Items decoded from the beams of one segmentation, best beam first."""

    items: list[int]
    weights: list[float]
    invalid: int
    total: int


def decode_beams(tokenizer, beam_tokens: Sequence[Sequence[int]],
                 finished: Sequence[bool]) -> SegmentationList:
    """Map each beam to an item with `tokenizer.decode_item`.

    A beam that never emitted EOS is invalid without decoding, because it did not end an item.
    """
    items: list[int] = []
    weights: list[float] = []
    invalid = 0
    for position, (tokens, done) in enumerate(zip(beam_tokens, finished)):
        item = tokenizer.decode_item(list(tokens)) if done else None
        if item is None:
            invalid += 1
            continue
        items.append(int(item))
        weights.append(dcg_weight(position))
    return SegmentationList(items=items, weights=weights, invalid=invalid, total=len(beam_tokens))


def generate_recommendations(
    model: torch.nn.Module,
    tokenizer,
    histories: Sequence[np.ndarray],
    k: int,
    settings: InferenceSettings,
) -> Recommendations:
    """Rank up to k items per history by beam search over several segmentations."""
    items = np.full((len(histories), k), -1, dtype=np.int64)
    invalid = total = 0
    was_training = model.training
    model.eval()
    # Histories of similar length share a batch, so less padding reaches the encoder. The
    # segmentations depend on each history alone, so the order changes recommendations only
    # through floating-point rounding of padded batches.
    order = np.argsort([len(history) for history in histories], kind="stable")
    try:
        for start in range(0, len(histories), settings.batch_size):
            rows = order[start : start + settings.batch_size]
            chunk = [np.asarray(histories[row], dtype=np.int64).tolist() for row in rows]
            segmentations = []
            for history in chunk:
                rng = segmentation_generator(settings.seed, history)
                for _ in range(settings.segmentations):
                    segmentations.append(tokenizer.encode_sequence(history, rng))
            input_ids, attention_mask = collate_inputs(segmentations)
            hypotheses = beam_search(
                model, input_ids, attention_mask, settings.num_beams, settings.max_new_tokens
            )
            for offset in range(len(chunk)):
                lists = []
                for row in range(offset * settings.segmentations,
                                 (offset + 1) * settings.segmentations):
                    decoded = decode_beams(
                        tokenizer, hypotheses.tokens[row], hypotheses.finished[row]
                    )
                    invalid += decoded.invalid
                    total += decoded.total
                    lists.append(decoded)
                fused = fuse_ranked_lists(
                    [entry.items for entry in lists], k, scores=[entry.weights for entry in lists]
                )
                items[rows[offset], : len(fused)] = fused
    finally:
        model.train(was_training)
    return Recommendations(items=items, invalid_generations=invalid, total_generations=total)
