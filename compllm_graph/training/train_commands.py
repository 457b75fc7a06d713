"""`compllm train decomposer` and `compllm train expert`: LoRA fine-tuning from the command line."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections import Counter
from pathlib import Path
from typing import get_args

from compllm_graph._help import field_help
from compllm_graph.data_dir import DEFAULT_DATA_DIR, missing_data_dir
from compllm_graph.datasets.decompositions import (
    CHAINED_CONJUNCTION,
    COMPOSED,
    COMPOSED_EASY,
    CONJUNCTION,
    DATASETS,
    RELATIVE_CHAIN,
    SINGLE_COUNT,
)
from compllm_graph.datasets.items import SOURCES
from compllm_graph.datasets.jsonl import write_jsonl
from compllm_graph.datasets.programs import VariableNames
from compllm_graph.decomposer import adapter_for
from compllm_graph.expert_store import ExpertStore, StoreError, default_store_path
from compllm_graph.expert_store.data import (
    DataFileError,
    first_record,
    has_pair,
    read_pairs,
    read_texts,
)
from compllm_graph.expert_store.disk import MANIFEST
from compllm_graph.expert_store.store import check_creatable, check_name
from compllm_graph.models import DEFAULT_MODEL, ModelLoadError, TransformersModel, home, load_model
from compllm_graph.training.decomposer_sft import (
    DEFAULT_WEIGHTS,
    HOLD_OUT_SOURCES,
    DecomposerPlan,
    adapter_shape,
    earlier_stage,
    train_decomposer,
)
from compllm_graph.training.expert import Objective, train_expert
from compllm_graph.training.expert_data import ALL_DOMAINS, expert_examples, program_examples
from compllm_graph.training.routing_data import write_routing_data
from compllm_graph.training.settings import LoraSettings, TrainSettings
from compllm_graph.training.sft import choose_precision, is_main_process

MIX_NAMES = (
    *DATASETS,
    CONJUNCTION,
    COMPOSED,
    COMPOSED_EASY,
    CHAINED_CONJUNCTION,
    RELATIVE_CHAIN,
    SINGLE_COUNT,
)
BASE_HELP = (
    "base model: a catalogue alias, a local Hugging Face folder (config.json, weights and "
    "tokenizer, e.g. what `compllm models safetensors ALIAS` writes) or a hub id"
)
RESUME_HELP = "continue from the newest checkpoint in OUT/checkpoints"


def register(train_parser: argparse.ArgumentParser) -> None:
    """Add `decomposer`, `expert`, `expert-data` and `routing-data` to the `compllm train` group."""
    kinds = train_parser.add_subparsers(title="what to train")
    _add_train_decomposer(kinds)
    _add_train_expert(kinds)
    _add_expert_data(kinds)
    _add_routing_data(kinds)


def _add_train_decomposer(kinds: argparse._SubParsersAction) -> None:
    lora, opt = LoraSettings(), TrainSettings()
    p = kinds.add_parser("decomposer", help="SFT a decomposer adapter (LoRA)")
    p.add_argument("--base", default=DEFAULT_MODEL, help=BASE_HELP)
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    p.add_argument("--train-size", type=int, default=1000)
    p.add_argument(
        "--mix",
        default=",".join(f"{k}={v}" for k, v in DEFAULT_WEIGHTS.items()),
        help="dataset shares, e.g. musique=0.5,break=0.3,strategyqa=0.2 "
        f"({', '.join(MIX_NAMES)}; composed: multi-domain questions whose parts keep their "
        "options; composed_easy: the same from the easy tier's sources, a part can be a whole "
        "abstract and its question (raise --max-length); chained_conjunction: a two-hop "
        "chain and a single-hop question joined; "
        "relative_chain: chains whose bridge is a relative clause; single_count: Break's "
        "single-hop counts as one sub-query, taken out of break)",
    )
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--validation-size", type=int, default=32, help="per dataset; 0 skips")
    p.add_argument(
        "--init-adapter",
        default=None,
        help="start from a trained decomposer (a folder, or 'shipped' for --base's) instead of "
        "fresh LoRA weights",
    )
    p.add_argument(
        "--hold-out",
        action="append",
        default=[],
        choices=HOLD_OUT_SOURCES,
        help="leave this question set out of every example (repeatable; cwq and drop are "
        "Break's two), to score the decomposer on it as unseen: `compllm eval decomposition "
        "FILE --source NAME`",
    )
    _add_optimisation_args(p, lora, opt)
    p.add_argument("--resume", action="store_true", help=RESUME_HELP)
    p.add_argument("--json", action="store_true", help="end with one JSON object")
    # None: the --init-adapter's LoRA shape, or LoraSettings' defaults (see _lora_shape).
    p.set_defaults(func=run_train_decomposer, lora_r=None, lora_alpha=None)


def _add_train_expert(kinds: argparse._SubParsersAction) -> None:
    p = kinds.add_parser("expert", help="LoRA on domain text, registered in the expert store")
    p.add_argument("name", help="expert name")
    p.add_argument(
        "--data",
        type=Path,
        required=True,
        help="domain text (.txt, .jsonl, .csv), or question/answer records (.jsonl, .csv)",
    )
    p.add_argument(
        "--objective",
        choices=("auto", *get_args(Objective)),
        default="auto",
        help="answer: loss on the answer of question/answer records; text: loss on every token; "
        "auto: answer when the records have 'question' and 'answer'",
    )
    p.add_argument("--base", default=DEFAULT_MODEL, help=BASE_HELP)
    p.add_argument("--store", type=Path, default=None, help="expert store folder")
    p.add_argument("--out", type=Path, default=None, help="adapter folder (default: in store)")
    p.add_argument("--description", default="", help="what the expert knows")
    p.add_argument(
        "--system-prompt",
        default=None,
        help="the expert's system prompt: trained with and stored with the expert",
    )
    p.add_argument("--max-texts", type=int, default=1000, help="use at most N records")
    p.add_argument("--max-length", type=int, default=256)
    _add_optimisation_args(p, LoraSettings(), TrainSettings(epochs=1.0))
    p.add_argument("--resume", action="store_true", help=RESUME_HELP)
    p.add_argument("--json", action="store_true", help="end with one JSON object")
    p.set_defaults(func=run_train_expert)


def _add_optimisation_args(
    p: argparse.ArgumentParser, lora: LoraSettings, opt: TrainSettings
) -> None:
    def flag(name: str, config: object, attribute: str, kind: type) -> None:
        default = getattr(config, attribute)
        p.add_argument(
            name,
            type=kind,
            default=default,
            help=f"{field_help(config, attribute)} "
            f"(default: {default if default is not None else 'none'})",
        )

    flag("--epochs", opt, "epochs", float)
    flag("--batch-size", opt, "batch_size", int)
    flag("--lr", opt, "learning_rate", float)
    flag("--warmup-ratio", opt, "warmup_ratio", float)
    flag("--weight-decay", opt, "weight_decay", float)
    flag("--save-every", opt, "save_every", int)
    flag("--max-steps", opt, "max_steps", int)
    flag("--seed", opt, "seed", int)
    flag("--lora-r", lora, "r", int)
    flag("--lora-alpha", lora, "alpha", int)
    flag("--lora-dropout", lora, "dropout", float)
    flag("--lora-top-layers", lora, "top_layers", int)


def _settings(args: argparse.Namespace) -> tuple[LoraSettings, TrainSettings]:
    lora = LoraSettings(
        r=args.lora_r,
        alpha=args.lora_alpha,
        dropout=args.lora_dropout,
        top_layers=args.lora_top_layers,
    )
    opt = TrainSettings(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        warmup_ratio=args.warmup_ratio,
        weight_decay=args.weight_decay,
        seed=args.seed,
        save_every=args.save_every,
        max_steps=args.max_steps,
    )
    return lora, opt


def parse_mix(text: str) -> dict[str, float]:
    """`musique=0.5,break=0.3` → {"musique": 0.5, "break": 0.3}.

    Raises:
        ValueError: a malformed entry, an unknown dataset or a negative share.
    """
    weights: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or name not in MIX_NAMES:
            raise ValueError(f"bad --mix entry {item!r}: use NAME=SHARE with NAME in {MIX_NAMES}")
        weights[name] = float(value)
        if weights[name] < 0:
            raise ValueError(f"--mix share of {name} is negative")
    if not any(w > 0 for w in weights.values()):
        raise ValueError("--mix gives no dataset a positive share")
    return weights


def run_train_decomposer(args: argparse.Namespace) -> int:
    try:
        init_adapter = _init_adapter(args.init_adapter, args.base)
        _lora_shape(args, init_adapter)
        lora, opt = _settings(args)
        plan = DecomposerPlan(
            data_dir=args.data_dir,
            train_size=args.train_size,
            weights=parse_mix(args.mix),
            max_length=args.max_length,
            validation_size=args.validation_size,
            lora=lora,
            settings=opt,
            init_adapter=init_adapter,
            hold_out=tuple(args.hold_out),
        )
        earlier_stage(plan, args.base)  # fail before the minutes spent loading the model
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if missing_data_dir(args.data_dir):
        return 2
    try:
        local = load_base(args.base)
    except ModelLoadError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    command = shlex.join(["compllm", *sys.argv[1:]])
    try:
        record = train_decomposer(
            local.model,
            local.tokenizer,
            plan,
            args.out,
            base=args.base,
            resume=args.resume,
            command=command,
        )
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if not is_main_process():
        return 0
    summary = {k: record[k] for k in ("status", "steps", "total_steps", "wall_time_s")}
    summary["validation"] = record.get("validation")
    print(f"adapter written to {args.out}")
    if args.json:
        print(json.dumps(summary))
    return 0


def load_base(base: str) -> TransformersModel:
    """The base model on the transformers engine, its weights in the dtype training uses
    (bf16 on an accelerator that has it, fp32 on CPU).

    Raises:
        ModelLoadError: `base` is no alias, model folder or hub id, or does not load (the
            message says which).
    """
    return load_model(base, engine="transformers", dtype=choose_precision().dtype)


def _init_adapter(choice: str | None, base: str) -> Path | None:
    """`--init-adapter`: a folder, or 'shipped' for the decomposer shipped for `base`."""
    if choice != "shipped":
        return None if choice is None else Path(choice)
    folder = adapter_for(base)
    if folder is None:
        raise ValueError(f"no decomposer ships for {base!r}: give --init-adapter DIR")
    return folder


def _lora_shape(args: argparse.Namespace, init_adapter: Path | None) -> None:
    """Fill `--lora-r/--lora-alpha` left out: the init adapter's shape, else the defaults."""
    defaults = LoraSettings()
    r, alpha = adapter_shape(init_adapter) if init_adapter else (defaults.r, defaults.alpha)
    args.lora_r = r if args.lora_r is None else args.lora_r
    args.lora_alpha = alpha if args.lora_alpha is None else args.lora_alpha


