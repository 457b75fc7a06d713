"""Domain experts: LoRA on a domain's data.

Two objectives: `answer` (supervised question -> answer pairs in the chat template, loss on the
answer only, the way the expert is asked at inference) and `text` (the causal-LM loss on every
token of plain domain text).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import torch

from compllm_graph.decomposer.generation import prompt_ids
from compllm_graph.decomposer.loading import TRAINING_RECORD
from compllm_graph.training.settings import LoraSettings, TrainSettings
from compllm_graph.training.sft import (
    IGNORE_INDEX,
    Encoded,
    attach_lora,
    is_main_process,
    train,
    trainer_provenance,
)

Objective = Literal["answer", "text"]


def encode_texts(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[Encoded]:
    """Each text (cut to `max_length` tokens, ending with end-of-text) with loss on every token."""
    encoded = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"][: max_length - 1]
        if ids:
            ids = [*ids, tokenizer.eos_token_id]
            encoded.append(Encoded(input_ids=ids, labels=list(ids)))
    return encoded


def encode_pairs(
    tokenizer: Any,
    pairs: Sequence[tuple[str, str]],
    max_length: int,
    system_prompt: str | None = None,
) -> list[Encoded]:
    """Each (question, answer) as a chat turn, loss on the answer and end-of-turn only.

    A pair longer than `max_length` tokens keeps its whole prompt and a cut answer; a pair
    whose prompt alone is too long is left out.
    """
    encoded = []
    for question, answer in pairs:
        messages = [{"role": "user", "content": question}]
        if system_prompt:
            messages.insert(0, {"role": "system", "content": system_prompt})
        prompt = prompt_ids(tokenizer, messages)
        target = tokenizer(answer, add_special_tokens=False)["input_ids"]
        target = [*target, tokenizer.eos_token_id][: max_length - len(prompt)]
        if len(target) >= 2:
            ids = prompt + target
            encoded.append(Encoded(input_ids=ids, labels=[IGNORE_INDEX] * len(prompt) + target))
    return encoded


def train_expert(
    model: torch.nn.Module,
    tokenizer: Any,
    data: Sequence[str] | Sequence[tuple[str, str]],
    out_dir: Path,
    *,
    base: str,
    lora: LoraSettings,
    settings: TrainSettings,
    objective: Objective = "text",
    system_prompt: str | None = None,
    max_length: int = 256,
    resume: bool = False,
    command: str = "",
) -> dict[str, Any]:
    """Train an expert adapter into `out_dir` and write its `training.json`.

    Args:
        model: The base causal LM (transformers).
        tokenizer: Its tokenizer.
        data: Texts for `objective="text"`, (question, answer) pairs for `"answer"`.
        out_dir: Adapter folder (`checkpoints/` inside it keeps the Trainer's checkpoints).
        base: The base model's alias or folder, recorded in the adapter.
        lora: LoRA hyper-parameters.
        settings: Optimisation hyper-parameters.
        objective: `answer` (loss on the answer only) or `text` (loss on every token).
        system_prompt: The expert's system prompt, put before each question as at inference.
        max_length: Longest sequence in tokens.
        resume: Continue from the newest checkpoint in `out_dir`.
        command: The command line, recorded in `training.json`.

    Raises:
        ValueError: no usable example.
    """
    if objective == "answer":
        pairs = [(str(pair[0]), str(pair[1])) for pair in data]
        encoded = encode_pairs(tokenizer, pairs, max_length, system_prompt)
    else:
        encoded = encode_texts(tokenizer, [str(t) for t in data], max_length)
    if not encoded:
        raise ValueError(f"the expert data holds no usable example for the {objective!r} objective")
    peft_model = attach_lora(model, lora, seed=settings.seed)
    result = train(
        peft_model, encoded, settings, out_dir, tokenizer=tokenizer, base=base, resume=resume
    )
    record = {
        "base": base,
        "command": command,
        "objective": objective,
        "system_prompt": system_prompt,
        "data": {"examples": len(data), "sequences": len(encoded), "max_length": max_length},
        "lora": asdict(lora),
        "hyper_parameters": asdict(settings),
        "status": "finished" if result.finished else "partial",
        "steps": result.steps,
        "total_steps": result.total_steps,
        "wall_time_s": round(result.wall_time_s, 1),
        "loss": result.loss_summary(),
        "trainer": trainer_provenance(),
    }
    if is_main_process():
        (out_dir / TRAINING_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    return record
