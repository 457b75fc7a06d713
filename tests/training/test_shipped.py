"""The decomposer adapters of the expert packs (`packs/`): small safetensors with a record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compllm_graph.decomposer import (
    BASE_MODEL,
    DECOMPOSER_SYSTEM_PROMPT,
    adapter_for,
    shipped,
)
from compllm_graph.models import CATALOGUE, SMALL_MODEL
from compllm_graph.packs import read_pack
from tests.conftest import smollm2_decomposer

REPO = Path(__file__).resolve().parents[2]
DECOMPOSERS = [
    (pack.model, folder, pack.base_model)
    for pack in (read_pack(m.parent) for m in sorted(REPO.glob("packs/*/*/manifest.json")))
    if (folder := pack.decomposer()) is not None
]


def test_the_default_and_test_models_have_a_decomposer_in_their_packs() -> None:
    folder = smollm2_decomposer()  # a skip when the pack is not installed
    assert adapter_for(SMALL_MODEL) == folder and folder in shipped().values()
    default = adapter_for(BASE_MODEL)
    assert default is not None and default in shipped().values() and default != folder
    assert adapter_for("no-such-model") is None


@pytest.mark.parametrize(
    ("alias", "folder", "base_model"), DECOMPOSERS, ids=[a for a, _, _ in DECOMPOSERS]
)
def test_each_shipped_adapter_is_small_and_documented(
    alias: str, folder: Path, base_model: str
) -> None:
    assert alias in CATALOGUE and base_model == CATALOGUE[alias].public_id
    # SmolLM2's adapter stays within 10 MB; a larger base needs a larger adapter.
    limit_mib = 10 if alias == SMALL_MODEL else 20
    assert (folder / "adapter_model.safetensors").stat().st_size <= limit_mib * 1024 * 1024
    config = json.loads((folder / "adapter_config.json").read_text())
    record = json.loads((folder / "training.json").read_text())
    # The config names the public id (a hub id), the record the alias it was trained on.
    assert config["base_model_name_or_path"] == base_model and record["base"] == alias
    assert record["status"] == "finished"
    # A record lost with a cut-off run says so rather than giving steps it cannot know.
    assert (record["steps"] or 0) > 0 or "lost" in record["provenance"]
    assert record["system_prompt"] == DECOMPOSER_SYSTEM_PROMPT
    assert record["test"]["musique"]["SFT + constrained"]["n"] == 100
