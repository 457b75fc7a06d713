"""Composed multi-domain questions for the decomposer's training mix (`composed` in `--mix`).

MuSiQue, StrategyQA and Break have no question made of several multiple-choice parts, so a
decomposer trained on them alone drops each part's options or splits one part into hops. These
examples join train-split items of different domains, each part kept whole with its options,
as the benchmarks do, but with other joining templates (so the benchmarks' wording stays
unseen) and only train-split items (so no benchmark item is learnt).

Half are dependent: half of those bridges, whose later part refers to the earlier answer as `#k`,
and half GSM8K problems asked as their socratic steps. A step names no `#k`: it needs the
problem's context and the earlier results, so its gold sub-query is the step alone, the context
stays in the first sub-query, and every earlier step is its parent (the executor gives a child
its parents' questions and answers; `datasets.decompositions.socratic_graph`). Without these, a
decomposer splits such a problem into steps with no dependency and the later steps lose the
problem they belong to.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from compllm_graph.datasets.compositions import compose_dependent, compose_parallel
from compllm_graph.datasets.decompositions import COMPOSED_EASY, DecompositionExample, as_examples
from compllm_graph.datasets.easy_tier import EASY_MIX, source_items
from compllm_graph.datasets.items import (
    SOURCES,
    Item,
    domain_items,
    gsm8k_items,
    socratic_chains,
)

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

TRAINING_STEP_TEMPLATES: Mapping[int, tuple[str, ...]] = {
    2: ("{context} To begin: {0} After that: {1}", "{context} {0} Using this, {1}"),
    3: (
        "{context} Step one: {0} Step two: {1} Step three: {2}",
        "{context} {0} After that, {1} In the end, {2}",
    ),
}
"""Templates of the training socratic questions; none is a benchmark template."""


def composed_examples(data_dir: Path, count: int, seed: int = 0) -> list[DecompositionExample]:
    """`count` training compositions: 3/8 of 2 parallel parts, 1/8 of 3, 1/3 dependent 2-part
    (bridges and socratic steps, alternately), the rest dependent 3-part.

    Raises:
        ValueError: the train split holds too few items.
    """
    pools = {domain: domain_items(data_dir, domain) for domain in SOURCES}
    maths = [*gsm8k_items(data_dir, "train"), *gsm8k_items(data_dir)]
    chains = list(socratic_chains(data_dir))  # compose_dependent keeps the train split's
    two, three, dependent_two = count * 3 // 8, count // 8, count // 3
    records = [
        *compose_parallel(pools, 2, two, seed, split="train", templates=TRAINING_TEMPLATES),
        *compose_parallel(pools, 3, three, seed, split="train", templates=TRAINING_TEMPLATES),
    ]
    for parts, size in ((2, dependent_two), (3, count - two - three - dependent_two)):
        records += compose_dependent(
            maths,
            chains,
            parts,
            size,
            seed,
            split="train",
            bridge_templates=TRAINING_BRIDGE_TEMPLATES,
            step_templates=TRAINING_STEP_TEMPLATES,
        )
    return as_examples(records)


def composed_easy_examples(data_dir: Path, count: int, seed: int = 0) -> list[DecompositionExample]:
    """`count` training compositions from the easy tier's sources (`EASY_MIX`: ARC-Easy,
    PubMedQA with its abstract, ASDiv), 3/4 of 2 parallel parts, the rest of 3.

    A decomposer that never saw a part made of a passage and its question cuts the passage into
    sentences, each a sub-query of its own; here such a part is one gold sub-query. Only
    train-split items (PubMedQA's non-test ids), joined by the training templates: the easy
    tier's benchmark files hold none of them.

    Raises:
        ValueError: the train split holds too few items.
    """
    pools: dict[str, list[Item]] = {}
    for source, share in EASY_MIX.items():
        if share.share > 0:
            for item in source_items(data_dir, source, share):
                pools.setdefault(item.domain, []).append(item)
    two = count * 3 // 4
    records = [
        *compose_parallel(pools, 2, two, seed, split="train", templates=TRAINING_TEMPLATES),
        *compose_parallel(pools, 3, count - two, seed, split="train", templates=TRAINING_TEMPLATES),
    ]
    return [replace(example, dataset=COMPOSED_EASY) for example in as_examples(records)]


__all__ = [
    "TRAINING_BRIDGE_TEMPLATES",
    "TRAINING_STEP_TEMPLATES",
    "TRAINING_TEMPLATES",
    "composed_easy_examples",
    "composed_examples",
]
