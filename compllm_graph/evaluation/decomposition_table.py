"""The paper's Table 1 on our data: few-shot prompting vs the SFT decomposer, same base model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from compllm_graph.datasets.decompositions import default_files, load_examples, select
from compllm_graph.decomposer.grammar import tag_grammar_factory
from compllm_graph.decomposer.metrics import DecompositionReport
from compllm_graph.evaluation.decomposition import evaluate

TABLE_DATASETS = ("musique", "break")
METRICS = ("subquery_f1", "edge_f1", "count_accuracy", "parse_rate")


def decomposition_table(
    local: Any,
    adapter_dir: Path,
    data_dir: Path,
    *,
    limit: int = 100,
    batch_size: int = 8,
    few_shot_max_new_tokens: int = 96,
    max_new_tokens: int = 128,
    constrained: bool = False,
    progress: Callable[[int], None] | None = None,
) -> dict[str, dict[str, DecompositionReport]]:
    """Score few-shot and SFT decomposition on the first `limit` test examples of each dataset.

    Args:
        local: A loaded `TransformersModel` without the decomposer adapter (it is added here).
        adapter_dir: The SFT decomposer adapter.
        data_dir: The shared data folder.
        limit: Test examples per dataset.
        batch_size: Questions per `generate` call.
        few_shot_max_new_tokens: Reply cap for the few-shot prompt.
        max_new_tokens: Reply cap for the SFT decomposer.
        constrained: Also score the SFT decomposer with the tag-grammar logits processor.
        progress: Called with the number of questions finished after each batch.

    Returns:
        {dataset: {"few-shot" | "SFT" | "SFT + constrained": report}}.
    """
    files = default_files(data_dir)
    tests = {n: select(load_examples(files[n]), "test")[:limit] for n in TABLE_DATASETS}
    table: dict[str, dict[str, DecompositionReport]] = {n: {} for n in TABLE_DATASETS}
    for name, examples in tests.items():
        table[name]["few-shot"], _ = evaluate(
            local.model,
            local.tokenizer,
            examples,
            few_shot=True,
            batch_size=batch_size,
            max_new_tokens=few_shot_max_new_tokens,
            progress=progress,
        )
    local.add_adapter("decomposer", adapter_dir)
    model = local.model.merge_and_unload()  # same outputs, base-model speed
    variants: dict[str, Any] = {"SFT": None}
    if constrained:
        variants["SFT + constrained"] = tag_grammar_factory(local.tokenizer)
    for name, examples in tests.items():
        for label, processor in variants.items():
            table[name][label], _ = evaluate(
                model,
                local.tokenizer,
                examples,
                batch_size=batch_size,
                max_new_tokens=max_new_tokens,
                logits_processor=processor,
                progress=progress,
            )
    return table


def format_table(table: dict[str, dict[str, DecompositionReport]]) -> str:
    """A markdown table: one row per dataset and method."""
    lines = [
        "| dataset (test) | method | n | sub-query F1 | edge F1 | count acc. | parse rate |",
        "|---|---|---|---|---|---|---|",
    ]
    for dataset, rows in table.items():
        for method, report in rows.items():
            cells = " | ".join(f"{getattr(report, m):.3f}" for m in METRICS)
            lines.append(f"| {dataset} | {method} | {report.n} | {cells} |")
    return "\n".join(lines)
