"""`compllm eval routing` (the routing error table on MMLU subject groups, Tables 2 and 3),
`compllm eval routing-transfer` (rows from one benchmark, questions from others), and
`compllm experts calibrate` (every expert's gain over the base model, stored for routing).

`compllm eval routing` loads with the [eval] extra alone (the table and the chart); building its
expert stores needs [router], which also gives the MiniLM embedder, and the decoder embedders
(mean-pool, last-token) need [local]. A missing extra is named when a run gets to it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compllm_graph.data_dir import DEFAULT_DATA_DIR, compllm_home, missing_data_dir

if TYPE_CHECKING:
    from langchain_core.runnables import Runnable

    from compllm_graph.expert_store import ExpertStore
    from compllm_graph.models import InferenceModel


def register(eval_subparsers: argparse._SubParsersAction) -> None:
    """Add `routing` and `routing-transfer` to the `compllm eval` subcommands."""
    routing = eval_subparsers.add_parser(
        "routing", help="routing error table on MMLU subject groups (paper Tables 2 and 3)"
    )
    routing.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA_DIR / "mmlu",
        help="MMLU folder with test/SUBJECT_test.csv",
    )
    routing.add_argument(
        "--per-group",
        type=int,
        default=300,
        help="questions per subject group (default 300; bounds SmolLM2 time)",
    )
    routing.add_argument(
        "--embedders",
        default="mean-pool,last-token,minilm",
        help="comma-separated subset of mean-pool,last-token,minilm",
    )
    routing.add_argument(
        "--model", default="smollm2-135m-instruct", help="decoder for mean-pool and last-token"
    )
    routing.add_argument(
        "--chart",
        type=Path,
        default=Path("runs/routing_eval.png"),
        help="where to write the PNG chart (default runs/routing_eval.png)",
    )
    routing.add_argument(
        "--cache",
        type=Path,
        help="embedding cache folder (default $COMPLLM_HOME/cache/routing_eval)",
    )
    routing.add_argument(
        "--json", action="store_true", help="end with the table as one JSON object"
    )
    routing.set_defaults(func=_eval_routing)
    _add_routing_transfer(eval_subparsers)


def _eval_routing(args: argparse.Namespace) -> int:
    from compllm_graph.evaluation.routing import (
        EMBEDDERS,
        format_table,
        plot_table,
        run_routing_eval,
    )

    embedders = [e.strip() for e in args.embedders.split(",") if e.strip()]
    unknown = sorted(set(embedders) - set(EMBEDDERS))
    if unknown or not embedders or args.per_group < 20:
        print(
            f"error: --embedders takes {','.join(EMBEDDERS)} (got {unknown or 'none'}); "
            "--per-group must be >= 20",
            file=sys.stderr,
        )
        return 2
    if not (args.data / "test").is_dir():
        print(
            f"error: no MMLU data at {args.data} (expected {args.data}/test/*_test.csv); "
            "pass --data",
            file=sys.stderr,
        )
        return 1
    cache = args.cache or compllm_home() / "cache" / "routing_eval"
    result = run_routing_eval(args.data, args.per_group, embedders, args.model, cache_dir=cache)
    chart = plot_table(result, args.chart)
    result["chart"] = os.fspath(chart)
    print(format_table(result))
    print(f"chart: {chart}")
    if args.json:
        print(json.dumps(result))
    return 0


__all__ = ["extend", "register"]


def _add_routing_transfer(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "routing-transfer",
        help="routing error with rows from MMLU and questions from ARC, GSM8K, MedQA, MedMCQA",
    )
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    p.add_argument("--embedder", default="minilm", help="embedder spec")
    p.add_argument("--per-expert", type=int, default=300, help="MMLU rows per expert")
    p.add_argument("--per-source", type=int, default=150, help="questions per routed source")
    p.add_argument(
        "--sources",
        default=None,
        help="comma-separated routed sources (arc,gsm8k,medmcqa,medqa; default: all)",
    )
    p.add_argument(
        "--llm-router",
        default=None,
        metavar="ALIAS",
        help="also route a sample by asking this model which domain each question is in "
        "(one call per question; llama.cpp), beside the best embedding method on that sample",
    )
    p.add_argument(
        "--llm-sample", type=int, default=100, help="questions the LLM router routes (default 100)"
    )
    p.add_argument("--threads", type=int, default=None, help="the LLM router's threads")
    p.add_argument("--json", action="store_true", help="end with one JSON object")
    p.set_defaults(func=run_routing_transfer)


def run_routing_transfer(args: argparse.Namespace) -> int:
    from compllm_graph.evaluation.routing_transfer import (
        best_method,
        transfer_data,
        transfer_errors,
        transfer_table,
    )
    from compllm_graph.expert_store.embedders import embedder_from_spec

    if missing_data_dir(args.data_dir):
        return 2
    sources = args.sources.split(",") if args.sources else None
    try:
        data = transfer_data(args.data_dir, args.per_expert, args.per_source, sources=sources)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    embedder = embedder_from_spec(args.embedder)
    result = transfer_errors(data, embedder)
    print(transfer_table(result))
    print(f"best: {best_method(result)}")
    if args.llm_router:
        result["llm_router"] = _llm_router(args, data, embedder, best_method(result))
    if args.json:
        print(json.dumps({"embedder": args.embedder, **result}))
    return 0


def _llm_router(args: argparse.Namespace, data: Any, embedder: Any, method: str) -> dict[str, Any]:
    """The LLM router and the embedding method `method` on one sample of the questions."""
    import numpy as np

    from compllm_graph.evaluation.routing_transfer import (
        METHODS,
        method_router,
        router_errors,
        sample_questions,
    )
    from compllm_graph.evaluation.stats import paired_difference
    from compllm_graph.expert_store.llm_router import DomainNamingRouter
    from compllm_graph.models import load_model

    questions = sample_questions(data, args.llm_sample)
    model = load_model(args.llm_router, engine="llama.cpp", n_threads=args.threads)
    llm = DomainNamingRouter(model.chat_model(max_new_tokens=8), sorted(data.rows))
    rows = {n: np.asarray(embedder.embed(texts), np.float32) for n, texts in data.rows.items()}
    kind, size, center = METHODS[method]
    embedded = method_router(embedder, rows, kind, size, center)
    out = {"model": args.llm_router, method: router_errors(embedded, questions)}
    out["llm"] = router_errors(llm, questions)
    out["llm_minus_embedding"] = paired_difference(out["llm"]["wrong"], out[method]["wrong"])
    for row in (out["llm"], out[method]):
        row.pop("wrong")
    for name in ("llm", method):
        row = out[name]
        print(
            f"{name} on {row['n']} sampled questions: error {row['error']:.1%} "
            f"{row['error_ci95']}, to base {row['to_base']:.1%}, "
            f"{row['seconds_per_question']:.3f} s a question"
        )
    return out


def extend(group: str, subcommands: argparse._SubParsersAction) -> None:
    """Add `calibrate` to the `compllm experts` subcommands (`cli.EXTENSIONS`): it answers the
    calibration split and scores the replies, which the expert store's commands may not import.

    Raises:
        ValueError: a group other than `experts`.
    """
    if group != "experts":
        raise ValueError(f"routing_commands extends the experts group only, not {group!r}")
    from compllm_graph._help import field_help
    from compllm_graph.expert_store.calibration import MIN_ITEMS, GainRule
    from compllm_graph.expert_store.commands import add_command

    p = add_command(
        subcommands,
        "calibrate",
        "answer the calibration split with every expert and the base model, and store the "
        "gains so that routing sends a part to an expert only where it beats the base",
        _calibrate,
    )
    p.add_argument("--model", default=None, help="base model alias (default: the default model)")
    p.add_argument("--engine", choices=("llama.cpp", "transformers"), default=None)
    p.add_argument("--threads", type=int, default=None, help="inference threads")
    p.add_argument(
        "--items",
        type=int,
        default=30,
        help="questions per domain (default 30; the split holds 15 for chemistry)",
    )
    p.add_argument("--seed", type=int, default=0, help="which questions (default 0)")
    p.add_argument(
        "--max-new-tokens",
        type=int,
        default=160,
        help="tokens per answer: the budget the graph gives a part (default 160, the "
        "benchmarks'; `compllm ask` gives 48)",
    )
    p.add_argument(
        "--no-base-prompt",
        action="store_true",
        help="ask the base model with no system message (as the graph built with "
        "base_system_prompt=None does)",
    )
    p.add_argument(
        "--domain-of",
        action="append",
        default=[],
        metavar="EXPERT=DOMAIN",
        help="the domain an expert serves (default: an expert named after a domain serves it)",
    )
    p.add_argument(
        "--min-items",
        type=int,
        default=MIN_ITEMS,
        help=f"{field_help(GainRule, 'min_items')} (default {MIN_ITEMS})",
    )
    p.add_argument(
        "--interval",
        action="store_true",
        help=field_help(GainRule, "interval").replace("%", "%%"),
    )
    p.add_argument(
        "--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="the shared datasets' folder"
    )
    p.add_argument(
        "--program-expert",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="measure the mathematics expert answering by program, as the graph built with "
        "program_expert=True answers it (default: as `compllm ask` does, on for the demo store "
        "of a model the program expert is on for)",
    )
    p.add_argument("--dry-run", action="store_true", help="measure and report, store nothing")


def _calibrate(args: argparse.Namespace) -> dict[str, Any]:
    from compllm_graph.data_dir import missing_data_message
    from compllm_graph.defaults import BASE_SYSTEM_PROMPT, program_by_default
    from compllm_graph.evaluation.routing_calibration import (
        calibrate_store,
        calibration_questions,
        describe_items,
        owners_of,
    )
    from compllm_graph.expert_store import ExpertStore, demo_store
    from compllm_graph.expert_store.calibration import GainRule, report_lines
    from compllm_graph.models import DEFAULT_MODEL, load_model

    if args.items < 1:
        raise ValueError(f"--items must be at least 1, got {args.items}")
    if not args.data_dir.is_dir():
        raise ValueError(missing_data_message(args.data_dir))
    owners = dict(_pair(text) for text in args.domain_of)
    rule = GainRule(args.min_items, args.interval)  # checked before the slow part
    questions = calibration_questions(args.data_dir, args.items, args.seed)
    model = load_model(args.model or DEFAULT_MODEL, engine=args.engine, n_threads=args.threads)
    store = ExpertStore.open(args.store) if args.store else demo_store(model.name)
    base_prompt = None if args.no_base_prompt else BASE_SYSTEM_PROMPT
    program = args.program_expert
    if program is None:
        program = args.store is None and program_by_default(model, store)
    items = describe_items(args.items, args.seed) + (", mathematics by program" if program else "")
    ready = _by_program(store, model, base_prompt, args.max_new_tokens) if program else None
    calibration = calibrate_store(
        store,
        model,
        questions,
        max_new_tokens=args.max_new_tokens,
        base_prompt=base_prompt,
        owners=owners_of(store, questions, owners),
        rule=rule,
        items=items,
        chat_models=ready,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    if not args.dry_run:
        store.set_calibration(calibration)
    lines = report_lines(calibration)
    lines.append(f"{'not stored (--dry-run)' if args.dry_run else 'stored in'} {store.path}")
    return {
        "store": str(store.path),
        "stored": not args.dry_run,
        "calibration": calibration.to_dict(),
        "text": "\n".join(lines),
    }


def _by_program(
    store: ExpertStore, model: InferenceModel, base_prompt: str | None, max_new_tokens: int
) -> dict[str, Runnable]:
    """The store's experts as the default graph builds them with its mathematics expert
    answering by program (every one built here, so that none is loaded twice)."""
    from compllm_graph.defaults import program_mathematics
    from compllm_graph.expert_store.serving import with_system_prompt

    base = with_system_prompt(model.chat_model(max_new_tokens=max_new_tokens), base_prompt)
    return program_mathematics(store, model, base, max_new_tokens)


def _pair(text: str) -> tuple[str, str]:
    expert, sep, domain = text.partition("=")
    if not sep or not expert.strip() or not domain.strip():
        raise ValueError(f"--domain-of takes EXPERT=DOMAIN, got {text!r}")
    return expert.strip(), domain.strip()
