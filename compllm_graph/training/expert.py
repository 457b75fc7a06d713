"""Domain experts: LoRA with the causal-LM loss on a domain's texts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from compllm_graph.decomposer.loading import TRAINING_RECORD
from compllm_graph.training.settings import LoraSettings, TrainSettings
from compllm_graph.training.sft import Encoded, attach_lora, train


def encode_texts(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[Encoded]:
    """Each text (cut to `max_length` tokens, ending with end-of-text) with loss on every token."""
    encoded = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"][: max_length - 1]
        if ids:
            ids = [*ids, tokenizer.eos_token_id]
            encoded.append(Encoded(input_ids=ids, labels=list(ids)))
    return encoded


def train_expert(
    model: torch.nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    out_dir: Path,
    *,
    base: str,
    lora: LoraSettings,
    settings: TrainSettings,
    max_length: int = 256,
    resume: bool = False,
    command: str = "",
) -> dict[str, Any]:
    """Train an expert adapter into `out_dir` and write its `training.json`.

    Raises:
        ValueError: no usable text.
    """
    data = encode_texts(tokenizer, texts, max_length)
    if not data:
        raise ValueError("the expert data holds no non-empty text")
    peft_model = attach_lora(model, lora, seed=settings.seed)
    # Record the alias, not the cache folder the weights happened to load from.
    peft_model.peft_config["default"].base_model_name_or_path = base
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    result = train(peft_model, data, settings, out_dir, pad_id=int(pad), resume=resume)
    losses = result.losses
    record = {
        "base": base,
        "command": command,
        "data": {"texts": len(texts), "sequences": len(data), "max_length": max_length},
        "lora": asdict(lora),
        "hyper_parameters": asdict(settings),
        "status": "finished" if result.finished else "partial",
        "steps": result.steps,
        "total_steps": result.total_steps,
        "wall_time_s": round(result.wall_time_s, 1),
        "loss": {
            "first": round(losses[0], 4) if losses else None,
            "last": round(losses[-1], 4) if losses else None,
        },
    }
    (out_dir / TRAINING_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    return record
