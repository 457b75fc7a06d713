"""Recomputing stored answers with the aggregate node's current rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import benchmarks.answer_tables as answer_tables
from benchmarks.reaggregate import reaggregated, rewrite

QUESTION = "Which metal rusts? Also, which gas do plants take in?"
PARTS: list[dict[str, str | None]] = [
    {"question": "Which metal rusts?", "answer": "The answer is (B) iron.", "expert": "chemistry"},
    {"question": "Which gas do plants take in?", "answer": "Carbon dioxide.", "expert": None},
]

GOLD = [
    {
        "question": PARTS[0]["question"],
        "answer": "iron",
        "choices": ["gold", "iron"],
        "domain": "chemistry",
    },
    {
        "question": PARTS[1]["question"],
        "answer": "carbon dioxide",
        "choices": None,
        "domain": "biology",
    },
]


def _row(answer: str, reason: str | None = None) -> dict:
    return {"id": "p2-0", "answer": answer, "sub_answers": PARTS, "fallback_reason": reason}


def test_an_appended_short_answer_gives_way_to_the_parts() -> None:
    stored = "It is (A) gold. (The parts' answers: (B) iron.)"
    answer, reason = reaggregated(QUESTION, _row(stored))
    assert answer == "First part: The answer is (B) iron.\nSecond part: Carbon dioxide."
    assert reason is not None and "sub-query 1" in reason


def test_answers_with_nothing_to_judge_stand() -> None:
    kept = "Iron, (B) iron; and carbon dioxide."
    assert reaggregated(QUESTION, _row(kept)) == (kept, None)
    joined = "First part: The answer is (B) iron.\nSecond part: Carbon dioxide."
    restated = _row(joined, "the aggregator restated the question instead of answering")
    assert reaggregated(QUESTION, restated) == (joined, None)
    whole = {**_row("x"), "sub_answers": [{"question": QUESTION, "answer": "x"}]}
    assert reaggregated(QUESTION, whole) == ("x", None)


def test_rewrite_keeps_the_written_answer_and_runs_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "p2.jsonl").write_text(
        json.dumps({"id": "p2-0", "question": QUESTION, "parts": GOLD, "edges": []}) + "\n"
    )
    monkeypatch.setattr(answer_tables, "DATA", tmp_path)
    outputs = tmp_path / "compllm.p2.jsonl"
    outputs.write_text(json.dumps(_row("It is (A) gold. (The parts' answers: (B) iron.)")) + "\n")
    assert rewrite(outputs) == 1
    row = json.loads(outputs.read_text())
    assert row["answer"] == "First part: The answer is (B) iron.\nSecond part: Carbon dioxide."
    assert row["answer_as_written"].startswith("It is (A) gold.")
    assert "left out" in row["fallback_reason"]
    assert rewrite(outputs) == 0
