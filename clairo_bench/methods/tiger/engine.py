"""Machinery shared by TIGER and MQL4GRec: semantic IDs, a T5 over their tokens, trie decoding.

A `SemanticIdMethod` gives every item one unique ID per ID space (a modality: "text", "image").
It trains a T5 encoder-decoder on tasks that map a history (or one item) written in one space to
a target item written in a space. It recommends by beam search constrained by a prefix trie of
each space's IDs, and `fuse` merges the lists of several spaces.

Where IDs come from (`code_source`):
- "precomputed": the codes shipped with the dataset (`Dataset.codes[space]`), cut to `id_levels`
  levels when that is set, then made unique with `collision_rule`;
- "rqvae": an RQ-VAE (`clairo_bench.generative.rqvae`) trained on the content embeddings of the
  split's training items (from `clairo_bench.features`), applied to every item;
- "auto": "precomputed" for a space the dataset has codes for, else "rqvae".
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch

from clairo_bench.data.dataset import DataError, Dataset
from clairo_bench.data.split import Split
from clairo_bench.data.store import CACHE_READ_ERRORS
from clairo_bench.generative.rqvae import (
    COLLISION_RULES,
    RQVAESettings,
    SemanticIds,
    build_semantic_ids,
    semantic_ids_from_codes,
)
from clairo_bench.generative.seq2seq import (
    Seq2SeqExamples,
    SequenceBatcher,
    TokenLayout,
    build_scheduler,
    constrained_beam_search,
    history_matrix,
    train_epoch,
)
from clairo_bench.generative.t5 import T5Settings, build_t5
from clairo_bench.generative.trie import PrefixTrie
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

SAVED_MODEL_VERSION = 1
SEMANTIC_ID_CACHE_VERSION = 1


@dataclass(frozen=True)
class SemanticIdConfig(MethodConfig):
    """Settings shared by the semantic-ID seq2seq methods.

    Attributes:
        code_source: "auto", "precomputed" or "rqvae" (see the module docstring).
        id_levels: quantizer levels kept from precomputed codes; 0 keeps all of them.
        collision_rule: "extra_level" or "reassign_last" (see `clairo_bench.generative.rqvae`).
        rqvae_hidden_dims, rqvae_code_dim, rqvae_levels, rqvae_codebook_size,
        rqvae_commitment_weight, rqvae_sinkhorn_epsilon, rqvae_epochs, rqvae_batch_size,
        rqvae_optimizer, rqvae_learning_rate, rqvae_weight_decay: the RQ-VAE used when IDs are
            built from content (see `RQVAESettings` for units).
        features: "key=value" settings of `clairo_bench.features.FeatureSettings` for the content
            embeddings (for example "text_model=/path/to/model").
        num_layers, num_decoder_layers, d_model, d_ff, num_heads, d_kv, dropout: T5 size.
        optimizer: "adamw" or "adafactor" (transformers' Adafactor with a fixed learning rate).
        learning_rate: peak learning rate.
        weight_decay: decoupled weight decay.
        schedule: "cosine", "inverse_sqrt" or "constant" after a linear warm-up.
        warmup_steps: warm-up length in optimizer steps; when 0, `warmup_ratio` sets it.
        warmup_ratio: warm-up as a fraction of all planned steps (used when warmup_steps is 0).
        batch_size: training examples per optimizer step.
        max_epochs: upper bound on training epochs.
        patience: epochs without validation NDCG@10 improvement before stopping.
        eval_every: validate every this many epochs (and after the last).
        examples_per_epoch: training examples drawn (without replacement) per epoch; 0 uses all.
        max_grad_norm: gradient clipping norm; 0 disables clipping.
        max_history_items: history items the encoder reads; 0 uses the split's cap.
        prompt_length: prompt tokens per task prepended to the encoder input; 0 for none.
        num_beams: beams per ID space at inference, which bounds the items each space returns.
        beam_batch_size: histories decoded together; bounds inference memory.
    """

    code_source: Literal["auto", "precomputed", "rqvae"] = "auto"
    id_levels: int = 0
    collision_rule: Literal["extra_level", "reassign_last"] = "extra_level"
    rqvae_hidden_dims: tuple[int, ...] = (512, 256, 128)
    rqvae_code_dim: int = 32
    rqvae_levels: int = 3
    rqvae_codebook_size: int = 256
    rqvae_commitment_weight: float = 0.25
    rqvae_sinkhorn_epsilon: float = 0.0
    rqvae_epochs: int = 20000
    rqvae_batch_size: int = 1024
    rqvae_optimizer: Literal["adamw", "adagrad"] = "adagrad"
    rqvae_learning_rate: float = 0.4
    rqvae_weight_decay: float = 0.0
    features: tuple[str, ...] = ()
    num_layers: int = 4
    num_decoder_layers: int = 4
    d_model: int = 128
    d_ff: int = 1024
    num_heads: int = 6
    d_kv: int = 64
    dropout: float = 0.1
    optimizer: Literal["adamw", "adafactor"] = "adamw"
    learning_rate: float = 5e-4
    weight_decay: float = 0.01
    schedule: Literal["cosine", "inverse_sqrt", "constant"] = "cosine"
    warmup_steps: int = 0
    warmup_ratio: float = 0.01
    batch_size: int = 256
    max_epochs: int = 200
    patience: int = 10
    eval_every: int = 1
    examples_per_epoch: int = 0
    max_grad_norm: float = 1.0
    max_history_items: int = 0
    prompt_length: int = 0
    num_beams: int = 20
    beam_batch_size: int = 64

    def __post_init__(self) -> None:
        if self.collision_rule not in COLLISION_RULES:
            raise ValueError(
                f"collision_rule must be one of {', '.join(COLLISION_RULES)}, got {self.collision_rule!r}."
            )
        positive = ("batch_size", "max_epochs", "patience", "eval_every", "num_beams",
                    "beam_batch_size", "d_model", "num_layers", "num_decoder_layers", "num_heads")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}.")
        for name in ("id_levels", "examples_per_epoch", "max_history_items", "prompt_length",
                     "warmup_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}.")

    def rqvae_settings(self) -> RQVAESettings:
        return RQVAESettings(
            hidden_dims=tuple(self.rqvae_hidden_dims),
            code_dim=self.rqvae_code_dim,
            n_levels=self.rqvae_levels,
            codebook_size=self.rqvae_codebook_size,
            commitment_weight=self.rqvae_commitment_weight,
            sinkhorn_epsilon=self.rqvae_sinkhorn_epsilon,
            epochs=self.rqvae_epochs,
            batch_size=self.rqvae_batch_size,
            optimizer=self.rqvae_optimizer,
            learning_rate=self.rqvae_learning_rate,
            weight_decay=self.rqvae_weight_decay,
        )

    def t5_settings(self) -> T5Settings:
        return T5Settings(
            num_layers=self.num_layers,
            num_decoder_layers=self.num_decoder_layers,
            d_model=self.d_model,
            d_ff=self.d_ff,
            num_heads=self.num_heads,
            d_kv=self.d_kv,
            dropout_rate=self.dropout,
        )


@dataclass(frozen=True)
class InferenceRoute:
    """One beam search at inference: read the history in `source`, generate an ID of `target`."""

    task: str
    source: str
    target: str


@dataclass
class TrainingExamples:
    """The examples of every task, redrawn each epoch.

    Attributes:
        fixed: examples used every epoch.
        alternatives: pairs of equally long example sets. Each epoch, every row takes the example
            of one of the two sets at random (MQL4GRec's cross-modal next-item task).
    """

    fixed: Seq2SeqExamples
    alternatives: list[tuple[Seq2SeqExamples, Seq2SeqExamples]]

    def for_epoch(self, generator: torch.Generator, limit: int) -> Seq2SeqExamples:
        """Draw the alternatives, then keep `limit` random examples (all when limit is 0)."""
        parts = [self.fixed]
        for first, second in self.alternatives:
            pick_second = torch.rand(len(first), generator=generator).numpy() < 0.5
            parts.append(first.take(np.flatnonzero(~pick_second)))
            parts.append(second.take(np.flatnonzero(pick_second)))
        examples = Seq2SeqExamples.concatenate(parts)
        if limit and limit < len(examples):
            rows = torch.randperm(len(examples), generator=generator)[:limit].numpy()
            examples = examples.take(np.sort(rows))
        return examples

    def size_per_epoch(self) -> int:
        return len(self.fixed) + sum(len(first) for first, _ in self.alternatives)


def pair_examples(
    histories: np.ndarray, targets: np.ndarray, task: int, source: int, target_space: int
) -> Seq2SeqExamples:
    """Build examples that share one task, history space and target space."""
    n_rows = len(targets)
    return Seq2SeqExamples(
        tasks=np.full(n_rows, task, dtype=np.int64),
        histories=histories,
        sources=np.full(n_rows, source, dtype=np.int64),
        targets=np.asarray(targets, dtype=np.int64),
        target_spaces=np.full(n_rows, target_space, dtype=np.int64),
    )


class SemanticIdMethod(Method):
    """A seq2seq recommender over semantic IDs; subclasses define spaces, tasks and fusion."""

    config_class: ClassVar[type[MethodConfig]] = SemanticIdConfig
    departures: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: MethodConfig | None = None) -> None:
        super().__init__(config)
        self.model: torch.nn.Module | None = None
        self.device = torch.device("cpu")
        self.semantic_ids: dict[str, SemanticIds] = {}
        self.layout: TokenLayout | None = None
        self.batcher: SequenceBatcher | None = None
        self.tries: dict[str, PrefixTrie] = {}
        self.max_history = 0

    def id_spaces(self) -> tuple[str, ...]:
        """ID spaces (modalities) this method gives every item an ID in."""
        raise NotImplementedError

    def tasks(self) -> tuple[str, ...]:
        """Task names, in prompt order."""
        raise NotImplementedError

    def inference_routes(self) -> tuple[InferenceRoute, ...]:
        """Beam searches run by `recommend`; their ranked lists are merged by `fuse`."""
        raise NotImplementedError

    def training_examples(self, split: Split) -> TrainingExamples:
        """Build the training examples of every task from the split's training sequences."""
        raise NotImplementedError

    def fuse(self, items: list[np.ndarray], scores: list[np.ndarray], k: int) -> list[int]:
        """Merge one history's ranked lists (one per route, best first) into at most k items."""
        if len(items) != 1:
            raise NotImplementedError(f"{self.name} must define how to merge {len(items)} lists.")
        return [int(item) for item in items[0] if item >= 0][:k]

    def space_index(self, space: str) -> int:
        return self.id_spaces().index(space)

    def task_index(self, task: str) -> int:
        return self.tasks().index(task)

    def fit(self, dataset: Dataset, split: Split, context: RunContext) -> None:
        config: SemanticIdConfig = self.config  # type: ignore[assignment]
        self.device = torch.device(context.device)
        self.max_history = config.max_history_items or split.settings.max_history_items
        started = time.perf_counter()
        semantic_ids = {
            space: self.build_semantic_ids(space, dataset, split, context) for space in self.id_spaces()
        }
        self.set_vocabulary(semantic_ids)
        context.records["semantic_ids"] = {space: ids.record() for space, ids in semantic_ids.items()}
        context.records["id_sources"] = {
            space: "precomputed codes shipped with the dataset"
            if ids.source.startswith("precomputed") else "RQ-VAE trained here on content embeddings"
            for space, ids in semantic_ids.items()
        }
        context.records["semantic_id_seconds"] = time.perf_counter() - started

        self.train_model(self.training_examples(split), context)
        context.records["fit_seconds"] = time.perf_counter() - started

    def train_model(self, examples: TrainingExamples, context: RunContext) -> None:
        """Train a new T5 on `examples` with early stopping, resuming from `context.work_dir`."""
        config: SemanticIdConfig = self.config  # type: ignore[assignment]
        assert self.layout is not None and self.batcher is not None
        generator = torch.Generator().manual_seed(context.seed)
        torch.manual_seed(context.seed)
        self.model = build_t5(config.t5_settings(), self.layout.vocab_size).to(self.device)
        optimizer = self.build_optimizer()
        per_epoch = examples.size_per_epoch()
        if config.examples_per_epoch:
            per_epoch = min(per_epoch, config.examples_per_epoch)
        steps_per_epoch = math.ceil(per_epoch / config.batch_size)
        total_steps = steps_per_epoch * config.max_epochs
        warmup = config.warmup_steps or int(config.warmup_ratio * total_steps)
        scheduler = build_scheduler(optimizer, config.schedule, total_steps, warmup)
        context.records.update(
            {
                "token_layout": self.layout.describe(),
                "training_examples_per_epoch": per_epoch,
                "training_examples_available": examples.size_per_epoch(),
                "steps_per_epoch": steps_per_epoch,
                "warmup_steps": warmup,
                "max_history_items": self.max_history,
                "parameters": sum(p.numel() for p in self.model.parameters()),
                "inference": [dataclasses.asdict(route) for route in self.inference_routes()],
                "departures_from_paper": list(self.departures),
            }
        )
        batcher = self.batcher
        model = self.model

        def run_epoch(epoch: int) -> float:
            epoch_examples = examples.for_epoch(generator, config.examples_per_epoch)

            def progress(done: int, total: int) -> None:
                if context.progress is not None:
                    context.progress(f"{self.name} epoch {epoch}", done, total)

            loss = train_epoch(
                model, optimizer, batcher, epoch_examples, config.batch_size, generator,
                str(self.device), scheduler, config.max_grad_norm or None, progress,
            )
            if not math.isfinite(loss):
                raise RuntimeError(
                    f"{self.name}: training loss became {loss} in epoch {epoch}; lower "
                    f"learning_rate (now {config.learning_rate}) and start a new run."
                )
            return loss

        outcome = train_with_early_stopping(
            model=model,
            optimizer=optimizer,
            train_epoch=run_epoch,
            validate=lambda: context.validate(self),
            settings=EarlyStopping(
                max_epochs=config.max_epochs, patience=config.patience, eval_every=config.eval_every
            ),
            work_dir=context.work_dir,
            log_epoch=context.log_epoch,
            scheduler=scheduler,
            extra_state=lambda: {"generator": generator.get_state()},
            restore_extra_state=lambda state: generator.set_state(state["generator"]),
        )
        context.records["best_epoch"] = outcome.best_epoch
        context.records["epochs_run"] = outcome.epochs_run
        context.final_validation = outcome.best_metrics

    def build_optimizer(self) -> torch.optim.Optimizer:
        config: SemanticIdConfig = self.config  # type: ignore[assignment]
        assert self.model is not None
        if config.optimizer == "adafactor":
            from transformers.optimization import Adafactor

            return Adafactor(
                self.model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay,
                scale_parameter=False, relative_step=False, warmup_init=False,
            )
        return torch.optim.AdamW(
            self.model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
        )

    def set_vocabulary(self, semantic_ids: dict[str, SemanticIds]) -> None:
        """Lay out the tokens of every space and build the tries and the batcher.

        Spaces are laid out in `id_spaces()` order, whose positions are the space indices of
        `Seq2SeqExamples.sources` and `target_spaces`.
        """
        config: SemanticIdConfig = self.config  # type: ignore[assignment]
        missing = [space for space in self.id_spaces() if space not in semantic_ids]
        if missing:
            raise ValueError(f"{self.name} needs IDs in the spaces {', '.join(missing)}.")
        semantic_ids = {space: semantic_ids[space] for space in self.id_spaces()}
        self.semantic_ids = semantic_ids
        self.layout = TokenLayout(
            {space: ids.level_sizes for space, ids in semantic_ids.items()},
            self.tasks(),
            config.prompt_length,
        )
        item_tokens = {
            space: self.layout.item_tokens(space, ids.codes) for space, ids in semantic_ids.items()
        }
        self.tries = {space: PrefixTrie(tokens) for space, tokens in item_tokens.items()}
        self.batcher = SequenceBatcher(self.layout, item_tokens)

    def build_semantic_ids(
        self, space: str, dataset: Dataset, split: Split, context: RunContext
    ) -> SemanticIds:
        """Make unique IDs of every item in `space` from shipped codes or from content."""
        config: SemanticIdConfig = self.config  # type: ignore[assignment]
        use_codes = config.code_source == "precomputed" or (
            config.code_source == "auto" and space in dataset.codes
        )
        if use_codes:
            if space not in dataset.codes:
                available = ", ".join(sorted(dataset.codes)) or "none"
                raise DataError(
                    f"code_source=precomputed, but dataset {dataset.name!r} ships no {space} codes "
                    f"(available: {available}); set {self.name}.code_source=rqvae or auto."
                )
            item_codes = dataset.codes[space]
            codes = item_codes.codes
            kept = config.id_levels or item_codes.n_levels
            if kept > item_codes.n_levels:
                raise ConfigError(
                    f"id_levels={kept}, but the {space} codes of {dataset.name!r} have only "
                    f"{item_codes.n_levels} levels; lower id_levels."
                )
            source = (
                f"precomputed {space} codes from {item_codes.source}: first {kept} of "
                f"{item_codes.n_levels} levels x {item_codes.codebook_size} codes"
            )
            return semantic_ids_from_codes(
                codes[:, :kept], item_codes.codebook_size, config.collision_rule, source
            )
        return self.rqvae_semantic_ids(space, dataset, split, context)

    def rqvae_semantic_ids(
        self, space: str, dataset: Dataset, split: Split, context: RunContext
    ) -> SemanticIds:
        """Train (or read from the cache) an RQ-VAE on content embeddings of `space`."""
        from clairo_bench.features.cache import StageCache, hash_array
        from clairo_bench.features.embeddings import image_embedding_stage, text_embedding_stage
        from clairo_bench.features.settings import FeatureSettings, apply_overrides, parse_assignments

        config: SemanticIdConfig = self.config  # type: ignore[assignment]
        if space not in ("text", "image"):
            raise ConfigError(f"{self.name} cannot embed the content of ID space {space!r}.")
        settings = apply_overrides(FeatureSettings(), parse_assignments(list(config.features)))
        cache = StageCache(Path(context.cache_dir))
        if space == "text":
            stage = text_embedding_stage(dataset, settings, cache)
        else:
            stage = image_embedding_stage(dataset, settings, cache, Path(context.cache_dir))
        vectors = stage.arrays["vectors"]
        present = stage.arrays["present"].astype(bool)
        train_rows = np.intersect1d(split.train_items(), np.flatnonzero(present))
        rqvae = config.rqvae_settings()
        key_payload = {
            "version": SEMANTIC_ID_CACHE_VERSION,
            "embedding_stage_key": stage.key,
            "train_rows": hash_array(train_rows),
            "rqvae": dataclasses.asdict(rqvae),
            "rule": config.collision_rule,
            "seed": context.seed,
        }
        key = hash_array(np.frombuffer(json.dumps(key_payload, sort_keys=True).encode(), np.uint8))
        path = Path(context.cache_dir) / "semantic_ids" / f"{dataset.name}-{space}-{key}.npz"
        if path.exists():
            try:
                with np.load(path, allow_pickle=False) as stored:
                    record = json.loads(bytes(stored["record"]).decode())
                    codes = stored["codes"]
                cached = SemanticIds.from_record(codes, record | {"source": record["source"] + " (cached)"})
            except CACHE_READ_ERRORS as error:
                # A cache file is rebuilt from its inputs, so a damaged one costs only time.
                logger.warning("Semantic ID cache file %s is unreadable (%s); rebuilding it.", path, error)
            else:
                logger.info("Semantic IDs cache hit: %s", path)
                return cached
        ids, _ = build_semantic_ids(
            vectors, rqvae, config.collision_rule, train_rows=train_rows, seed=context.seed,
            device=str(self.device), source=f"RQ-VAE on {space} embeddings ({stage.meta.get('source', stage.stage)})",
        )
        record = ids.record()
        with atomic_path(path) as temporary:
            with open(temporary, "wb") as handle:
                np.savez_compressed(
                    handle, codes=ids.codes,
                    record=np.frombuffer(json.dumps(record).encode(), dtype=np.uint8),
                )
        return ids

    def recommend(self, histories: Sequence[np.ndarray], k: int) -> Recommendations:
        if self.model is None or self.batcher is None:
            raise RuntimeError(f"{self.name} has no model; call fit() or load() first.")
        config: SemanticIdConfig = self.config  # type: ignore[assignment]
        matrix = history_matrix(histories, self.max_history)
        if len(matrix) == 0:
            return Recommendations(items=np.zeros((0, k), dtype=np.int64))
        routes = self.inference_routes()
        route_items: list[np.ndarray] = []
        route_scores: list[np.ndarray] = []
        for route in routes:
            examples = pair_examples(
                matrix, np.full(len(matrix), -1), self.task_index(route.task),
                self.space_index(route.source), self.space_index(route.target),
            )
            items = np.full((len(matrix), config.num_beams), -1, dtype=np.int64)
            scores = np.full((len(matrix), config.num_beams), -np.inf)
            # Histories of similar length are decoded together, so little of a batch is padding.
            order = np.argsort(self.batcher.input_lengths(examples), kind="stable")
            for start in range(0, len(order), config.beam_batch_size):
                rows = order[start : start + config.beam_batch_size]
                input_ids, attention_mask = self.batcher.encoder_inputs(examples.take(rows))
                output = constrained_beam_search(
                    self.model, input_ids.to(self.device), attention_mask.to(self.device),
                    self.tries[route.target], config.num_beams,
                )
                items[rows] = output.items
                scores[rows] = output.scores
            route_items.append(items)
            route_scores.append(scores)

        ranked = np.full((len(matrix), k), -1, dtype=np.int64)
        for row in range(len(matrix)):
            merged = self.fuse(
                [items[row] for items in route_items], [scores[row] for scores in route_scores], k
            )
            ranked[row, : len(merged)] = merged
        generated = sum(int((items >= 0).sum()) for items in route_items)
        return Recommendations(items=ranked, invalid_generations=0, total_generations=generated)

    def save(self, directory: Path) -> None:
        """Write the weights (model.pt), the IDs (semantic_ids.npz) and model.json."""
        if self.model is None:
            raise RuntimeError(f"{self.name} has no model to save; call fit() first.")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(directory / "model.pt") as temporary:
            torch.save(self.model.state_dict(), temporary)
        with atomic_path(directory / "semantic_ids.npz") as temporary:
            with open(temporary, "wb") as handle:
                np.savez_compressed(handle, **{space: ids.codes for space, ids in self.semantic_ids.items()})
        records = {space: ids.record() for space, ids in self.semantic_ids.items()}
        atomic_write_json(
            directory / "model.json",
            {
                "version": SAVED_MODEL_VERSION,
                "method": self.name,
                "config": dataclasses.asdict(self.config),
                "max_history": self.max_history,
                "semantic_ids": records,
            },
        )

    def load(self, directory: Path, dataset: Dataset, split: Split) -> None:
        """Restore a model written by `save`, on the CPU, with the config it was trained with."""
        directory = Path(directory)
        description_path = directory / "model.json"
        description = read_saved_description(directory, self.name, SAVED_MODEL_VERSION)
        saved_values = {
            key: tuple(value) if isinstance(value, list) else value
            for key, value in description["config"].items()
        }
        saved_config = build_config(self.config_class, saved_values, owner=self.name)
        if saved_config != self.config:
            logger.warning("%s: using the config saved in %s instead of the one given.",
                           self.name, description_path)
            self.config = saved_config

        with np.load(directory / "semantic_ids.npz") as stored:
            codes = {space: stored[space] for space in stored.files}
        semantic_ids = {}
        for space, record in description["semantic_ids"].items():
            if codes[space].shape[0] != split.n_items:
                raise DataError(
                    f"{directory} contains {space} IDs of {codes[space].shape[0]} items, but the "
                    f"split of {split.dataset_name!r} has {split.n_items}; use the run's dataset."
                )
            semantic_ids[space] = SemanticIds.from_record(codes[space], record)

        self.max_history = int(description["max_history"])
        self.set_vocabulary(semantic_ids)
        assert self.layout is not None
        config: SemanticIdConfig = self.config  # type: ignore[assignment]
        self.device = torch.device("cpu")
        self.model = build_t5(config.t5_settings(), self.layout.vocab_size)
        state = torch.load(directory / "model.pt", map_location="cpu", weights_only=True)
        self.model.load_state_dict(state)
        self.model.eval()
