"""Tests of PCA and OPQ training on training rows only, and of the small-training-set policy."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from clairo_bench.features.quantize import fit_pca, resolve_opq_bits, train_opq


@pytest.fixture(autouse=True)
def single_faiss_thread():
    # faiss's OpenMP threads slow small problems down by orders of magnitude on busy cores.
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(previous)


def test_pca_centres_on_training_mean():
    x = np.array([[1.0, 0.0], [3.0, 0.0], [100.0, 50.0]])
    model = fit_pca(x[:2], n_components=1, whiten=False, label="test")
    np.testing.assert_allclose(model.mean, [2.0, 0.0])


def test_pca_first_axis_follows_largest_variance():
    # x and y are uncorrelated and x varies far more, so the first axis is x with a positive sign.
    x = np.array([[0.0, 0.1], [2.0, -0.1], [4.0, -0.1], [6.0, 0.1]])
    model = fit_pca(x, n_components=1, whiten=False, label="test")
    np.testing.assert_allclose(model.components[0], [1.0, 0.0], atol=1e-9)


def test_pca_projection_of_hand_computed_points():
    # Points on the line y = x: mean (1, 1), axis (1, 1) / sqrt(2),
    # so the projections are -sqrt(2), 0 and sqrt(2).
    x = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])
    model = fit_pca(x, n_components=1, whiten=False, label="test")
    np.testing.assert_allclose(model.transform(x)[:, 0], [-np.sqrt(2), 0.0, np.sqrt(2)], atol=1e-6)


def test_pca_whitening_gives_unit_training_variance():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 6)) * np.array([10.0, 5.0, 1.0, 1.0, 0.5, 0.1])
    model = fit_pca(x, n_components=3, whiten=True, label="test")
    np.testing.assert_allclose(model.transform(x).var(axis=0, ddof=1), 1.0, rtol=1e-4)


def test_pca_rejects_dimension_above_input():
    with pytest.raises(ValueError, match="PCA dimension 5 exceeds the input dimension 4"):
        fit_pca(np.zeros((10, 4)), n_components=5, whiten=False, label="text PCA")


def test_pca_rejects_dimension_above_training_rows():
    with pytest.raises(ValueError, match="exceeds the 3 training items"):
        fit_pca(np.zeros((3, 8)), n_components=4, whiten=False, label="text PCA")


def test_opq_bits_kept_when_enough_items():
    assert resolve_opq_bits(256, 8, "error", "fused OPQ") == 8


def test_opq_bits_error_names_fix():
    with pytest.raises(ValueError, match="needs at least 256 training items.*Lower opq_bits to 7"):
        resolve_opq_bits(200, 8, "error", "fused OPQ")


def test_opq_bits_reduced_to_floor_log2():
    assert resolve_opq_bits(200, 8, "reduce_bits", "fused OPQ") == 7


def test_opq_codes_within_codebook():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 16)).astype(np.float32)
    quantizer = train_opq(x[:200], subquantizers=4, bits=4, opq_iterations=5, pq_iterations=5)
    codes = quantizer.encode(x)
    assert codes.shape == (300, 4)
    assert codes.min() >= 0
    assert codes.max() < 16


def test_opq_rotation_is_orthonormal():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((300, 16)).astype(np.float32)
    quantizer = train_opq(x, subquantizers=4, bits=4, opq_iterations=5, pq_iterations=5)
    np.testing.assert_allclose(quantizer.rotation @ quantizer.rotation.T, np.eye(16), atol=1e-4)


def test_opq_encode_matches_faiss_product_quantizer():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((400, 16)).astype(np.float32)
    quantizer = train_opq(x, subquantizers=2, bits=8, opq_iterations=3, pq_iterations=5)
    pq = faiss.ProductQuantizer(16, 2, 8)
    faiss.copy_array_to_vector(quantizer.centroids.ravel(), pq.centroids)
    rotated = np.ascontiguousarray(x @ quantizer.rotation.T)
    # With 8 bits, faiss stores one byte per sub-quantizer.
    expected = pq.compute_codes(rotated).astype(np.int64)
    assert np.array_equal(quantizer.encode(x), expected)


def test_opq_rejects_indivisible_dimension():
    with pytest.raises(ValueError, match="not divisible by 4 sub-quantizers"):
        train_opq(np.zeros((50, 10), dtype=np.float32), subquantizers=4, bits=2)
