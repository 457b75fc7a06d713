"""The FAISS side of the store: spherical k-means centroids and the inner-product indexes (of
the routing centroids, and of each expert's retrieval set)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faiss
import numpy as np

from compllm_graph.expert_store.locking import npy_bytes, write_bytes
from compllm_graph.expert_store.records import CorruptStoreError, Expert, StoreError

MAX_CENTROIDS = 64


def cluster_means(vectors: np.ndarray, k: int, seed: int = 0) -> tuple[np.ndarray, tuple[int, ...]]:
    """Split an expert's data into `k` clusters (spherical k-means) and average each.

    Clustering runs on unit vectors (routing uses cosine); the means are of the raw vectors so
    that the store can re-centre them later without the data.

    Returns:
        The raw mean vector of each non-empty cluster and its size.

    Raises:
        StoreError: `k` is out of range or larger than the number of vectors.
    """
    n, dim = vectors.shape
    if not 1 <= k <= MAX_CENTROIDS:
        raise StoreError(f"centroids must be in 1..{MAX_CENTROIDS}, got {k}")
    if n < k:
        raise StoreError(f"{k} centroids need at least {k} texts, got {n}")
    if k == 1:
        return vectors.mean(axis=0, keepdims=True).astype(np.float32), (n,)
    unit = normalise(vectors)
    kmeans = faiss.Kmeans(
        dim, k, niter=25, seed=seed, spherical=True, verbose=False, min_points_per_centroid=1
    )
    kmeans.train(unit)
    _, assign = kmeans.index.search(unit, 1)
    groups = [np.flatnonzero(assign[:, 0] == c) for c in range(k)]
    groups = [g for g in groups if len(g)]
    means = np.stack([vectors[g].mean(axis=0) for g in groups]).astype(np.float32)
    return means, tuple(len(g) for g in groups)


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), as contiguous float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


def write_index(
    root: Path, generation: int, experts: dict[str, Expert], center: bool
) -> dict[str, Any] | None:
    """Build and write the FAISS index of all centroids; return its manifest entry.

    A gain-only expert is left out, of the rows and of the centring mean alike: similarity never
    chooses it, and its data does not move the other experts' centroids."""
    names = sorted(name for name, expert in experts.items() if not expert.gain_only)
    if not names:
        return None
    means = np.concatenate([experts[n].centroids for n in names])
    counts = np.concatenate([np.asarray(experts[n].counts, dtype=np.float64) for n in names])
    rows = [n for n in names for _ in experts[n].counts]
    info: dict[str, Any] = {"file": f"index/{generation}.faiss", "rows": rows, "center_file": None}
    vectors = means
    if center:
        mean = (means * counts[:, None]).sum(axis=0) / counts.sum()
        if len(rows) == 1:
            # One centroid minus the mean of its own data is zero: it would match nothing.
            # Centring needs two rows to mean anything, so one is compared uncentred.
            mean = np.zeros_like(mean)
        vectors = means - mean.astype(np.float32)
        info["center_file"] = f"index/{generation}.center.npy"
        write_bytes(root / info["center_file"], npy_bytes(mean[None, :]))
    write_bytes(root / info["file"], flat_index_bytes(vectors))
    return info


def flat_index_bytes(vectors: np.ndarray) -> bytes:
    """An `IndexFlatIP` over the L2-normalised rows of `vectors` (cosine search), serialised."""
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(normalise(vectors))
    return bytes(faiss.serialize_index(index).tobytes())


def load_index_file(path: Path) -> faiss.Index:
    """A FAISS index written with `flat_index_bytes`.

    Raises:
        OSError: the file cannot be read.
        RuntimeError: FAISS cannot read it (damaged or not an index).
    """
    return faiss.deserialize_index(np.frombuffer(path.read_bytes(), dtype=np.uint8))


def read_index(
    root: Path, info: dict[str, Any], manifest: dict[str, Any]
) -> tuple[faiss.Index, np.ndarray | None]:
    try:
        index = load_index_file(root / info["file"])
        center = None
        if info.get("center_file"):
            center = np.load(root / info["center_file"], allow_pickle=False)[0]
    except (OSError, ValueError, RuntimeError, KeyError, TypeError, IndexError) as exc:
        raise CorruptStoreError(f"the index of the store at {root} is damaged: {exc}") from exc
    if index.ntotal != len(info["rows"]) or index.d != manifest["dim"]:
        raise CorruptStoreError(f"the index of the store at {root} does not match store.json")
    if manifest["center"] != (center is not None):
        raise CorruptStoreError(f"the centring vector of the store at {root} is missing")
    return index, center


__all__ = [
    "MAX_CENTROIDS",
    "cluster_means",
    "flat_index_bytes",
    "load_index_file",
    "normalise",
    "read_index",
    "write_index",
]