def _add_expert_data(kinds: argparse._SubParsersAction) -> None:
    p = kinds.add_parser(
        "expert-data",
        help="write an expert's question/answer training file from the train split",
    )
    p.add_argument("domain", choices=(*sorted(SOURCES), ALL_DOMAINS))
    p.add_argument("--out", type=Path, required=True, help="JSONL file to write")
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    p.add_argument("--limit", type=int, default=800, help="at most N records")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--no-open-form",
        dest="open_forms",
        action="store_false",
        help="leave out the open-form pairs (bare answers to option-less questions); "
        "use it where open questions need working, as in mathematics",
    )
    p.add_argument(
        "--programs",
        action="store_true",
        help="mathematics only: GSM8K train problems answered by a Python program that prints "
        "the gold answer (for a program expert's adapter; train it with `--system-prompt` set "
        "to the program expert's prompt, `compllm_graph.program_expert.PROGRAM_PROMPT`)",
    )
    p.add_argument(
        "--program-names",
        choices=get_args(VariableNames),
        default="steps",
        help="with --programs: name each step step1, step2, ... (default) or after the words "
        "the solution writes beside its result (clips_may = 48 / 2)",
    )
    p.set_defaults(func=run_expert_data)


def run_expert_data(args: argparse.Namespace) -> int:
    if missing_data_dir(args.data_dir):
        return 2
    if args.programs and args.domain != "mathematics":
        print(f"error: --programs writes mathematics records, not {args.domain}", file=sys.stderr)
        return 2
    try:
        if args.programs:
            records = program_examples(args.data_dir, args.limit, args.seed, args.program_names)
        else:
            records = expert_examples(
                args.data_dir, args.domain, args.limit, args.seed, args.open_forms
            )
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    count = write_jsonl(records, args.out)
    sources = Counter(r["id"].split("/")[0] for r in records)
    listing = ", ".join(f"{name} {n}" for name, n in sorted(sources.items()))
    print(f"wrote {count} {args.domain} records to {args.out} ({listing})")
    return 0


