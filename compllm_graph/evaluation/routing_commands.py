"""`compllm eval routing` (the routing error table on MMLU subject groups, Tables 2 and 3) and
`compllm eval routing-transfer` (rows from one benchmark, questions from others).

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

from compllm_graph.data_dir import DEFAULT_DATA_DIR, compllm_home, missing_data_dir


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


__all__ = ["register"]


def _add_routing_transfer(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "routing-transfer",
        help="routing error with rows from MMLU and questions from ARC, GSM8K, MedQA, MedMCQA",
    )
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    p.add_argument("--embedder", default="minilm", help="embedder spec")
    p.add_argument("--per-expert", type=int, default=300, help="MMLU rows per expert")
    p.add_argument("--per-source", type=int, default=150, help="questions per routed source")
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
    data = transfer_data(args.data_dir, args.per_expert, args.per_source)
    result = transfer_errors(data, embedder_from_spec(args.embedder))
    print(transfer_table(result))
    print(f"best: {best_method(result)}")
    if args.json:
        print(json.dumps({"embedder": args.embedder, **result}))
    return 0
