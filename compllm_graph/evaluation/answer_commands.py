"""`compllm eval benchmarks|answers|experts|attribution`: the answer-quality evaluations."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, get_args

from compllm_graph.data_dir import DEFAULT_DATA_DIR, missing_data_dir
from compllm_graph.errors import CompLLMError
from compllm_graph.evaluation.answers import (
    ALL_DOMAINS_EXPERT,
    FORMER_NAMES,
    Answer,
    Answerer,
    BenchmarkError,
    System,
    answered,
    changed_ids,
    check_outputs_system,
    read_benchmark,
    run,
    summarise,
)
from compllm_graph.evaluation.attribution import attribution, attribution_table
from compllm_graph.evaluation.benchmarks import SAMPLE_COUNT, TIERS, write_benchmarks
from compllm_graph.evaluation.endpoints import (
    add_endpoint_args,
    check_endpoint_args,
    check_outputs_origin,
    marked,
    origin,
    resolve_model,
)
from compllm_graph.evaluation.leakage import shared_passage_ids, train_runs
from compllm_graph.nodes.aggregate import AggregateMode

DEFAULT_ANSWER_TOKENS = 160
"""Tokens per answer: GSM8K's worked solutions need about this many."""

WHOLE_QUESTION_SYSTEMS = ("monolith", "ft")
"""Systems that answer the whole question in one call: no decomposition, no aggregation."""
PROGRAM_EXPERT_SYSTEMS = ("compllm", "all-experts", "random-router", "oracle-router")
"""Systems that ask the store's experts, whose `mathematics` expert `--program-expert` sets."""
SETTINGS = "settings"
"""Outputs key: the pipeline settings a line was answered with (`answer_settings`)."""
DEFAULT_AGGREGATE: AggregateMode = "auto"
FORMER_SETTINGS: dict[str, Any] = {
    "aggregate": "always",
    "split_questions": False,
    "program_expert": False,
    "decomposer_model": None,
    "split_chains": True,  # the rule came later, and splits none of their sub-queries
    "carry_premise": False,
}
"""What a pipeline's outputs line without `SETTINGS` was answered with: such lines were written
before these options existed (before 2026-12-06), every committed cell's included.
`decomposer_model` None: the decomposer ran on `--model` (a line records the key only when
`--decomposer-model` was given). A line records `split_chains` only when the chain rule was off
(`--no-split-chains`): a line without it was answered with the rule on, or before it existed
(2026-12-07), and the rule splits none of the sub-queries those committed lines record
(`tests/evaluation/test_committed_outputs.py`), so their answers are the rule's. A line records
`carry_premise` only when the premise rule was on: it came later (2026-12-07) and changes
answers (it gives 81 of the easy All-2 questions' parts their facts back), so a line without it
was answered with it off, and such files resume with `--no-carry-premise`."""


def register(eval_subparsers: argparse._SubParsersAction) -> None:
    """Add `benchmarks`, `answers`, `experts` and `attribution` to `compllm eval`."""
    _add_benchmarks(eval_subparsers)
    _add_answers(eval_subparsers)
    _add_experts(eval_subparsers)
    _add_attribution(eval_subparsers)


def _add_benchmarks(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "benchmarks",
        help="build MultiExpertQA-P/-All (2 and 3 parts) and single-domain files",
        description="Builds p2, p3, all2 and all3 JSONL files (seeded) from the test split of "
        "the shared data, and one single-domain file per expert domain. --tier easy builds the "
        "same files from easier sources, named easy-*, with easy-sample-SOURCE files for "
        "measuring each source alone (compllm_graph/datasets/easy_tier.py).",
    )
    p.add_argument("--out", type=Path, required=True, help="folder to write the files into")
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    p.add_argument("--count", type=int, default=300, help="questions per composed file")
    p.add_argument("--single-count", type=int, default=200, help="questions per domain file")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tier", choices=TIERS, default="standard", help="which benchmark tier")
    p.add_argument(
        "--sample-count",
        type=_positive,
        default=SAMPLE_COUNT,
        help="questions per easy-sample-SOURCE file (--tier easy)",
    )
    p.set_defaults(func=run_benchmarks)


