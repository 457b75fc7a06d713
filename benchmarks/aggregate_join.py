"""What `aggregate="auto"` (no reducer call for independent parts) does to answer accuracy.

Under "auto" the aggregate node answers a decomposition with no edges by the parts' answers
joined (`nodes.aggregate.joined_parts`, each named by position) and calls the reducer only where
parts depend on each other; "always" calls it whenever there is something to combine. The join
reads only the stored sub-answers, and every outputs file keeps them with the decomposition's
edges, so the effect on a finished cell is computed exactly here, without running a model. For
each Comp-LLM P-2 and P-3 cell, on the questions the tables score (`answer_tables`): the stored
final answer (written under "always", `check_aggregate` on) against the answer "auto" gives (the
parts joined where the decomposition has no edge, the stored answer where it has), scored with
`evaluation.scoring.score_question`, with the paired bootstrap difference
(`evaluation.stats.paired_difference`). A last column scores the join that names each part by
its sub-query's text instead of its position, the form not chosen.

Usage: `python -m benchmarks.aggregate_join [CELL ...]` (default: every Comp-LLM P-2 and P-3
cell, e.g. `smollm2-135m-instruct/compllm.p2`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from compllm_graph.evaluation.scoring import score_question
from compllm_graph.nodes.aggregate import aggregate_prompt, joined_parts
from compllm_graph.state import CompLLMState, SubAnswer

from .answer_tables import CELLS, Cell, _cell_scores
from .reaggregate import change, stored_parts

FILES = ("p2", "p3")
SYSTEM = "compllm"


def query_graph(answer: dict[str, Any]) -> dict[str, Any]:
    """The stored decomposition's shape as the state's `query_graph`: ids and parents, from
    `edges` (`[i, j]`, 1-based); no edge when the line predates their recording."""
    parents: dict[int, list[int]] = {i: [] for i in range(1, len(answer["sub_answers"]) + 1)}
    for parent, child in answer.get("edges") or []:
        parents[child].append(parent)
    return {"sub_queries": [{"id": i, "text": "", "parents": p} for i, p in parents.items()]}


def auto_answer(question: str, answer: dict[str, Any]) -> tuple[str, bool]:
    """The answer `aggregate="auto"` gives for a stored answer, and whether it joined the parts
    with no reducer call (False: the reducer runs as it did, so the stored answer stands)."""
    state = cast(CompLLMState, {"query": question, "query_graph": query_graph(answer)})
    parts = stored_parts(answer)
    if aggregate_prompt(state, parts, "auto") is None and aggregate_prompt(state, parts):
        return joined_parts(parts), True
    return str(answer["answer"]), False


def joined_by_text(parts: list[SubAnswer]) -> str:
    """The rejected form: each answer after its sub-query's text."""
    return "\n".join(f"{a['question']}\n{a['answer']}" for a in parts if a["answer"])


@dataclass
class Scores:
    """Question and part scores of one form of the answers, in question order."""

    questions: list[bool] = field(default_factory=list)
    parts: list[bool] = field(default_factory=list)

    def add(self, answer: str, record: dict[str, Any]) -> None:
        score = score_question(answer, record["parts"])
        self.questions.append(score.right)
        self.parts.extend(score.parts)


def compare(cell: Cell) -> str:
    """One table row: the cell, questions, how many "auto" joins (and how many of those the
    check had already replaced, how many lack recorded edges), and always → auto accuracies."""
    scored = _cell_scores(cell)
    if scored is None:
        return f"| {cell.name} | 0 | | | | | | |"
    always, auto, by_text = Scores(), Scores(), Scores()
    joined = replaced = unrecorded = 0
    for record, answer in zip(*scored):
        new, join = auto_answer(record["question"], answer)
        joined += join
        replaced += join and "the aggregator" in str(answer.get("fallback_reason") or "")
        unrecorded += "edges" not in answer
        always.add(str(answer["answer"]), record)
        auto.add(new, record)
        by_text.add(joined_by_text(stored_parts(answer)) if join else new, record)
    n = len(always.questions)
    return (
        f"| {cell.name} | {n} | {joined} | {replaced} | {unrecorded} "
        f"| {change(always.questions, auto.questions)} | {change(always.parts, auto.parts)} "
        f"| {100 * sum(by_text.parts) / len(by_text.parts):.1f} % |"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cells", nargs="*", help="cell names (default: Comp-LLM P-2 and P-3)")
    args = parser.parse_args(argv)
    names = args.cells or [c.name for c in CELLS.values() if c.system == SYSTEM and c.file in FILES]
    unknown = sorted(set(names) - set(CELLS))
    if unknown:
        parser.error(f"unknown cells {unknown}; `python -m benchmarks.answer_tables --list`")
    print(
        "| cell | n | joined, no reducer call | of which the check had replaced "
        "| edges not recorded | question accuracy always → auto | part accuracy always → auto "
        "| part accuracy, parts named by their text |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in sorted(names):
        print(compare(CELLS[name]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
