"""The stores Qwen2.5-Coder-0.5B's cells are pinned to: the demo store with and without the
pack's calibration, built once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("faiss", reason="needs the [router] extra")

from benchmarks import gain_store
from compllm_graph.expert_store.calibration import Calibration
from compllm_graph.expert_store.demo import DEMO_EXPERTS, ShippedCalibration
from compllm_graph.packs import missing_pack_message, pack_for


@pytest.fixture(autouse=True)
def default_pack() -> None:
    if pack_for(gain_store.MODEL) is None:
        pytest.skip(f"{missing_pack_message(gain_store.MODEL)} (`make test` installs it)")


def test_the_gain_store_carries_the_measurement_and_the_candidate(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(ShippedCalibration, "fetched", lambda self: [gain_store.CANDIDATE])
    built = gain_store.ensure(tmp_path / "gain", embedder="hashing:64")
    big = next(e for e in built.experts() if e.name == gain_store.CANDIDATE)
    assert big.gain_only and big.kind == "model" and big.model == gain_store.CANDIDATE_MODEL
    measured = json.loads(gain_store.CALIBRATION.read_text())["calibration"]
    assert built.calibration == Calibration.from_dict(measured)
    inode = (built.path / "store.json").stat().st_ino
    again = gain_store.ensure(tmp_path / "gain", embedder="hashing:64")
    assert (again.path / "store.json").stat().st_ino == inode  # built once


def test_the_gain_store_needs_the_candidate_fetched(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(ShippedCalibration, "fetched", lambda self: [])
    with pytest.raises(RuntimeError, match=f"compllm models fetch {gain_store.CANDIDATE_MODEL}"):
        gain_store.ensure(tmp_path / "gain", embedder="hashing:64")


def test_the_similarity_store_is_the_demo_store_without_calibration(tmp_path: Path) -> None:
    built = gain_store.ensure(tmp_path / "plain", calibrated=False, embedder="hashing:64")
    assert built.calibration is None
    assert {e.name for e in built.experts()} == set(DEMO_EXPERTS)


def test_the_alone_store_is_the_gain_store_without_the_candidate(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(ShippedCalibration, "fetched", lambda self: [gain_store.CANDIDATE])
    built = gain_store.ensure(tmp_path / "alone", candidate=False, embedder="hashing:64")
    assert {e.name for e in built.experts()} == set(DEMO_EXPERTS)
    measured = json.loads(gain_store.CALIBRATION.read_text())["calibration"]
    assert built.calibration == Calibration.from_dict(measured).without(gain_store.CANDIDATE)
    again = gain_store.ensure(tmp_path / "alone", candidate=False, embedder="hashing:64")
    assert again.calibration == built.calibration  # not built again with the candidate
