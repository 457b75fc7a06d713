"""Prompt-lookup decoding and prompt reuse on the llama.cpp engine, stage by stage of the graph.

Three stages, each on `--prompts` prompts built from the committed P-2 answers
(`benchmarks/answers/outputs/ALIAS/compllm.p2.jsonl` and the questions in
`benchmarks/answers/data/p2.jsonl`):

- decomposer: the shipped decomposer adapter with its system prompt and the GBNF tag grammar, on
  the P-2 questions (its sub-queries copy the question, answer options included);
- reducer: the graph's reducer prompt (`nodes.aggregate.aggregate_prompt`) over the sub-answers
  the graph wrote (the reply repeats them);
- expert: each first sub-question answered by the expert adapter it was routed to (the base
  model with `BASE_SYSTEM_PROMPT` where it went to none), as the graph asks it.

Lookup ("lookup"): every prompt runs plain greedy and with lookup at each `--drafts` length,
one request at a time, the order rotating from prompt to prompt so that drift in the machine's
load falls on all alike. It prints per stage and draft length the ratio of summed wall time
(plain / lookup: above 1 is faster), tokens per second, the acceptance rate (accepted / drafted
tokens), the tokens per decode step, and how many outputs differ from plain greedy.
Then ("parallel") `--parallel` requests of a stage at once (the graph runs experts
concurrently), plain against lookup at the middle draft length.

Decode cost ("cost"): milliseconds of one `llama_decode` of 1, 2, 3, 5 and 8 rows, what a
lookup step with a draft costs against a plain step. Grammar ("grammar"): the decomposer prompts
decoded with llama.cpp's whole sampler chain (the grammar masks the vocabulary for every token)
against the engine's argmax-first pick, whether the tokens match and the seconds.

Prompt reuse ("reuse"): the seconds to the first token (prefill) of the decomposer prompt (the
shipped adapter's system prompt, and the few-shot `DECOMPOSER_PROMPT` for a model without one)
and of the base system prompt, with reuse off (`cached_prompts=0`, the engine the lookup runs
use) and on (a second engine with `cached_prompts=4`, the prompt's fixed part cached by an earlier
request), interleaved, and whether their first tokens match.

The machine is shared: run it when the load is low, e.g. `nice -n -5`; it prints the load
average before and after. Usage: `python -m benchmarks.lookup_decoding [--models ALIAS ...]
[--drafts 2 4 8] [--prompts 10] [--parallel 4] [--threads N] [--stages decomposer reducer expert]
[--sections cost grammar lookup parallel reuse]`. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from compllm_graph.decomposer.grammar import tag_grammar_gbnf
from compllm_graph.decomposer.loading import DECOMPOSER_MAX_NEW_TOKENS, read_training_record
from compllm_graph.decomposer.prompts import DECOMPOSER_PROMPT, DECOMPOSER_SYSTEM_PROMPT
from compllm_graph.defaults import BASE_SYSTEM_PROMPT, DEFAULT_MAX_NEW_TOKENS
from compllm_graph.models.download import gguf_path
from compllm_graph.models.llama_engine import LlamaEngine, default_threads
from compllm_graph.models.llama_model import LlamaCppModel
from compllm_graph.models.lookup import LookupConfig
from compllm_graph.models.requests import Completion, GenerationSettings, Request
from compllm_graph.nodes.aggregate import aggregate_prompt
from compllm_graph.packs import pack_for

MODELS = ("smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct")
SECTIONS = ("cost", "grammar", "lookup", "parallel", "reuse")
STAGES = ("decomposer", "reducer", "expert")
ANSWERS = Path(__file__).parent / "answers"
SCRATCH = Path(os.environ.get("TMPDIR", "/tmp")) / "compllm-lookup-bench"


@dataclass
class Prompt:
    """One request of a stage: its messages, adapter and decoding settings."""

    messages: list[BaseMessage]
    adapter: str | None
    max_new_tokens: int
    grammar: str | None = None


@dataclass
class Tally:
    """Sums over the prompts of one stage and one decoding variant."""

    seconds: float = 0.0
    tokens: int = 0
    drafted: int = 0
    accepted: int = 0
    differ: int = 0
    times: list[float] = field(default_factory=list)

    def add(self, completion: Completion, seconds: float, plain: Completion | None) -> None:
        self.seconds += seconds
        self.times.append(seconds)
        self.tokens += len(completion.token_ids)
        self.drafted += completion.drafted_tokens
        self.accepted += completion.accepted_tokens
        self.differ += plain is not None and plain.token_ids != completion.token_ids


def load_records(alias: str, count: int) -> list[tuple[str, list[dict[str, Any]]]]:
    """(question, sub-answers) of the first `count` P-2 questions the graph split in two or more."""
    questions = {
        r["id"]: r["question"]
        for r in map(json.loads, (ANSWERS / "data" / "p2.jsonl").read_text().splitlines())
    }
    outputs = ANSWERS / "outputs" / alias / "compllm.p2.jsonl"
    chosen = []
    for line in outputs.read_text().splitlines():
        record = json.loads(line)
        if len(record["sub_answers"]) >= 2 and record["id"] in questions:
            chosen.append((questions[record["id"]], record["sub_answers"]))
        if len(chosen) == count:
            break
    return chosen


def stages(model: LlamaCppModel, alias: str, count: int) -> dict[str, list[Prompt]]:
    """The decomposer, reducer and expert prompts, with the pack's adapters loaded."""
    pack = pack_for(alias)
    if pack is None or pack.decomposer() is None:
        raise SystemExit(f"the expert pack for {alias} is not installed (`make setup`)")
    decomposer = pack.decomposer()
    assert decomposer is not None
    model.add_adapter("decomposer", decomposer)
    system = str(read_training_record(decomposer).get("system_prompt", DECOMPOSER_SYSTEM_PROMPT))
    experts = pack.experts()
    for name, folder in experts.items():
        model.add_adapter(name, folder)
    records = load_records(alias, count)
    tokens = DEFAULT_MAX_NEW_TOKENS
    out: dict[str, list[Prompt]] = {"decomposer": [], "reducer": [], "expert": []}
    for question, subs in records:
        out["decomposer"].append(
            Prompt(
                [SystemMessage(system), HumanMessage(question)],
                "decomposer",
                DECOMPOSER_MAX_NEW_TOKENS,
                tag_grammar_gbnf(),
            )
        )
        parts: list[Any] = [
            {**sub, "sub_query": i, "fallback_reason": sub.get("fallback_reason")}
            for i, sub in enumerate(subs)
        ]
        state: Any = {"query": question, "sub_answers": parts}
        reducer = aggregate_prompt(state, parts, "always")
        if reducer is not None:
            out["reducer"].append(Prompt(list(reducer), None, tokens))
        first = subs[0]
        name = str(first.get("expert"))
        if name in experts:
            out["expert"].append(Prompt([HumanMessage(first["question"])], name, tokens))
        else:
            messages = [SystemMessage(BASE_SYSTEM_PROMPT), HumanMessage(first["question"])]
            out["expert"].append(Prompt(messages, None, tokens))
    return out


