"""Token ids, batch collation and beam search of the ActionPiece T5 model.

ActionPiece (Hou et al., "ActionPiece: Contextually Tokenizing Action Sequences for Generative
Recommendation", ICML 2025) feeds the segmented history to a T5 encoder as
[BOS] history tokens [EOS] and trains the decoder to emit the next item's tokens followed by EOS.

Model ids: 0 is padding (also the decoder start), 1 is EOS, 2 is BOS, and vocabulary token t is
model id t + TOKEN_OFFSET. The offset keeps the special ids apart from every vocabulary token,
whatever ids the vocabulary itself reserves.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import T5ForConditionalGeneration
from transformers.modeling_outputs import BaseModelOutput

from clairo_bench.generative.t5 import T5Settings, build_t5

logger = logging.getLogger(__name__)

PAD_ID = 0
EOS_ID = 1
BOS_ID = 2
TOKEN_OFFSET = 3
IGNORED_LABEL = -100
"""Label value that `torch.nn.CrossEntropyLoss` (and so T5's loss) skips."""


def model_vocab_size(vocabulary_size: int) -> int:
    """Return the number of model ids needed for a vocabulary of `vocabulary_size` tokens."""
    return vocabulary_size + TOKEN_OFFSET


def build_model(settings: T5Settings, vocabulary_size: int) -> T5ForConditionalGeneration:
    """Create a randomly initialised T5 over the vocabulary's tokens and the special ids."""
    return build_t5(
        settings,
        model_vocab_size(vocabulary_size),
        pad_token_id=PAD_ID,
        eos_token_id=EOS_ID,
        decoder_start_token_id=PAD_ID,
    )


def collate_inputs(token_lists: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad [BOS] tokens [EOS] rows on the right; return (input_ids, attention_mask)."""
    rows = [[BOS_ID, *(token + TOKEN_OFFSET for token in tokens), EOS_ID] for tokens in token_lists]
    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), PAD_ID, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for index, row in enumerate(rows):
        input_ids[index, : len(row)] = torch.tensor(row, dtype=torch.long)
        attention_mask[index, : len(row)] = 1
    return input_ids, attention_mask


def collate_labels(token_lists: Sequence[Sequence[int]]) -> torch.Tensor:
    """Build decoder labels: the item's tokens, then EOS, padded with IGNORED_LABEL."""
    rows = [[token + TOKEN_OFFSET for token in tokens] + [EOS_ID] for tokens in token_lists]
    width = max(len(row) for row in rows)
    labels = torch.full((len(rows), width), IGNORED_LABEL, dtype=torch.long)
    for index, row in enumerate(rows):
        labels[index, : len(row)] = torch.tensor(row, dtype=torch.long)
    return labels


@dataclass
class BeamHypotheses:
    """Beam-search output for a batch of encoder inputs.

    Attributes:
        tokens: per input row, per beam (best first), the generated vocabulary tokens before EOS.
        finished: per input row and beam, whether the beam emitted EOS.
        log_probs: per input row and beam, the summed log-probability of the beam.
    """

    tokens: list[list[list[int]]]
    finished: list[list[bool]]
    log_probs: list[list[float]]


@torch.no_grad()
def beam_search(
    model: T5ForConditionalGeneration,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    num_beams: int,
    max_new_tokens: int,
    use_cache: bool = True,
) -> BeamHypotheses:
    """Decode `num_beams` token sequences per input row with beam search.

    The encoder runs once per row and its output is shared by the row's beams. A beam that emits
    EOS is finished: it keeps its score and only appends padding afterwards, so tokens after the
    end never change the ranking. The authors' code instead decodes a fixed length (the number
    of feature categories) and scores the tokens after EOS as well. Padding and BOS never occur in targets and are
    masked out, and so is EOS at the first step because no item has zero tokens. Beams whose
    score is -inf (possible when the vocabulary has fewer tokens than beams) are dropped.
    """
    device = next(model.parameters()).device
    input_ids = input_ids.to(device)
    attention_mask = attention_mask.to(device)
    batch_size = input_ids.shape[0]
    encoder_states = model.get_encoder()(
        input_ids=input_ids, attention_mask=attention_mask, return_dict=True
    ).last_hidden_state
    encoder_states = encoder_states.repeat_interleave(num_beams, dim=0)
    encoder_outputs = BaseModelOutput(last_hidden_state=encoder_states)
    beam_mask = attention_mask.repeat_interleave(num_beams, dim=0)

    decoder_ids = torch.full((batch_size * num_beams, 1), PAD_ID, dtype=torch.long, device=device)
    scores = torch.full((batch_size, num_beams), -float("inf"), device=device)
    scores[:, 0] = 0.0  # all beams start identical, so only one may expand at the first step
    scores = scores.view(-1)
    finished = torch.zeros(batch_size * num_beams, dtype=torch.bool, device=device)
    row_offset = torch.arange(batch_size, device=device).repeat_interleave(num_beams) * num_beams
    cache_argument = _cache_argument(model)
    cache = None

    for step in range(max_new_tokens):
        outputs = model(
            encoder_outputs=encoder_outputs,
            attention_mask=beam_mask,
            decoder_input_ids=decoder_ids if cache is None else decoder_ids[:, -1:],
            use_cache=use_cache,
            **({cache_argument: cache} if cache is not None else {}),
        )
        if use_cache:
            cache = _returned_cache(outputs)
        logits = outputs.logits[:, -1, :].float()
        # Log-probabilities are normalised over the whole vocabulary before any mask applies.
        normalizer = torch.logsumexp(logits, dim=-1, keepdim=True)
        logits[:, PAD_ID] = -float("inf")
        logits[:, BOS_ID] = -float("inf")
        if step == 0:
            logits[:, EOS_ID] = -float("inf")
        # The best num_beams continuations of the whole row are among the best num_beams
        # tokens of each beam, so ranking per beam first is exact and avoids a
        # (beams x vocabulary) sum and sort.
        width = min(num_beams, logits.shape[-1])
        top_logits, top_tokens = torch.topk(logits, width, dim=-1)
        top_log_probs = top_logits - normalizer
        top_log_probs[finished] = -float("inf")
        top_log_probs[finished, 0] = 0.0
        top_tokens[finished, 0] = PAD_ID
        candidates = (scores[:, None] + top_log_probs).view(batch_size, num_beams * width)
        top_scores, top_indices = torch.topk(candidates, num_beams, dim=1, sorted=True)
        source_beam = (top_indices // width).view(-1) + row_offset
        next_token = top_tokens.view(batch_size, num_beams * width).gather(1, top_indices).view(-1)
        decoder_ids = torch.cat([decoder_ids[source_beam], next_token[:, None]], dim=1)
        finished = finished[source_beam] | (next_token == EOS_ID)
        if cache is not None:
            # The cross-attention cache is the same for every beam of a row and beams never move
            # between rows, so only the self-attention cache follows the selected beams.
            cache.self_attention_cache.reorder_cache(source_beam)
        scores = top_scores.view(-1)
        if bool(finished.all()):
            break

    generated = decoder_ids[:, 1:].view(batch_size, num_beams, -1).tolist()
    finished_rows = finished.view(batch_size, num_beams).tolist()
    score_rows = scores.view(batch_size, num_beams).tolist()
    tokens: list[list[list[int]]] = []
    kept_finished: list[list[bool]] = []
    kept_scores: list[list[float]] = []
    for row in range(batch_size):
        row_tokens, row_finished, row_scores = [], [], []
        for beam in range(num_beams):
            score = score_rows[row][beam]
            if score == -float("inf"):
                continue
            ids = generated[row][beam]
            if EOS_ID in ids:
                ids = ids[: ids.index(EOS_ID)]
            row_tokens.append([token - TOKEN_OFFSET for token in ids])
            row_finished.append(finished_rows[row][beam])
            row_scores.append(score)
        tokens.append(row_tokens)
        kept_finished.append(row_finished)
        kept_scores.append(row_scores)
    return BeamHypotheses(tokens=tokens, finished=kept_finished, log_probs=kept_scores)


def _returned_cache(outputs):
    """Return the key-value cache of a forward pass: `cache` in transformers 5.25, else
    `past_key_values`."""
    cache = getattr(outputs, "cache", None)
    if cache is None:
        cache = getattr(outputs, "past_key_values", None)
    if cache is None:
        raise RuntimeError(
            "The T5 model returned no key-value cache although use_cache=True; this transformers "
            "version is not supported by ActionPiece's beam search."
        )
    return cache


def _cache_argument(model: T5ForConditionalGeneration) -> str:
    """Name the key-value cache argument of `forward`: `cache` where it exists (transformers
    5.25), else `past_key_values`."""
    parameters = inspect.signature(model.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"
