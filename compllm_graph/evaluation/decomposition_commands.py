"""`compllm eval decomposition` and `compllm eval decomposition-table`: decomposition F1.

Both run a model with transformers: the [local] extra (and scipy, of [eval] or [train]). They are
imported once the arguments and the data have been checked, so the `compllm eval` group loads
without them (`compllm eval routing` needs none of them).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import cast

from compllm_graph.data_dir import DEFAULT_DATA_DIR, missing_data_dir
from compllm_graph.datasets.decompositions import (
    COMPOSED,
    DatasetFormatError,
    DecompositionExample,
    as_examples,
    conjunctions,
    load_examples,
    select,
)
from compllm_graph.datasets.splits import DECOMPOSITION_SPLITS, DecompositionSplit
from compllm_graph.decomposer import adapter_for, shipped
from compllm_graph.decomposer.loading import DECOMPOSER_MAX_NEW_TOKENS
from compllm_graph.evaluation.answers import BenchmarkError, read_benchmark
from compllm_graph.models import DEFAULT_MODEL, AdapterError


def register(eval_subparsers: argparse._SubParsersAction) -> None:
    """Add `decomposition` and `decomposition-table` to the `compllm eval` group."""
    ev = eval_subparsers.add_parser(
        "decomposition",
        help="decomposition F1 of a decomposer on MuSiQue, StrategyQA, Break or an answer "
        "benchmark's composed questions",
    )
    ev.add_argument(
        "file",
        type=Path,
        help="MuSiQue JSON/JSONL, StrategyQA JSON, Break CSV, or an answer benchmark JSONL "
        "(`compllm eval benchmarks`; its parts are the gold sub-queries, --split does not apply)",
    )
    ev.add_argument("--model", default=DEFAULT_MODEL, help="base model alias or path")
    ev.add_argument(
        "--adapter",
        default=None,
        help="adapter folder, 'shipped' (for --model) or 'none' (default: shipped; none with "
        "--few-shot)",
    )
    ev.add_argument("--few-shot", action="store_true", help="prompt with the few-shot prompt")
    ev.add_argument("--constrained", action="store_true", help="decode with the tag grammar")
    ev.add_argument(
        "--split",
        choices=(*DECOMPOSITION_SPLITS, "all"),
        default="test",
        help="which deterministic split of the file to score (default: test)",
    )
    ev.add_argument(
        "--conjunctions",
        action="store_true",
        help="score questions that join two of the split's questions, unlinked (X, and Y?)",
    )
    ev.add_argument("--limit", type=int, default=None, help="score the first N examples")
    ev.add_argument("--batch-size", type=int, default=8)
    ev.add_argument(
        "--max-new-tokens",
        type=int,
        default=None,
        help="reply budget (default: 128; an answer benchmark's parts keep their options, so "
        f"{DECOMPOSER_MAX_NEW_TOKENS}, the pipeline's)",
    )
    ev.add_argument(
        "--beams",
        type=int,
        default=1,
        help="beam-search width (default 1: greedy)",
    )
    ev.add_argument("--outputs", type=Path, default=None, help="write raw outputs as JSONL")
    ev.add_argument("--json", action="store_true", help="end with one JSON object")
    ev.set_defaults(func=run_eval_decomposition)

    table = eval_subparsers.add_parser(
        "decomposition-table",
        help="Table 1: few-shot vs SFT decomposer on the MuSiQue and Break test splits",
    )
    table.add_argument("--model", default=DEFAULT_MODEL, help="base model alias or path")
    table.add_argument(
        "--adapter", default="shipped", help="SFT adapter folder or 'shipped' (for --model)"
    )
    table.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    table.add_argument("--limit", type=int, default=100, help="test examples per dataset")
    table.add_argument("--batch-size", type=int, default=8)
    table.add_argument("--constrained", action="store_true", help="add SFT + tag grammar")
    table.add_argument("--json", action="store_true", help="end with one JSON object")
    table.set_defaults(func=run_eval_table)


def _read_examples(path: Path, split: str) -> list[DecompositionExample]:
    """A decomposition dataset's `split`, or every question of an answer benchmark (all of
    them are held out already), whose parts are the gold sub-queries.

    Raises:
        FileNotFoundError, DatasetFormatError, KeyError: an unreadable dataset.
    """
    try:
        examples = load_examples(path)
    except DatasetFormatError as err:
        try:
            return as_examples(read_benchmark(path))
        except BenchmarkError:
            raise err from None
    return examples if split == "all" else select(examples, cast(DecompositionSplit, split))


def _is_composed(examples: Sequence[DecompositionExample]) -> bool:
    return any(e.dataset == COMPOSED for e in examples)


def _budget(examples: Sequence[DecompositionExample]) -> int:
    return DECOMPOSER_MAX_NEW_TOKENS if _is_composed(examples) else 128


def run_eval_decomposition(args: argparse.Namespace) -> int:
    try:
        examples = _read_examples(args.file, args.split)
    except (FileNotFoundError, DatasetFormatError, KeyError) as err:
        print(f"error: cannot read {args.file}: {err}", file=sys.stderr)
        return 2
    if args.conjunctions:
        examples = conjunctions({"file": examples}, args.limit or len(examples))
    examples = examples[: args.limit] if args.limit else examples
    if not examples:
        print(f"error: no examples in the {args.split} split of {args.file}", file=sys.stderr)
        return 2
    if args.beams < 1:
        print(f"error: --beams must be >= 1 (1 is greedy), got {args.beams}", file=sys.stderr)
        return 2
    try:
        adapter = _adapter_dir(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from tqdm import tqdm

    from compllm_graph.decomposer.grammar import tag_grammar_factory
    from compllm_graph.evaluation.decomposition import evaluate
    from compllm_graph.models import load_model

    local = load_model(args.model, engine="transformers")
    model = local.model
    if adapter is not None:
        try:
            local.add_adapter("decomposer", adapter)
        except AdapterError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        # Folding the LoRA weights into the base makes generation as fast as the base model.
        model = local.model.merge_and_unload()
    processor = None
    if args.constrained:
        processor = tag_grammar_factory(local.tokenizer)
    with tqdm(total=len(examples), desc="decompose", unit="q") as bar:
        report, outputs = evaluate(
            model,
            local.tokenizer,
            examples,
            few_shot=args.few_shot,
            batch_size=args.batch_size,
            max_new_tokens=args.max_new_tokens or _budget(examples),
            num_beams=args.beams,
            logits_processor=processor,
            progress=bar.update,
        )
    if args.outputs is not None:
        with args.outputs.open("w", encoding="utf-8") as handle:
            for example, output in zip(examples, outputs):
                row = {
                    "qid": example.qid,
                    "question": example.question,
                    "gold": example.target,
                    "output": output,
                }
                handle.write(json.dumps(row) + "\n")
    label = "few-shot" if args.few_shot else f"adapter {adapter}" if adapter else "no adapter"
    print(
        f"{args.file.name} [{'benchmark' if _is_composed(examples) else args.split}] "
        f"{args.model}, {label}"
        f"{', constrained' if args.constrained else ''}"
        f"{f', {args.beams} beams' if args.beams > 1 else ''}"
        f"{', conjunctions' if args.conjunctions else ''}"
    )
    for key, value in report.as_dict().items():
        print(f"  {key:<15} {value:.3f}" if isinstance(value, float) else f"  {key:<15} {value}")
    if args.json:
        print(json.dumps(report.as_dict()))
    return 0


def _adapter_dir(args: argparse.Namespace) -> Path | None:
    """`--adapter`: a folder, 'none', or by default the decomposer shipped for `--model` (none
    for few-shot).

    Raises:
        ValueError: 'shipped' for a model that has no shipped decomposer.
    """
    choice = args.adapter if args.adapter is not None else ("none" if args.few_shot else "shipped")
    if choice == "none":
        return None
    if choice != "shipped":
        return Path(choice)
    folder = adapter_for(args.model)
    if folder is None:
        raise ValueError(
            f"no decomposer ships for {args.model!r} (only for {', '.join(shipped())}): "
            "give --adapter DIR, or --adapter none"
        )
    return folder


def run_eval_table(args: argparse.Namespace) -> int:
    if missing_data_dir(args.data_dir):
        return 2
    try:
        choice = argparse.Namespace(adapter=args.adapter, model=args.model, few_shot=False)
        adapter = _adapter_dir(choice)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if adapter is None:
        print("error: the table compares against an SFT adapter; give its folder", file=sys.stderr)
        return 2
    from tqdm import tqdm

    from compllm_graph.evaluation.decomposition_table import (
        TABLE_DATASETS,
        decomposition_table,
        format_table,
    )
    from compllm_graph.models import load_model

    local = load_model(args.model, engine="transformers")
    runs = len(TABLE_DATASETS) * (3 if args.constrained else 2)
    with tqdm(total=runs * args.limit, desc="decompose", unit="q") as bar:
        table = decomposition_table(
            local,
            adapter,
            args.data_dir,
            limit=args.limit,
            batch_size=args.batch_size,
            constrained=args.constrained,
            progress=bar.update,
        )
    print(format_table(table))
    if args.json:
        print(
            json.dumps({d: {m: r.as_dict() for m, r in rows.items()} for d, rows in table.items()})
        )
    return 0
