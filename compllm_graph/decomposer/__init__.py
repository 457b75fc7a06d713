"""The decomposer: its prompts, its tag grammar, and the shipped SFT adapters.

One LoRA adapter ships per base model, in a folder named after its alias (`adapter_for(alias)`
gives it, None where none ships). `default_decomposer(local_model)` loads the right one with its
recorded system prompt and grammar-constrained decoding; by hand, load it with
`local_model.add_adapter("decomposer", folder)`, chat with
`local_model.chat_model(adapter="decomposer")` sending `DECOMPOSER_SYSTEM_PROMPT` as the system
message and the user's question as the human message, and read the reply with
`compllm_graph.query_graph.parse_decomposition`. `training.json` beside the weights records how
each was trained and what it scored.

Modules: `prompts` (both prompts), `grammar` (the tag grammar as a logits processor; needs the
[local] extra), `loading` (shipped adapters, training records, `default_decomposer`).
"""

from compllm_graph.decomposer.loading import (
    ADAPTER_DIR,
    BASE_MODEL,
    adapter_for,
    default_decomposer,
    read_training_record,
    shipped,
)
from compllm_graph.decomposer.prompts import DECOMPOSER_PROMPT, DECOMPOSER_SYSTEM_PROMPT

__all__ = [
    "ADAPTER_DIR",
    "BASE_MODEL",
    "DECOMPOSER_PROMPT",
    "DECOMPOSER_SYSTEM_PROMPT",
    "adapter_for",
    "default_decomposer",
    "read_training_record",
    "shipped",
]
