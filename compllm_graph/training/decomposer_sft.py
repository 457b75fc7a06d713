"""Supervised fine-tuning of the decomposer: data mix, LoRA, validation, `training.json`."""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from compllm_graph.adapter_folder import same_base
from compllm_graph.datasets.decompositions import (
    BREAK_SOURCES,
    CHAINED_CONJUNCTION,
    COMPOSED,
    COMPOSED_EASY,
    CONJUNCTION,
    DATASETS,
    RELATIVE_CHAIN,
    SINGLE_COUNT,
    DecompositionExample,
    chained_conjunctions,
    conjunctions,
    default_files,
    is_single_count,
    load_examples,
    mix,
    relative_chains,
    select,
    single_counts,
    without_sources,
)
from compllm_graph.decomposer.generation import generate, prompt_ids, sft_messages
from compllm_graph.decomposer.loading import (
    TRAINING_RECORD,
    read_json_object,
    read_training_record,
)
from compllm_graph.decomposer.metrics import aggregate, score_text
from compllm_graph.decomposer.prompts import DECOMPOSER_SYSTEM_PROMPT
from compllm_graph.training.composed import composed_easy_examples, composed_examples
from compllm_graph.training.settings import LoraSettings, TrainSettings
from compllm_graph.training.sft import (
    ADAPTER_CONFIG,
    IGNORE_INDEX,
    Encoded,
    TrainResult,
    attach_lora,
    is_main_process,
    train,
    trainer_provenance,
    warm_start,
)

DEFAULT_WEIGHTS = {"musique": 0.55, "break": 0.2, "strategyqa": 0.1, CONJUNCTION: 0.15}
HOLD_OUT_SOURCES = ("musique", "strategyqa", *BREAK_SOURCES)
"""What `DecomposerPlan.hold_out` may name: a dataset, or one of the question sets in Break."""


@dataclass(frozen=True)
class DecomposerPlan:
    """Everything that decides what a decomposer run learns from.

    Attributes:
        data_dir: The shared data folder (MuSiQue, StrategyQA, Break inside).
        train_size: Training examples drawn from the train splits (the paper's ablation: 1,000).
        weights: Share of each dataset in the training mix; `conjunction` composes two
            independent train questions into one (see `conjunctions`), `chained_conjunction`
            a two-hop chain and a single-hop question, `relative_chain` weighs the questions
            whose bridge is a relative clause, and `single_count` turns Break's single-hop
            counts into one sub-query (and takes them out of `break`): see
            `datasets.decompositions`; `composed` and `composed_easy` join multi-domain
            train items (`training.composed`).
        max_length: Longest prompt + target in tokens; longer examples are left out.
        validation_size: Validation examples per dataset scored after training (0: none).
        lora: LoRA hyper-parameters.
        settings: Optimisation hyper-parameters.
        init_adapter: Start from this trained decomposer's weights instead of fresh ones (a
            second stage, e.g. on a MuSiQue-heavier mix); it must share the base and LoRA shape.
        hold_out: Question sets (`HOLD_OUT_SOURCES`) no example comes from, the joined kinds
            included, so that a decomposer can be scored on a kind of question it never saw
            (`cwq`: Break's ComplexWebQuestions, `compllm eval decomposition BREAK.csv --source
            cwq`). An `init_adapter` must have held them out too.
    """

    data_dir: Path
    train_size: int = 1000
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    max_length: int = 256
    validation_size: int = 32
    lora: LoraSettings = field(default_factory=LoraSettings)
    settings: TrainSettings = field(default_factory=TrainSettings)
    init_adapter: Path | None = None
    hold_out: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = sorted(set(self.hold_out) - set(HOLD_OUT_SOURCES))
        if unknown:
            raise ValueError(
                f"cannot hold out {unknown}: the question sets are {', '.join(HOLD_OUT_SOURCES)}"
            )


def load_pools(data_dir: Path, datasets: Sequence[str]) -> dict[str, list[DecompositionExample]]:
    """All examples of each named dataset under `data_dir`.

    Raises:
        FileNotFoundError: a dataset file is missing.
    """
    files = default_files(data_dir)
    return {name: load_examples(files[name]) for name in datasets}


CHAIN_SOURCES = ("musique", "break")
"""The datasets whose bridge chains make `chained_conjunction` and `relative_chain` examples
(StrategyQA's chains end in a yes/no comparison, not a bridge)."""