def run_benchmarks(args: argparse.Namespace) -> int:
    if missing_data_dir(args.data_dir):
        return 2
    try:
        written = write_benchmarks(
            args.data_dir,
            args.out,
            args.count,
            args.single_count,
            args.seed,
            tier=args.tier,
            sample_count=args.sample_count,
        )
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    runs = train_runs(args.data_dir)
    for path, records in written.items():
        domains = Counter(p["domain"] for r in records for p in r["parts"])
        listing = ", ".join(f"{d} {n}" for d, n in sorted(domains.items()))
        shared = shared_passage_ids(records, runs)
        print(f"{path}: {len(records)} questions (parts: {listing}); {len(shared)} share a passage")
    print(
        "(a question that shares a passage has a part that reuses a train-split item's passage "
        "under its own id; benchmarks/answer_tables.py leaves those out)"
    )
    return 0


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="base model alias or path (default: the default)")
    p.add_argument("--engine", choices=("llama.cpp", "transformers"), default=None)
    p.add_argument("--threads", type=int, default=None, help="inference threads")
    p.add_argument(
        "--max-batch-size",
        type=_positive,
        default=None,
        help="most requests the engine decodes together (default 8); 1 gives every request "
        "the answer it gets alone, whatever runs beside it",
    )
    p.add_argument(
        "--max-new-tokens",
        type=int,
        default=DEFAULT_ANSWER_TOKENS,
        help="tokens per answer (the monolith and ft get one per part plus one)",
    )


def _add_answers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "answers",
        help="answer a benchmark file with one system and score it",
        description="Answers every question of FILE and scores the final answers (question and "
        "part accuracy with 95%% bootstrap intervals). With --outputs, answers are appended as "
        "they come and a rerun skips the questions already answered. FILE and --outputs are "
        "checked whole first: a bad line (all are listed) exits 2 before any model is loaded.",
    )
    p.add_argument("file", type=Path, help="benchmark JSONL (compllm eval benchmarks)")
    p.add_argument(
        "--system",
        choices=get_args(System),
        default="compllm",
        help="compllm: the pipeline; monolith: the base model, whole question, one call; ft: the "
        "same through the all-domains adapter (the paper's FT); all-experts: every sub-query to "
        "every expert, replies combined (the paper's all-experts); one-adapter: every sub-query "
        "to the all-domains adapter; random-router, oracle-router: the pipeline routed at "
        f"random or by the gold parts. Renamed: {_renamed()}",
    )
    _add_model_args(p)
    p.add_argument("--store", type=Path, default=None, help="expert store (default: the demo's)")
    p.add_argument(
        "--all-domains-adapter",
        type=Path,
        default=None,
        help="adapter for --system ft and one-adapter (default: the shipped "
        f"{ALL_DOMAINS_EXPERT!r})",
    )
    p.add_argument(
        "--decomposer-adapter",
        type=Path,
        default=None,
        help="a decomposer folder (`compllm train decomposer`); default: the one shipped",
    )
    p.add_argument(
        "--no-base-prompt",
        action="store_true",
        help="the base model answers without BASE_SYSTEM_PROMPT (the monolith, and the "
        "sub-queries no expert takes), as before 2026-12",
    )
    p.add_argument("--limit", type=int, default=None, help="first N questions only")
    p.add_argument("--seed", type=int, default=0, help="random-router seed")
    p.add_argument("--outputs", type=Path, default=None, help="JSONL of answers (appended)")
    p.add_argument(
        "--redo-changed",
        action="store_true",
        help="answer again the questions whose text changed since --outputs answered them "
        "(the benchmark was rebuilt); their old lines move to NAME.changed.jsonl",
    )
    _add_pipeline_args(p)
    p.add_argument(
        "--concurrency",
        type=_positive,
        default=1,
        help="questions in flight at once, so the engine batches their requests; each "
        "answer's seconds is then its latency under that load (default 1)",
    )
    p.add_argument("--json", action="store_true", help="end with one JSON object")
    add_endpoint_args(p, grammar_help="how the decomposer's tag grammar is sent")
    p.set_defaults(func=run_answers)


