"""The decomposer adapters shipped in the package: small safetensors with a training record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compllm_graph.decomposer import (
    ADAPTER_DIR,
    BASE_MODEL,
    DECOMPOSER_SYSTEM_PROMPT,
    adapter_for,
    shipped,
)
from compllm_graph.models import CATALOGUE, SMALL_MODEL


def test_the_default_model_has_a_shipped_decomposer() -> None:
    assert adapter_for(BASE_MODEL) == ADAPTER_DIR and ADAPTER_DIR in shipped().values()
    assert adapter_for("no-such-model") is None


@pytest.mark.parametrize(("alias", "folder"), sorted(shipped().items()))
def test_each_shipped_adapter_is_small_and_documented(alias: str, folder: Path) -> None:
    assert alias in CATALOGUE
    # SmolLM2's adapter stays within 10 MB; a larger base needs a larger adapter.
    limit_mib = 10 if alias == SMALL_MODEL else 20
    assert (folder / "adapter_model.safetensors").stat().st_size <= limit_mib * 1024 * 1024
    config = json.loads((folder / "adapter_config.json").read_text())
    record = json.loads((folder / "training.json").read_text())
    assert config["base_model_name_or_path"] == record["base"] == alias
    assert record["status"] == "finished"
    # A record lost with a cut-off run says so rather than giving steps it cannot know.
    assert (record["steps"] or 0) > 0 or "lost" in record["provenance"]
    assert record["system_prompt"] == DECOMPOSER_SYSTEM_PROMPT
    assert record["test"]["musique"]["SFT + constrained"]["n"] == 100