def training_examples(
    pools: dict[str, list[DecompositionExample]], plan: DecomposerPlan
) -> list[DecompositionExample]:
    """The training mix, drawn only from each dataset's train split."""
    train_pools = {name: select(pool, "train") for name, pool in pools.items()}
    wanted = {name for name, weight in plan.weights.items() if weight > 0}
    seed, size = plan.settings.seed, plan.train_size
    if SINGLE_COUNT in wanted:
        train_pools = _with_single_counts(train_pools)
    sources = dict(train_pools)  # the datasets' examples that the composed kinds draw from
    if CONJUNCTION in wanted:
        train_pools[CONJUNCTION] = conjunctions(sources, size, seed=seed)
    chains = [e for name in CHAIN_SOURCES for e in sources.get(name, [])]
    if CHAINED_CONJUNCTION in wanted:
        singles = [e for pool in sources.values() for e in pool]
        train_pools[CHAINED_CONJUNCTION] = chained_conjunctions(chains, singles, size, seed=seed)
    if RELATIVE_CHAIN in wanted:
        train_pools[RELATIVE_CHAIN] = relative_chains(chains)
    if COMPOSED in wanted:
        train_pools[COMPOSED] = composed_examples(plan.data_dir, size, seed=seed)
    if COMPOSED_EASY in wanted:
        # Its pools are small: build its share of the mix only, not `size` like the others.
        share = math.ceil(size * plan.weights[COMPOSED_EASY] / sum(plan.weights.values()))
        train_pools[COMPOSED_EASY] = composed_easy_examples(plan.data_dir, share, seed=seed)
    return mix(train_pools, size, plan.weights, seed=seed)


def _with_single_counts(
    pools: dict[str, list[DecompositionExample]],
) -> dict[str, list[DecompositionExample]]:
    """Break's single-hop counts moved to a `single_count` pool of their own, each one
    sub-query, so that no example in the mix still splits one."""
    breaks = pools.get("break", [])
    return {
        **pools,
        "break": [e for e in breaks if not is_single_count(e)],
        SINGLE_COUNT: single_counts(breaks),
    }


def encode_example(
    tokenizer: Any, example: DecompositionExample, max_length: int
) -> Encoded | None:
    """Prompt + target + end-of-turn, loss on the target part only; None if too long."""
    prompt = prompt_ids(tokenizer, sft_messages(example.question))
    answer = tokenizer(example.target, add_special_tokens=False)["input_ids"]
    answer = [*answer, tokenizer.eos_token_id]
    if len(prompt) + len(answer) > max_length:
        return None
    return Encoded(input_ids=prompt + answer, labels=[IGNORE_INDEX] * len(prompt) + answer)


def train_decomposer(
    model: torch.nn.Module,
    tokenizer: Any,
    plan: DecomposerPlan,
    out_dir: Path,
    *,
    base: str,
    resume: bool = False,
    command: str = "",
) -> dict[str, Any]:
    """Train a decomposer adapter into `out_dir` and write its `training.json`.

    Args:
        model: The base causal LM (it gets LoRA adapters attached in place).
        tokenizer: Its tokenizer.
        plan: Data and hyper-parameters.
        out_dir: Receives the adapter, `checkpoints/` and `training.json`.
        base: The base model's alias, recorded for loading later.
        resume: Continue from the newest checkpoint in `out_dir`.
        command: The command line, recorded for reproduction.

    Returns:
        The training record also written to `out_dir/training.json`.
    """
    pools = {
        name: without_sources(pool, plan.hold_out)
        for name, pool in load_pools(plan.data_dir, _source_datasets(plan.weights)).items()
    }
    examples = training_examples(pools, plan)
    encoded = [encode_example(tokenizer, e, plan.max_length) for e in examples]
    kept = [x for x in encoded if x is not None]
    earlier = earlier_stage(plan, base)
    peft_model = attach_lora(model, plan.lora, seed=plan.settings.seed)
    if plan.init_adapter is not None:
        warm_start(peft_model, plan.init_adapter)
    record: dict[str, Any] = {
        "base": base,
        "command": command,
        "system_prompt": DECOMPOSER_SYSTEM_PROMPT,
        "data": {
            "files": {n: str(p) for n, p in default_files(plan.data_dir).items() if n in pools},
            "split": "train split: 80 % of question ids by sha256 (validation 10 %, test 10 %)",
            "weights": plan.weights,
            "held_out": list(plan.hold_out),
            "examples": len(examples),
            "by_dataset": dict(Counter(e.dataset for e in examples)),
            "left_out_too_long": len(examples) - len(kept),
            "max_length": plan.max_length,
        },
        "lora": asdict(plan.lora),
        "hyper_parameters": asdict(plan.settings),
        "trainer": trainer_provenance(),
    }
    if earlier is not None:
        record["initialised_from"] = earlier
    out_dir.mkdir(parents=True, exist_ok=True)

    def write(result: TrainResult, status: str) -> None:
        record.update(_progress(result, status))
        (out_dir / TRAINING_RECORD).write_text(json.dumps(record, indent=2) + "\n")

    result = train(
        peft_model,
        kept,
        plan.settings,
        out_dir,
        tokenizer=tokenizer,
        base=base,
        resume=resume,
        on_checkpoint=lambda r: write(r, "partial" if not r.finished else "trained"),
    )
    if not is_main_process():  # the main process validates and writes the record
        record.update(_progress(result, "finished" if result.finished else "partial"))
        return record
    if plan.validation_size > 0:
        started = time.monotonic()
        record["validation"] = validate(peft_model, tokenizer, pools, plan.validation_size)
        record["validation_wall_time_s"] = round(time.monotonic() - started, 1)
    write(result, "finished" if result.finished else "partial")
    return record