def request(model: LlamaCppModel, prompt: Prompt, lookup: LookupConfig | None) -> Request:
    settings = GenerationSettings(
        max_new_tokens=prompt.max_new_tokens, grammar=prompt.grammar, lookup=lookup
    )
    return Request(
        prompt_ids=model.encode_chat(prompt.messages), adapter=prompt.adapter, settings=settings
    )


def timed(
    model: LlamaCppModel, prompt: Prompt, lookup: LookupConfig | None
) -> tuple[Completion, float]:
    started = time.perf_counter()
    completion = model.engine.submit(request(model, prompt, lookup)).result()
    return completion, time.perf_counter() - started


def lookup_table(
    model: LlamaCppModel, prompts: Sequence[Prompt], drafts: Sequence[int]
) -> dict[str, Tally]:
    """Plain and lookup at each draft length on every prompt, in rotating order."""
    variants: list[tuple[str, LookupConfig | None]] = [("plain", None)]
    variants += [(f"k={k}", LookupConfig(draft_tokens=k)) for k in drafts]
    tallies = {label: Tally() for label, _ in variants}
    for index, prompt in enumerate(prompts):
        shift = index % len(variants)
        results = {}
        for label, config in variants[shift:] + variants[:shift]:
            results[label] = timed(model, prompt, config)
        plain = results["plain"][0]
        for label, (completion, seconds) in results.items():
            tallies[label].add(completion, seconds, None if label == "plain" else plain)
    return tallies


def concurrent(
    model: LlamaCppModel, prompts: Sequence[Prompt], lookup: LookupConfig | None
) -> float:
    """Aggregate generated tokens per second of `prompts` submitted at once."""
    requests = [request(model, p, lookup) for p in prompts]
    started = time.perf_counter()
    futures = [model.engine.submit(r) for r in requests]
    tokens = sum(len(f.result().token_ids) for f in futures)
    return tokens / (time.perf_counter() - started)


