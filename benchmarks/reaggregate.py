"""What the aggregate node's current rules change in answers written before them.

Two rules came after cells had been answered: `nodes.aggregate.restates_query` replaces a
reducer's answer that copies a stretch of the question (its stem, its options) with the parts'
answers joined, and `nodes.aggregate.left_out` does the same when the reducer's answer lacks a
part's stated answer (before it, the left-out parts' short answers were appended after the
reducer's text, cut at 60 characters, so a long option's text was lost). Both read only the
question, the reducer's text and the parts' answers, and every outputs file keeps all three
(`answer` is the reducer's text, with that appendix where one was added), so their effect on a
finished cell is computed exactly here, without running a model: for each question, the stored
answer and the answer the rules give, scored side by side, with the paired bootstrap difference.

Usage: `python -m benchmarks.reaggregate [--rewrite] [OUTPUTS.jsonl ...]` (default: every
aggregating cell under `benchmarks/answers/outputs/`); `--rewrite` then writes the recomputed
answers into the files (`rewrite`), so the tables score what the current pipeline answers.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from compllm_graph.evaluation.answers import answered
from compllm_graph.evaluation.scoring import score_question
from compllm_graph.evaluation.stats import paired_difference
from compllm_graph.nodes.aggregate import aggregate_prompt, reduced_answer
from compllm_graph.state import CompLLMState, SubAnswer

from .answer_tables import CELLS, benchmark_records

AGGREGATING = ("compllm", "all-experts", "one-adapter", "random-router", "oracle-router")


APPENDIX = " (The parts' answers: "
"""How the aggregate node marked the parts' answers it appended before `left_out` replaced it."""


def stored_parts(answer: dict[str, Any]) -> list[SubAnswer]:
    """A stored answer's sub-answers as the aggregate node reads them, ids 1, 2, ... in order."""
    return [
        {
            "sub_query": i,
            "question": str(p.get("question", "")),
            "answer": str(p.get("answer") or ""),
            "expert": p.get("expert"),
            "fallback_reason": p.get("fallback_reason"),
            "seconds": 0.0,
            "attempts": 1,
        }
        for i, p in enumerate(answer["sub_answers"], start=1)
    ]


def reaggregated(question: str, answer: dict[str, Any]) -> tuple[str, str | None]:
    """The answer the aggregate node's current rules give for a stored answer, and why it
    joins the parts (None: the stored answer stands, or the rules keep the reducer's text)."""
    stored = str(answer["answer"])
    parts = stored_parts(answer)
    state = cast(CompLLMState, {"query": question})
    reason = str(answer.get("fallback_reason") or "")
    replaced = "aggregator" in reason or "(Could not answer:" in stored
    if aggregate_prompt(state, parts) is None or replaced:
        return stored, None  # no reducer text to judge: nothing aggregated, or already replaced
    text = (
        stored[: stored.rfind(APPENDIX)] if stored.endswith(".)") and APPENDIX in stored else stored
    )
    return reduced_answer(state, parts, text)


def compare(outputs: Path) -> str:
    """One table row: the cell, questions, answers changed, and both accuracies before → after."""
    records = benchmark_records(outputs)
    before: list[bool] = []
    after: list[bool] = []
    parts_before: list[bool] = []
    parts_after: list[bool] = []
    changed = 0
    for qid, answer in answered(outputs).items():
        record = records[qid]
        new = reaggregated(record["question"], answer)[0]
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
        f"| {change(before, after)} | {change(parts_before, parts_after)} |"
    )


def rewrite(outputs: Path) -> int:
    """Write the current rules' answers into `outputs` (the stored one kept as
    `answer_as_written`, the reason appended to `fallback_reason`); the number changed.

    Exact because the rules are model-free: the reducer's prompt is unchanged, so the current
    pipeline would write these answers for the same sub-answers. Running it again changes
    nothing.
    """
    questions = {qid: r["question"] for qid, r in benchmark_records(outputs).items()}
    lines, changed = [], 0
    for line in outputs.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        answer, reason = reaggregated(questions[row["id"]], row)
        if answer != row["answer"]:
            changed += 1
            row["answer_as_written"], row["answer"] = row["answer"], answer
            row["fallback_reason"] = "; ".join(r for r in (row.get("fallback_reason"), reason) if r)
            line = json.dumps(row, ensure_ascii=False)
        lines.append(line)
    temporary = outputs.with_suffix(".rewrite")
    temporary.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    temporary.replace(outputs)
    return changed


def change(before: list[bool], after: list[bool]) -> str:
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
    parser.add_argument(
        "--rewrite", action="store_true", help="write the recomputed answers into the files"
    )
    args = parser.parse_args(argv)
    files = args.outputs or sorted(
        c.outputs for c in CELLS.values() if c.system in AGGREGATING and c.outputs.exists()
    )
    print("| cell | n | answers changed | question accuracy | part accuracy |")
    print("|---|---|---|---|---|")
    for outputs in files:
        print(compare(outputs))
    if args.rewrite:
        for outputs in files:
            print(f"{outputs.parent.name}/{outputs.stem}: {rewrite(outputs)} answers rewritten")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
