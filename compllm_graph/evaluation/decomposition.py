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
    return score_outputs(outputs, examples, few_shot=few_shot)


def score_outputs(
    outputs: Sequence[str], examples: Sequence[DecompositionExample], *, few_shot: bool = False
) -> tuple[DecompositionReport, list[str]]:
    """Score decomposer outputs (one per example, in order) against the gold graphs; a
    few-shot reply is first cut after its dependency graph (`trim_few_shot`).

    Returns:
        The report and the outputs as scored.
    """
    scored = [trim_few_shot(out) for out in outputs] if few_shot else list(outputs)
    report = aggregate(
        score_text(out, e.graph, e.question) for out, e in zip(scored, examples, strict=True)
    )
    return report, scored


__all__ = ["evaluate", "score_outputs"]
