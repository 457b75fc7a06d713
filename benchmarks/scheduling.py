"""Scheduling benchmark on real DAG shapes: eager vs waves vs sequential.

Takes the gold decompositions of MuSiQue, StrategyQA and Break (../shared/data) as query graphs,
gives every sub-query a fake expert whose latency is proportional to its answer length (MuSiQue's
gold step answers; StrategyQA and Break have none, so the sub-query's own length stands in), and
times the execute stage of the real graph under three schedules:

- sequential: eager with one device of capacity 1 (one sub-query at a time);
- waves: LangGraph supersteps;
- eager: each sub-query starts when its own parents finish.

It prints each scheduler's speedup over sequential and its efficiency = critical-path bound /
measured wall time (the bound is the longest latency-weighted path: no schedule can beat it).

    python -m benchmarks.scheduling [--limit 100] [--ms-per-char 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from compllm_graph import DeviceLimits, QueryGraph, Route, Scheduler, create_compllm_graph
from compllm_graph.data_dir import DEFAULT_DATA_DIR
from compllm_graph.datasets.decompositions import default_files, load_examples

BASE_MS = 20.0


class SleepyExpert(BaseChatModel):
    """Answers after `seconds`; stands in for an expert whose answer takes that long to write."""

    seconds: float
    answer: str = "ok"

    @property
    def _llm_type(self) -> str:
        return "sleepy"

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        time.sleep(self.seconds)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(self.answer))])

    async def _agenerate(self, messages: list[BaseMessage], *a: Any, **k: Any) -> ChatResult:
        await asyncio.sleep(self.seconds)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(self.answer))])


class Instant(SleepyExpert):
    seconds: float = 0.0


def answer_lengths(dataset: str, path: Path) -> dict[str, list[int]]:
    """Gold answer length per step, where the dataset has step answers (MuSiQue only)."""
    if dataset != "musique":
        return {}
    records = json.loads(path.read_text(encoding="utf-8"))
    return {
        str(r["id"]): [len(step["answer"]) for step in r["question_decomposition"]] for r in records
    }


def latencies(graph: QueryGraph, lengths: list[int] | None, ms_per_char: float) -> list[float]:
    chars = lengths or [len(sq.text) for sq in graph]
    return [(BASE_MS + ms_per_char * c) / 1000 for c in chars]


def critical_path(graph: QueryGraph, seconds: list[float]) -> float:
    cost = dict(zip(graph.ids, seconds))
    finish: dict[int, float] = {}
    for node in graph.order:
        finish[node] = cost[node] + max((finish[p] for p in graph[node].parents), default=0.0)
    return max(finish.values())


async def execute_seconds(
    graph: QueryGraph, seconds: list[float], scheduler: Scheduler, limits: DeviceLimits | None
) -> float:
    """Wall time of the execute stage: the gap between the state after route and after execute."""
    experts = {
        f"node{sq.id}": SleepyExpert(seconds=s, answer=f"answer {sq.id}")
        for sq, s in zip(graph, seconds)
    }
    built = create_compllm_graph(
        decomposer=Instant(answer=graph.to_text()),
        experts=experts,
        router=lambda texts: [Route(f"node{i}", 1.0) for i in range(1, len(texts) + 1)],
        base=Instant(),
        scheduler=scheduler,
        device_limits=limits,
    ).compile()
    marks = []
    async for _ in built.astream({"query": "q"}, stream_mode="values"):
        marks.append(time.perf_counter())
    return marks[3] - marks[2]  # values: input, decompose, route, execute, aggregate


async def bench_dataset(name: str, path: Path, limit: int, ms_per_char: float) -> dict:
    every = load_examples(path)
    examples = every[:: max(1, len(every) // limit)][:limit]  # spread over the file: all hop counts
    lengths = answer_lengths(name, path)
    totals = {"sequential": 0.0, "waves": 0.0, "eager": 0.0, "bound": 0.0, "sum": 0.0}
    for example in examples:
        seconds = latencies(example.graph, lengths.get(example.qid), ms_per_char)
        totals["bound"] += critical_path(example.graph, seconds)
        totals["sum"] += sum(seconds)
        one_at_a_time = DeviceLimits({"device": 1}, default_device="device")
        totals["sequential"] += await execute_seconds(
            example.graph, seconds, "eager", one_at_a_time
        )
        schedulers: tuple[Scheduler, ...] = ("waves", "eager")
        for scheduler in schedulers:
            totals[scheduler] += await execute_seconds(example.graph, seconds, scheduler, None)
    return {"dataset": name, "graphs": len(examples), **totals}


def report(row: dict) -> str:
    seq, bound = row["sequential"], row["bound"]
    return (
        f"{row['dataset']:<11} {row['graphs']:>6} {row['sum'] / bound:>11.2f}x"
        f" {seq / row['waves']:>8.2f}x {seq / row['eager']:>8.2f}x"
        f" {bound / row['waves']:>9.3f} {bound / row['eager']:>9.3f}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=100, help="graphs per dataset")
    parser.add_argument("--ms-per-char", type=float, default=2.0)
    args = parser.parse_args()
    if not DEFAULT_DATA_DIR.is_dir():
        raise SystemExit(
            f"no benchmark data at {DEFAULT_DATA_DIR}: this benchmark needs ../shared/data"
        )
    print(
        f"{'dataset':<11} {'graphs':>6} {'ideal':>12} {'waves':>9} {'eager':>9}"
        f" {'eff waves':>9} {'eff eager':>9}"
    )
    print(
        f"{'':<11} {'':>6} {'(seq/bound)':>12} {'speedup over sequential':>19}"
        f" {'(bound / measured)':>20}"
    )
    for name, path in default_files(DEFAULT_DATA_DIR).items():
        row = await bench_dataset(name, path, args.limit, args.ms_per_char)
        print(report(row), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
