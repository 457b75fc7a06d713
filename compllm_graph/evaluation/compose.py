"""MultiExpertQA-P: 2 or 3 single-domain parts from different domains joined into one question.

The parts are independent (no edges). Each part keeps its own options in the text, and the
joining template varies, so a decomposer cannot rely on one fixed header. Builds are seeded and
use only items of the test split that built no centroid.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from compllm_graph.evaluation.items import Item, as_text, centroid_texts
from compllm_graph.evaluation.splits import split_of

TEMPLATES: Mapping[int, tuple[str, ...]] = {
    2: (
        "{0} Also, {1}",
        "I have two questions. First: {0} Second: {1}",
        "Please answer both. {0} And then: {1}",
        "Two things: {0} Moreover, {1}",
    ),
    3: (
        "I have three questions. First: {0} Second: {1} Third: {2}",
        "{0} Next, {1} Finally, {2}",
        "Please answer all of these. 1) {0} 2) {1} 3) {2}",
    ),
}


def compose_parallel(
    pools: Mapping[str, Sequence[Item]],
    parts: int,
    count: int,
    seed: int = 0,
    exclude: Collection[str] | None = None,
) -> list[dict[str, Any]]:
    """`count` composed questions of `parts` parts, each part from a different domain.

    Args:
        pools: Domain -> its items; only test-split items are used.
        parts: 2 or 3.
        count: Questions to build; no item is used twice.
        seed: Makes the build reproducible.
        exclude: Questions that built a centroid or trained a model, never used as parts;
            None: the demo store's (`centroid_texts`).

    Returns:
        Records with exactly the benchmark keys: `id`, `question`, `parts`, `edges`.

    Raises:
        ValueError: an unsupported part count, fewer domains than parts, or too few items.
    """
    if parts not in TEMPLATES:
        raise ValueError(f"parts must be one of {sorted(TEMPLATES)}, got {parts}")
    rng = random.Random(seed)
    available: dict[str, list[Item]] = {}
    used = centroid_texts() if exclude is None else frozenset(exclude)
    for domain, items in sorted(pools.items()):
        tested = [i for i in items if split_of(i.id) == "test" and i.question not in used]
        rng.shuffle(tested)
        available[domain] = tested
    if len(available) < parts:
        raise ValueError(f"{parts} parts need {parts} domains, got {sorted(available)}")
    records = []
    for number in range(count):
        left = sorted(d for d, items in available.items() if items)
        if len(left) < parts:
            raise ValueError(f"the pools ran out of items after {number} questions")
        domains = rng.sample(left, parts)
        chosen = [available[d].pop() for d in domains]
        template = rng.choice(TEMPLATES[parts])
        records.append(
            {
                "id": f"p{parts}-{seed}-{number}",
                "question": template.format(*(as_text(item) for item in chosen)),
                "parts": [
                    {
                        "question": as_text(item),
                        "answer": item.answer,
                        "choices": list(item.choices) if item.choices else None,
                        "domain": item.domain,
                    }
                    for item in chosen
                ],
                "edges": [],
            }
        )
    return records


__all__ = ["TEMPLATES", "compose_parallel"]
