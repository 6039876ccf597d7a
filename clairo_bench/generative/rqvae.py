"""RQ-VAE semantic IDs: residual quantization of item embeddings into short code tuples.

The model follows TIGER (Rajput et al., "Recommender Systems with Generative Retrieval", NeurIPS
2023) and the quantizer of MQL4GRec (Zhai et al., "Multimodal Quantitative Language for
Generative Recommendation", ICLR 2025):
- an MLP encoder maps an embedding to a latent of `code_dim` values, and an MLP decoder maps the
  quantized latent back;
- `n_levels` codebooks of `codebook_size` vectors quantize the latent residually: level l picks
  the codeword nearest to what levels 0..l-1 left unexplained;
- each codebook is initialised by k-means on the residuals of the first training batch;
- the loss is the reconstruction MSE plus, per level, ||sg(r) - e||^2 + beta ||r - sg(e)||^2
  (codebook and commitment terms), averaged over levels; gradients pass the quantizer by the
  straight-through estimator;
- optionally, during training the last level assigns codes by Sinkhorn-Knopp balancing instead of
  nearest codeword, which spreads items over the last codebook (MQL4GRec uses epsilon 0.003).
  Final codes always take the nearest codeword.

The model is trained on the embeddings of training-split items only and then applied to every
item. Two rules make the resulting IDs unique (see `resolve_collisions`):
- "extra_level" (TIGER): append a level that numbers the items sharing a tuple 0, 1, 2, ... in
  item-index order; items without collision get 0.
- "reassign_last" (MQL4GRec): in each group sharing a tuple, the item nearest to its last-level
  codeword keeps the tuple, and each other item takes the nearest last-level codeword whose tuple
  is still free. If none is free, the second-to-last level moves to its next-nearest codeword.
  Without distances (precomputed codes), the item with the lowest index keeps the tuple and the
  others take the next free code in cyclic index order (code + 1, code + 2, ... mod size).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

logger = logging.getLogger(__name__)

CollisionRule = Literal["extra_level", "reassign_last"]
COLLISION_RULES: tuple[str, ...] = ("extra_level", "reassign_last")


@dataclass(frozen=True)
class RQVAESettings:
    """Architecture and training of an RQ-VAE.

    Attributes:
        hidden_dims: widths of the encoder's hidden layers; the decoder mirrors them. TIGER uses
            (512, 256, 128); MQL4GRec uses (2048, 1024, 512, 256, 128, 64).
        code_dim: size of the latent vector and of every codeword.
        n_levels: number of residual quantization levels (codes per item).
        codebook_size: codewords per level.
        commitment_weight: beta, the weight of the commitment term.
        quantization_weight: weight of the quantization loss against the reconstruction loss.
        sinkhorn_epsilon: entropic regularization of the balanced assignment on the last level
            during training; 0 disables it.
        sinkhorn_iterations: Sinkhorn-Knopp iterations per batch.
        kmeans_iterations: Lloyd iterations of the k-means codebook initialisation.
        dropout: dropout probability between encoder and decoder layers.
        epochs: passes over the training items.
        batch_size: items per optimizer step (the whole set when it has fewer items).
        optimizer: "adamw" (MQL4GRec) or "adagrad" (TIGER).
        learning_rate: optimizer learning rate.
        weight_decay: weight decay (decoupled for AdamW, L2 for Adagrad).
    """

    hidden_dims: tuple[int, ...] = (512, 256, 128)
    code_dim: int = 32
    n_levels: int = 4
    codebook_size: int = 256
    commitment_weight: float = 0.25
    quantization_weight: float = 1.0
    sinkhorn_epsilon: float = 0.003
    sinkhorn_iterations: int = 50
    kmeans_iterations: int = 100
    dropout: float = 0.0
    epochs: int = 500
    batch_size: int = 1024
    optimizer: Literal["adamw", "adagrad"] = "adamw"
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4

    def __post_init__(self) -> None:
        for name in ("code_dim", "n_levels", "codebook_size", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"RQ-VAE {name} must be at least 1, got {getattr(self, name)}.")
        if self.optimizer not in ("adamw", "adagrad"):
            raise ValueError(f"Unknown RQ-VAE optimizer {self.optimizer!r}; use adamw or adagrad.")
        if self.sinkhorn_epsilon < 0:
            raise ValueError(f"sinkhorn_epsilon must be >= 0, got {self.sinkhorn_epsilon}.")


def kmeans(
    points: torch.Tensor, n_clusters: int, iterations: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Cluster `points` (n, d) with Lloyd's algorithm and return (n_clusters, d) centroids.

    Centroids start at distinct random points. With fewer points than clusters, points are
    drawn with replacement and jittered, so every centroid still starts near the data. A cluster
    that becomes empty is moved to a random point.
    """
    n_points = points.shape[0]
    device = points.device
    if n_points >= n_clusters:
        start = torch.randperm(n_points, generator=generator)[:n_clusters]
        centroids = points[start.to(device)].clone()
    else:
        start = torch.randint(n_points, (n_clusters,), generator=generator)
        centroids = points[start.to(device)].clone()
        scale = points.std(dim=0, keepdim=True).clamp(min=1e-6) * 0.01
        noise = torch.randn(centroids.shape, generator=generator).to(device)
        centroids += noise * scale
    for _ in range(iterations):
        assignment = torch.cdist(points, centroids).argmin(dim=1)
        sums = torch.zeros_like(centroids).index_add_(0, assignment, points)
        counts = torch.bincount(assignment, minlength=n_clusters).to(points.dtype)
        empty = counts == 0
        centroids = torch.where(empty[:, None], centroids, sums / counts.clamp(min=1)[:, None])
        if empty.any():
            refill = torch.randint(n_points, (int(empty.sum()),), generator=generator).to(device)
            centroids[empty] = points[refill]
    return centroids


