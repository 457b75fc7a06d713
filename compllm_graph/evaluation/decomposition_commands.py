"""`compllm eval decomposition` and `compllm eval decomposition-table`: decomposition F1.

Both run a model with transformers: the [local] extra (and scipy, of [eval] or [train]). They are
imported once the arguments and the data have been checked, so the `compllm eval` group loads
without them (`compllm eval routing` needs none of them). `compllm eval decomposition --endpoint
URL` asks an OpenAI-compatible server instead (`endpoints`): its decomposer adapter, or its base
model for the few-shot prompt, one request per question, `--endpoint-concurrency` at once.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

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
from compllm_graph.decomposer.loading import (
    DECOMPOSER_MAX_NEW_TOKENS,
    DECOMPOSER_TOKENS_PER_PROMPT_TOKEN,
)
from compllm_graph.errors import CompLLMError
from compllm_graph.evaluation.answers import BenchmarkError, read_benchmark
from compllm_graph.evaluation.endpoints import (
    add_endpoint_args,
    check_endpoint_args,
    remote_settings,
    resolve_model,
    served_decomposer,
)
from compllm_graph.models import DEFAULT_MODEL, AdapterError

if TYPE_CHECKING:
    from compllm_graph.decomposer.metrics import DecompositionReport  # scipy: not at import


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
    ev.add_argument(
        "--model",
        default=None,
        help=f"base model alias or path (default: {DEFAULT_MODEL}); with --endpoint, the served "
        "base model",
    )
    ev.add_argument(
        "--adapter",
        default=None,
        help="adapter folder, 'shipped' (for --model) or 'none' (default: shipped; none with "
        "--few-shot); with --endpoint, 'shipped' is the server's decomposer "
        "(--served-decomposer) and 'none' its base model",
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
        "--source",
        default=None,
        help="score only this question set of the file (Break's cwq or drop; a dataset's own "
        "name otherwise): what `compllm train decomposer --hold-out` left out",
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
        help="reply budget (default: 128; on an answer benchmark, whose parts keep their options "
        f"and passages, the pipeline's: {DECOMPOSER_MAX_NEW_TOKENS}, or "
        f"{DECOMPOSER_TOKENS_PER_PROMPT_TOKEN} tokens a token of the longest prompt if more)",
    )
    ev.add_argument(
        "--beams",
        type=int,
        default=1,
        help="beam-search width (default 1: greedy)",
    )
    ev.add_argument("--outputs", type=Path, default=None, help="write raw outputs as JSONL")
    ev.add_argument("--json", action="store_true", help="end with one JSON object")
    add_endpoint_args(ev, grammar_help="how --constrained's tag grammar is sent")
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


def _budget(
    examples: Sequence[DecompositionExample],
    prompt_tokens: Callable[[str], int] | None = None,
    context: int | None = None,
) -> int:
    """The reply budget when `--max-new-tokens` is left out.

    128 for a dataset's questions. For an answer benchmark's (whose parts keep their options and
    passages, and a decomposition copies them), the pipeline's: `DECOMPOSER_MAX_NEW_TOKENS`,
    grown for the longest question's prompt as the pipeline's decomposer grows it
    (`DECOMPOSER_TOKENS_PER_PROMPT_TOKEN`, within the model's `context`) where `prompt_tokens`
    counts a question's prompt. One budget serves the whole run, so a shorter question may get
    more than the pipeline would give it; a reply that ends stops there all the same.
    """
    if not _is_composed(examples):
        return 128
    if prompt_tokens is None:
        return DECOMPOSER_MAX_NEW_TOKENS
    from compllm_graph.models.chat import grown_budget

    longest = max(prompt_tokens(e.question) for e in examples)
    return grown_budget(
        DECOMPOSER_MAX_NEW_TOKENS, longest, DECOMPOSER_TOKENS_PER_PROMPT_TOKEN, context
    )


def run_eval_decomposition(args: argparse.Namespace) -> int:
    try:
        examples = _read_examples(args.file, args.split)
    except (FileNotFoundError, DatasetFormatError, KeyError) as err:
        print(f"error: cannot read {args.file}: {err}", file=sys.stderr)
        return 2
    if args.source is not None:
        sources = sorted({e.source for e in examples})
        examples = [e for e in examples if e.source == args.source]
        if not examples:
            print(
                f"error: no {args.source!r} questions in the {args.split} split of {args.file}; "
                f"its question sets: {', '.join(sources) or 'none'}",
                file=sys.stderr,
            )
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
        check_endpoint_args(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.endpoint is not None:
        return _run_against_endpoint(args, examples)
    args.model = args.model or DEFAULT_MODEL
    try:
        adapter = _adapter_dir(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from tqdm import tqdm

    from compllm_graph.decomposer.generation import few_shot_messages, prompt_ids, sft_messages
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
    messages = few_shot_messages if args.few_shot else sft_messages
    budget = args.max_new_tokens or _budget(
        examples,
        lambda question: len(prompt_ids(local.tokenizer, messages(question))),
        getattr(local.model.config, "max_position_embeddings", None),
    )
    with tqdm(total=len(examples), desc="decompose", unit="q") as bar:
        report, outputs = evaluate(
            model,
            local.tokenizer,
            examples,
            few_shot=args.few_shot,
            batch_size=args.batch_size,
            max_new_tokens=budget,
            num_beams=args.beams,
            logits_processor=processor,
            progress=bar.update,
        )
    label = "few-shot" if args.few_shot else f"adapter {adapter}" if adapter else "no adapter"
    _report(args, examples, report, outputs, f"{args.model}, {label}")
    return 0


def _report(
    args: argparse.Namespace,
    examples: Sequence[DecompositionExample],
    report: DecompositionReport,
    outputs: Sequence[str],
    label: str,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write `--outputs` (each row with `extra`) and print the report under `label`."""
    if args.outputs is not None:
        with args.outputs.open("w", encoding="utf-8") as handle:
            for example, output in zip(examples, outputs):
                row = {
                    "qid": example.qid,
                    "question": example.question,
                    "gold": example.target,
                    "output": output,
                    **(extra or {}),
                }
                handle.write(json.dumps(row) + "\n")
    print(
        f"{args.file.name} [{'benchmark' if _is_composed(examples) else args.split}] {label}"
        f"{', constrained' if args.constrained else ''}"
        f"{f', {args.beams} beams' if args.beams > 1 else ''}"
        f"{', conjunctions' if args.conjunctions else ''}"
    )
    for key, value in report.as_dict().items():
        print(f"  {key:<15} {value:.3f}" if isinstance(value, float) else f"  {key:<15} {value}")
    if args.json:
        print(json.dumps(report.as_dict()))


def _run_against_endpoint(
    args: argparse.Namespace, examples: Sequence[DecompositionExample]
) -> int:
    """`compllm eval decomposition --endpoint`: every question to the server's decomposer.

    2: options the server cannot honour, or it cannot be reached or lacks the model; 1: a
    request failed after its retries.
    """
    from compllm_graph.decomposer.generation import few_shot_messages, sft_messages
    from compllm_graph.evaluation.decomposition import score_outputs

    try:
        chat, served = _served_decomposer(args, args.max_new_tokens or _budget(examples))
    except (ValueError, CompLLMError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    make = few_shot_messages if args.few_shot else sft_messages
    replies = _ask_each(chat, [make(e.question) for e in examples])
    failed = [(e.qid, r) for e, r in zip(examples, replies) if isinstance(r, Exception)]
    if failed:
        qid, error = failed[0]
        print(
            f"error: {len(failed)} requests failed after their retries (first, for {qid!r}: "
            f"{type(error).__name__}: {error})",
            file=sys.stderr,
        )
        return 1
    report, outputs = score_outputs([str(r) for r in replies], examples, few_shot=args.few_shot)
    where = {"url": chat.endpoint_limit.endpoint, "model": served}
    _report(args, examples, report, outputs, f"{served} at {where['url']}", {"endpoint": where})
    return 0


def _served_decomposer(args: argparse.Namespace, budget: int) -> tuple[Any, str]:
    """The server's chat model that decomposes (the decomposer adapter, or the base model for
    `--adapter none` and `--few-shot`), and its served name.

    Raises:
        ValueError: `--beams` above 1, `--constrained` without a grammar field the server
            reads (or the reverse), or an adapter folder (the server holds the adapter).
        EndpointError: the server cannot be reached or does not serve the model.
    """
    from compllm_graph.models.remote import EndpointError, RemoteModel

    if args.beams > 1:
        raise ValueError("--beams: beam search runs in-process only; leave --endpoint out")
    if args.constrained != (args.endpoint_grammar != "none"):
        raise ValueError(
            "--constrained over an endpoint needs --endpoint-grammar vllm (compllm serve has no "
            "grammar sampler), and --endpoint-grammar sends --constrained's grammar only"
        )
    choice = args.adapter if args.adapter is not None else ("none" if args.few_shot else "shipped")
    if choice not in ("none", "shipped"):
        raise ValueError(
            f"with --endpoint the server holds the decomposer adapter: serve {choice} as "
            f"{served_decomposer(args)!r} (vLLM --lora-modules, compllm serve --adapter) and "
            "leave --adapter out"
        )
    names = resolve_model(args)
    served = str(args.model) if choice == "none" else served_decomposer(args)
    if served not in names:
        raise EndpointError(
            f"{args.endpoint} does not serve the decomposer {served!r}; it serves {names}: "
            f"start it with `--lora-modules {served}=DIR` (vLLM) or `--adapter {served}=DIR` "
            "(compllm serve), or name the served one with --served-decomposer"
        )
    model = RemoteModel(
        args.endpoint, served, served=names, grammar=args.endpoint_grammar, **remote_settings(args)
    )
    grammar = _tag_grammar() if args.constrained else None
    return model.chat_model(max_new_tokens=budget, grammar=grammar), served


def _tag_grammar() -> str:
    from compllm_graph.decomposer.grammar import tag_grammar_gbnf

    return tag_grammar_gbnf()


def _ask_each(chat: Any, chats: Sequence[Any]) -> list[Any]:
    """Each chat's reply text, in order; an error where a request failed after its retries.

    The endpoint's limit (`--endpoint-concurrency`) bounds the requests in flight.
    """
    from tqdm import tqdm

    replies: list[Any] = [None] * len(chats)
    config = {"max_concurrency": chat.endpoint_limit.capacity}
    with tqdm(total=len(chats), desc="decompose", unit="q", file=sys.stderr) as bar:
        for index, reply in chat.batch_as_completed(chats, config, return_exceptions=True):
            replies[index] = reply if isinstance(reply, Exception) else str(reply.content).strip()
            bar.update()
    return replies


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
