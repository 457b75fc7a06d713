"""Setting aside the answers a cell gave before a pipeline change that alters them."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.redo import answered_whole, routed_terse_step
from compllm_graph.evaluation.answers import answered, set_aside

RECORD = {
    "id": "p2-0",
    "question": "What is A? Also, what is B?",
    "parts": [{"question": "What is A?"}, {"question": "What is B?"}],
}


def test_a_question_answered_through_itself_alone_is_whole() -> None:
    whole = {"sub_answers": [{"question": " What is A? Also, what is B?", "answer": "x"}]}
    split = {"sub_answers": [{"question": "What is A?"}, {"question": "What is B?"}]}
    one_part = {"sub_answers": [{"question": "What is A?"}]}
    assert answered_whole(RECORD, whole)
    assert not answered_whole(RECORD, split)
    assert not answered_whole(RECORD, one_part)  # the decomposer dropped a part: its error
    assert not answered_whole({**RECORD, "parts": RECORD["parts"][:1]}, whole)
    assert not answered_whole(RECORD, {"sub_answers": []})  # a monolith's line


def test_a_dependent_step_routed_to_base_is_terse() -> None:
    terse = {"routes": ["mathematics", "base"], "edges": [[1, 2]]}
    assert routed_terse_step(RECORD, terse)
    assert not routed_terse_step(RECORD, {"routes": ["base", "mathematics"], "edges": [[1, 2]]})
    assert not routed_terse_step(RECORD, {"routes": ["mathematics", "base"], "edges": []})
    assert not routed_terse_step(RECORD, {"answer": "a monolith's line"})


def test_set_aside_keeps_the_lines_it_moves(tmp_path: Path) -> None:
    outputs = tmp_path / "compllm.p2.jsonl"
    outputs.write_text("".join(json.dumps({"id": i, "answer": i}) + "\n" for i in "abc"))
    aside = set_aside(outputs, {"b"}, why="whole")
    assert aside.name == "compllm.p2.whole.jsonl"
    assert list(answered(outputs)) == ["a", "c"] and list(answered(aside)) == ["b"]