def sinkhorn_assignment(distances: torch.Tensor, epsilon: float, iterations: int) -> torch.Tensor:
    """Assign each row to a column so that columns receive near-equal shares of the rows.

    Distances (n, k) are rescaled to [-1, 1] and turned into the transport plan
    exp(-d / epsilon). Sinkhorn-Knopp iterations in log space balance the plan to uniform row and
    column marginals, and each row then takes its largest entry.
    """
    d = distances.double()
    low, high = d.min(), d.max()
    middle = (high + low) / 2
    amplitude = (high - middle).clamp(min=1e-12)
    log_plan = -((d - middle) / amplitude) / epsilon
    n_rows, n_columns = d.shape
    log_row_mass = -torch.log(torch.tensor(float(n_rows), dtype=d.dtype, device=d.device))
    log_column_mass = -torch.log(torch.tensor(float(n_columns), dtype=d.dtype, device=d.device))
    for _ in range(iterations):
        log_plan = log_plan - torch.logsumexp(log_plan, dim=0, keepdim=True) + log_column_mass
        log_plan = log_plan - torch.logsumexp(log_plan, dim=1, keepdim=True) + log_row_mass
    return log_plan.argmax(dim=1)


class ResidualQuantizer(nn.Module):
    """`n_levels` codebooks applied residually; codebooks start empty and are set by k-means."""

    def __init__(self, n_levels: int, codebook_size: int, code_dim: int) -> None:
        super().__init__()
        self.codebooks = nn.Parameter(torch.zeros(n_levels, codebook_size, code_dim))
        self.register_buffer("initialised", torch.zeros(n_levels, dtype=torch.bool))

    @property
    def n_levels(self) -> int:
        return self.codebooks.shape[0]

    def level_distances(self, residual: torch.Tensor, level: int) -> torch.Tensor:
        """Return squared Euclidean distances (batch, codebook_size) to one level's codewords."""
        codebook = self.codebooks[level]
        return (
            residual.pow(2).sum(dim=1, keepdim=True)
            - 2 * residual @ codebook.t()
            + codebook.pow(2).sum(dim=1)[None, :]
        )

    def forward(
        self,
        latent: torch.Tensor,
        commitment_weight: float = 0.25,
        sinkhorn_epsilon: float = 0.0,
        sinkhorn_iterations: int = 50,
        kmeans_iterations: int = 100,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Quantize `latent` (batch, code_dim); return (quantized, codes, quantization loss).

        In training mode, a level whose codebook is not initialised is set by k-means on the
        current residuals first, and the last level uses Sinkhorn balancing when
        `sinkhorn_epsilon` > 0. `quantized` carries straight-through gradients to `latent`.
        """
        residual = latent
        total = torch.zeros_like(latent)
        codes = []
        losses = []
        for level in range(self.n_levels):
            if self.training and not bool(self.initialised[level]):
                with torch.no_grad():
                    centroids = kmeans(
                        residual.detach(), self.codebooks.shape[1], kmeans_iterations, generator
                    )
                    self.codebooks.data[level] = centroids
                    self.initialised[level] = True
            distances = self.level_distances(residual, level)
            last = level == self.n_levels - 1
            if self.training and last and sinkhorn_epsilon > 0:
                level_codes = sinkhorn_assignment(
                    distances.detach(), sinkhorn_epsilon, sinkhorn_iterations
                )
            else:
                level_codes = distances.argmin(dim=1)
            codeword = self.codebooks[level][level_codes]
            codebook_loss = F.mse_loss(codeword, residual.detach())
            commitment_loss = F.mse_loss(residual, codeword.detach())
            losses.append(codebook_loss + commitment_weight * commitment_loss)
            total = total + codeword
            # The next residual keeps the encoder's gradient, so every level's commitment term
            # trains the encoder, while codewords learn only from their codebook terms.
            residual = residual - codeword.detach()
            codes.append(level_codes)
        quantized = latent + (total - latent).detach()
        return quantized, torch.stack(codes, dim=1), torch.stack(losses).mean()


def _mlp(widths: Sequence[int], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for index, (width_in, width_out) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(width_in, width_out))
        if index < len(widths) - 2:
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


@dataclass
class RQVAEOutput:
    """Result of one forward pass: reconstruction, codes (batch, n_levels) and the losses."""

    reconstruction: torch.Tensor
    codes: torch.Tensor
    reconstruction_loss: torch.Tensor
    quantization_loss: torch.Tensor
    loss: torch.Tensor


class RQVAE(nn.Module):
    """MLP auto-encoder with a residual quantizer between encoder and decoder."""

    def __init__(self, input_dim: int, settings: RQVAESettings) -> None:
        super().__init__()
        self.settings = settings
        widths = [input_dim, *settings.hidden_dims, settings.code_dim]
        self.encoder = _mlp(widths, settings.dropout)
        self.decoder = _mlp(widths[::-1], settings.dropout)
        self.quantizer = ResidualQuantizer(
            settings.n_levels, settings.codebook_size, settings.code_dim
        )

    def forward(self, inputs: torch.Tensor, generator: torch.Generator | None = None) -> RQVAEOutput:
        settings = self.settings
        latent = self.encoder(inputs)
        quantized, codes, quantization_loss = self.quantizer(
            latent,
            commitment_weight=settings.commitment_weight,
            sinkhorn_epsilon=settings.sinkhorn_epsilon,
            sinkhorn_iterations=settings.sinkhorn_iterations,
            kmeans_iterations=settings.kmeans_iterations,
            generator=generator,
        )
        reconstruction = self.decoder(quantized)
        reconstruction_loss = F.mse_loss(reconstruction, inputs)
        loss = reconstruction_loss + settings.quantization_weight * quantization_loss
        return RQVAEOutput(reconstruction, codes, reconstruction_loss, quantization_loss, loss)

    @torch.no_grad()
    def encode(self, inputs: torch.Tensor) -> torch.Tensor:
        """Return the nearest-codeword codes (batch, n_levels) of `inputs`, without Sinkhorn."""
        was_training = self.training
        self.eval()
        _, codes, _ = self.quantizer(self.encoder(inputs))
        self.train(was_training)
        return codes

    @torch.no_grad()
    def rank_codewords(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rank every level's codewords by distance along each input's nearest-codeword path.

        Returns (ranking, distance): ranking (batch, n_levels, codebook_size) lists codeword
        indices nearest first, level l given the nearest codewords on levels 0..l-1; distance
        (batch,) is the distance from the last residual to its nearest codeword.
        """
        was_training = self.training
        self.eval()
        residual = self.encoder(inputs)
        quantizer = self.quantizer
        rankings = []
        for level in range(quantizer.n_levels):
            distances = quantizer.level_distances(residual, level)
            ordered, ranking = distances.sort(dim=1, stable=True)
            rankings.append(ranking)
            residual = residual - quantizer.codebooks[level][ranking[:, 0]]
        self.train(was_training)
        return torch.stack(rankings, dim=1), ordered[:, 0]


def train_rqvae(
    embeddings: np.ndarray,
    settings: RQVAESettings,
    train_rows: np.ndarray | None = None,
    seed: int = 0,
    device: str = "cpu",
) -> tuple[RQVAE, list[dict[str, float]]]:
    """Train an RQ-VAE on the rows `train_rows` of `embeddings` (all rows when None).

    Returns the model in eval mode and one record per epoch (mean losses and the share of
    distinct code tuples among the training rows). The k-means initialisation runs on the first
    batch, so it is computed on `batch_size` rows (or on all rows when there are fewer).

    NOTE: on synthetic clustered sets of 300 to 2,000 points, tens to hundreds of epochs left
    fewer distinct tuples than the k-means initialisation alone, because the latents grow faster
    than the codebooks follow. The model has not been run on real item embeddings here.
    """
    embeddings = np.asarray(embeddings, dtype=np.float32)
    if embeddings.ndim != 2 or embeddings.shape[0] == 0:
        raise ValueError(f"Embeddings must be a non-empty (items, dim) matrix, got {embeddings.shape}.")
    if not np.isfinite(embeddings).all():
        raise ValueError("Embeddings contain NaN or infinite values; fix the feature extraction.")
    rows = np.arange(len(embeddings)) if train_rows is None else np.asarray(train_rows, dtype=np.int64)
    if len(rows) == 0:
        raise ValueError("No training rows were given to the RQ-VAE.")
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = RQVAE(embeddings.shape[1], settings).to(device)
    optimizer_class = torch.optim.AdamW if settings.optimizer == "adamw" else torch.optim.Adagrad
    optimizer = optimizer_class(
        model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    data = torch.from_numpy(embeddings[rows]).to(device)
    batch_size = min(settings.batch_size, len(rows))
    history: list[dict[str, float]] = []
    started = time.perf_counter()
    for epoch in range(1, settings.epochs + 1):
        model.train()
        order = torch.randperm(len(rows), generator=generator).to(device)
        totals = {"loss": 0.0, "reconstruction_loss": 0.0, "quantization_loss": 0.0}
        batches = 0
        for start in range(0, len(rows), batch_size):
            batch = data[order[start : start + batch_size]]
            output = model(batch, generator=generator)
            optimizer.zero_grad()
            output.loss.backward()
            optimizer.step()
            totals["loss"] += output.loss.item()
            totals["reconstruction_loss"] += output.reconstruction_loss.item()
            totals["quantization_loss"] += output.quantization_loss.item()
            batches += 1
        record = {"epoch": float(epoch), **{name: value / batches for name, value in totals.items()}}
        if epoch == settings.epochs or epoch % max(1, settings.epochs // 10) == 0:
            codes = model.encode(data).cpu().numpy()
            record["unique_fraction"] = 1.0 - collision_rate(codes)
            logger.info(
                "RQ-VAE epoch %d/%d: loss %.4f (reconstruction %.4f, quantization %.4f), "
                "unique tuples %.3f, %.0f s",
                epoch, settings.epochs, record["loss"], record["reconstruction_loss"],
                record["quantization_loss"], record["unique_fraction"],
                time.perf_counter() - started,
            )
        history.append(record)
    model.eval()
    return model, history


def collision_rate(codes: np.ndarray) -> float:
    """Return the share of rows whose tuple repeats an earlier row: 1 - distinct / rows."""
    codes = np.asarray(codes)
    if len(codes) == 0:
        return 0.0
    distinct = len(np.unique(codes, axis=0))
    return 1.0 - distinct / len(codes)


def codebook_usage(codes: np.ndarray, codebook_size: int) -> list[float]:
    """Return, per level, the share of the codebook's codewords used by at least one row."""
    codes = np.asarray(codes)
    return [len(np.unique(codes[:, level])) / codebook_size for level in range(codes.shape[1])]


def _collision_groups(codes: np.ndarray) -> list[np.ndarray]:
    """Group the row indices that share a tuple (groups of two or more), by first row."""
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    groups: dict[int, list[int]] = {}
    for row, group in enumerate(inverse.tolist()):
        if counts[group] > 1:
            groups.setdefault(group, []).append(row)
    return sorted((np.asarray(rows, dtype=np.int64) for rows in groups.values()), key=lambda g: g[0])


CodewordRanker = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
"""Given row indices, return (codes ranked nearest first per level, distance on the last level)."""


@dataclass
class SemanticIds:
    """Unique code tuples of every item, with the statistics of how they were made.

    Attributes:
        codes: (n_items, n_levels) int64; rows are distinct.
        level_sizes: number of possible values of each level (the extra level's size is the
            largest number of items that shared one tuple).
        rule: the collision rule applied.
        collision_rate: share of items whose tuple repeated another's before resolution.
        codebook_usage: per quantizer level, the share of codewords in use before resolution.
        changed_items: items whose tuple was altered (reassign_last) or that got a non-zero
            extra code (extra_level).
        source: where the codes came from.
        history: training records of the quantizer, when one was trained here.
    """

    codes: np.ndarray
    level_sizes: tuple[int, ...]
    rule: str
    collision_rate: float
    codebook_usage: list[float]
    changed_items: int
    source: str
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def n_levels(self) -> int:
        return int(self.codes.shape[1])

    @classmethod
    def from_record(cls, codes: np.ndarray, record: dict[str, Any]) -> "SemanticIds":
        """Rebuild IDs from their codes and the summary written by `record`."""
        return cls(
            codes=np.asarray(codes, dtype=np.int64),
            level_sizes=tuple(record["level_sizes"]),
            rule=record["rule"],
            collision_rate=record["collision_rate"],
            codebook_usage=list(record["codebook_usage"]),
            changed_items=record["changed_items"],
            source=record["source"],
            history=list(record["history"]),
        )

    def record(self) -> dict[str, Any]:
        """Summarize for `RunContext.records` (JSON-serializable); the codes are left out."""
        summary = asdict(self)
        summary.pop("codes")
        summary["history"] = self.history[-1:] if self.history else []
        summary["level_sizes"] = list(self.level_sizes)
        summary["n_items"] = int(self.codes.shape[0])
        summary["collision_rate_after"] = collision_rate(self.codes)
        return summary


def resolve_collisions(
    codes: np.ndarray,
    codebook_size: int,
    rule: CollisionRule,
    rank_codewords: CodewordRanker | None = None,
) -> tuple[np.ndarray, tuple[int, ...], int]:
    """Make every row of `codes` (items, levels) distinct by one of the rules in the module doc.

    For "reassign_last", `rank_codewords` orders the candidate codes by distance; without it
    candidates follow the cyclic index order after the item's own code. When every last-level
    code under an item's prefix is taken, the second-to-last level moves to its next candidate
    and the last level is searched again, as in the public MQL4GRec code.
    Returns (unique codes, size of each level, number of changed items).

    Raises:
        ValueError: for an unknown rule, or when "reassign_last" finds no free tuple by changing
            the last two levels.
    """
    codes = np.asarray(codes, dtype=np.int64)
    groups = _collision_groups(codes)
    if rule == "extra_level":
        extra = np.zeros(len(codes), dtype=np.int64)
        for group in groups:
            extra[group] = np.arange(len(group))
        size = int(extra.max()) + 1 if len(extra) else 1
        unique = np.concatenate([codes, extra[:, None]], axis=1)
        return unique, (codebook_size,) * codes.shape[1] + (size,), int((extra > 0).sum())
    if rule != "reassign_last":
        raise ValueError(f"Unknown collision rule {rule!r}; use one of {', '.join(COLLISION_RULES)}.")

    unique = codes.copy()
    used = {tuple(row) for row in codes.tolist()}
    changed = 0
    for group in groups:
        if rank_codewords is not None:
            rankings, distance = rank_codewords(group)
            order = np.argsort(distance, kind="stable")
        else:
            steps = np.arange(codebook_size)
            rankings = (codes[group][:, :, None] + steps[None, None, :]) % codebook_size
            order = np.arange(len(group))
        # The item nearest to its last-level codeword (or the first item) keeps its tuple.
        for position in order[1:]:
            row = int(group[position])
            free = _first_free_tuple(unique[row], rankings[position], used)
            if free is None:
                raise ValueError(
                    f"Item {row} cannot get a unique ID: every tuple that changes only the last "
                    f"two levels of {tuple(unique[row].tolist())} is taken. Use "
                    "collision_rule='extra_level' or a larger codebook."
                )
            unique[row] = free
            used.add(tuple(free.tolist()))
            changed += 1
    return unique, (codebook_size,) * codes.shape[1], changed


def _first_free_tuple(
    original: np.ndarray, rankings: np.ndarray, used: set[tuple[int, ...]]
) -> np.ndarray | None:
    """Find the first unused tuple, changing the last level first, then the one before it."""
    last = len(original) - 1
    candidate = original.copy()
    if last == 0:
        second_options: list[int | None] = [None]
    else:
        own = int(original[last - 1])
        second_options = [own] + [int(code) for code in rankings[last - 1] if int(code) != own]
    for second in second_options:
        if second is not None:
            candidate[last - 1] = second
        for code in rankings[last]:
            candidate[last] = int(code)
            if tuple(candidate.tolist()) not in used:
                return candidate
    return None


def semantic_ids_from_codes(
    codes: np.ndarray,
    codebook_size: int,
    rule: CollisionRule,
    source: str,
    rank_codewords: CodewordRanker | None = None,
    history: list[dict[str, float]] | None = None,
) -> SemanticIds:
    """Measure collisions and codebook usage of `codes`, then make them unique with `rule`."""
    codes = np.asarray(codes, dtype=np.int64)
    rate = collision_rate(codes)
    usage = codebook_usage(codes, codebook_size)
    unique, level_sizes, changed = resolve_collisions(codes, codebook_size, rule, rank_codewords)
    logger.info(
        "Semantic IDs from %s: collision rate %.4f before resolution, codebook usage per level %s, "
        "%d items changed by rule %s.",
        source, rate, ", ".join(f"{value:.2f}" for value in usage), changed, rule,
    )
    return SemanticIds(
        codes=unique, level_sizes=level_sizes, rule=rule, collision_rate=rate,
        codebook_usage=usage, changed_items=changed, source=source, history=history or [],
    )


def build_semantic_ids(
    embeddings: np.ndarray,
    settings: RQVAESettings,
    rule: CollisionRule,
    train_rows: np.ndarray | None = None,
    seed: int = 0,
    device: str = "cpu",
    source: str = "RQ-VAE",
) -> tuple[SemanticIds, RQVAE]:
    """Train an RQ-VAE on `train_rows`, encode every row of `embeddings` and resolve collisions."""
    model, history = train_rqvae(embeddings, settings, train_rows, seed=seed, device=device)
    inputs = torch.from_numpy(np.asarray(embeddings, dtype=np.float32)).to(device)
    codes = np.concatenate(
        [model.encode(inputs[start : start + 4096]).cpu().numpy() for start in range(0, len(inputs), 4096)]
    )

    def rank_codewords(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ranking, distance = model.rank_codewords(inputs[torch.as_tensor(rows, device=device)])
        return ranking.cpu().numpy(), distance.cpu().numpy()

    description = (
        f"{source}: {settings.n_levels} levels x {settings.codebook_size} codes, "
        f"code dim {settings.code_dim}, trained on {len(embeddings) if train_rows is None else len(train_rows)} "
        f"of {len(embeddings)} items"
    )
    ids = semantic_ids_from_codes(
        codes, settings.codebook_size, rule, description, rank_codewords, history
    )
    return ids, model
