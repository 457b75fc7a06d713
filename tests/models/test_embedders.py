"""Embedders that run a model: MiniLM (from its wheel, offline) and the decoder poolings on a
tiny random Llama (on SmolLM2: `tests/integration/test_embedders.py`)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("faiss", reason="needs the [router] extra")
pytest.importorskip("torch", reason="needs the [local] extra")

from compllm_graph.expert_store.embedders import (
    DecoderEmbedder,
    MiniLMEmbedder,
    pool_hidden_states,
)
from compllm_graph.models import LocalModel


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_minilm_embeds_offline_and_semantically() -> None:
    vectors = MiniLMEmbedder().embed(
        [
            "What is the boiling point of ethanol?",
            "At what temperature does alcohol boil?",
            "Who won the football world cup in 1998?",
        ]
    )
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-4)
    assert _cos(vectors[0], vectors[1]) > _cos(vectors[0], vectors[2]) + 0.3


def test_minilm_embeds_text_with_a_lone_surrogate() -> None:
    pytest.importorskip("sentence_transformers", reason="needs the [router] extra")
    embedder = MiniLMEmbedder()
    vectors = embedder.embed(["\ud800 What is H2O?", "\ufffd What is H2O?"])
    assert vectors.shape == (2, 384)
    assert (vectors[0] == vectors[1]).all()


class _CharTokenizer:
    """Byte-level stand-in for a Hugging Face tokenizer."""

    eos_token_id = 0
    pad_token_id = 0

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        return {"input_ids": [b % 64 for b in text.encode()]}


@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing`:FutureWarning")  # peft on tf 5
def test_decoder_pooling_ignores_lora_adapters_and_padding() -> None:
    import torch
    from peft import LoraConfig, get_peft_model

    from tests.tiny import tiny_llama

    base = tiny_llama(hidden_size=16, intermediate_size=32, num_attention_heads=2).eval()
    texts = ["short", "a somewhat longer text", ""]
    plain = pool_hidden_states(LocalModel(base, _CharTokenizer(), name="tiny"), texts, batch_size=3)
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft_model = get_peft_model(base, lora)
    local = LocalModel(peft_model, _CharTokenizer(), name="tiny")
    with torch.inference_mode():
        ids = torch.tensor([_CharTokenizer()("short")["input_ids"]])
        with_adapter = peft_model(input_ids=ids, output_hidden_states=True).hidden_states[-1]
    assert not np.allclose(with_adapter[0].mean(0).numpy(), plain["mean"][0], atol=1e-4)
    pooled = pool_hidden_states(local, texts, batch_size=1)
    for pooling in ("mean", "last"):
        np.testing.assert_allclose(pooled[pooling], plain[pooling], atol=1e-5)
    assert DecoderEmbedder(local, "mean").spec == "mean-pool:tiny"
