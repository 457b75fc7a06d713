"""`compllm eval answers` end to end on SmolLM2 with the shipped experts: 3 real questions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compllm_graph.cli import main
from compllm_graph.datasets.compositions import compose_parallel
from compllm_graph.datasets.items import domain_items
from compllm_graph.datasets.jsonl import write_jsonl
from compllm_graph.expert_store.demo import build_demo_store
from compllm_graph.models import SMALL_MODEL
from tests.conftest import require_smollm2

pytestmark = pytest.mark.integration


def test_three_composed_questions_through_the_pipeline_and_the_shipped_experts(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    require_smollm2()
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed: `make setup`")
    pools = {d: domain_items(data_dir, d) for d in ("chemistry", "mathematics")}
    benchmark = tmp_path / "p2.jsonl"
    write_jsonl(compose_parallel(pools, parts=2, count=3, seed=7), benchmark)
    store = build_demo_store(tmp_path / "store", base=SMALL_MODEL, embedder="hashing:256")
    assert all(e.adapter is not None for e in store.experts())  # the trained experts
    outputs = tmp_path / "answers.jsonl"
    argv = ["eval", "answers", str(benchmark), "--store", str(store.path), "--json"]
    argv += ["--model", SMALL_MODEL]
    argv += ["--outputs", str(outputs), "--max-new-tokens", "48", "--threads", "2"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["n"] == 3 and 0 <= summary["part_accuracy"] <= 1
    lines = [json.loads(line) for line in outputs.read_text().splitlines()]
    assert len(lines) == 3 and all(line["answer"] for line in lines)
    experts = {e.name for e in store.experts()}
    assert any(route in experts for line in lines for route in line["routes"])
