"""PCA compression and OPQ quantization of item embeddings.

OPQ (Ge et al., "Optimized Product Quantization", TPAMI 2014) learns a rotation that balances
variance across the sub-vectors of a product quantizer (Jegou et al., "Product Quantization for
Nearest Neighbor Search", TPAMI 2011). ActionPiece (Hou et al., 2025) builds item features
this way with the faiss index factory string "OPQ4,IVF1,PQ4x8". Here the same rotation and product
quantizer are trained with faiss `OPQMatrix` and `ProductQuantizer` directly. Each sub-quantizer
index then comes out as one integer, and no single-list IVF wrapper is needed. Both PCA and OPQ
are fit on training items only and then applied to every item.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

# Smallest variance a whitened component is divided by, to keep constant components finite.
_MIN_WHITEN_VARIANCE = 1e-12


@dataclass(frozen=True)
class PcaModel:
    """A PCA fit on training rows.

    Attributes:
        mean: (input_dim,) mean of the training rows.
        components: (output_dim, input_dim) principal axes, largest variance first; each axis's
            sign makes its largest-magnitude entry positive, so fits are reproducible.
        variances: (output_dim,) variance of the training rows along each axis.
        whiten: whether `transform` scales each component to unit training variance.
    """

    mean: np.ndarray
    components: np.ndarray
    variances: np.ndarray
    whiten: bool

    def transform(self, x: np.ndarray) -> np.ndarray:
        projected = (np.asarray(x, dtype=np.float64) - self.mean) @ self.components.T
        if self.whiten:
            projected /= np.sqrt(np.maximum(self.variances, _MIN_WHITEN_VARIANCE))
        return projected.astype(np.float32)


def fit_pca(x_train: np.ndarray, n_components: int, whiten: bool, label: str) -> PcaModel:
    """Fit a PCA with `n_components` axes on the rows of `x_train`.

    Raises:
        ValueError: `n_components` exceeds the input dimension or the number of training rows.
    """
    n_rows, dimension = x_train.shape
    if n_components > dimension:
        raise ValueError(
            f"{label}: PCA dimension {n_components} exceeds the input dimension {dimension}; "
            "lower the PCA dimension or set it to none to keep the input as it is."
        )
    if n_components > n_rows:
        raise ValueError(
            f"{label}: PCA dimension {n_components} exceeds the {n_rows} training items it is "
            "fit on; lower the PCA dimension."
        )
    x = np.asarray(x_train, dtype=np.float64)
    mean = x.mean(axis=0)
    _, singular_values, axes = np.linalg.svd(x - mean, full_matrices=False)
    components = axes[:n_components]
    signs = np.sign(components[np.arange(n_components), np.abs(components).argmax(axis=1)])
    components = components * signs[:, None]
    variances = singular_values[:n_components] ** 2 / max(n_rows - 1, 1)
    return PcaModel(mean=mean, components=components, variances=variances, whiten=whiten)


def resolve_opq_bits(n_train: int, bits: int, policy: str, label: str) -> int:
    """Return the bits per sub-quantizer that `n_train` training items can support.

    k-means needs at least as many training points as centroids, so 2**bits codes need at least
    2**bits training items. With policy "reduce_bits" the bits drop to floor(log2(n_train)).

    Raises:
        ValueError: too few training items and policy "error", or fewer than 2 training items.
    """
    if n_train >= 2**bits:
        return bits
    if n_train < 2:
        raise ValueError(
            f"{label}: OPQ needs at least 2 training items, got {n_train}; the split's training "
            "sequences cover too few items."
        )
    reduced = int(math.floor(math.log2(n_train)))
    if policy != "reduce_bits":
        raise ValueError(
            f"{label}: OPQ with opq_bits={bits} needs at least {2**bits} training items for its "
            f"{2**bits} codes, but only {n_train} training items are available. Lower opq_bits "
            f"to {reduced} or less, or set small_train_policy=reduce_bits to do that "
            "automatically."
        )
    logger.warning(
        "%s: %d training items cannot train %d codes per sub-quantizer; using %d bits (%d codes).",
        label, n_train, 2**bits, reduced, 2**reduced,
    )
    return reduced


@dataclass(frozen=True)
class OpqQuantizer:
    """A trained OPQ rotation with its product quantizer.

    Attributes:
        rotation: (dimension, dimension) orthonormal matrix; rotated = x @ rotation.T.
        centroids: (subquantizers, 2**bits, dimension / subquantizers) codebooks.
    """

    rotation: np.ndarray
    centroids: np.ndarray

    @property
    def subquantizers(self) -> int:
        return int(self.centroids.shape[0])

    @property
    def codebook_size(self) -> int:
        return int(self.centroids.shape[1])

    def encode(self, x: np.ndarray) -> np.ndarray:
        """Return the (n, subquantizers) int64 index of each sub-vector's nearest centroid."""
        import faiss

        rotated = np.ascontiguousarray(np.asarray(x, dtype=np.float32) @ self.rotation.T)
        sub_dimension = self.centroids.shape[2]
        codes = np.empty((rotated.shape[0], self.subquantizers), dtype=np.int64)
        for m in range(self.subquantizers):
            part = np.ascontiguousarray(rotated[:, m * sub_dimension : (m + 1) * sub_dimension])
            _, nearest = faiss.knn(part, np.ascontiguousarray(self.centroids[m]), 1)
            codes[:, m] = nearest[:, 0]
        return codes


