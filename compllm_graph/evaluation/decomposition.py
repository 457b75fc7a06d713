"""Decomposition F1 of a decomposer: generate on examples' questions, score against gold graphs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from compllm_graph.datasets.decompositions import DecompositionExample
from compllm_graph.decomposer.generation import (
    few_shot_messages,
    generate,
    sft_messages,
    trim_few_shot,
)
from compllm_graph.decomposer.metrics import DecompositionReport, aggregate, score_text


def evaluate(
    model: Any,
    tokenizer: Any,
    examples: Sequence[DecompositionExample],
    *,
    few_shot: bool = False,
    batch_size: int = 8,
    max_new_tokens: int = 128,
    num_beams: int = 1,
    logits_processor: Callable[[int], Any] | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[DecompositionReport, list[str]]:
    """Decompose every example's question and score the outputs against the gold graphs."""
    make = few_shot_messages if few_shot else sft_messages
    outputs = generate(
        model,
        tokenizer,
        [make(e.question) for e in examples],
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        num_beams=num_beams,
        logits_processor=logits_processor,
        progress=progress,
    )
    if few_shot:
        outputs = [trim_few_shot(out) for out in outputs]
    report = aggregate(score_text(out, e.graph, e.question) for out, e in zip(outputs, examples))
    return report, outputs


__all__ = ["evaluate"]
