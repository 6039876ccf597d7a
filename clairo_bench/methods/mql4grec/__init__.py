"""MQL4GRec: generative recommendation over text and image quantitative languages.

Zhai, J. et al. "Multimodal Quantitative Language for Generative Recommendation." ICLR 2025.
Each item gets two IDs, written in separate token vocabularies: 4 RQ-VAE codes of its text
embedding and 4 RQ-VAE codes of its image embedding (256 codes per level). One T5
encoder-decoder learns, each task marked by its own prompt tokens:
- text_next: the next item's text ID from the history's text IDs;
- image_next: the next item's image ID from the history's image IDs;
- text_to_image and image_to_text: one item's ID in the other modality (every catalogue item,
  because the IDs come from content only);
- cross_next: the next item's ID in one modality from the history in the other. Each epoch,
  every training pair takes one of the two directions at random, as in the authors' code.
At inference a trie-constrained beam search runs per modality (text_next and image_next). The
two ranked lists are merged with the rule of the authors' code (`fuse_by_agreement`). An item
found by one list keeps its beam score (mean token log-probability), and an item found by both
gets the mean of its two scores plus 1.

IDs: datasets that ship text and image codes (the embedded Instruments data carries the codes of
the MQL4GRec release) use them directly; otherwise RQ-VAEs (MQL4GRec's: encoder
2048-1024-512-256-128-64, latent 32, Sinkhorn balancing of the last level with epsilon 0.003,
AdamW, learning rate 1e-3) are trained on the content embeddings from `clairo_bench.features`.
Items that share an ID are separated by MQL4GRec's rule (`collision_rule=reassign_last`). Without
distances (shipped codes) the next free last-level code in index order is taken.

Out of scope: the paper pre-trains the model on several other Amazon categories before
fine-tuning on the target dataset. That multi-category pre-training stage is not implemented;
the model is trained on the target dataset only (the setting that later papers report as
"MQL4GRec without pre-training").

The `paper` profile uses the `T5Settings` defaults (4+4 layers, d_model 128, d_ff 1024, 6 heads
of 64) and the training settings of the authors' public code (zhaodong-liu/MQL4GRec): from its
argument defaults, AdamW with weight decay 0.01, cosine schedule with 1% warm-up, patience 10, 4
prompt tokens per task and histories of up to 20 items; from its fine-tuning script, learning
rate 5e-4, 200 epochs and 20 beams per modality. The batch of 256 is the one in the run name that
its ensemble script reads.
NOTE: that fine-tuning script itself sets a per-device batch of 4096, so the published batch
size is uncertain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from clairo_bench.data.split import Split
from clairo_bench.generative.fusion import fuse_by_agreement
from clairo_bench.generative.seq2seq import Seq2SeqExamples, history_matrix
from clairo_bench.methods.base import RunContext
from clairo_bench.methods.tiger.engine import (
    InferenceRoute,
    SemanticIdConfig,
    SemanticIdMethod,
    TrainingExamples,
    pair_examples,
)

__all__ = ["MQL4GRec", "MQL4GRecConfig", "TASKS"]

TASKS = ("text_next", "image_next", "text_to_image", "image_to_text", "cross_next")


@dataclass(frozen=True)
class MQL4GRecConfig(SemanticIdConfig):
    """MQL4GRec settings; defaults are the `paper` profile (see `SemanticIdConfig` for units).

    Attributes:
        training_tasks: tasks trained, a non-empty subset of TASKS; prompts exist for all five.
        inference_modalities: modalities decoded at inference ("text", "image" or both).
        agreement_bonus: score bonus of an item found by both modalities' beam searches.
    """

    collision_rule: Literal["extra_level", "reassign_last"] = "reassign_last"
    rqvae_hidden_dims: tuple[int, ...] = (2048, 1024, 512, 256, 128, 64)
    rqvae_levels: int = 4
    rqvae_sinkhorn_epsilon: float = 0.003
    rqvae_epochs: int = 500
    rqvae_batch_size: int = 2048
    rqvae_optimizer: Literal["adamw", "adagrad"] = "adamw"
    rqvae_learning_rate: float = 1e-3
    rqvae_weight_decay: float = 1e-4
    prompt_length: int = 4
    training_tasks: tuple[str, ...] = TASKS
    inference_modalities: tuple[str, ...] = ("text", "image")
    agreement_bonus: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        unknown = sorted(set(self.training_tasks) - set(TASKS))
        if unknown or not self.training_tasks:
            raise ValueError(
                f"training_tasks must be a non-empty subset of {', '.join(TASKS)}; "
                f"got {', '.join(self.training_tasks) or 'none'}."
            )
        if not self.inference_modalities or set(self.inference_modalities) - {"text", "image"}:
            raise ValueError(
                f"inference_modalities must be text, image or both, got {self.inference_modalities}."
            )


class MQL4GRec(SemanticIdMethod):
    name = "mql4grec"
    config_class = MQL4GRecConfig
    description = (
        "T5 over text and image semantic IDs with translation tasks and fused beam search "
        "(Zhai et al., ICLR 2025)."
    )
    departures = (
        "no multi-category pre-training: the model is trained on the target dataset only",
        "early stopping uses the fused text+image NDCG@10 on validation, where the authors "
        "select on the text next-item task",
        "beam-search scores are normalized over the tokens of the level being generated, not "
        "over the whole vocabulary",
    )
    profiles = {
        "smoke": {
            "num_layers": 1, "num_decoder_layers": 1, "d_model": 32, "d_ff": 64, "num_heads": 2,
            "d_kv": 16, "prompt_length": 1, "max_epochs": 1, "patience": 1, "num_beams": 5,
            "batch_size": 64, "learning_rate": 3e-3, "schedule": "constant", "warmup_ratio": 0.0,
            "rqvae_epochs": 5, "rqvae_codebook_size": 16, "rqvae_hidden_dims": (32,),
        },
        # quick: about 15 minutes on 2 CPU cores for Instruments (17,112 users, 6,250 items),
        # every user scored. Sized with benchmarks/bench_semantic_id_methods.py (1 thread, shared
        # 2-core machine): a step of 256 examples costs about 0.28 CPU-s, and one scoring pass of
        # all users with 10 beams per modality about 72 CPU-s. An epoch of 130,000 examples is
        # about half of all 267,170 task examples, so 4 epochs plus 4 passes is an estimated 14
        # minutes of one core.
        "quick": {
            "num_layers": 2, "num_decoder_layers": 2, "d_model": 128, "d_ff": 512, "num_heads": 4,
            "d_kv": 32, "prompt_length": 2, "learning_rate": 2e-3, "warmup_ratio": 0.02,
            "batch_size": 256, "examples_per_epoch": 130000, "max_epochs": 4, "patience": 2,
            "eval_every": 2, "num_beams": 10, "rqvae_epochs": 100,
        },
    }

    def id_spaces(self) -> tuple[str, ...]:
        return ("text", "image")

    def tasks(self) -> tuple[str, ...]:
        return TASKS

    def inference_routes(self) -> tuple[InferenceRoute, ...]:
        config: MQL4GRecConfig = self.config  # type: ignore[assignment]
        return tuple(
            InferenceRoute(task=f"{modality}_next", source=modality, target=modality)
            for modality in config.inference_modalities
        )

    def fit(self, dataset, split, context: RunContext) -> None:
        context.records["pretraining"] = (
            "not run: the multi-category pre-training stage of MQL4GRec is out of scope; the "
            "model is trained on the target dataset only"
        )
        super().fit(dataset, split, context)

    def training_examples(self, split: Split) -> TrainingExamples:
        config: MQL4GRecConfig = self.config  # type: ignore[assignment]
        text, image = self.space_index("text"), self.space_index("image")
        histories, targets = split.train_pairs()
        matrix = history_matrix(histories, self.max_history)
        items = np.arange(split.n_items, dtype=np.int64)
        single = items[:, None]

        fixed = []
        alternatives = []
        wanted = set(config.training_tasks)
        if "text_next" in wanted:
            fixed.append(pair_examples(matrix, targets, self.task_index("text_next"), text, text))
        if "image_next" in wanted:
            fixed.append(pair_examples(matrix, targets, self.task_index("image_next"), image, image))
        if "text_to_image" in wanted:
            fixed.append(pair_examples(single, items, self.task_index("text_to_image"), text, image))
        if "image_to_text" in wanted:
            fixed.append(pair_examples(single, items, self.task_index("image_to_text"), image, text))

        if "cross_next" in wanted:
            task = self.task_index("cross_next")
            alternatives.append(
                (
                    pair_examples(matrix, targets, task, text, image),
                    pair_examples(matrix, targets, task, image, text),
                )
            )

        if fixed:
            base = Seq2SeqExamples.concatenate(fixed)
        else:
            base = pair_examples(matrix[:0], targets[:0], 0, text, text)
        return TrainingExamples(fixed=base, alternatives=alternatives)

    def fuse(self, items: list[np.ndarray], scores: list[np.ndarray], k: int) -> list[int]:
        config: MQL4GRecConfig = self.config  # type: ignore[assignment]
        return fuse_by_agreement(
            [list(row) for row in items], [list(row) for row in scores], k,
            agreement_bonus=config.agreement_bonus,
        )