def _add_pipeline_args(p: argparse.ArgumentParser) -> None:
    """The pipeline's settings; each outputs line records them (`SETTINGS`)."""
    p.add_argument(
        "--aggregate",
        choices=get_args(AggregateMode),
        default=None,
        help="pipeline systems: when the reducer runs. auto joins the answers of independent "
        "parts without a reducer call and reduces only parts that depend on each other; "
        "always calls it whenever there is something to combine (default: auto). The "
        "committed cells in benchmarks/answers were answered with always and without the "
        "and-split rule: resume or extend them with --aggregate always --no-split-questions",
    )
    p.add_argument(
        "--no-split-questions",
        action="store_true",
        help="pipeline systems: turn off the and-split rule (a question the decomposer left "
        "whole that is independent questions joined by 'and' gets a sub-query per question)",
    )
    p.add_argument(
        "--no-split-chains",
        action="store_true",
        help="pipeline systems: turn off the chain rule (a sub-query asking for an attribute "
        "of a thing it only describes becomes the thing, then its attribute)",
    )
    p.add_argument(
        "--no-carry-premise",
        action="store_true",
        help="pipeline systems: turn off the premise rule (a sub-query that asks about the "
        "facts the question opens with, but was written without them, gets them in front); "
        "committed cells answered before the rule resume with it",
    )
    p.add_argument(
        "--program-expert",
        action="store_true",
        help="the store's mathematics expert answers by a program the base model writes and "
        "a sandbox runs, falling back to the expert itself (compllm, all-experts, "
        "random-router, oracle-router)",
    )
    p.add_argument(
        "--decomposer-model",
        default=None,
        metavar="ALIAS",
        help="pipeline systems: the decomposer runs on this model (loaded with --engine and "
        "--threads; its pack's decomposer adapter unless --decomposer-adapter names one) "
        "while experts, base and aggregator stay on --model; e.g. smollm2-135m-instruct "
        "under qwen2.5-coder-0.5b-instruct, for a faster decompose stage (not with --endpoint)",
    )


