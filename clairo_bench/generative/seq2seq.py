"""Shared pieces of the semantic-ID seq2seq recommenders (TIGER, MQL4GRec).

- `TokenLayout`: the token ids of a method's vocabulary: padding, end of sequence, task prompt
  tokens, then one block of tokens per ID space (a modality) and level.
- `Seq2SeqExamples` and `SequenceBatcher`: training and inference examples as item indices,
  turned into padded token tensors batch by batch, so that no token matrix of the whole corpus
  is held in memory.
- `train_epoch`: one pass of teacher-forced cross-entropy training.
- `constrained_beam_search`: beam search whose every step is masked by a `PrefixTrie`, so each
  finished beam is a catalogue item.
- `build_scheduler`: linear warm-up followed by cosine, inverse-square-root or constant decay.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch.nn import functional as F

from clairo_bench.generative.trie import NO_NODE, PrefixTrie

logger = logging.getLogger(__name__)

PAD_TOKEN = 0
EOS_TOKEN = 1
IGNORE_LABEL = -100
"""Label value that `T5ForConditionalGeneration` leaves out of the loss."""

ScheduleKind = Literal["cosine", "inverse_sqrt", "constant"]


class TokenLayout:
    """Token ids: 0 padding (also the decoder start), 1 end of sequence, prompts, then ID blocks.

    `level_sizes[space]` lists how many values each level of that ID space takes. Value c of
    level l of a space is token `level_starts[space][l] + c`. Spaces are laid out in the order
    given, and each task has `prompt_length` prompt tokens.
    """

    def __init__(
        self, level_sizes: Mapping[str, Sequence[int]], tasks: Sequence[str], prompt_length: int
    ) -> None:
        if prompt_length < 0:
            raise ValueError(f"prompt_length must be >= 0, got {prompt_length}.")
        self.tasks = tuple(tasks)
        self.prompt_length = prompt_length
        self.level_sizes = {space: tuple(int(size) for size in sizes) for space, sizes in level_sizes.items()}
        next_token = 2 + len(self.tasks) * prompt_length
        self.level_starts: dict[str, tuple[int, ...]] = {}
        for space, sizes in self.level_sizes.items():
            starts = []
            for size in sizes:
                starts.append(next_token)
                next_token += size
            self.level_starts[space] = tuple(starts)
        self.vocab_size = next_token

    def prompt_tokens(self, task: str) -> np.ndarray:
        """Return the prompt token ids of `task`."""
        index = self.tasks.index(task)
        start = 2 + index * self.prompt_length
        return np.arange(start, start + self.prompt_length, dtype=np.int64)

    def item_tokens(self, space: str, codes: np.ndarray) -> np.ndarray:
        """Map codes (items, levels) of ID space `space` to token ids of the same shape."""
        codes = np.asarray(codes, dtype=np.int64)
        sizes = self.level_sizes[space]
        if codes.shape[1] != len(sizes):
            raise ValueError(
                f"ID space {space!r} has {len(sizes)} levels, got codes with {codes.shape[1]}."
            )
        if codes.size and ((codes < 0).any() or (codes >= np.asarray(sizes)[None, :]).any()):
            raise ValueError(f"Codes of ID space {space!r} fall outside the level sizes {sizes}.")
        return codes + np.asarray(self.level_starts[space], dtype=np.int64)[None, :]

    def describe(self) -> dict:
        """Summarize the layout for run records."""
        return {
            "vocab_size": self.vocab_size,
            "special_tokens": {"pad": PAD_TOKEN, "eos": EOS_TOKEN},
            "tasks": list(self.tasks),
            "prompt_tokens_per_task": self.prompt_length,
            "level_sizes": {space: list(sizes) for space, sizes in self.level_sizes.items()},
        }


@dataclass
class Seq2SeqExamples:
    """Examples as item indices; row i reads history `histories[i]` in ID space `sources[i]`.

    Attributes:
        tasks: (n,) index into the batcher's task list (which prompt to prepend).
        histories: (n, max_history) item indices, oldest first, padded with -1 at the end.
        sources: (n,) index of the ID space the history is written in.
        targets: (n,) target item index (-1 at inference).
        target_spaces: (n,) index of the ID space the target is written in.
    """

    tasks: np.ndarray
    histories: np.ndarray
    sources: np.ndarray
    targets: np.ndarray
    target_spaces: np.ndarray

    def __len__(self) -> int:
        return len(self.targets)

    @classmethod
    def concatenate(cls, parts: Sequence["Seq2SeqExamples"]) -> "Seq2SeqExamples":
        width = max(part.histories.shape[1] for part in parts)
        histories = [
            np.pad(part.histories, ((0, 0), (0, width - part.histories.shape[1])), constant_values=-1)
            for part in parts
        ]
        return cls(
            tasks=np.concatenate([part.tasks for part in parts]),
            histories=np.concatenate(histories),
            sources=np.concatenate([part.sources for part in parts]),
            targets=np.concatenate([part.targets for part in parts]),
            target_spaces=np.concatenate([part.target_spaces for part in parts]),
        )

    def take(self, rows: np.ndarray) -> "Seq2SeqExamples":
        return Seq2SeqExamples(
            self.tasks[rows], self.histories[rows], self.sources[rows], self.targets[rows],
            self.target_spaces[rows],
        )


def history_matrix(histories: Sequence[np.ndarray], max_history: int) -> np.ndarray:
    """Keep the last `max_history` items of each history, left-aligned and padded with -1."""
    matrix = np.full((len(histories), max_history), -1, dtype=np.int64)
    for row, history in enumerate(histories):
        recent = np.asarray(history, dtype=np.int64)[-max_history:] if max_history else history[:0]
        matrix[row, : len(recent)] = recent
    return matrix


class SequenceBatcher:
    """Turns `Seq2SeqExamples` rows into T5 tensors.

    Encoder input: the task's prompt tokens, the history items' tokens oldest first, then EOS,
    padded with PAD. Labels: the target item's tokens (no EOS, because every ID of a space has
    the same length and decoding stops after the last level), padded with IGNORE_LABEL.
    """

    def __init__(self, layout: TokenLayout, item_tokens: Mapping[str, np.ndarray]) -> None:
        self.layout = layout
        self.spaces = tuple(item_tokens)
        self.item_tokens = {space: torch.as_tensor(item_tokens[space]) for space in self.spaces}
        self.prompts = torch.as_tensor(
            np.stack([layout.prompt_tokens(task) for task in layout.tasks])
            if layout.tasks else np.zeros((0, 0), dtype=np.int64)
        )

    def input_lengths(self, examples: Seq2SeqExamples) -> np.ndarray:
        """Return the encoder input length of each example, in tokens, before padding."""
        levels = np.array([self.item_tokens[space].shape[1] for space in self.spaces], dtype=np.int64)
        n_valid = (examples.histories >= 0).sum(axis=1)
        return self.layout.prompt_length + n_valid * levels[examples.sources] + 1

    def encoder_inputs(self, examples: Seq2SeqExamples) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (input_ids, attention_mask), trimmed to the longest row."""
        histories = torch.as_tensor(examples.histories)
        sources = torch.as_tensor(examples.sources)
        n_rows = len(histories)
        prompt_length = self.layout.prompt_length
        n_valid = (histories >= 0).sum(dim=1)
        lengths = torch.zeros(n_rows, dtype=torch.long)
        per_space = {}
        for index, space in enumerate(self.spaces):
            rows = torch.nonzero(sources == index).squeeze(1)
            if len(rows) == 0:
                continue
            tokens = self.item_tokens[space]
            levels = tokens.shape[1]
            gathered = tokens[histories[rows].clamp(min=0)]
            gathered[histories[rows] < 0] = PAD_TOKEN
            per_space[index] = (rows, gathered.reshape(len(rows), -1))
            lengths[rows] = n_valid[rows] * levels
        width = prompt_length + int(lengths.max()) + 1 if n_rows else prompt_length + 1
        input_ids = torch.full((n_rows, width), PAD_TOKEN, dtype=torch.long)
        if prompt_length:
            input_ids[:, :prompt_length] = self.prompts[torch.as_tensor(examples.tasks)]
        for rows, flat in per_space.values():
            span = min(flat.shape[1], width - prompt_length)
            input_ids[rows, prompt_length : prompt_length + span] = flat[:, :span]
        input_ids[torch.arange(n_rows), prompt_length + lengths] = EOS_TOKEN
        attention_mask = (torch.arange(width)[None, :] <= (prompt_length + lengths)[:, None]).long()
        return input_ids, attention_mask

    def labels(self, examples: Seq2SeqExamples) -> torch.Tensor:
        """Return the target tokens (rows, longest ID), padded with IGNORE_LABEL."""
        targets = torch.as_tensor(examples.targets)
        spaces = torch.as_tensor(examples.target_spaces)
        width = max(self.item_tokens[space].shape[1] for space in self.spaces)
        labels = torch.full((len(targets), width), IGNORE_LABEL, dtype=torch.long)
        for index, space in enumerate(self.spaces):
            rows = torch.nonzero(spaces == index).squeeze(1)
            if len(rows):
                tokens = self.item_tokens[space][targets[rows]]
                labels[rows, : tokens.shape[1]] = tokens
        return labels


