"""The decomposer adapter shipped in the package: small, safetensors, with its training record."""

from __future__ import annotations

import json

from compllm_graph.decomposer import ADAPTER_DIR, BASE_MODEL, DECOMPOSER_SYSTEM_PROMPT


def test_the_shipped_adapter_is_small_and_documented() -> None:
    weights = ADAPTER_DIR / "adapter_model.safetensors"
    assert weights.stat().st_size <= 10 * 1024 * 1024
    record = json.loads((ADAPTER_DIR / "training.json").read_text())
    assert record["base"] == BASE_MODEL and record["steps"] > 0
    assert record["system_prompt"] == DECOMPOSER_SYSTEM_PROMPT
