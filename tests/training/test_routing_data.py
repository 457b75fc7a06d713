"""The demo store's routing data: train-split questions only, and what the shipped files hold."""

from __future__ import annotations

import json
from pathlib import Path

from compllm_graph.datasets.items import SOURCES, domain_items, unlettered
from compllm_graph.expert_store.demo import DEMO_DATA
from compllm_graph.training.routing_data import (
    CALIBRATION_TEXTS,
    CENTROID_TEXTS,
    routing_records,
    write_routing_data,
)


def test_the_shipped_files_are_what_the_builder_writes(data_dir: Path, tmp_path: Path) -> None:
    write_routing_data(data_dir, tmp_path)
    for name in (*SOURCES, "calibration"):
        assert (tmp_path / f"{name}.jsonl").read_text() == (DEMO_DATA / f"{name}.jsonl").read_text()


def test_no_routing_question_is_a_test_item(data_dir: Path) -> None:
    files = routing_records(data_dir)
    items = [i for d in SOURCES for i in domain_items(data_dir, d)]
    # A few MMLU questions appear in two subjects, one in each split; benchmarks leave such
    # test items out (`compose.left_out`), so only the others must never route-train.
    train_questions = {i.question for i in items if i.in_split == "train"}
    test_questions = {i.question for i in items if i.in_split == "test"} - train_questions
    for domain in SOURCES:
        assert len(files[domain]) == CENTROID_TEXTS
        assert not {unlettered(str(r["text"])) for r in files[domain]} & test_questions
    calibration = files["calibration"]
    labels = [r["expert"] for r in calibration]
    assert all(labels.count(d) == CALIBRATION_TEXTS for d in SOURCES) and None in labels
    in_domain = {unlettered(str(r["text"])) for r in calibration if r["expert"]}
    assert not in_domain & test_questions
    assert not any(str(r["source"]).startswith("medmcqa") for f in files.values() for r in f)
    assert json.loads(json.dumps(files)) == files  # plain JSON records
