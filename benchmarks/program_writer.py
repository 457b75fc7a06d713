"""Which model should write the program expert's programs: the 0.5B base or the 1.5B model.

Reads the word problems of the committed easy All-2 cell of the gain-routed Comp-LLM (two
sub-queries, no edge: each step holds its facts since the premise rule), asks the program
expert on Qwen2.5-Coder-1.5B (programs and fallback on the 1.5B model) each of their
sub-queries, and scores its reply against the cell's own reply from the 0.5B program expert on
the same sub-query. The questions are the easy tier's test-split items; nothing is tuned here.

Usage: `python -m benchmarks.program_writer [--limit 60] [--threads 2]`; prints one line per
sub-query (0.5B right, 1.5B right, gold, end of the 1.5B reply) and the totals.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import HumanMessage

from compllm_graph.defaults import BASE_SYSTEM_PROMPT, PROGRAM_MAX_NEW_TOKENS
from compllm_graph.evaluation.scoring import part_right
from compllm_graph.expert_store.serving import with_system_prompt
from compllm_graph.models import load_model
from compllm_graph.program_expert import create_program_expert

from . import answer_tables as tables

WRITER = "qwen2.5-coder-1.5b-instruct"


def word_problem_steps(limit: int) -> list[tuple[str, dict[str, Any], bool]]:
    """(sub-query, gold part, whether the cell's 0.5B reply was right), step by step."""
    tables._select_tier("easy")
    records = {r["id"]: r for r in tables._benchmark("all2")}
    cell = tables.Cell(tables.QWEN05, tables.GAIN, "all2", 200)
    steps = []
    for line in cell.outputs.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        parts = records[row["id"]]["parts"]
        if parts[1]["domain"] != "mathematics" or len(row["sub_answers"]) != 2 or row["edges"]:
            continue
        for sub, part in zip(row["sub_answers"], parts):
            steps.append((sub["question"], part, part_right(str(sub["answer"]), part)))
    return steps[:limit]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=60, help="sub-queries to ask")
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp threads")
    args = parser.parse_args(argv)
    steps = word_problem_steps(args.limit)
    model = load_model(WRITER, n_threads=args.threads)
    fallback = with_system_prompt(model.chat_model(max_new_tokens=160), BASE_SYSTEM_PROMPT)
    expert = create_program_expert(
        model.chat_model(max_new_tokens=PROGRAM_MAX_NEW_TOKENS), fallback
    )
    small = big = only_big = only_small = 0
    started = time.perf_counter()
    for question, part, small_right in steps:
        reply = str(expert.invoke([HumanMessage(question)]).content)
        big_right = part_right(reply, part)
        small, big = small + small_right, big + big_right
        only_big += big_right and not small_right
        only_small += small_right and not big_right
        tail = reply[-60:].replace("\n", " ")
        print(f"{int(small_right)} {int(big_right)} {part['answer']} | {tail}", flush=True)
    print(
        f"{len(steps)} sub-queries: 0.5B programs (the cell) {small} right, 1.5B programs {big}; "
        f"only the 1.5B {only_big}, only the 0.5B {only_small}; "
        f"{time.perf_counter() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
