"""The decoder poolings (hidden-state embedders) on SmolLM2: batching, padding, lone surrogates."""

from __future__ import annotations

import numpy as np
import pytest

from compllm_graph.expert_store.embedders import (
    DecoderEmbedder,
    EmbedderError,
    embedder_from_spec,
    pool_hidden_states,
)
from compllm_graph.models import LocalModel

pytestmark = pytest.mark.integration


def test_decoder_poolings_on_smollm2(smollm2: LocalModel) -> None:
    texts = [
        "Which enzyme unwinds DNA?",
        "What is the derivative of x squared with respect to x?",
        "Hi",
    ]
    both = pool_hidden_states(smollm2, texts, ("mean", "last"), batch_size=3)
    single = pool_hidden_states(smollm2, texts[:1], ("mean", "last"), batch_size=1)
    hidden = smollm2.model.config.hidden_size
    for pooling in ("mean", "last"):
        assert both[pooling].shape == (3, hidden)
        # padding in a batch must not change a text's vector
        np.testing.assert_allclose(both[pooling][0], single[pooling][0], atol=1e-4)
    assert not np.allclose(both["mean"], both["last"])
    embedder = embedder_from_spec("last-token:smollm2-135m-instruct", smollm2)
    assert isinstance(embedder, DecoderEmbedder) and embedder.spec.startswith("last-token:")
    np.testing.assert_allclose(embedder.embed(texts[:1])[0], both["last"][0], atol=1e-4)
    with pytest.raises(EmbedderError, match="the model given is"):
        embedder_from_spec("mean-pool:qwen2.5-coder-0.5b-instruct", smollm2)


def test_decoder_pooling_embeds_text_with_a_lone_surrogate(smollm2):
    pooled = pool_hidden_states(smollm2, ["\ud800 H2O", "\ufffd H2O"], ("mean",))["mean"]
    assert (pooled[0] == pooled[1]).all()
