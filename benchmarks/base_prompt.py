"""The base model's system prompt, measured on the sub-queries the router sent to it.

A Comp-LLM outputs file keeps every sub-query with the expert that answered it. This takes the
ones answered by the base model, pairs each with the one gold part it quotes (the first 50
characters of the part's question; sub-queries quoting none or several are left out), and
answers each twice, side by side in one run: with no system prompt (the pipeline before
`BASE_SYSTEM_PROMPT`) and with it. It prints how many each gets right, how many answers state
"The answer is", and the paired difference with its bootstrap interval.

Usage: `python -m benchmarks.base_prompt OUTPUTS.jsonl [--model ALIAS] [--threads N]`, e.g. on
`benchmarks/answers/outputs/qwen2.5-coder-0.5b-instruct/compllm.p2.jsonl`. The figures in
`benchmarks/results/base_prompt.txt` came from the answers written before the prompt existed,
`outputs/qwen2.5-coder-0.5b-instruct/before-base-prompt/compllm.p2.jsonl`, which git keeps
(`git show ae22a46:benchmarks/answers/outputs/...`).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from langchain_core.messages import HumanMessage
from langchain_core.runnables import Runnable

from compllm_graph.defaults import BASE_SYSTEM_PROMPT
from compllm_graph.evaluation.answers import answered
from compllm_graph.evaluation.scoring import part_right
from compllm_graph.evaluation.stats import paired_difference
from compllm_graph.expert_store.serving import with_system_prompt
from compllm_graph.models import load_model
from compllm_graph.types import message_text

from .answer_tables import benchmark_records

QUOTED = 50


def base_sub_queries(outputs: Path) -> list[tuple[str, Mapping[str, Any]]]:
    """(sub-query, gold part) for every base-answered sub-query that quotes exactly one part."""
    records = benchmark_records(outputs)
    pairs = []
    for qid, answer in answered(outputs).items():
        for sub in answer["sub_answers"]:
            if sub.get("expert") != "base":
                continue
            quoted = [p for p in records[qid]["parts"] if p["question"][:QUOTED] in sub["question"]]
            if len(quoted) == 1:
                pairs.append((str(sub["question"]), quoted[0]))
    return pairs


def score(chat: Runnable, pairs: Sequence[tuple[str, Mapping[str, Any]]]) -> tuple[list[bool], int]:
    """Each sub-query answered by `chat`: right or not, and how many say "the answer is"."""
    right, stated = [], 0
    for question, part in pairs:
        text = message_text(chat.invoke([HumanMessage(question)]))
        right.append(part_right(text, part))
        stated += "the answer is" in text.lower()
    return right, stated


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outputs", type=Path, help="a Comp-LLM outputs file")
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-new-tokens", type=int, default=160)
    args = parser.parse_args(argv)
    pairs = base_sub_queries(args.outputs)
    model = load_model(args.model, n_threads=args.threads)
    chat = model.chat_model(max_new_tokens=args.max_new_tokens)
    print(f"{len(pairs)} base-model sub-queries quoting one gold part, {args.model}")
    results = {}
    for name, runnable in (
        ("none", chat),
        ("BASE_SYSTEM_PROMPT", with_system_prompt(chat, BASE_SYSTEM_PROMPT)),
    ):
        start = time.perf_counter()
        results[name] = score(runnable, pairs)
        right, stated = results[name]
        print(
            f"{name}: {sum(right)} right, {stated} say 'the answer is', "
            f"{time.perf_counter() - start:.0f} s"
        )
    diff = paired_difference(results["BASE_SYSTEM_PROMPT"][0], results["none"][0])
    low, high = diff["ci95"]
    print(
        f"prompt - none: {100 * diff['difference']:+.1f} points "
        f"[{100 * low:+.1f}, {100 * high:+.1f}] ({'called' if diff['significant'] else 'no call'})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