def prefill_seconds(
    models: dict[str, LlamaCppModel],
    fixed: list[BaseMessage],
    questions: Sequence[str],
    adapter: str | None,
) -> dict[str, Any]:
    """Seconds to the first token with reuse off and on, interleaved, after one request has
    put the fixed part in the cache; and whether the one-token answers agree."""
    times: dict[str, list[float]] = {name: [] for name in models}
    reused: list[int] = []
    same = 0
    for model in models.values():  # the warm-up request: caches the fixed part
        timed(model, Prompt([*fixed, HumanMessage("Hello there.")], adapter, 1), None)
    for index, question in enumerate(questions):
        prompt = Prompt([*fixed, HumanMessage(question)], adapter, 1)
        order = list(models.items())[index % 2 :] + list(models.items())[: index % 2]
        answers = {}
        for name, model in order:
            completion, seconds = timed(model, prompt, None)
            times[name].append(seconds)
            answers[name] = completion.token_ids
            if name == "on":
                reused.append(completion.reused_prompt_tokens)
        same += answers["on"] == answers["off"]
    length = len(models["on"].encode_chat([*fixed, HumanMessage(questions[0])]))
    return {
        "prompt tokens (first)": length,
        "reused tokens (median)": statistics.median(reused),
        "off s (median)": statistics.median(times["off"]),
        "on s (median)": statistics.median(times["on"]),
        "same first token": f"{same}/{len(questions)}",
    }


def load(alias: str, threads: int, cached: int) -> LlamaCppModel:
    engine = LlamaEngine(gguf_path(alias), n_threads=threads, cached_prompts=cached)
    return LlamaCppModel(engine, name=alias, cache_dir=SCRATCH / "lora")


def bench_model(alias: str, args: argparse.Namespace) -> dict[str, Any]:
    model = load(alias, args.threads, 0)
    prompts = stages(model, alias, args.prompts)
    timed(model, prompts["expert"][0], None)  # warm-up: contexts and caches
    report: dict[str, Any] = {}
    if "cost" in args.sections:
        report["decode ms by rows"] = decode_cost(model)
        print(alias, "decode ms by rows", report["decode ms by rows"], flush=True)
    if "grammar" in args.sections:
        report["grammar"] = grammar_report(model, prompts["decomposer"])
        print(alias, "grammar", report["grammar"], flush=True)
    for stage, items in prompts.items():
        if stage not in args.stages:
            continue
        if "lookup" in args.sections:
            report.setdefault("lookup", {})[stage] = lookup_rows(model, items, args)
            print(alias, stage, json.dumps(report["lookup"][stage]), flush=True)
        if "parallel" in args.sections:
            report.setdefault("parallel", {})[stage] = parallel_row(model, items, args)
            print(alias, stage, "parallel", report["parallel"][stage], flush=True)
    if "reuse" in args.sections:
        report["reuse"] = reuse_report(model, alias, prompts, args)
    model.close()
    return report


def lookup_rows(
    model: LlamaCppModel, items: Sequence[Prompt], args: argparse.Namespace
) -> dict[str, Any]:
    """The lookup table of one stage, one row per variant."""
    tallies = lookup_table(model, items, args.drafts)
    plain = tallies["plain"]
    rows = {}
    for label, tally in tallies.items():
        steps = tally.tokens - tally.accepted
        rows[label] = {
            "speed-up": round(plain.seconds / tally.seconds, 3),
            "tok/s": round(tally.tokens / tally.seconds, 2),
            "acceptance": round(tally.accepted / tally.drafted, 3) if tally.drafted else None,
            "tokens/step": round(tally.tokens / steps, 3) if steps else None,
            "differ": tally.differ,
            "tokens": tally.tokens,
        }
    return rows