def _add_routing_data(kinds: argparse._SubParsersAction) -> None:
    p = kinds.add_parser(
        "routing-data",
        help="write the demo store's centroid and calibration questions from the train split",
    )
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="folder to write (the shipped one: compllm_graph/expert_store/demo_data)",
    )
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    p.set_defaults(func=run_routing_data)


def run_routing_data(args: argparse.Namespace) -> int:
    if missing_data_dir(args.data_dir):
        return 2
    counts = write_routing_data(args.data_dir, args.out)
    listing = ", ".join(f"{name} {n}" for name, n in counts.items())
    print(
        f"wrote {args.out}: {listing}; rebuild the store with `compllm experts build-demo --force`"
    )
    return 0


def _expert_data(args: argparse.Namespace) -> tuple[Objective, list[str], list]:
    """The objective, the texts for the store's centroid, and the training data."""
    objective = args.objective
    if objective == "auto":
        objective = "answer" if has_pair(first_record(args.data)) else "text"
    if objective == "answer":
        pairs = read_pairs(args.data)[: args.max_texts]
        return objective, [q for q, _ in pairs], pairs
    texts = read_texts(args.data)[: args.max_texts]
    return objective, texts, texts


def _check_store_for(store_path: Path, name: str) -> None:
    """Raise unless `name` can be added to the store at `store_path` (or one created there).

    Raises:
        StoreError: an unsafe name, a corrupt store, one that already has `name`, or a folder
            that is neither a store nor empty.
    """
    check_name(name)
    if (store_path / MANIFEST).is_file():
        if name in {e.name for e in ExpertStore.open(store_path).experts()}:
            raise StoreError(
                f"expert {name!r} already exists in {store_path}: remove it first "
                f"(`compllm experts remove {name} --store {store_path}`) or pass another --store"
            )
    else:
        check_creatable(store_path)


