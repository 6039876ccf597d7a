"""The ActionPiece method: item features -> vocabulary -> T5 trained with SPR -> beam search.

ActionPiece (Hou et al., "ActionPiece: Contextually Tokenizing Action Sequences for Generative
Recommendation", ICML 2025) represents each item as a set of discrete features: text codes plus a
de-duplication feature. It builds a vocabulary by merging features that co-occur inside items and
across neighbouring items of the training sequences. A T5 model then learns to generate the next
item's tokens from the tokens of the history.

`ActionPiece` is also the machinery of CLAIRO (`clairo_bench.methods.clairo`), which overrides
`feature_request`, `pair_weights` and `extra_records` only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import get_cosine_schedule_with_warmup

from clairo_bench.data.dataset import Dataset
from clairo_bench.data.split import EvalPairs, Split
from clairo_bench.evaluation import EvalSettings, Evaluator
from clairo_bench.features import ItemFeatureSet
from clairo_bench.features.cache import hash_array
from clairo_bench.io import atomic_path, atomic_write_json
from clairo_bench.methods.actionpiece.config import (
    QUICK_PROFILE,
    SMOKE_PROFILE,
    ActionPieceConfig,
)
from clairo_bench.methods.actionpiece.inference import InferenceSettings, generate_recommendations
from clairo_bench.methods.actionpiece.item_features import FeatureRequest, resolve_item_features
from clairo_bench.methods.actionpiece.model import build_model
from clairo_bench.methods.actionpiece.training import SPRTrainingData, train_one_epoch
from clairo_bench.methods.base import Method, Recommendations, RunContext
from clairo_bench.tokenization.actionpiece import VOCABULARY_FORMAT_VERSION, ActionPieceVocabulary
from clairo_bench.tokenization.actionpiece_segment import ActionPieceTokenizer
from clairo_bench.training import EarlyStopping, train_with_early_stopping

logger = logging.getLogger(__name__)

SAVE_FORMAT_VERSION = 1
VOCABULARY_CACHE_VERSION = 1
VOCABULARY_FILE = "vocabulary.json"
STATISTICS_FILE = "vocabulary_statistics.json"
VALIDATION_SUBSET_SEED = 0
"""Seed of the validation-user subset; fixed so that every run on a split uses the same users."""


class ActionPiece(Method):
    name = "actionpiece"
    config_class = ActionPieceConfig
    description = (
        "ActionPiece (Hou et al., ICML 2025): a vocabulary of item text codes merged within and "
        "across items, a T5 trained on random segmentations, beam search over several."
    )
    profiles = {"quick": QUICK_PROFILE, "smoke": SMOKE_PROFILE}

    config: ActionPieceConfig

    def feature_request(self) -> FeatureRequest:
        """Describe the item features this method tokenizes: text codes only."""
        config = self.config
        return FeatureRequest(
            source=config.feature_source,
            modalities=("text",),
            layout="per_modality",
            settings={
                "text_pca_dim": config.text_pca_dim,
                "pca_whiten": config.pca_whiten,
                "opq_subquantizers": config.opq_subquantizers,
                "opq_bits": config.opq_bits,
            },
            overrides=config.feature_settings,
        )

    def pair_weights(self) -> dict[str, float] | None:
        """Return weights per modality pair for the vocabulary build; None weighs all pairs 1."""
        return None

    def extra_records(self) -> dict[str, Any]:
        """Return facts a subclass adds to the run records."""
        return {}

    def statistics_notes(self, features: ItemFeatureSet) -> dict[str, Any]:
        """Return notes a subclass adds to the vocabulary statistics."""
        return {}

    def fit(self, dataset: Dataset, split: Split, context: RunContext) -> None:
        config = self.config
        features, feature_record = resolve_item_features(
            dataset, split, self.feature_request(), context
        )
        context.records["features"] = feature_record
        context.records.update(self.extra_records())

        vocabulary = self._vocabulary(features, split, context)
        self._prepare(vocabulary, features.features, seed=context.seed, device=context.device)
        statistics = vocabulary.statistics(features.features, split.train_sequences)
        _add_example_item_ids(statistics, dataset)
        statistics.update(self.statistics_notes(features))
        context.records["vocabulary"] = statistics
        atomic_write_json(context.work_dir / STATISTICS_FILE, statistics)

        histories, targets = split.train_pairs()
        data = SPRTrainingData(self.tokenizer, histories, targets, seed=context.seed,
                               length_grouping=config.length_grouping)
        optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        total_steps = config.max_epochs * data.steps_per_epoch(config.batch_size)
        scheduler = get_cosine_schedule_with_warmup(optimizer, config.warmup_steps, total_steps)
        validate, validation_record = self._validation(split, context)
        context.records["validation"] = validation_record
        context.records["inference"] = self._inference_record()

        def train_epoch(epoch: int) -> float:
            return train_one_epoch(
                self.model, optimizer, scheduler, data, epoch, config.batch_size,
                self.device, config.max_grad_norm,
            )

        outcome = train_with_early_stopping(
            self.model,
            optimizer,
            train_epoch,
            validate,
            EarlyStopping(
                max_epochs=config.max_epochs, patience=config.patience, metric="ndcg@10",
                eval_every=config.eval_every,
            ),
            context.work_dir / "training",
            context.log_epoch,
            scheduler=scheduler,
        )
        context.records["training"] = {
            "training_pairs": len(data),
            "steps_per_epoch": data.steps_per_epoch(config.batch_size),
            "best_epoch": outcome.best_epoch,
            "best_validation_ndcg@10": outcome.best_score,
            "epochs_run": outcome.epochs_run,
            "segmentation": "a new random segmentation of every history in every epoch (SPR)",
            "batches": (f"windows of {config.length_grouping} batches sorted by history length"
                        if config.length_grouping else "uniformly random"),
        }
        # With a validation subset these metrics do not come from `context.validate`, and the
        # runner scores the full validation set itself.
        context.final_validation = outcome.best_metrics

    def recommend(self, histories: Sequence[np.ndarray], k: int) -> Recommendations:
        return generate_recommendations(
            self.model, self.tokenizer, histories, k, self._inference_settings()
        )

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.vocabulary.save(directory / VOCABULARY_FILE)
        with atomic_path(directory / "item_features.npy") as temporary:
            with open(temporary, "wb") as handle:
                np.save(handle, self.item_features)
        with atomic_path(directory / "model.pt") as temporary:
            torch.save(self.model.state_dict(), temporary)
        atomic_write_json(
            directory / "method.json",
            {
                "format_version": SAVE_FORMAT_VERSION,
                "method": self.name,
                "config": dataclasses.asdict(self.config),
                "seed": self.seed,
                "n_items": int(self.item_features.shape[0]),
                "vocabulary_size": self.vocabulary.size,
            },
        )

    def load(self, directory: Path, dataset: Dataset, split: Split) -> None:
        directory = Path(directory)
        state = json.loads((directory / "method.json").read_text())
        if state.get("format_version") != SAVE_FORMAT_VERSION:
            raise ValueError(
                f"{directory / 'method.json'} has format version {state.get('format_version')}, "
                f"expected {SAVE_FORMAT_VERSION}; re-run the job to save the model again."
            )
        saved_config = json.loads(json.dumps(state["config"]))
        current_config = json.loads(json.dumps(dataclasses.asdict(self.config)))
        if saved_config != current_config:
            changed = sorted(key for key in current_config
                             if saved_config.get(key) != current_config[key])
            raise ValueError(
                f"The model in {directory} was trained with other settings ({', '.join(changed)}); "
                "load it with the config recorded in the run."
            )
        if state["n_items"] != split.n_items:
            raise ValueError(
                f"The model in {directory} covers {state['n_items']} items but the split has "
                f"{split.n_items}; load it with the dataset it was trained on."
            )
        vocabulary = ActionPieceVocabulary.load(directory / VOCABULARY_FILE)
        item_features = np.load(directory / "item_features.npy")
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self._prepare(vocabulary, item_features, seed=state["seed"], device=device)
        weights = torch.load(directory / "model.pt", map_location=device, weights_only=True)
        self.model.load_state_dict(weights)
        self.model.eval()

    def _prepare(self, vocabulary: ActionPieceVocabulary, item_features: np.ndarray, seed: int,
                 device: str) -> None:
        """Set the tokenizer and a fresh model; `fit` then trains it, `load` fills its weights."""
        self.vocabulary = vocabulary
        self.item_features = np.asarray(item_features, dtype=np.int64)
        self.tokenizer = ActionPieceTokenizer(vocabulary, self.item_features)
        self.seed = seed
        self.device = device
        self.model = build_model(self.config.t5_settings(), vocabulary.size).to(device)

    def _inference_settings(self) -> InferenceSettings:
        config = self.config
        return InferenceSettings(
            num_beams=config.num_beams,
            segmentations=config.inference_segmentations,
            batch_size=config.generation_batch_size,
            max_new_tokens=int(self.item_features.shape[1]) + 1,
            seed=self.seed,
        )

    def _inference_record(self) -> dict[str, Any]:
        settings = self._inference_settings()
        return {
            "num_beams": settings.num_beams,
            "segmentations": settings.segmentations,
            "max_new_tokens": settings.max_new_tokens,
            "fusion": "mean over segmentations of 1/log2(beam position + 2), invalid beams "
                      "keep their positions",
            "invalid_generations": "counted, never replaced; lists padded with -1",
        }

    def _vocabulary(self, features: ItemFeatureSet, split: Split,
                    context: RunContext) -> ActionPieceVocabulary:
        """Load the vocabulary of these features and corpus from the cache, or build it."""
        pair_weights = self.pair_weights()
        key = vocabulary_cache_key(features, split.key, self.config.vocab_size, pair_weights)
        path = Path(context.cache_dir) / "vocabularies" / f"{split.dataset_name}-{key}.json"
        if path.exists():
            try:
                vocabulary = ActionPieceVocabulary.load(path)
            except (ValueError, KeyError, TypeError, OSError, RecursionError) as error:
                # A cache file is rebuilt from its inputs, so a damaged one costs only time.
                logger.warning("Vocabulary cache file %s is unreadable (%s); rebuilding it.", path, error)
            else:
                logger.info("Vocabulary cache hit: %s", path)
                return vocabulary
        logger.info("Building an ActionPiece vocabulary of %d tokens for %s.",
                    self.config.vocab_size, split.dataset_name)
        progress = None
        if context.progress is not None:
            def progress(done: int, total: int) -> None:
                context.progress("ActionPiece vocabulary merges", done, total)
        vocabulary = ActionPieceVocabulary.build(
            features.features,
            split.train_sequences,
            self.config.vocab_size,
            category_modalities=features.category_modalities,
            pair_weights=pair_weights,
            progress=progress,
        )
        vocabulary.save(path)
        logger.info("Vocabulary cached: %s", path)
        return vocabulary

    def _validation(self, split: Split, context: RunContext):
        """Return the early-stopping validation function and a record of what it scores."""
        n_users = self.config.validation_users
        if n_users is None or n_users >= len(split.valid):
            record = {"users": len(split.valid), "of": len(split.valid),
                      "evaluator": "the run's evaluator (context.validate)"}
            return (lambda: context.validate(self)), record
        chooser = np.random.default_rng(VALIDATION_SUBSET_SEED)
        rows = np.sort(chooser.choice(len(split.valid), size=n_users, replace=False))
        pairs = EvalPairs(
            users=split.valid.users[rows],
            histories=[split.valid.histories[row] for row in rows],
            targets=split.valid.targets[rows],
        )
        # NOTE: the subset is scored with default EvalSettings because a method has no access to
        # the run's evaluation settings. Only early stopping uses it, never a reported metric.
        evaluator = Evaluator(EvalSettings())
        record = {
            "users": n_users,
            "of": len(split.valid),
            "selection": f"uniform without replacement, seed {VALIDATION_SUBSET_SEED}",
            "evaluator": "default EvalSettings on the subset, for early stopping only",
        }
        return (lambda: evaluator.evaluate(self, pairs, split.n_items).summary()), record


def vocabulary_cache_key(features: ItemFeatureSet, split_key: str, vocab_size: int,
                         pair_weights: Mapping[str, float] | None) -> str:
    """Hash everything that shapes a vocabulary: features, corpus, size, weights, versions."""
    payload = {
        "features": hash_array(features.features),
        "category_modalities": list(features.category_modalities),
        "corpus": split_key,
        "vocab_size": vocab_size,
        "pair_weights": dict(sorted(pair_weights.items())) if pair_weights else None,
        "version": VOCABULARY_CACHE_VERSION,
        "vocabulary_format": VOCABULARY_FORMAT_VERSION,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _add_example_item_ids(statistics: dict[str, Any], dataset: Dataset) -> None:
    """Add the identifiers (ASINs) of the example items of the top cross-modal merges."""
    for merge in statistics.get("modality", {}).get("top_cross_modal_merges", []):
        merge["example_item_ids"] = [dataset.item_ids[item] for item in merge["example_items"]]
