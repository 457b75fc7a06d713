"""The trained expert adapters of the expert packs (`packs/`), and the demo store that registers
them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("faiss", reason="needs the [router] extra")

from compllm_graph.expert_store.calibration import Calibration
from compllm_graph.expert_store.demo import (
    DEMO_EXPERTS,
    ShippedCalibration,
    build_demo_store,
    default_store_path,
    shipped_calibration,
    shipped_experts,
)
from compllm_graph.models import CATALOGUE, DEFAULT_MODEL, SMALL_MODEL
from compllm_graph.packs import missing_pack_message, pack_for, read_pack

REPO = Path(__file__).resolve().parents[3]
SHIPPED = [
    (pack.model, pack.base_model, expert)
    for pack in (read_pack(m.parent) for m in sorted(REPO.glob("packs/*/*/manifest.json")))
    for expert in pack.experts().values()
]


@pytest.fixture
def default_pack() -> None:
    """A skip unless the default model's pack is installed (the demo store needs it)."""
    if pack_for(DEFAULT_MODEL) is None:
        pytest.skip(f"{missing_pack_message(DEFAULT_MODEL)} (`make test` installs it)")


@pytest.mark.usefixtures("default_pack")
def test_the_default_model_ships_every_demo_expert() -> None:
    names = set(shipped_experts(DEFAULT_MODEL))
    assert set(DEMO_EXPERTS) <= names <= {*DEMO_EXPERTS, "all-domains"}
    assert shipped_experts("no-such-model") == {}


@pytest.mark.parametrize(
    ("base", "base_model", "folder"), SHIPPED, ids=[f"{b}/{f.name}" for b, _, f in SHIPPED]
)
def test_each_shipped_expert_is_small_trained_and_documented(
    base: str, base_model: str, folder: Path
) -> None:
    assert base in CATALOGUE and base_model == CATALOGUE[base].public_id
    # (a `.gguf/` folder is llama.cpp's cached conversion, made on first use)
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == [
        "adapter_config.json",
        "adapter_model.safetensors",
        "training.json",
    ], "only the adapter and its record ship (no checkpoint, no pickles)"
    assert (folder / "adapter_model.safetensors").stat().st_size <= 10 * 1024 * 1024
    config = json.loads((folder / "adapter_config.json").read_text())
    record = json.loads((folder / "training.json").read_text())
    # The config names the public id (a hub id), the record the alias it was trained on.
    assert config["base_model_name_or_path"] == base_model and record["base"] == base
    assert record["status"] == "finished" and record["objective"] == "answer"
    loss = record["loss"]
    # One batch's loss is noisy (a short run can end on a hard one): compare 10-step means.
    assert loss.get("last_10_mean", loss["last"]) < loss.get("first_10_mean", loss["first"])
    if folder.name in DEMO_EXPERTS:
        assert record["system_prompt"] == DEMO_EXPERTS[folder.name][1]


@pytest.mark.usefixtures("default_pack")
def test_the_demo_store_routes_to_the_shipped_adapters(tmp_path: Path) -> None:
    store = build_demo_store(
        tmp_path / "store", embedder="hashing:64", calibrate=False, calibrated=False
    )
    adapters = shipped_experts(DEFAULT_MODEL)
    for expert in store.experts():
        assert expert.adapter is not None and expert.base_model == DEFAULT_MODEL
        assert (expert.adapter / "adapter_model.safetensors").read_bytes() == (
            adapters[expert.name] / "adapter_model.safetensors"
        ).read_bytes()
    other = build_demo_store(
        tmp_path / "other", base="no-such-model", embedder="hashing:64", calibrate=False
    )
    assert all(e.adapter is None for e in other.experts())  # prompt-only experts


