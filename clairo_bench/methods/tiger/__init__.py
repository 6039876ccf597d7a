"""TIGER: generative retrieval over RQ-VAE semantic IDs.

Rajput, S. et al. "Recommender Systems with Generative Retrieval." NeurIPS 2023.
Every item gets a semantic ID: the codes of an RQ-VAE (3 levels x 256 codes) over its text
embedding, plus a fourth code that separates items sharing the first three. A T5 encoder-decoder
reads the IDs of the user's recent items and generates the ID of the next item. Beam search,
constrained by a prefix trie of the catalogue's IDs, returns the ranked items.

On datasets that ship text codes (`Dataset.codes["text"]`, such as the embedded Instruments data,
whose codes are 4-level RQ-VAE codes of LLaMA text embeddings from the MQL4GRec release), the
first 3 levels of those codes are used with the extra de-duplication level, and this is recorded
in the run's records. Elsewhere an RQ-VAE is trained on text embeddings from
`clairo_bench.features`.

The `paper` profile uses the settings described in the TIGER paper: RQ-VAE encoder 512-256-128,
latent 32, beta 0.25, Adagrad with learning rate 0.4, batch 1024, 20k epochs, k-means
initialisation; T5 with 4+4 layers, d_model 128, 6 heads of 64, d_ff 1024, dropout 0.1, batch 256,
learning rate 0.01 with inverse-square-root decay after 10k warm-up steps.
NOTE: these paper values are quoted from memory of the paper's implementation section and were
not checked against the paper text here; the optimizer of the transformer (Adafactor, as in T5X,
which the paper uses) is an assumption.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from clairo_bench.data.split import Split
from clairo_bench.generative.seq2seq import history_matrix
from clairo_bench.methods.tiger.engine import (
    InferenceRoute,
    SemanticIdConfig,
    SemanticIdMethod,
    TrainingExamples,
    pair_examples,
)

__all__ = ["TIGER", "TIGERConfig"]

NEXT_ITEM_TASK = "next_item"


@dataclass(frozen=True)
class TIGERConfig(SemanticIdConfig):
    """TIGER settings; defaults are the `paper` profile (see `SemanticIdConfig` for units)."""

    id_levels: int = 3
    collision_rule: Literal["extra_level", "reassign_last"] = "extra_level"
    optimizer: Literal["adamw", "adafactor"] = "adafactor"
    learning_rate: float = 0.01
    weight_decay: float = 0.0
    schedule: Literal["cosine", "inverse_sqrt", "constant"] = "inverse_sqrt"
    warmup_steps: int = 10000
    batch_size: int = 256
    max_epochs: int = 200
    patience: int = 10


class TIGER(SemanticIdMethod):
    name = "tiger"
    config_class = TIGERConfig
    description = "Generative retrieval of RQ-VAE text semantic IDs with a T5 (Rajput et al., NeurIPS 2023)."
    departures = (
        "no user-ID token: Method.recommend receives histories without user ids, so the hashed "
        "user token that TIGER prepends is left out",
        "training stops early on validation NDCG@10 instead of running a fixed number of steps",
        "beam-search scores are normalized over the tokens of the level being generated",
    )
    profiles = {
        "smoke": {
            "num_layers": 1, "num_decoder_layers": 1, "d_model": 32, "d_ff": 64, "num_heads": 2,
            "d_kv": 16, "max_epochs": 1, "patience": 1, "num_beams": 5, "batch_size": 64,
            "optimizer": "adamw", "learning_rate": 3e-3, "schedule": "constant",
            "warmup_steps": 0, "warmup_ratio": 0.0, "rqvae_epochs": 5,
            "rqvae_optimizer": "adamw", "rqvae_learning_rate": 1e-3, "rqvae_codebook_size": 16,
        },
        # quick: about 15 minutes on 2 CPU cores for Instruments (17,112 users, 6,250 items),
        # every user scored. Sized with benchmarks/bench_semantic_id_methods.py (1 thread, shared
        # 2-core machine): a step of 256 examples costs about 0.25 CPU-s, and one scoring pass of
        # all users with 20 beams about 55 CPU-s. So 6 epochs of 332 steps plus 5 passes is an
        # estimated 13 minutes of one core.
        "quick": {
            "num_layers": 2, "num_decoder_layers": 2, "d_model": 128, "d_ff": 512, "num_heads": 4,
            "d_kv": 32, "dropout": 0.1, "optimizer": "adamw", "learning_rate": 2e-3,
            "weight_decay": 0.01, "schedule": "cosine", "warmup_steps": 0, "warmup_ratio": 0.02,
            "batch_size": 256, "max_epochs": 6, "patience": 2, "eval_every": 2,
            "num_beams": 20, "rqvae_epochs": 300, "rqvae_optimizer": "adamw",
            "rqvae_learning_rate": 1e-3,
        },
    }

    def id_spaces(self) -> tuple[str, ...]:
        return ("text",)

    def tasks(self) -> tuple[str, ...]:
        return (NEXT_ITEM_TASK,)

    def inference_routes(self) -> tuple[InferenceRoute, ...]:
        return (InferenceRoute(task=NEXT_ITEM_TASK, source="text", target="text"),)

    def training_examples(self, split: Split) -> TrainingExamples:
        histories, targets = split.train_pairs()
        matrix = history_matrix(histories, self.max_history)
        examples = pair_examples(matrix, targets, task=0, source=0, target_space=0)
        return TrainingExamples(fixed=examples, alternatives=[])
