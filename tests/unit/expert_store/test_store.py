"""ExpertStore: round trip, names, adapters, corruption and crash leftovers (writers in two
processes at once: `tests/integration/test_store_processes.py`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("faiss", reason="needs the [router] extra")

import numpy as np
from safetensors.numpy import save_file

from compllm_graph.expert_store import CorruptStoreError, ExpertStore, StoreError
from compllm_graph.expert_store.embedders import HashingEmbedder

CHEMISTRY = [
    "What is the molar mass of sodium chloride?",
    "Balance the combustion of methane.",
    "Which gas is released when zinc reacts with hydrochloric acid?",
]
HISTORY = [
    "Who was the first emperor of Rome?",
    "When did the Berlin wall fall?",
    "Which treaty ended the First World War?",
]


@pytest.fixture
def store(tmp_path: Path) -> ExpertStore:
    created = ExpertStore.create(tmp_path / "store", "hashing:128")
    created.add_expert("chemistry", CHEMISTRY, description="chem", system_prompt="Be a chemist.")
    created.add_expert("history", HISTORY, centroids=2, threshold=0.25)
    return created


def test_round_trip_keeps_everything(store: ExpertStore) -> None:
    reopened = ExpertStore.open(store.path)
    assert [e.name for e in reopened.experts()] == ["chemistry", "history"]
    chem = reopened.expert("chemistry")
    assert chem.description == "chem"
    assert chem.system_prompt == "Be a chemist."
    assert chem.counts == (3,)
    assert chem.stats["texts"] == 3
    np.testing.assert_allclose(chem.centroids[0], HashingEmbedder(128).embed(CHEMISTRY).mean(0))
    assert sorted(reopened.expert("history").counts) == [1, 2]
    assert reopened.threshold("history") == 0.25
    assert reopened.threshold("chemistry") == 0.7
    index, rows, center = reopened.load_index()
    assert index.ntotal == 3 and rows == ["chemistry", "history", "history"] and center is None
    assert reopened.embedder_spec == "hashing:128"


def test_remove_and_set_thresholds(store: ExpertStore) -> None:
    store.set_thresholds({"chemistry": 0.4}, default=0.6)
    store.remove_expert("history")
    reopened = ExpertStore.open(store.path)
    assert [e.name for e in reopened.experts()] == ["chemistry"]
    assert reopened.threshold("chemistry") == 0.4 and reopened.default_threshold == 0.6
    assert not (store.path / "experts" / "history").exists()
    assert sorted(p.name for p in (store.path / "index").iterdir()) == ["3.faiss"]
    with pytest.raises(StoreError, match="no expert 'history'"):
        store.remove_expert("history")
    with pytest.raises(StoreError, match="no such experts"):
        store.set_thresholds({"physics": 0.5})
    with pytest.raises(StoreError, match=r"\[-1, 1\]"):
        store.set_thresholds({"chemistry": 3.0})


def test_centring_stores_the_mean_of_all_expert_data(tmp_path: Path) -> None:
    store = ExpertStore.create(tmp_path / "s", "hashing:64", center=True)
    store.add_expert("chemistry", CHEMISTRY)
    store.add_expert("history", HISTORY)
    _, _, center = ExpertStore.open(store.path).load_index()
    vectors = HashingEmbedder(64).embed(CHEMISTRY + HISTORY)
    assert center is not None
    np.testing.assert_allclose(center, vectors.mean(0), atol=1e-6)


@pytest.mark.parametrize(
    "name", ["", "Chem", "../escape", "a/b", "-lead", "x" * 65, "base", "chem istry", "chémie"]
)
def test_invalid_names_are_rejected(store: ExpertStore, name: str) -> None:
    with pytest.raises(StoreError, match="invalid expert name"):
        store.add_expert(name, CHEMISTRY)


def test_bad_add_arguments_are_clear_errors(store: ExpertStore, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="already exists"):
        store.add_expert("chemistry", CHEMISTRY)
    with pytest.raises(StoreError, match="at least one non-empty text"):
        store.add_expert("empty", ["", "  "])
    with pytest.raises(StoreError, match="need at least 5 texts"):
        store.add_expert("few", CHEMISTRY, centroids=5)
    with pytest.raises(StoreError, match=r"has no adapter_model\.safetensors"):
        store.add_expert("noadapter", CHEMISTRY, adapter=tmp_path)
    (tmp_path / "pickled").mkdir()
    (tmp_path / "pickled" / "adapter_config.json").write_text("{}")
    (tmp_path / "pickled" / "adapter_model.bin").write_bytes(b"\x80")
    with pytest.raises(StoreError, match="holds pickle weights"):
        store.add_expert("pickled", CHEMISTRY, adapter=tmp_path / "pickled")
    (tmp_path / "prefix").mkdir()
    (tmp_path / "prefix" / "adapter_config.json").write_text('{"peft_type": "PREFIX_TUNING"}')
    save_file(
        {"w": np.zeros(2, np.float32)}, str(tmp_path / "prefix" / "adapter_model.safetensors")
    )
    with pytest.raises(StoreError, match="'PREFIX_TUNING' adapter"):
        store.add_expert("prefix", CHEMISTRY, adapter=tmp_path / "prefix")
    with pytest.raises(StoreError, match="not empty"):
        ExpertStore.create(store.path, "hashing:128")
    with pytest.raises(StoreError, match="unknown embedder"):
        ExpertStore.create(tmp_path / "new", "word2vec")


def test_adapter_is_copied_safetensors_and_json_only(store: ExpertStore, tmp_path: Path) -> None:
    adapter = tmp_path / "lora"
    adapter.mkdir()
    config = {"base_model_name_or_path": "smollm2-135m-instruct", "peft_type": "LORA"}
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    lora = {f"base_model.model.q_proj.lora_{side}.weight": np.zeros((2, 2)) for side in "AB"}
    save_file(lora, str(adapter / "adapter_model.safetensors"))
    (adapter / "training_args.bin").write_bytes(b"pickle")
    expert = store.add_expert("chemlora", CHEMISTRY, adapter=adapter)
    assert expert.adapter is not None and expert.base_model == "smollm2-135m-instruct"
    assert sorted(p.name for p in expert.adapter.iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
    ]


def test_missing_store_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no expert store"):
        ExpertStore.open(tmp_path)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: (p / "store.json").write_text('{"format": "compllm-exp'), "not JSON"),
        (lambda p: (p / "store.json").write_text('{"format": "other"}'), "not an expert store"),
        (lambda p: _edit_manifest(p, version=99), "format version 99"),
        (lambda p: _edit_manifest(p, experts=["chemistry"]), "index rows"),
        (
            lambda p: (p / "experts" / "history" / "centroids.npy").write_bytes(b"\x93NUMPY"),
            "damaged or missing",
        ),
        (lambda p: (p / "experts" / "chemistry" / "expert.json").unlink(), "damaged or missing"),
        (lambda p: (p / "index" / "2.faiss").write_bytes(b"junk"), "index .* is damaged"),
        (lambda p: (p / "index" / "2.faiss").unlink(), "index .* is damaged"),
        (lambda p: _edit_expert(p, "chemistry", counts=[1, 2]), "disagree"),
    ],
)
def test_corrupt_or_partial_store_is_detected_on_open(store: ExpertStore, damage, message) -> None:
    damage(store.path)
    with pytest.raises(CorruptStoreError, match=message):
        ExpertStore.open(store.path)


def test_leftovers_of_a_crashed_writer_are_ignored_then_removed(store: ExpertStore) -> None:
    (store.path / "experts" / "halfwritten").mkdir()
    (store.path / "index" / "7.faiss").write_bytes(b"orphan")
    assert [e.name for e in ExpertStore.open(store.path).experts()] == ["chemistry", "history"]
    store.add_expert("physics", ["What is the speed of light?"])
    assert not (store.path / "experts" / "halfwritten").exists()
    assert not (store.path / "index" / "7.faiss").exists()


def _edit_manifest(root: Path, **changes: object) -> None:
    manifest = json.loads((root / "store.json").read_text())
    manifest.update(changes)
    (root / "store.json").write_text(json.dumps(manifest))


def _edit_expert(root: Path, name: str, **changes: object) -> None:
    path = root / "experts" / name / "expert.json"
    record = json.loads(path.read_text())
    record.update(changes)
    path.write_text(json.dumps(record))