def test_each_base_model_has_its_own_demo_store(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("COMPLLM_HOME", str(tmp_path))
    assert default_store_path() == default_store_path(DEFAULT_MODEL) == tmp_path / "expert_store"
    another = next(alias for alias in CATALOGUE if alias != DEFAULT_MODEL)
    assert default_store_path(another) == tmp_path / f"expert_store-{another}"


@pytest.mark.usefixtures("default_pack")
def test_a_demo_store_built_before_an_adapter_shipped_is_rebuilt(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import compllm_graph.expert_store.demo as demo

    monkeypatch.setenv("COMPLLM_HOME", str(tmp_path))
    monkeypatch.setattr(demo, "DEMO_EMBEDDER", "hashing:64")
    everything = shipped_experts(DEFAULT_MODEL)
    fewer = {name: everything[name] for name in ("biology", "chemistry")}
    monkeypatch.setattr(demo, "shipped_experts", lambda base: fewer)
    first = demo.demo_store()
    assert {e.name for e in first.experts() if e.adapter} == {"biology", "chemistry"}
    monkeypatch.setattr(demo, "shipped_experts", lambda base: everything)
    again = demo.demo_store()
    assert all(e.adapter is not None for e in again.experts())


@pytest.mark.usefixtures("default_pack")
def test_a_demo_store_built_before_an_adapter_was_retrained_is_rebuilt(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import shutil

    import compllm_graph.expert_store.demo as demo

    monkeypatch.setenv("COMPLLM_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(demo, "DEMO_EMBEDDER", "hashing:64")
    shipped = tmp_path / "shipped"
    for name, folder in shipped_experts(DEFAULT_MODEL).items():
        shutil.copytree(folder, shipped / name, ignore=shutil.ignore_patterns(".gguf"))
    monkeypatch.setattr(
        demo, "shipped_experts", lambda base: {p.name: p for p in shipped.iterdir()}
    )
    first = demo.demo_store()
    built = (first.path / "store.json").stat().st_ino
    demo.demo_store()
    assert (first.path / "store.json").stat().st_ino == built  # unchanged: opened, not rebuilt
    record = shipped / "biology" / "training.json"
    record.write_text(record.read_text().replace('"steps"', '"steps_retrained"', 1))
    demo.demo_store()
    assert (first.path / "store.json").stat().st_ino != built  # rebuilt with the new adapter


@pytest.mark.usefixtures("default_pack")
def test_a_default_store_built_for_the_former_default_model_is_rebuilt(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The default model changed (SmolLM2-135M to Qwen2.5-Coder-0.5B): a user's default store
    # still holds the former model's adapters, which the new default cannot load.
    import compllm_graph.expert_store.demo as demo

    if pack_for(SMALL_MODEL) is None:
        pytest.skip(f"{missing_pack_message(SMALL_MODEL)} (`make test` installs it)")
    monkeypatch.setenv("COMPLLM_HOME", str(tmp_path))
    monkeypatch.setattr(demo, "DEMO_EMBEDDER", "hashing:64")
    build_demo_store(default_store_path(), base=SMALL_MODEL, embedder="hashing:64")
    store = demo.demo_store()
    assert store.path == default_store_path()
    assert all(e.base_model == DEFAULT_MODEL for e in store.experts() if e.adapter is not None)
    assert {e.name for e in store.experts() if e.adapter is not None} == set(DEMO_EXPERTS)


@pytest.mark.usefixtures("default_pack")
def test_the_default_pack_ships_the_measured_calibration_and_the_demo_store_routes_by_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from compllm_graph.defaults import BASE_SYSTEM_PROMPT

    shipped = shipped_calibration(DEFAULT_MODEL)
    assert shipped is not None
    report = REPO / "benchmarks/results/gain-calibration-writer-2026-12-07/calibration_qwen.json"
    measured = json.loads(report.read_text())["calibration"]
    assert shipped.calibration == Calibration.from_dict(measured)
    big, writer = shipped.candidates["big"], shipped.candidates["big-program"]
    assert big.model == writer.model == "qwen2.5-coder-1.5b-instruct"
    assert (big.kind, writer.kind) == ("model", "program")
    assert big.system_prompt == writer.system_prompt == BASE_SYSTEM_PROMPT
    monkeypatch.setattr(ShippedCalibration, "fetched", lambda self: ["big", "big-program"])
    store = build_demo_store(tmp_path / "store", embedder="hashing:64", calibrate=False)
    choose = store.calibration.choose if store.calibration else None
    assert choose is not None
    # The routes the default's cells were answered with
    # (docs/results/2026-12-07-program-writer.md).
    assert {domain: choose(domain, [domain]).expert for domain in DEMO_EXPERTS} == {
        "biology": "big",
        "chemistry": "big",  # too few calibration items: judged on every domain pooled
        "mathematics": "big-program",  # 14/30 against the 0.5B model's programs' 13/30
        "medicine": "big",
    }
    monkeypatch.setattr(ShippedCalibration, "fetched", lambda self: [])
    alone = build_demo_store(tmp_path / "alone", embedder="hashing:64", calibrate=False)
    assert alone.calibration is not None
    assert not {"big", "big-program"} & {e.name for e in alone.experts()}
    assert {d: alone.calibration.choose(d, [d]).expert for d in DEMO_EXPERTS} == {
        "biology": None,
        "chemistry": None,
        "mathematics": "mathematics",
        "medicine": None,
    }
