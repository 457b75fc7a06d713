"""Composed multi-domain questions for the decomposer's training mix (`composed` in `--mix`).

MuSiQue, StrategyQA and Break have no question made of several multiple-choice parts, so a
decomposer trained on them alone drops each part's options or splits one part into hops. These
examples join train-split items of different domains, each part kept whole with its options,
as the benchmarks do, but with other joining templates (so the benchmarks' wording stays
unseen) and only train-split items (so no benchmark item is learnt). A quarter are bridges,
whose second part refers to the first's answer as `#1`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from compllm_graph.evaluation.compose import compose_dependent, compose_parallel
from compllm_graph.evaluation.items import SOURCES, domain_items, gsm8k_items
from compllm_graph.query_graph import DecompositionError
from compllm_graph.training.data import DecompositionExample, graph_from_steps

COMPOSED = "composed"

TRAINING_TEMPLATES: Mapping[int, tuple[str, ...]] = {
    2: (
        "{0} In addition, {1}",
        "Question 1: {0} Question 2: {1}",
        "Can you help me with two questions? {0} The other one: {1}",
        "{0} Furthermore: {1}",
    ),
    3: (
        "Question 1: {0} Question 2: {1} Question 3: {2}",
        "{0} In addition, {1} Lastly, {2}",
        "Here are three questions. {0} / {1} / {2}",
    ),
}
"""Joining templates of the training compositions; none is a benchmark template."""

TRAINING_BRIDGE_TEMPLATES = ("{0} Afterwards: {1}", "Solve this: {0} And then: {1}")


def composed_examples(data_dir: Path, count: int, seed: int = 0) -> list[DecompositionExample]:
    """`count` training compositions: half of 2 parts, a quarter of 3, a quarter bridges.

    Raises:
        ValueError: the train split holds too few items.
    """
    pools = {domain: domain_items(data_dir, domain) for domain in SOURCES}
    maths = [*gsm8k_items(data_dir, "train"), *gsm8k_items(data_dir)]
    records = [
        *compose_parallel(pools, 2, count // 2, seed, split="train", templates=TRAINING_TEMPLATES),
        *compose_parallel(pools, 3, count // 4, seed, split="train", templates=TRAINING_TEMPLATES),
        *compose_dependent(
            maths,
            [],
            2,
            count - count // 2 - count // 4,
            seed,
            split="train",
            bridge_templates=TRAINING_BRIDGE_TEMPLATES,
        ),
    ]
    return as_examples(records)


def as_examples(records: Sequence[Mapping]) -> list[DecompositionExample]:
    """Composed questions (the answer benchmarks' format) as decomposition examples: their
    parts are the gold sub-queries; a record whose option text reads as `#k` is skipped."""
    examples = []
    for record in records:
        try:
            graph = graph_from_steps([part["question"] for part in record["parts"]])
        except DecompositionError:
            continue  # an option text that reads as a `#k` reference
        examples.append(DecompositionExample(record["id"], record["question"], graph, COMPOSED))
    return examples


__all__ = [
    "COMPOSED",
    "TRAINING_BRIDGE_TEMPLATES",
    "TRAINING_TEMPLATES",
    "as_examples",
    "composed_examples",
]
