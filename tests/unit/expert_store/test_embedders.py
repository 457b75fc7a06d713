"""Embedders: specs and the hashing embedder (MiniLM and the decoder poolings on a tiny Llama:
`tests/models/test_embedders.py`; on SmolLM2: `tests/integration/test_embedders.py`)."""

from __future__ import annotations

import pytest

pytest.importorskip("faiss", reason="needs the [router] extra")

import numpy as np

from compllm_graph.expert_store.embedders import (
    EmbedderError,
    HashingEmbedder,
    MiniLMEmbedder,
    check_spec,
    embedder_from_spec,
)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_specs_round_trip_and_bad_specs_fail() -> None:
    assert embedder_from_spec("hashing:32").spec == "hashing:32"
    assert isinstance(embedder_from_spec("minilm"), MiniLMEmbedder)
    for bad in ("", "bert", "hashing:x", "mean-pool:", "last-token", "hashing:4"):
        with pytest.raises(EmbedderError):
            embedder_from_spec(bad)
    check_spec("mean-pool:smollm2-135m-instruct")


def test_hashing_embedder_is_deterministic_and_lexical() -> None:
    embedder = HashingEmbedder(256)
    a, b, c = embedder.embed(["the acid base titration", "titration of an acid", "Roman history"])
    assert np.array_equal(a, embedder.embed(["the acid base titration"])[0])
    assert _cos(a, b) > _cos(a, c)
    assert embedder.embed([]).shape == (0, 256)
