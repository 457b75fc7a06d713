"""What the aggregator's restatement check changes in answers written before it existed.

`nodes.aggregate.restates_query` replaces a reducer's answer that copies a stretch of the
question (its stem, its options) with the parts' answers joined. The check reads only the
question, the reducer's text and the parts' answers, and every outputs file keeps all three
(`answer`, `sub_answers`), so its effect on a finished cell is computed exactly here, without
running a model: for each question, the stored answer and the answer the check gives, scored
side by side, with the paired bootstrap difference.

Usage: `python -m benchmarks.reaggregate [OUTPUTS.jsonl ...]` (default: every aggregating cell
under `benchmarks/answers/outputs/`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from compllm_graph.evaluation.answers import answered, read_benchmark
from compllm_graph.evaluation.scoring import score_question
from compllm_graph.evaluation.stats import paired_difference
from compllm_graph.nodes.aggregate import restates_query

from .answer_tables import DATA, OUTPUTS

AGGREGATING = ("compllm", "all-experts", "random-router", "oracle-router")


def reaggregated(question: str, answer: dict[str, Any]) -> str:
    """The answer the restatement check gives for a stored answer."""
    parts = answer["sub_answers"]
    if not restates_query(str(answer["answer"]), question, parts):
        return str(answer["answer"])
    return " ".join(p["answer"] for p in parts if p["answer"])


def compare(outputs: Path) -> str:
    """One table row: the cell, questions, answers changed, and both accuracies before → after."""
    file = outputs.name.split(".")[-2]
    records = {r["id"]: r for r in read_benchmark(DATA / f"{file}.jsonl")}
    before: list[bool] = []
    after: list[bool] = []
    parts_before: list[bool] = []
    parts_after: list[bool] = []
    changed = 0
    for qid, answer in answered(outputs).items():
        record = records[qid]
        new = reaggregated(record["question"], answer)
        changed += new != answer["answer"]
        old_score = score_question(str(answer["answer"]), record["parts"])
        new_score = score_question(new, record["parts"])
        before.append(old_score.right)
        after.append(new_score.right)
        parts_before.extend(old_score.parts)
        parts_after.extend(new_score.parts)
    if not before:
        return f"| {outputs.parent.name}/{outputs.stem} | 0 | | | |"
    return (
        f"| {outputs.parent.name}/{outputs.stem} | {len(before)} | {changed} "
        f"| {_change(before, after)} | {_change(parts_before, parts_after)} |"
    )


def _change(before: list[bool], after: list[bool]) -> str:
    """`before → after`, with the paired difference and its interval (`*` when it is called)."""
    diff = paired_difference(after, before)
    low, high = diff["ci95"]
    called = " \\*" if diff["significant"] else ""
    return (
        f"{100 * sum(before) / len(before):.1f} % → {100 * sum(after) / len(after):.1f} % "
        f"({100 * diff['difference']:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]{called})"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outputs", nargs="*", type=Path, help="outputs files (default: all)")
    args = parser.parse_args(argv)
    files = args.outputs or sorted(
        f for f in OUTPUTS.glob("*/*.jsonl") if f.name.split(".")[0] in AGGREGATING
    )
    print("| cell | n | answers changed | question accuracy | part accuracy |")
    print("|---|---|---|---|---|")
    for outputs in files:
        print(compare(outputs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