def run_train_expert(args: argparse.Namespace) -> int:
    try:
        objective, texts, data = _expert_data(args)
    except DataFileError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not texts:
        print(f"error: {args.data} holds no usable record", file=sys.stderr)
        return 2
    store_path = args.store or default_store_path()
    try:
        _check_store_for(store_path, args.name)  # before the minutes or hours of training
    except StoreError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = args.out or home() / "adapters" / args.name
    lora, opt = _settings(args)
    try:
        local = load_base(args.base)
    except ModelLoadError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        record = train_expert(
            local.model,
            local.tokenizer,
            data,
            out,
            base=args.base,
            lora=lora,
            settings=opt,
            objective=objective,
            system_prompt=args.system_prompt,
            max_length=args.max_length,
            resume=args.resume,
            command=shlex.join(["compllm", *sys.argv[1:]]),
        )
        if not is_main_process():  # the main process registers the expert
            return 0
        store = (
            ExpertStore.open(store_path)
            if (store_path / MANIFEST).is_file()
            else ExpertStore.create(store_path)
        )
        expert = store.add_expert(
            args.name,
            texts,
            description=args.description,
            system_prompt=args.system_prompt,
            adapter=out,
            base_model=args.base,
        )
    except (ValueError, StoreError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(
        f"expert {expert.name!r} trained ({record['steps']} steps, "
        f"loss {record['loss']['first']} -> {record['loss']['last']}) and added to {store_path}"
    )
    if args.json:
        print(
            json.dumps(
                {
                    "name": args.name,
                    "adapter": str(out),
                    "store": str(store_path),
                    **{k: record[k] for k in ("objective", "steps", "wall_time_s", "loss")},
                }
            )
        )
    return 0