def train_opq(
    x_train: np.ndarray,
    subquantizers: int,
    bits: int,
    opq_iterations: int = 50,
    pq_iterations: int = 25,
    seed: int = 0,
    use_gpu: bool = False,
) -> OpqQuantizer:
    """Train an OPQ rotation and a product quantizer of `subquantizers` x 2**bits codes.

    With `use_gpu`, k-means assignment runs on faiss GPU indexes when faiss has GPU support.
    """
    import faiss

    x = np.ascontiguousarray(x_train, dtype=np.float32)
    dimension = x.shape[1]
    if dimension % subquantizers:
        raise ValueError(
            f"OPQ input dimension {dimension} is not divisible by {subquantizers} sub-quantizers; "
            "change opq_subquantizers or the PCA dimensions."
        )
    sub_dimension = dimension // subquantizers
    gpu_indexes = []

    def product_quantizer() -> "faiss.ProductQuantizer":
        pq = faiss.ProductQuantizer(dimension, subquantizers, bits)
        pq.cp.seed = seed
        pq.cp.niter = pq_iterations
        # The size check happens in resolve_opq_bits; this silences faiss's per-call warning
        # about fewer than 39 points per centroid.
        pq.cp.min_points_per_centroid = 1
        if use_gpu:
            assign_index = _gpu_flat_index(sub_dimension)
            if assign_index is not None:
                gpu_indexes.append(assign_index)
                pq.assign_index = assign_index
        return pq

    opq = faiss.OPQMatrix(dimension, subquantizers)
    opq.niter = opq_iterations
    # OPQMatrix trains its own 8-bit quantizer unless given one; this one matches `bits`.
    rotation_pq = product_quantizer()
    opq.pq = rotation_pq
    opq.train(x)
    rotated = opq.apply(x)

    final_pq = product_quantizer()
    final_pq.train(rotated)
    rotation = faiss.vector_to_array(opq.A).reshape(dimension, dimension)
    centroids = faiss.vector_to_array(final_pq.centroids).reshape(
        subquantizers, 2**bits, sub_dimension
    )
    del gpu_indexes
    return OpqQuantizer(rotation=rotation.astype(np.float32), centroids=centroids.copy())


def faiss_gpu_available() -> bool:
    """Return whether faiss was built with GPU support and at least one GPU is visible."""
    import faiss

    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def _gpu_flat_index(dimension: int):
    # NOTE: written against the faiss GPU API (StandardGpuResources, GpuIndexFlatL2) but never
    # run here, because the development machines have faiss-cpu and no GPU.
    import faiss

    if not faiss_gpu_available():
        return None
    resources = faiss.StandardGpuResources()
    index = faiss.GpuIndexFlatL2(resources, dimension)
    index.resources_reference = resources
    return index
