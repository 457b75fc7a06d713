"""The committed answers keep the rule of `benchmarks/answers/README.md`: ids, a hash of the
question and what the models wrote; never the benchmark's own question or gold answers."""

from __future__ import annotations

import json
from pathlib import Path

from compllm_graph.decomposer.chain_rule import split_chain

OUTPUTS = Path(__file__).resolve().parents[2] / "benchmarks" / "answers" / "outputs"
WRITTEN = {
    "id",
    "question_sha256",
    "answer",
    "answer_as_written",
    "sub_answers",
    "routes",
    "edges",
    "seconds",
    "fallback_reason",
    "settings",  # the pipeline's settings (aggregate, split rule, ...): no dataset text
}
SUB_ANSWER = {"question", "answer", "expert", "fallback_reason", "seconds", "attempts"}
SUB_ANSWER |= {"combined", "expert_answers", "expert_errors", "judge_error"}  # all-experts


def _lines() -> list[tuple[Path, int, dict]]:
    return [
        (path, number, json.loads(line))
        for path in sorted(OUTPUTS.rglob("*.jsonl"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
    ]


def test_committed_lines_hold_ids_hashes_and_model_text_only():
    lines = _lines()
    assert len(lines) > 1000
    bad = [
        f"{path.relative_to(OUTPUTS)}:{number}"
        for path, number, row in lines
        if set(row) - WRITTEN
        or "question_sha256" not in row
        or any(set(part) - SUB_ANSWER for part in row["sub_answers"])
    ]
    assert not bad, f"lines with dataset text or unknown keys: {bad[:10]}"


def test_the_chain_rule_splits_no_sub_query_the_committed_lines_record():
    """`answer_commands.FORMER_SETTINGS`: lines answered before the chain rule existed count as
    answered with it on, which holds because it splits none of their sub-queries that stand
    alone (no edge, no `#k`); read as the expert was asked them, which the rule reads no less
    often than the decomposer's own text."""
    checked, split = 0, []
    for path, number, row in _lines():
        if (row.get("settings") or {}).get("split_chains") is False:
            continue
        linked = {node for edge in row.get("edges") or [] for node in edge}
        for sub_query, answer in enumerate(row.get("sub_answers") or [], start=1):
            question = answer.get("question") or ""
            if sub_query in linked or "#" in question:
                continue
            checked += 1
            if split_chain(question) is not None:
                split.append(f"{path.relative_to(OUTPUTS)}:{number} {question[:80]}")
    assert checked > 5000 and not split, split[:5]
