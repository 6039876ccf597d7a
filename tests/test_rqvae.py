"""RQ-VAE semantic IDs: training on synthetic clusters, collision rules, k-means and Sinkhorn."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clairo_bench.generative.rqvae import (
    RQVAESettings,
    build_semantic_ids,
    codebook_usage,
    collision_rate,
    kmeans,
    resolve_collisions,
    semantic_ids_from_codes,
    sinkhorn_assignment,
    train_rqvae,
)


@pytest.fixture(autouse=True)
def _single_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def clustered_points(n_points: int = 300, n_clusters: int = 12, dim: int = 16) -> np.ndarray:
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(n_clusters, dim)) * 3.0
    labels = rng.integers(n_clusters, size=n_points)
    return (centers[labels] + rng.normal(size=(n_points, dim))).astype(np.float32)


SMALL = RQVAESettings(
    hidden_dims=(32,), code_dim=8, n_levels=3, codebook_size=16, epochs=20, batch_size=128,
    kmeans_iterations=10, sinkhorn_iterations=20,
)


@pytest.mark.parametrize("rule", ["extra_level", "reassign_last"])
def test_rqvae_ids_unique_on_clusters(rule):
    points = clustered_points()
    ids, _ = build_semantic_ids(points, SMALL, rule, train_rows=np.arange(200), seed=0)
    assert ids.codes.shape[0] == len(points)
    assert len(np.unique(ids.codes, axis=0)) == len(points)
    assert collision_rate(ids.codes) == 0.0


def test_rqvae_uses_several_codes_per_level():
    points = clustered_points()
    ids, _ = build_semantic_ids(points, SMALL, "extra_level", train_rows=np.arange(200), seed=0)
    for level in range(SMALL.n_levels):
        assert len(np.unique(ids.codes[:, level])) > 1, f"level {level} uses one code"


def test_rqvae_records_collisions_before_resolution():
    points = clustered_points()
    ids, model = build_semantic_ids(points, SMALL, "extra_level", train_rows=np.arange(200), seed=0)
    raw = model.encode(torch.from_numpy(points)).numpy()
    assert ids.collision_rate == pytest.approx(collision_rate(raw))
    assert ids.codebook_usage == pytest.approx(codebook_usage(raw, SMALL.codebook_size))
    assert ids.record()["collision_rate_after"] == 0.0


def test_rqvae_extra_level_size_is_largest_group():
    points = clustered_points()
    ids, _ = build_semantic_ids(points, SMALL, "extra_level", train_rows=np.arange(200), seed=0)
    assert ids.level_sizes[-1] == int(ids.codes[:, -1].max()) + 1


def test_rqvae_kmeans_initialises_every_level():
    points = clustered_points()
    model, history = train_rqvae(points, SMALL, np.arange(200), seed=0)
    assert bool(model.quantizer.initialised.all())
    assert len(history) == SMALL.epochs


def test_rqvae_rejects_non_finite_embeddings():
    points = clustered_points()
    points[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        train_rqvae(points, SMALL)


def test_rqvae_sinkhorn_training_runs():
    settings = RQVAESettings(
        hidden_dims=(16,), code_dim=4, n_levels=2, codebook_size=8, epochs=3, batch_size=64,
        kmeans_iterations=5, sinkhorn_epsilon=0.003, sinkhorn_iterations=10,
    )
    model, history = train_rqvae(clustered_points(100), settings, seed=1)
    assert np.isfinite(history[-1]["loss"])


def test_extra_level_numbers_groups_in_item_order():
    codes = np.array([[1, 2], [0, 0], [1, 2], [1, 2], [0, 0], [3, 3]])
    unique, sizes, changed = resolve_collisions(codes, 4, "extra_level")
    assert unique[:, 2].tolist() == [0, 0, 1, 2, 1, 0]
    assert sizes == (4, 4, 3)
    assert changed == 3


def test_reassign_last_takes_next_free_code_cyclically():
    # Items 0 and 1 share (0, 3). Item 0 keeps it. Item 1 tries 3+1 = 0 mod 4: (0, 0) is item
    # 2's, so it tries 1: (0, 1) is free.
    codes = np.array([[0, 3], [0, 3], [0, 0], [1, 1]])
    unique, sizes, changed = resolve_collisions(codes, 4, "reassign_last")
    assert unique.tolist() == [[0, 3], [0, 1], [0, 0], [1, 1]]
    assert sizes == (4, 4)
    assert changed == 1


def test_reassign_last_keeps_nearest_item():
    codes = np.array([[2, 1], [2, 1], [2, 1]])

    def rank_codewords(rows):
        rankings = np.array([[[2, 0, 1, 3], [1, 3, 2, 0]]] * len(rows))
        distances = np.array([0.5, 0.1, 0.9])[rows]
        return rankings, distances

    unique, _, changed = resolve_collisions(codes, 4, "reassign_last", rank_codewords)
    # Item 1 is nearest and keeps (2, 1). Then item 0 (0.5) takes the next ranked code 3, and
    # item 2 (0.9) takes the code after it, 2.
    assert unique.tolist() == [[2, 3], [2, 1], [2, 2]]
    assert changed == 2


def test_reassign_last_moves_second_to_last_level():
    # Codebook of 2: (0, 0) and (0, 1) are both used, so the third item sharing (0, 0) moves its
    # first level to the next code, 1, and takes (1, 0).
    codes = np.array([[0, 0], [0, 0], [0, 1]])
    unique, _, _ = resolve_collisions(codes, 2, "reassign_last")
    assert unique.tolist() == [[0, 0], [1, 0], [0, 1]]


def test_reassign_last_raises_when_full():
    codes = np.zeros((5, 1), dtype=np.int64)
    with pytest.raises(ValueError, match="extra_level"):
        resolve_collisions(codes, 4, "reassign_last")


def test_resolve_collisions_rejects_unknown_rule():
    with pytest.raises(ValueError, match="Unknown collision rule"):
        resolve_collisions(np.zeros((2, 2)), 4, "hash")


def test_collision_rate_counts_repeated_rows():
    codes = np.array([[0, 1], [0, 1], [2, 3], [0, 1]])
    assert collision_rate(codes) == pytest.approx(0.5)


def test_codebook_usage_per_level():
    codes = np.array([[0, 1], [0, 2], [3, 3]])
    assert codebook_usage(codes, 4) == pytest.approx([0.5, 0.75])


def test_semantic_ids_from_codes_summary():
    codes = np.array([[0, 1], [0, 1], [2, 3]])
    ids = semantic_ids_from_codes(codes, 4, "extra_level", "hand-made")
    record = ids.record()
    assert record["collision_rate"] == pytest.approx(1 / 3)
    assert record["level_sizes"] == [4, 4, 2]
    assert record["changed_items"] == 1


def test_kmeans_with_fewer_points_than_clusters():
    points = torch.tensor([[0.0, 0.0], [10.0, 10.0]])
    centroids = kmeans(points, 5, iterations=3, generator=torch.Generator().manual_seed(0))
    assert centroids.shape == (5, 2)
    assert torch.isfinite(centroids).all()


def test_kmeans_finds_separated_clusters():
    points = torch.tensor([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]])
    centroids = kmeans(points, 2, iterations=10, generator=torch.Generator().manual_seed(0))
    ordered = sorted(centroids.tolist())
    assert ordered[0] == pytest.approx([0.05, 0.0])
    assert ordered[1] == pytest.approx([5.05, 5.0])


def test_sinkhorn_spreads_rows_over_columns():
    # Column 0 is nearest for every row, so nearest-codeword assignment puts all 8 rows there.
    # Row i is relatively closest to column i // 2, which the balanced assignment must find.
    rows = torch.arange(8, dtype=torch.float32)[:, None]
    columns = torch.arange(4, dtype=torch.float32)[None, :]
    distances = columns * 0.5 + ((rows - 2 * columns) ** 2) * 0.01
    assert distances.argmin(dim=1).tolist() == [0] * 8
    codes = sinkhorn_assignment(distances, epsilon=0.05, iterations=100)
    assert codes.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