def answer_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings of `args` that change `args.system`'s answers, as outputs lines record them.

    Empty for the systems that answer the whole question in one call; `aggregate` and
    `split_questions` for every pipeline; `program_expert` too for those that ask the store's
    experts (`PROGRAM_EXPERT_SYSTEMS`); `decomposer_model` (the alias) for a pipeline only when
    `--decomposer-model` is given, `split_chains` (False) only with `--no-split-chains` and
    `carry_premise` (True) only without `--no-carry-premise`, so lines answered without them
    keep the settings they had.

    Raises:
        BenchmarkError: a flag that changes nothing for `args.system` (`--aggregate`,
            `--no-split-questions`, `--no-split-chains`, `--no-carry-premise` or
            `--decomposer-model` for
            `monolith` and `ft`,
            `--program-expert` for those and `one-adapter`), so no run is mistaken for one
            with that setting.
    """
    unused = _unused_flags(args)
    if unused:
        raise BenchmarkError(
            f"--system {args.system} does not use {', '.join(unused)}: "
            f"{_WHY_UNUSED.get(args.system, '')}; leave {'them' if len(unused) > 1 else 'it'} out"
        )
    if args.system in WHOLE_QUESTION_SYSTEMS:
        return {}
    settings: dict[str, Any] = {
        "aggregate": args.aggregate or DEFAULT_AGGREGATE,
        "split_questions": not args.no_split_questions,
    }
    if args.system in PROGRAM_EXPERT_SYSTEMS:
        settings["program_expert"] = args.program_expert
    if args.decomposer_model is not None:
        settings["decomposer_model"] = args.decomposer_model
    if args.no_split_chains:
        settings["split_chains"] = False
    if not args.no_carry_premise:
        settings["carry_premise"] = True
    return settings


_ONE_CALL = "it answers the whole question in one call: no decomposition, aggregation or expert"
_WHY_UNUSED = {
    "monolith": _ONE_CALL,
    "ft": _ONE_CALL,
    "one-adapter": "every sub-query goes to the all-domains adapter, never to a mathematics expert",
}


def _unused_flags(args: argparse.Namespace) -> list[str]:
    whole = args.system in WHOLE_QUESTION_SYSTEMS
    flags = {
        "--aggregate": whole and args.aggregate is not None,
        "--no-split-questions": whole and args.no_split_questions,
        "--no-split-chains": whole and args.no_split_chains,
        "--no-carry-premise": whole and args.no_carry_premise,
        "--decomposer-model": whole and args.decomposer_model is not None,
        "--program-expert": args.program_expert and args.system not in PROGRAM_EXPERT_SYSTEMS,
    }
    return [flag for flag, unused in flags.items() if unused]


def check_outputs_settings(
    settings: Mapping[str, Any], done: Mapping[str, Any], outputs: Path | None
) -> None:
    """Refuse to add answers made with `settings` to outputs answered with other settings.

    A line without `SETTINGS` counts as answered with `FORMER_SETTINGS`.

    Raises:
        BenchmarkError: a line of `done` was answered with settings other than `settings`;
            the message gives the flags that resume the file.
    """
    former = {key: FORMER_SETTINGS[key] for key in settings}
    for row in done.values():
        recorded = row.get(SETTINGS, former)
        if recorded == settings:
            continue
        dated = " (its lines record no settings: they predate these flags)"
        raise BenchmarkError(
            f"{outputs} holds answers made with {_as_flags(recorded)}"
            f"{'' if SETTINGS in row else dated}, and this run would answer with "
            f"{_as_flags(settings)}: resume it with the same flags, or give this run another "
            "--outputs file"
        )


def _as_flags(settings: Any) -> str:
    """`settings` as the flags that give them ("--aggregate always --no-split-questions")."""
    if not isinstance(settings, Mapping):
        return f"unreadable settings {settings!r}"
    flags = [f"--aggregate {settings['aggregate']}"] if "aggregate" in settings else []
    flags += ["--no-split-questions"] if settings.get("split_questions") is False else []
    flags += ["--no-split-chains"] if settings.get("split_chains") is False else []
    pipeline = "aggregate" in settings
    flags += ["--no-carry-premise"] if pipeline and not settings.get("carry_premise") else []
    flags += ["--program-expert"] if settings.get("program_expert") else []
    model = settings.get("decomposer_model")
    flags += [f"--decomposer-model {model}"] if model is not None else []
    return " ".join(flags) or "no pipeline flags"


def _recording(answerer: Answerer, settings: Mapping[str, Any]) -> Answerer:
    """`answerer`, with `settings` added to every answer it gives (empty: left out)."""
    if not settings:
        return answerer

    def answer(record: Mapping[str, Any]) -> Answer:
        return {**answerer(record), SETTINGS: dict(settings)}

    return answer


def _renamed() -> str:
    return ", ".join(f"{new} was called {old}" for new, old in FORMER_NAMES.items())


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def run_answers(args: argparse.Namespace) -> int:
    """`compllm eval answers`; returns the exit code.

    2: FILE or --outputs has bad lines (every one is listed) or cannot be read, --outputs was
    written by another system (`answers.check_outputs_system`) or, with questions left to
    answer, with other settings (`check_outputs_settings`), a flag the system does not use was
    given (`answer_settings`), or the system cannot be built (no all-domains adapter, no
    expert, no mathematics expert for --program-expert); the files are read whole before any
    model is loaded, so no run stops on a bad line hours in. 1: --outputs answers a rebuilt
    benchmark (see `answers.run`). With `--endpoint` (`endpoints`), also 2 for endpoint options
    that contradict each other (`--decomposer-model` among them), a server that cannot be
    reached or lacks a model or adapter asked for, or --outputs answered elsewhere
    (`_answered_where`), and 1 for a request that failed after its retries (`endpoints.marked`).
    """
    try:
        settings = answer_settings(args)
        records = read_benchmark(args.file)[: args.limit]
        done = answered(args.outputs)
        check_outputs_system(args.system, done, args.outputs)
        redo = set(changed_ids(records, done)) if args.redo_changed else set()
        todo = sum(r["id"] not in done or r["id"] in redo for r in records)
        if todo:  # a finished file is only scored: no answer of other settings joins it
            check_outputs_settings(settings, done, args.outputs)
    except BenchmarkError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        where = _answered_where(args, done, bool(todo))
    except (ValueError, CompLLMError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    answerer = None
    if todo:
        from compllm_graph.evaluation import systems  # a model and a store: [local], [router]

        try:
            answerer = _recording(systems.build_answerer(args, settings), settings)
            answerer = _on_endpoint(answerer, where)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    try:
        answers = run(
            records,
            answerer or _nothing,
            args.outputs,
            _bar,
            concurrency=args.concurrency,
            redo_changed=args.redo_changed,
        )
        summary = summarise(records, answers)
    except BenchmarkError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except CompLLMError as err:  # a server that failed for good (`endpoints.marked`)
        if where is None:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(_summary_line(args.system, summary))
    if args.json:
        at = {"endpoint": where} if where else {}
        print(json.dumps({"system": args.system, "file": str(args.file), **at, **summary}))
    return 0


def _answered_where(
    args: argparse.Namespace, done: Mapping[str, Answer], todo: bool
) -> dict[str, str] | None:
    """Where this run answers (`endpoints.origin`): None in-process.

    With questions left, `--endpoint` is reached (to resolve `--model`) and `--outputs` is
    checked to hold only answers made where this run answers; a finished file is only scored.

    Raises:
        ValueError: endpoint options that contradict each other (`check_endpoint_args`), or
            `--decomposer-model` with `--endpoint`.
        BenchmarkError: `--outputs` was answered elsewhere (`check_outputs_origin`).
        EndpointError: the server cannot be reached or does not serve `--model`.
    """
    check_endpoint_args(args)
    if args.endpoint is not None and args.decomposer_model is not None:
        raise ValueError(
            f"--decomposer-model {args.decomposer_model} loads a model in this process; with "
            "--endpoint every model runs on the server, and the decomposer on its base model "
            "(the adapter --served-decomposer names): leave --decomposer-model out"
        )
    if not todo:
        return None
    if args.endpoint is not None:
        resolve_model(args)
    where = origin(args)
    check_outputs_origin(where, done, args.outputs)
    return where


def _on_endpoint(answerer: Answerer, where: Mapping[str, str] | None) -> Answerer:
    """`answerer` as `endpoints.marked` wraps it for an endpoint; unchanged in-process."""
    if where is None:
        return answerer
    from compllm_graph.models.remote import endpoint_limit  # the [remote] extra

    return marked(answerer, where, endpoint_limit(where["url"]))


def _nothing(record: Mapping[str, Any]) -> dict[str, Any]:
    raise AssertionError(f"{record['id']} was answered already")


def _bar(items: Iterable[Any], total: int) -> Iterable[Any]:
    from tqdm import tqdm

    return tqdm(items, total=total, desc="answers", unit="question", file=sys.stderr)


def _summary_line(system: str, summary: Mapping[str, Any]) -> str:
    low, high = summary["accuracy_ci95"]
    return (
        f"{system}: accuracy {summary['accuracy']:.1%} (95% CI {low:.1%}-{high:.1%}), part "
        f"accuracy {summary['part_accuracy']:.1%}, n={summary['n']}, "
        f"{summary['seconds_per_question']:.1f} s/question"
    )


def _add_experts(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "experts",
        help="each expert alone on its domain's held-out items, against the base model",
        description="Asks each single-domain file's questions to the base model and to the "
        "domain's expert (same system prompt; only the adapter differs) and prints the table.",
    )
    p.add_argument("files", type=Path, nargs="+", help="single-DOMAIN.jsonl files")
    _add_model_args(p)
    p.add_argument("--store", type=Path, default=None, help="expert store (default: the demo's)")
    p.add_argument("--limit", type=int, default=None, help="first N questions per file")
    p.add_argument("--outputs", type=Path, default=None, help="folder for per-file answers")
    p.add_argument("--json", action="store_true", help="end with one JSON object")
    p.set_defaults(func=run_expert_table)


def run_expert_table(args: argparse.Namespace) -> int:
    # A model and a store: the [local] and [router] extras, loaded only for this command.
    from compllm_graph.evaluation.experts import expert_table, run_experts

    try:
        files = {path: read_benchmark(path)[: args.limit] for path in args.files}
        rows = run_experts(args, files, progress=_bar)
    except (BenchmarkError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(expert_table(rows))
    if args.json:
        print(json.dumps({"rows": rows}))
    return 0


def _add_attribution(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "attribution",
        help="the first stage that went wrong, for every wrong question of answered runs",
    )
    p.add_argument("file", type=Path, help="the benchmark JSONL the runs answered")
    p.add_argument("outputs", type=Path, nargs="+", help="outputs JSONL of `eval answers`")
    p.add_argument("--json", action="store_true", help="end with one JSON object")
    p.set_defaults(func=run_attribution)


def run_attribution(args: argparse.Namespace) -> int:
    try:
        records = {r["id"]: r for r in read_benchmark(args.file)}
        rows = {}
        for path in args.outputs:
            answers = [a for a in answered(path).values() if a["id"] in records]
            rows[path.name] = attribution([records[a["id"]] for a in answers], answers)
    except BenchmarkError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(attribution_table(rows))
    if args.json:
        print(json.dumps(rows))
    return 0
