"""A tiny random Llama for tests: real `generate`, forward and training steps in milliseconds."""

from __future__ import annotations

from typing import Any

import torch
from transformers import LlamaConfig, LlamaForCausalLM

_DEFAULTS: dict[str, Any] = {
    "vocab_size": 64,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
}


def tiny_llama(seed: int = 0, **config: Any) -> LlamaForCausalLM:
    """A randomly initialised Llama; `config` overrides the small defaults."""
    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(**{**_DEFAULTS, **config}))