def parallel_row(
    model: LlamaCppModel, items: Sequence[Prompt], args: argparse.Namespace
) -> dict[str, Any]:
    """`--parallel` requests of a stage at once, plain against lookup at the middle draft
    length, interleaved twice."""
    k = sorted(args.drafts)[len(args.drafts) // 2]
    batch = items[: args.parallel]
    plain_rate = lookup_rate = 0.0
    for _ in range(2):
        plain_rate += concurrent(model, batch, None)
        lookup_rate += concurrent(model, batch, LookupConfig(draft_tokens=k))
    return {
        "requests": len(batch),
        "k": k,
        "plain tok/s": round(plain_rate / 2, 2),
        "lookup tok/s": round(lookup_rate / 2, 2),
        "ratio": round(lookup_rate / plain_rate, 3),
    }


def decode_cost(model: LlamaCppModel, rows: Sequence[int] = (1, 2, 3, 5, 8)) -> dict[int, float]:
    """Milliseconds of one `llama_decode` of n rows of one sequence after a 64-token prompt
    (best of 5): what a lookup step costs against a plain one. Uses the engine's context class
    directly, the only way to time a bare decode."""
    import llama_cpp as ll

    from compllm_graph.models.llama_engine import _AdapterContext

    engine = model.engine
    context = _AdapterContext(engine, None, n_ctx=256, n_seq_max=1, cached=0)
    try:
        prompt = model.encode_chat([HumanMessage("Explain why the sky is blue. " * 8)])[:64]
        for index, token in enumerate(prompt):
            context.put(index, token, index, 0, False)
        context.batch.n_tokens = len(prompt)
        ll.llama_decode(context.ctx, context.batch)
        cost = {}
        for count in rows:
            best = float("inf")
            for _ in range(5):
                for row in range(count):
                    context.put(row, prompt[row], len(prompt) + row, 0, True)
                context.batch.n_tokens = count
                started = time.perf_counter()
                ll.llama_decode(context.ctx, context.batch)
                best = min(best, time.perf_counter() - started)
                ll.llama_memory_seq_rm(context.memory, 0, len(prompt), -1)
            cost[count] = round(1000 * best, 1)
        return cost
    finally:
        context.close()


def grammar_report(model: LlamaCppModel, prompts: Sequence[Prompt]) -> dict[str, Any]:
    """The grammar-constrained decomposer decoded with the whole sampler chain (llama.cpp masks
    the vocabulary for every token) against the engine's argmax-first pick, interleaved."""
    from compllm_graph.models import llama_engine

    engine_class = llama_engine.LlamaEngine
    fast = engine_class._pick

    def whole_chain(self: Any, context: Any, sequence: Any, row: int) -> int:
        return int(llama_engine.ll.llama_sampler_sample(sequence.sampler, context.ctx, row))

    seconds = {"chain": 0.0, "argmax first": 0.0}
    same = 0
    try:
        for index, prompt in enumerate(prompts):
            order = [("chain", whole_chain), ("argmax first", fast)]
            tokens = {}
            for label, pick in order[index % 2 :] + order[: index % 2]:
                engine_class._pick = pick  # type: ignore[method-assign]
                completion, spent = timed(model, prompt, None)
                seconds[label] += spent
                tokens[label] = completion.token_ids
            same += tokens["chain"] == tokens["argmax first"]
    finally:
        engine_class._pick = fast  # type: ignore[method-assign]
    return {
        "chain s": round(seconds["chain"], 2),
        "argmax-first s": round(seconds["argmax first"], 2),
        "speed-up": round(seconds["chain"] / seconds["argmax first"], 3),
        "same tokens": f"{same}/{len(prompts)}",
    }


def reuse_report(
    model: LlamaCppModel, alias: str, prompts: dict[str, list[Prompt]], args: argparse.Namespace
) -> dict[str, Any]:
    on = load(alias, args.threads, 4)
    on.add_adapter("decomposer", pack_for(alias).decomposer())  # type: ignore[union-attr,arg-type]
    models = {"off": model, "on": on}
    questions = [p.messages[-1].text for p in prompts["decomposer"]]
    decomposer_system = prompts["decomposer"][0].messages[0]
    cases: dict[str, tuple[list[BaseMessage], str | None]] = {
        "decomposer (adapter prompt)": ([decomposer_system], "decomposer"),
        "decomposer (few-shot prompt)": ([SystemMessage(DECOMPOSER_PROMPT)], None),
        "base system prompt": ([SystemMessage(BASE_SYSTEM_PROMPT)], None),
    }
    report = {}
    for label, (fixed, adapter) in cases.items():
        report[label] = prefill_seconds(models, fixed, questions, adapter)
        print(alias, "reuse", label, report[label], flush=True)
    on.close()
    return report


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--drafts", nargs="+", type=int, default=[2, 4, 8])
    parser.add_argument("--prompts", type=int, default=10)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--stages", nargs="+", choices=STAGES, default=list(STAGES), help="for lookup, parallel"
    )
    parser.add_argument(
        "--sections",
        nargs="+",
        choices=SECTIONS,
        default=list(SECTIONS),
        help="what to measure (default: all)",
    )
    args = parser.parse_args(argv)
    args.threads = args.threads or default_threads()
    before = os.getloadavg()
    print(f"load average before: {before}, threads {args.threads}", flush=True)
    results = {alias: bench_model(alias, args) for alias in args.models}
    after = os.getloadavg()
    print(f"load average after: {after}")
    print(json.dumps({"load": [before, after], "threads": args.threads, "results": results}))


if __name__ == "__main__":
    main()
