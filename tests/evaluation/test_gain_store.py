"""The gain-routed cells' store: built once from a store and the committed measurement."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("faiss", reason="needs the [router] extra")

from benchmarks import gain_store
from compllm_graph.expert_store import ExpertRouter, ExpertStore
from compllm_graph.expert_store.calibration import Calibration, DomainResult, ExpertResult
from compllm_graph.types import BASE


def test_the_store_is_built_from_the_measurement_once(tmp_path: Path) -> None:
    source = ExpertStore.create(tmp_path / "demo", "hashing:64", threshold=-1.0)
    source.add_expert("biology", ["cells and genes", "evolution of species"])
    source.add_expert("mathematics", ["sum of numbers", "product of two"])
    measured = Calibration(
        model=gain_store.MODEL,
        domains={
            "biology": DomainResult(
                30, 9, {"biology": ExpertResult(8, 1, 2), "big": ExpertResult(15, 7, 1)}
            )
        },
        owners={"biology": "biology"},
        seconds_per_call={BASE: 1.0, "biology": 1.0, "big": 3.0},
    )
    report = tmp_path / "calibration.json"
    report.write_text(json.dumps({"calibration": measured.to_dict()}))
    target = tmp_path / "stores" / "gain"
    built = gain_store.ensure(target, report, source)
    big = next(e for e in built.experts() if e.name == gain_store.CANDIDATE)
    assert big.gain_only and big.kind == "model" and big.model == gain_store.CANDIDATE_MODEL
    assert built.calibration == measured
    (route,) = ExpertRouter(ExpertStore.open(target)).route(["cells and genes"])
    assert route.expert == "big"  # biology's expert loses; only the candidate is measured right
    report.unlink()  # built: the measurement is not read again
    assert gain_store.ensure(target, report, source).calibration == measured
    ExpertStore.open(target).set_calibration(None)  # a build cut short is built again
    with pytest.raises(FileNotFoundError):
        gain_store.ensure(target, report, source)
