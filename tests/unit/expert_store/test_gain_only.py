"""Gain-only experts: kept out of the similarity index, answering only the parts a calibration
moves to them (a costlier model taking the domains where only it is measured right)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("faiss", reason="needs the [router] extra")

import numpy as np

from compllm_graph.cli import main
from compllm_graph.expert_store import ExpertRouter, ExpertStore
from tests.unit.expert_store.test_gain_routing import (
    CODER,
    TABLE,
    TableEmbedder,
    calibration,
    result,
)


@pytest.fixture
def store(tmp_path: Path) -> ExpertStore:
    embedder = TableEmbedder(TABLE)
    made = ExpertStore.create(tmp_path / "s", embedder, threshold=0.5, center=True)
    made.add_expert("chemistry", ["c1", "c2"])
    made.add_expert("mathematics", ["m1", "m2"])
    made.add_expert("coder", ["k1"], kind="model", model=CODER, gain_only=True)
    return ExpertStore.open(made.path, embedder=embedder)


def test_a_gain_only_expert_is_left_out_of_the_index_and_the_centre(
    store: ExpertStore, tmp_path: Path
) -> None:
    index, rows, center = store.load_index()
    assert rows == ["chemistry", "mathematics"]
    assert index.ntotal == len(rows)
    embedder = TableEmbedder(TABLE)
    alike = ExpertStore.create(tmp_path / "t", embedder, threshold=0.5, center=True)
    alike.add_expert("chemistry", ["c1", "c2"])
    alike.add_expert("mathematics", ["m1", "m2"])
    _, _, center_without = alike.load_index()
    assert center is not None and center_without is not None
    np.testing.assert_allclose(center, center_without)  # its data moves nothing
    reopened = ExpertStore.open(store.path, embedder=embedder)  # its checks pass
    assert {e.name: e.gain_only for e in reopened.experts()}["coder"] is True


def test_similarity_never_chooses_it(store: ExpertStore) -> None:
    (route,) = ExpertRouter(store, top_k=3).route(["k1"])  # its own text
    assert route.expert != "coder"
    assert "coder" not in [name for name, _ in route.candidates]


def test_a_calibration_gives_it_the_domains_where_only_it_wins(store: ExpertStore) -> None:
    store.set_calibration(calibration())
    chem, math = ExpertRouter(store, top_k=3).route(["near-chem", "near-math"])
    assert chem.expert == "coder" and chem.reason is not None and "2.50 s a call" in chem.reason
    assert math.expert == "mathematics"  # its own expert gains as much: it keeps its parts


def test_it_takes_a_domain_whose_own_expert_it_is_measured_ahead_of(store: ExpertStore) -> None:
    store.set_calibration(calibration(mathematics_coder=result(25, 20, 0)))
    chem, math = ExpertRouter(store, top_k=3).route(["near-chem", "near-math"])
    assert (chem.expert, math.expert) == ("coder", "coder")
    assert math.reason is not None
    assert "mathematics +33.3%" in math.reason and "coder +66.7%" in math.reason
    assert "2.50 s a call" in math.reason


def test_a_store_of_gain_only_experts_routes_to_the_base(tmp_path: Path) -> None:
    embedder = TableEmbedder(TABLE)
    made = ExpertStore.create(tmp_path / "s", embedder, threshold=0.5)
    made.add_expert("coder", ["k1"], kind="model", model=CODER, gain_only=True)
    reopened = ExpertStore.open(made.path, embedder=embedder)
    assert [route.expert for route in ExpertRouter(reopened).route(["k1", "c1"])] == [None, None]


def test_the_command_adds_and_lists_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "general.txt"
    data.write_text("any question at all\n")
    path = str(tmp_path / "s")
    assert main(["experts", "create", "--store", path, "--embedder", "hashing:64"]) == 0
    argv = ["experts", "add", "big", "--store", path, "--data", str(data), "--kind", "model"]
    assert main([*argv, "--model", CODER, "--gain-only"]) == 0
    out = capsys.readouterr().out
    assert "gain-only" in out and "warning" not in out
    assert main(["experts", "list", "--store", path, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert listed["experts"][0]["gain_only"] is True
    assert main(["experts", "list", "--store", path]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.strip().startswith("big"))
    assert "gain only" in line and "thr" not in line
