"""Two sub-queries on different LoRA adapters: taking turns in one engine, or decoding at once.

llama.cpp applies a LoRA adapter to a whole context, so one batch cannot mix adapters; the
engine gives each busy adapter a context of its own (`compllm_graph/models/llama_engine.py`).
This measures, with the pack's expert adapters on the P-2 parts the graph sent to two different
experts, both requests submitted at once:

- "turns": one engine with `parallel_contexts=1`: the contexts step round-robin on one thread;
- "at once": the same engine with `parallel_contexts=2` (the default): both contexts step at the
  same time, each on its own thread with `--threads` threads;
- "two engines, half the threads": one engine per adapter (weights loaded twice), each with half
  the threads, decoding at once;
- "two engines": the same with `--threads` each;
- "one by one": one engine, the second request after the first (Comp-LLM-seq's order).

On each pair the variants take turns going first. It prints the summed wall seconds, the ratio to
"turns" (below 1: faster) and how many replies differ from "turns" (none should: every context
keeps its thread count). Ends with one JSON line.

Usage: `python -m benchmarks.adapter_overlap [--model ALIAS] [--pairs 10] [--threads N]`
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from langchain_core.messages import HumanMessage

from compllm_graph.defaults import DEFAULT_MAX_NEW_TOKENS
from compllm_graph.models.download import gguf_path
from compllm_graph.models.llama_engine import LlamaEngine, default_threads
from compllm_graph.models.llama_model import LlamaCppModel
from compllm_graph.models.requests import Completion, GenerationSettings, Request
from compllm_graph.packs import pack_for

ANSWERS = Path(__file__).parent / "answers" / "outputs"
SCRATCH = Path(os.environ.get("TMPDIR", "/tmp")) / "compllm-overlap-bench"
Pair = tuple[tuple[str, str], tuple[str, str]]
"""Two (adapter, sub-question) parts of one question."""
Variant = Callable[[Pair], list[Completion]]


def expert_pairs(alias: str, count: int, experts: Sequence[str]) -> list[Pair]:
    """The first `count` P-2 questions whose two parts the graph sent to two different experts."""
    pairs: list[Pair] = []
    for line in (ANSWERS / alias / "compllm.p2.jsonl").read_text().splitlines():
        subs = json.loads(line)["sub_answers"]
        names = [str(s.get("expert")) for s in subs]
        if len(subs) == 2 and names[0] != names[1] and set(names) <= set(experts):
            pairs.append(((names[0], subs[0]["question"]), (names[1], subs[1]["question"])))
        if len(pairs) == count:
            break
    return pairs


def load(alias: str, threads: int, adapters: dict[str, Path]) -> LlamaCppModel:
    engine = LlamaEngine(gguf_path(alias), n_threads=threads)
    model = LlamaCppModel(engine, name=alias, cache_dir=SCRATCH / "lora")
    for name, folder in adapters.items():
        model.add_adapter(name, folder)
    return model


def request(model: LlamaCppModel, adapter: str, question: str) -> Request:
    return Request(
        prompt_ids=model.encode_chat([HumanMessage(question)]),
        adapter=adapter,
        settings=GenerationSettings(max_new_tokens=DEFAULT_MAX_NEW_TOKENS),
    )


def at_once(models: Sequence[LlamaCppModel], pair: Pair) -> list[Completion]:
    """Part i on models[i % len(models)], all submitted before any is awaited."""
    futures: list[Future[Completion]] = [
        models[i % len(models)].engine.submit(request(models[i % len(models)], *part))
        for i, part in enumerate(pair)
    ]
    return [f.result() for f in futures]


def one_by_one(model: LlamaCppModel, pair: Pair) -> list[Completion]:
    return [model.engine.submit(request(model, *part)).result() for part in pair]


def with_parallel(model: LlamaCppModel, contexts: int) -> Variant:
    """Both parts at once on `model`, its engine stepping up to `contexts` adapters at once."""

    def run(pair: Pair) -> list[Completion]:
        model.engine.parallel_contexts = contexts
        return at_once([model], pair)

    return run


def measure(variants: dict[str, Variant], pairs: Sequence[Pair]) -> dict[str, Any]:
    """Summed seconds and tokens per variant, the order rotating from pair to pair."""
    names = list(variants)
    seconds = dict.fromkeys(names, 0.0)
    tokens = dict.fromkeys(names, 0)
    differ = dict.fromkeys(names, 0)
    for index, pair in enumerate(pairs):
        replies = {}
        for name in names[index % len(names) :] + names[: index % len(names)]:
            started = time.perf_counter()
            replies[name] = [c.token_ids for c in variants[name](pair)]
            seconds[name] += time.perf_counter() - started
            tokens[name] += sum(len(r) for r in replies[name])
        for name in names:
            differ[name] += replies[name] != replies[names[0]]
        print(f"[{index + 1}/{len(pairs)}]", {n: round(seconds[n], 1) for n in names}, flush=True)
    base = seconds[names[0]]
    return {
        name: {
            "seconds": round(seconds[name], 2),
            "tokens": tokens[name],
            "tokens per second": round(tokens[name] / seconds[name], 2),
            "seconds / turns": round(seconds[name] / base, 3),
            "replies differing from turns": differ[name],
        }
        for name in names
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    threads = args.threads or default_threads()
    pack = pack_for(args.model)
    if pack is None:
        raise SystemExit(f"the expert pack for {args.model} is not installed (`make setup`)")
    adapters = pack.experts()
    pairs = expert_pairs(args.model, args.pairs, list(adapters))
    if not pairs:
        raise SystemExit(f"no P-2 outputs of {args.model} with two parts on two experts")
    shared = load(args.model, threads, adapters)
    half = [load(args.model, max(1, threads // 2), adapters) for _ in range(2)]
    full = [load(args.model, threads, adapters) for _ in range(2)]
    for model in (*half, *full):
        model.engine.parallel_contexts = 1  # one adapter each: nothing to step beside
    variants: dict[str, Variant] = {
        "turns": with_parallel(shared, 1),
        "at once": with_parallel(shared, 2),
        "two engines, half the threads": lambda pair: at_once(half, pair),
        "two engines": lambda pair: at_once(full, pair),
        "one by one": lambda pair: one_by_one(shared, pair),
    }
    for variant in variants.values():  # warm-up: contexts for both adapters
        variant(pairs[0])
    before = os.getloadavg()
    print(f"load average before: {before}, threads {threads}, pairs {len(pairs)}", flush=True)
    results = measure(variants, pairs)
    after = os.getloadavg()
    for name, row in results.items():
        print(f"{name:>29}: " + ", ".join(f"{k} {v}" for k, v in row.items()))
    print(
        json.dumps(
            {"model": args.model, "threads": threads, "load": [before, after], "variants": results}
        )
    )


if __name__ == "__main__":
    main()
