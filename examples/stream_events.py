"""Streaming Comp-LLM's progress to a terminal with `stream_mode="custom"`.

Every node writes events as it works: the decomposition, each sub-query's route and score, each
sub-answer as soon as it is ready (sub-queries run concurrently, so they may finish out of
order), and the final answer.

    python examples/stream_events.py [--max-new-tokens 48] ["your question"]
"""

from __future__ import annotations

import argparse
import time

from compllm_graph.defaults import build_default_graph
from compllm_graph.models import DEFAULT_MODEL

QUESTION = "Which organelle makes most of a cell's ATP, and what is 12 times 11?"


def show(event: dict, started: float) -> None:
    """Print one custom event as a terminal line."""
    clock = f"[{time.perf_counter() - started:6.1f} s]"
    kind = event.get("event")
    if kind == "decomposition":
        print(f"{clock} decomposed into {len(event['sub_queries'])} sub-queries")
        for sq in event["sub_queries"]:
            after = f" (after {', '.join(map(str, sq['parents']))})" if sq["parents"] else ""
            print(f"           {sq['id']}. {sq['text']}{after}")
        if event.get("fallback_reason"):
            print(f"           fallback: {event['fallback_reason']}")
    elif kind == "route":
        expert = event["expert"] or "base model"
        how = ", on its ancestors' texts" if event.get("on_ancestors") else ""
        print(
            f"{clock} sub-query {event['sub_query']} -> {expert} (score {event['score']:.2f}{how})"
        )
    elif kind == "sub_query_start":
        print(f"{clock} sub-query {event['sub_query']} started")
    elif kind == "sub_query_end":
        print(
            f"{clock} sub-query {event['sub_query']} answered in {event['seconds']:.1f} s: "
            f"{event['answer']!r}"
        )
    elif kind == "answer":  # a join of independent parts is one line per part
        first, *more = event["answer"].splitlines() or [""]
        print(f"{clock} final answer: {first}")
        for line in more:
            print(f"           {line}")
    else:
        print(f"{clock} {event}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("question", nargs="?", default=QUESTION)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model alias (default: %(default)s)")
    args = parser.parse_args()
    graph = build_default_graph(args.model, max_new_tokens=args.max_new_tokens).compile()
    print(f"Question: {args.question}")
    started = time.perf_counter()
    for event in graph.stream({"query": args.question}, stream_mode="custom"):
        show(event, started)


if __name__ == "__main__":
    main()