def adapter_shape(folder: Path) -> tuple[int, int]:
    """The LoRA rank and alpha a trained adapter was made with.

    Raises:
        ValueError: its config is unreadable, or `r` / `lora_alpha` is not a positive integer.
    """
    config = read_json_object(folder / ADAPTER_CONFIG)
    shape = []
    for key in ("r", "lora_alpha"):
        value = config.get(key)
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{folder}/{ADAPTER_CONFIG} has {key}={value!r}: not a LoRA")
        shape.append(value)
    return shape[0], shape[1]


def earlier_stage(plan: DecomposerPlan, base: str) -> dict[str, Any] | None:
    """What `plan.init_adapter` was trained on, after checking it fits `base` and `plan.lora`.

    Raises:
        ValueError: another base model or LoRA rank/alpha, or an unreadable record.
    """
    folder = plan.init_adapter
    if folder is None:
        return None
    earlier = read_training_record(folder)
    if isinstance(earlier.get("base"), str) and not same_base(earlier["base"], base):
        trained_on = earlier["base"]
        raise ValueError(f"{folder} was trained on {trained_on!r}: pass --base {trained_on}")
    shape = adapter_shape(folder)
    if shape != (plan.lora.r, plan.lora.alpha):
        raise ValueError(
            f"{folder} has LoRA r={shape[0]}, alpha={shape[1]}: pass "
            f"--lora-r {shape[0]} --lora-alpha {shape[1]} to continue from it"
        )
    data = earlier.get("data")
    held = set(data.get("held_out") or ()) if isinstance(data, dict) else set()
    if not set(plan.hold_out) <= held:
        raise ValueError(
            f"{folder} was trained with {sorted(held) or 'nothing'} held out, so a decomposer "
            f"started from it has seen {sorted(set(plan.hold_out) - held)}: start from fresh "
            "weights (no --init-adapter) or from an adapter trained with the same --hold-out"
        )
    return {
        "adapter": str(folder),
        "command": earlier.get("command"),
        "steps": earlier.get("steps"),
        "examples": data.get("examples") if isinstance(data, dict) else None,
    }


_FROM_EVERY_DATASET = (CONJUNCTION, CHAINED_CONJUNCTION, RELATIVE_CHAIN, SINGLE_COUNT)


def _source_datasets(weights: dict[str, float]) -> list[str]:
    """The dataset files a mix reads: conjunctions (plain and chained), relative chains and
    single counts are made from the three, and the multi-domain compositions from the expert
    domains' sources instead."""
    if any(weights.get(name, 0) > 0 for name in _FROM_EVERY_DATASET):
        return list(DATASETS)
    return [n for n, w in weights.items() if w > 0 and n in DATASETS]


def validate(
    model: torch.nn.Module,
    tokenizer: Any,
    pools: dict[str, list[DecompositionExample]],
    size: int,
) -> dict[str, dict[str, float | int]]:
    """Decomposition F1 on the first `size` validation examples of each dataset: the trained
    chat (`sft_messages`), greedy, 128 new tokens, as `compllm eval decomposition` scores it."""
    scores: dict[str, dict[str, float | int]] = {}
    for name, pool in pools.items():
        examples = select(pool, "validation")[:size]
        outputs = generate(model, tokenizer, [sft_messages(e.question) for e in examples])
        report = aggregate(
            score_text(out, e.graph, e.question) for out, e in zip(outputs, examples)
        )
        scores[name] = report.as_dict()
    return scores


def _progress(result: TrainResult, status: str) -> dict[str, Any]:
    return {
        "status": status,
        "steps": result.steps,
        "total_steps": result.total_steps,
        "wall_time_s": round(result.wall_time_s, 1),
        "loss": result.loss_summary(),
    }
