"""The shipped SFT decomposers: one LoRA adapter per base model, in a folder named after its alias.

`adapter_for(alias)` gives the folder (None where none ships). Load it with
`local_model.add_adapter("decomposer", folder)`, chat with
`local_model.chat_model(adapter="decomposer")` sending `DECOMPOSER_SYSTEM_PROMPT` as the system
message and the user's question as the human message, and read the reply with
`compllm_graph.query_graph.parse_decomposition`. `training.json` beside the weights records how
each was trained and what it scored.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent

BASE_MODEL = "smollm2-135m-instruct"
"""The default model's alias."""

ADAPTER_DIR = PACKAGE_DIR / BASE_MODEL
"""The default model's decomposer: `adapter_model.safetensors`, `adapter_config.json` and
`training.json`."""

DECOMPOSER_SYSTEM_PROMPT = (
    "Decompose the question into sub-questions <q>...</q>; #k is the answer of sub-question k. "
    "Then list dependencies <dep>i->j</dep>."
)
"""The system message the adapters were trained with; send it unchanged."""


def shipped() -> dict[str, Path]:
    """Every shipped decomposer adapter, by the alias of the model it was trained on."""
    return {
        folder.name: folder
        for folder in sorted(PACKAGE_DIR.iterdir())
        if (folder / "adapter_model.safetensors").is_file()
    }


def adapter_for(model: str) -> Path | None:
    """The shipped decomposer adapter folder for a model alias, or None when none ships."""
    return shipped().get(model)


__all__ = ["ADAPTER_DIR", "BASE_MODEL", "DECOMPOSER_SYSTEM_PROMPT", "adapter_for", "shipped"]
