"""The shipped SFT decomposer: a LoRA adapter for `smollm2-135m-instruct`.

Load it with `local_model.add_adapter("decomposer", ADAPTER_DIR)`, chat with
`local_model.chat_model(adapter="decomposer")` sending `DECOMPOSER_SYSTEM_PROMPT` as the system
message and the user's question as the human message, and read the reply with
`compllm_graph.query_graph.parse_decomposition`. `training.json` beside the weights records how
it was trained and what it scored.
"""

from __future__ import annotations

from pathlib import Path

ADAPTER_DIR = Path(__file__).resolve().parent
"""Folder holding `adapter_model.safetensors`, `adapter_config.json` and `training.json`."""

BASE_MODEL = "smollm2-135m-instruct"
"""The model alias the adapter was trained on."""

DECOMPOSER_SYSTEM_PROMPT = (
    "Decompose the question into sub-questions <q>...</q>; #k is the answer of sub-question k. "
    "Then list dependencies <dep>i->j</dep>."
)
"""The system message the adapter was trained with; send it unchanged."""

__all__ = ["ADAPTER_DIR", "BASE_MODEL", "DECOMPOSER_SYSTEM_PROMPT"]
