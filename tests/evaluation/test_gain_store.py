"""The stores Qwen2.5-Coder-0.5B's cells are pinned to: the demo store with and without the
pack's calibration and candidates, each with the measurement its cells were answered with,
built once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("faiss", reason="needs the [router] extra")

from benchmarks import gain_store
from compllm_graph.expert_store.calibration import Calibration
from compllm_graph.expert_store.demo import DEMO_EXPERTS, ShippedCalibration
from compllm_graph.packs import missing_pack_message, pack_for

BOTH = [gain_store.CANDIDATE, gain_store.WRITER]


@pytest.fixture(autouse=True)
def default_pack() -> None:
    if pack_for(gain_store.MODEL) is None:
        pytest.skip(f"{missing_pack_message(gain_store.MODEL)} (`make test` installs it)")


def pinned_like(monkeypatch: pytest.MonkeyPatch, where: Path, store: Path) -> Path:
    """`where` pinned as `store` is (its candidates and measurement)."""
    monkeypatch.setitem(gain_store.KEPT, where, gain_store.KEPT[store])
    monkeypatch.setitem(gain_store.PINNED, where, gain_store.PINNED[store])
    return where


def measured(path: Path) -> Calibration:
    return Calibration.from_dict(json.loads(path.read_text())["calibration"])


@pytest.mark.parametrize(
    ("store", "candidates", "calibration"),
    [
        (gain_store.WRITER_STORE, BOTH, gain_store.WRITER_CALIBRATION),
        (gain_store.STORE, [gain_store.CANDIDATE], gain_store.CALIBRATION),
        (gain_store.ALONE_STORE, [], gain_store.CALIBRATION),
    ],
    ids=["writer", "first", "alone"],
)
def test_each_gain_store_keeps_its_candidates_and_its_measurement_built_once(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    store: Path,
    candidates: list[str],
    calibration: Path,
) -> None:
    monkeypatch.setattr(ShippedCalibration, "fetched", lambda self: list(BOTH))
    where = pinned_like(monkeypatch, tmp_path / store.name, store)
    built = gain_store.ensure(where, embedder="hashing:64")
    kinds = {e.name: (e.kind, e.model, e.gain_only) for e in built.experts()}
    assert set(kinds) == {*DEMO_EXPERTS, *candidates}
    kind = {gain_store.CANDIDATE: "model", gain_store.WRITER: "program"}
    assert all(kinds[c] == (kind[c], gain_store.CANDIDATE_MODEL, True) for c in candidates)
    left_out = [c for c in BOTH if c not in candidates]
    expected = measured(calibration)
    for name in left_out:
        expected = expected.without(name)
    assert built.calibration == expected
    inode = (built.path / "store.json").stat().st_ino
    again = gain_store.ensure(where, embedder="hashing:64")
    assert (again.path / "store.json").stat().st_ino == inode  # built once


def test_a_gain_store_needs_its_candidates_fetched(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(ShippedCalibration, "fetched", lambda self: [])
    where = pinned_like(monkeypatch, tmp_path / "gain", gain_store.WRITER_STORE)
    with pytest.raises(RuntimeError, match=f"compllm models fetch {gain_store.CANDIDATE_MODEL}"):
        gain_store.ensure(where, embedder="hashing:64")


def test_the_similarity_store_is_the_demo_store_without_calibration(tmp_path: Path) -> None:
    built = gain_store.ensure(tmp_path / "plain", calibrated=False, embedder="hashing:64")
    assert built.calibration is None
    assert {e.name for e in built.experts()} == set(DEMO_EXPERTS)