def build_scheduler(
    optimizer: torch.optim.Optimizer, kind: ScheduleKind, total_steps: int, warmup_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Build a learning-rate schedule: linear warm-up over `warmup_steps`, then `kind`.

    "cosine" decays to 0 at `total_steps`. "inverse_sqrt" multiplies the rate by
    sqrt(warmup_steps / step), which is 1 at the end of the warm-up, as in T5. "constant" keeps
    the peak rate.
    """
    warmup_steps = max(0, warmup_steps)
    total_steps = max(1, total_steps)

    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        if kind == "cosine":
            progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        if kind == "inverse_sqrt":
            return math.sqrt(max(1, warmup_steps) / max(step, 1))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


LENGTH_GROUP_BATCHES = 50
"""Batches per group whose examples are sorted by length before they are cut into batches."""


def length_grouped_batches(
    lengths: np.ndarray, batch_size: int, generator: torch.Generator
) -> list[np.ndarray]:
    """Cut a random order of the rows into batches of similar input length, in random order.

    The rows are shuffled, cut into groups of LENGTH_GROUP_BATCHES batches, sorted by length
    within each group and cut into batches, and the batches are shuffled. Every row occurs in
    exactly one batch. Batches hold rows of similar length, so less of each batch is padding.
    """
    order = torch.randperm(len(lengths), generator=generator).numpy()
    group_size = batch_size * LENGTH_GROUP_BATCHES
    batches = []
    for start in range(0, len(order), group_size):
        group = order[start : start + group_size]
        group = group[np.argsort(lengths[group], kind="stable")]
        batches.extend(group[offset : offset + batch_size] for offset in range(0, len(group), batch_size))
    permutation = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[index] for index in permutation]


def train_epoch(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batcher: SequenceBatcher,
    examples: Seq2SeqExamples,
    batch_size: int,
    generator: torch.Generator,
    device: str,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    max_grad_norm: float | None = 1.0,
    progress: Callable[[int, int], None] | None = None,
) -> float:
    """Train one pass over `examples` in length-grouped random batches; return the mean loss.

    The loss of a batch is the mean token cross-entropy of its labels, and the epoch's value is
    the mean over batches.
    """
    batches = length_grouped_batches(batcher.input_lengths(examples), batch_size, generator)
    total_loss = 0.0
    n_batches = len(batches)
    for batch_index, rows in enumerate(batches):
        batch = examples.take(rows)
        input_ids, attention_mask = batcher.encoder_inputs(batch)
        labels = batcher.labels(batch)
        output = model(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            labels=labels.to(device),
        )
        optimizer.zero_grad()
        output.loss.backward()
        if max_grad_norm:
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        total_loss += output.loss.item()
        if progress is not None:
            progress(batch_index + 1, n_batches)
    return total_loss / max(1, n_batches)


@dataclass
class BeamSearchOutput:
    """Finished beams, best first.

    Attributes:
        items: (batch, num_beams) value stored at each beam's trie leaf (an item index), or -1
            for a beam that found no sequence (fewer sequences than beams).
        scores: (batch, num_beams) sum of the token log-probabilities divided by the number of
            generated tokens (-inf for empty beams).
    """

    items: np.ndarray
    scores: np.ndarray


def next_token_logits(
    model: torch.nn.Module, hidden: torch.Tensor, token_start: int, token_stop: int
) -> torch.Tensor:
    """Compute the logits of tokens token_start..token_stop-1 from decoder states (rows, d_model).

    This is the language-model head of `T5ForConditionalGeneration` restricted to a slice of
    the vocabulary, including the d_model ** -0.5 scaling that T5 applies with tied embeddings.
    """
    config = model.config
    if getattr(config, "scale_decoder_outputs", config.tie_word_embeddings):
        hidden = hidden * (config.d_model**-0.5)
    weight = model.lm_head.weight[token_start:token_stop]
    logits = hidden @ weight.t()
    if model.lm_head.bias is not None:
        logits = logits + model.lm_head.bias[token_start:token_stop]
    return logits


@torch.no_grad()
def constrained_beam_search(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    trie: PrefixTrie,
    num_beams: int,
    decoder_start_token_id: int = PAD_TOKEN,
) -> BeamSearchOutput:
    """Decode `trie.depth` tokens per row, keeping the `num_beams` best allowed prefixes per step.

    At step d the candidate tokens are those the trie uses at depth d. A `TokenLayout` gives each
    level of an ID space its own token block, so these are the tokens of level d. Token
    log-probabilities are normalized over that block (the model's distribution given that it
    emits a level-d token), then tokens the trie forbids after the beam's prefix are masked.
    A finished beam is therefore always a complete trie sequence. The decoder's key/value cache
    (the `cache` argument of `transformers` 5 T5 models) follows the beams, so each step runs
    the decoder on one new token per beam.
    """
    model.eval()
    device = input_ids.device
    depth = trie.depth
    n_rows = input_ids.shape[0]
    encoder_states = model.get_encoder()(
        input_ids=input_ids, attention_mask=attention_mask
    ).last_hidden_state
    # At step 0 all beams of a row hold the same empty prefix, so one beam per row is enough.
    width = 1
    beam_scores = torch.zeros(n_rows, 1, device=device)
    nodes = torch.zeros(n_rows, dtype=torch.long, device=device)
    last_tokens = torch.full((n_rows, 1), decoder_start_token_id, dtype=torch.long, device=device)
    beam_mask = attention_mask
    cache = None
    for step in range(depth):
        if step == 0:
            states = encoder_states
        else:
            # From step 1 on the cross-attention keys and values come from the cache, so the
            # encoder states are only a shape placeholder and a stride-0 view avoids a copy.
            states = encoder_states[:1].expand(n_rows * width, -1, -1)
        decoded = model.get_decoder()(
            input_ids=last_tokens,
            encoder_hidden_states=states,
            encoder_attention_mask=beam_mask,
            cache=cache,
            use_cache=True,
        )
        cache = decoded.cache
        if not all(cache.is_updated.values()):
            raise RuntimeError(
                "The decoder did not cache its cross-attention; this transformers version is "
                "not supported by constrained_beam_search."
            )
        token_start, token_stop = trie.depth_token_range(step)
        block = token_stop - token_start
        logits = next_token_logits(model, decoded.last_hidden_state[:, -1, :], token_start, token_stop)
        log_probs = F.log_softmax(logits.float(), dim=-1)
        allowed = trie.allowed_mask(nodes, block, token_offset=token_start)
        log_probs = log_probs.masked_fill(~allowed, -math.inf)
        candidates = (beam_scores.reshape(-1, 1) + log_probs).reshape(n_rows, width * block)
        new_width = min(num_beams, width * block)
        top_scores, top_indices = candidates.topk(new_width, dim=1)
        source_beam = top_indices // block
        tokens = (top_indices % block + token_start).reshape(-1)
        flat_source = (torch.arange(n_rows, device=device)[:, None] * width + source_beam).reshape(-1)
        nodes = trie.advance(nodes[flat_source], tokens)
        dead = torch.isinf(top_scores).reshape(-1)
        nodes = torch.where(dead, torch.full_like(nodes, NO_NODE), nodes)
        last_tokens = tokens.reshape(-1, 1)
        cache.self_attention_cache.reorder_cache(flat_source)
        if new_width != width:
            # Beams of one row share the cross-attention keys and values, so the cross cache is
            # only re-expanded when the number of beams per row changes.
            first_beams = torch.arange(n_rows, device=device).repeat_interleave(new_width) * width
            cache.cross_attention_cache.reorder_cache(first_beams)
            beam_mask = attention_mask.repeat_interleave(new_width, dim=0)
        beam_scores = top_scores
        width = new_width
    items = trie.values_at(nodes).reshape(n_rows, width)
    scores = beam_scores / depth
    if width < num_beams:
        items = torch.cat(
            [items, torch.full((n_rows, num_beams - width), -1, dtype=items.dtype, device=device)], 1
        )
        scores = torch.cat(
            [scores, torch.full((n_rows, num_beams - width), -math.inf, device=device)], 1
        )
    return BeamSearchOutput(items=items.cpu().numpy(), scores=scores.cpu().numpy())
