"""What beam search costs the decomposer: greedy vs wider beams, side by side in one run (CPU).

The default decomposer (shipped adapter, tag grammar) decomposes the same MuSiQue test-split
questions with each beam width, in interleaved rounds; the median seconds per question and each
width's ratio to greedy are printed. Decomposition F1 per width is the README's table
(`compllm eval decomposition FILE --beams N`), not measured here.

Usage: ``python -m benchmarks.decomposer_beams [--model ALIAS] [--beams 1 4 8] [--questions 4]
[--rounds 3]``. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from langchain_core.messages import HumanMessage, SystemMessage

from compllm_graph.data_dir import DEFAULT_DATA_DIR
from compllm_graph.datasets.decompositions import default_files, load_examples, select
from compllm_graph.defaults import default_decomposer
from compllm_graph.models import SMALL_MODEL, load_model
from compllm_graph.query_graph import parse_decomposition, sub_query_char_limit

FALLBACK_QUESTIONS = (
    "Who is the spouse of the director of Titanic?",
    "Which organelle makes most of a cell's ATP, and what is the chemical formula of glucose?",
)


def questions(count: int) -> list[str]:
    """The first MuSiQue test-split questions, or two built-in ones without the shared data."""
    try:
        examples = select(load_examples(default_files(DEFAULT_DATA_DIR)["musique"]), "test")
    except (FileNotFoundError, KeyError):
        print(
            f"no MuSiQue data under {DEFAULT_DATA_DIR}: using built-in questions", file=sys.stderr
        )
        return list(FALLBACK_QUESTIONS[:count])
    return [e.question for e in examples[:count]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=SMALL_MODEL)
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--questions", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    local = load_model(args.model, engine="transformers")
    chats = {width: default_decomposer(local, beams=width) for width in args.beams}
    asked = questions(args.questions)
    times: dict[int, list[float]] = {width: [] for width in args.beams}
    for _ in range(args.rounds):
        for width, (chat, prompt) in chats.items():
            for question in asked:
                started = time.perf_counter()
                reply = chat.invoke([SystemMessage(prompt or ""), HumanMessage(question)])
                times[width].append(time.perf_counter() - started)
                # the grammar keeps every width parseable
                parse_decomposition(str(reply.content), max_chars=sub_query_char_limit(question))
    medians = {width: statistics.median(values) for width, values in times.items()}
    greedy = medians.get(1, medians[min(medians)])
    print(f"{args.model}, {len(asked)} questions x {args.rounds} rounds, seconds per question:")
    for width, median in medians.items():
        print(f"  beams {width:>2}: {median:6.2f} s  ({median / greedy:.2f}x greedy)")
    print(json.dumps({"model": args.model, "seconds_per_question": medians}))


if __name__ == "__main__":
    main()
