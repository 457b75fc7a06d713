"""The easy benchmark tier: sources the small bases (135M to 1.5B) can partly answer.

On the first tier (MMLU, GSM8K, MedMCQA, MedQA, PubMedQA without its abstract, ARC) every
monolith sits at its floor, 0 to 12 % of questions right, where no difference between two
systems can be called. This tier is built the same way (`compositions`, test-split items only,
every question that trains an expert, the decomposer or a centroid left out: `trained_texts`)
from easier sources, each given an expert domain:

- `arc-easy`: ARC-Easy (`items.arc_easy_items`: the same ids and splits as the first tier's
  ARC), chemistry or biology by its words (`items.word_domain`).
- `openbookqa`: OpenBookQA, chemistry or biology by the same words.
- `asdiv`: ASDiv word problems (mathematics), mostly one or two steps.
- `gsm8k`: GSM8K test problems (mathematics).
- `pubmedqa-abstract`: PubMedQA with its abstract in the question (medicine), official test
  ids only.
- `medmcqa`: MedMCQA, only the subjects named in the table (medicine).

`EASY_MIX` says how much of each source the tier takes and which MedMCQA subjects: it is to be
set from the monoliths' accuracy on each source's sample (`sample_items`, written as
`easy-sample-SOURCE` files), measured before the tier's benchmark files are built.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from compllm_graph.datasets.compositions import left_out
from compllm_graph.datasets.items import (
    SOURCES,
    Chain,
    Item,
    arc_easy_items,
    asdiv_items,
    asked_question,
    domain_items,
    gsm8k_items,
    medmcqa_items,
    openbookqa_items,
    pubmedqa_abstract_items,
    socratic_chains,
)
from compllm_graph.datasets.splits import item_split


@dataclass(frozen=True)
class Share:
    """How much of one source the easy tier takes.

    Attributes:
        share: The part of the source's usable test items the tier's pools hold, drawn by seed
            (1: all, 0: none; its sample file is written all the same).
        subjects: MedMCQA's subject files (`medmcqa_validation/SUBJECT.jsonl`) the tier reads;
            only for `medmcqa`, which needs at least one.

    Raises:
        ValueError: a share outside 0 to 1.
    """

    share: float = 1.0
    subjects: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.share <= 1:
            raise ValueError(f"a share is between 0 and 1, got {self.share}")


MEDMCQA_SUBJECTS = ("Anatomy", "Biochemistry", "Microbiology", "Pharmacology", "Physiology")
"""MedMCQA's basic-science subjects: the tier's guess at its easier ones until the samples are
measured."""

EASY_MIX: Mapping[str, Share] = {
    "arc-easy": Share(1.0),
    "openbookqa": Share(0.0),
    "asdiv": Share(1.0),
    "gsm8k": Share(0.0),
    "pubmedqa-abstract": Share(1.0),
    "medmcqa": Share(0.0, MEDMCQA_SUBJECTS),
}
"""The tier's sources (keys of `READERS`) and how much of each it takes.

Set from Qwen2.5-Coder-0.5B's accuracy on 24 items of each source's sample (2026-12-06,
docs/results/2026-12-06-easy-tier.md): ARC-Easy 38 %, PubMedQA with its abstract 46 %, ASDiv
17 %, GSM8K 17 %, OpenBookQA 25 %, MedMCQA Pharmacology 13 % (below the 25 % of a guess). The
tier keeps ARC-Easy, PubMedQA and ASDiv (GSM8K still gives the All-k chains); OpenBookQA and
MedMCQA, at or below chance for the 0.5B model, are left out."""

SAMPLE_SUBJECTS = (
    "Anatomy",
    "Biochemistry",
    "Dental",
    "Gynaecology_Obstetrics",
    "Medicine",
    "Microbiology",
    "Pathology",
    "Pediatrics",
    "Pharmacology",
    "Physiology",
    "Social_Preventive_Medicine",
    "Surgery",
)
"""MedMCQA subjects with a sample each (`medmcqa-SUBJECT`): those with 40 or more test items."""

CHAIN_STEPS: Mapping[int, int] = {2: 3, 3: 4}
"""The most socratic steps a GSM8K problem may have to be asked in an All-k file of the tier (by
k): the shortest problems only. A k left out: its All-k file holds bridges only."""

THREE_PART_MAX = 200
"""The most questions of the tier's P-3 and All-3 files: with the default mix its chemistry pool
(ARC-Easy and OpenBookQA, 94 usable test items) runs out near 270 three-part questions."""

READERS: Mapping[str, Callable[[Path, Share], Iterable[Item]]] = {
    "arc-easy": lambda data_dir, _: arc_easy_items(data_dir),
    "openbookqa": lambda data_dir, _: openbookqa_items(data_dir),
    "asdiv": lambda data_dir, _: asdiv_items(data_dir),
    "gsm8k": lambda data_dir, _: gsm8k_items(data_dir),
    "pubmedqa-abstract": lambda data_dir, _: pubmedqa_abstract_items(data_dir),
    "medmcqa": lambda data_dir, share: medmcqa_items(data_dir, share.subjects),
}
"""The tier's sources by name."""


def source_items(data_dir: Path, source: str, share: Share) -> list[Item]:
    """Every item of `source` (a key of `READERS`), both splits.

    Raises:
        ValueError: an unknown source, MedMCQA without subjects, subjects for another source.
    """
    if source not in READERS:
        raise ValueError(f"unknown easy-tier source {source!r}; use one of {sorted(READERS)}")
    if (source == "medmcqa") != bool(share.subjects):
        raise ValueError(f"subjects are for medmcqa only, and it needs some: {source}, {share}")
    return list(READERS[source](data_dir, share))


def trained_texts(data_dir: Path) -> frozenset[str]:
    """The questions the tier may not hold: those that built the demo centroids, and the text
    of every train-split item of the experts' sources (`SOURCES`: experts, the decomposer's
    composed questions and the centroids learn from those) and of the tier's own sources."""
    pools = [domain_items(data_dir, domain) for domain in SOURCES]  # every MedMCQA subject too
    pools += [source_items(data_dir, s, Share()) for s in READERS if s != "medmcqa"]
    return left_out(None, "test", pools)


def usable(items: Iterable[Item], excluded: Collection[str]) -> list[Item]:
    """The test-split items whose question is not `excluded`, in their order.

    A question asked after a passage ("Abstract: ... Question: Q") is checked alone too, so a
    question that trained something is not let in by the abstract written before it.
    """
    return [
        i
        for i in items
        if i.in_split == "test"
        and i.question not in excluded
        and asked_question(i.question) not in excluded
    ]


def tier_pools(
    data_dir: Path, mix: Mapping[str, Share], seed: int, excluded: Collection[str]
) -> dict[str, list[Item]]:
    """Domain -> the tier's items: each source's usable test items, cut to its share by seed.

    Raises:
        ValueError: a bad mix (see `source_items`).
    """
    pools: dict[str, list[Item]] = {}
    for source, share in mix.items():
        items = usable(source_items(data_dir, source, share), excluded)
        rng = random.Random(f"easy-{source}-{seed}")
        kept = sorted(rng.sample(range(len(items)), round(share.share * len(items))))
        for index in kept:
            pools.setdefault(items[index].domain, []).append(items[index])
    return dict(sorted(pools.items()))


def short_chains(data_dir: Path, parts: int) -> list[Chain]:
    """The test-split GSM8K socratic problems of `parts` to `CHAIN_STEPS[parts]` steps; none
    when `CHAIN_STEPS` leaves `parts` out."""
    most = CHAIN_STEPS.get(parts)
    if most is None:
        return []
    return [
        chain
        for chain in socratic_chains(data_dir)
        if item_split(chain.id) == "test" and parts <= len(chain.steps) <= most
    ]


def sample_items(
    data_dir: Path, count: int, seed: int, excluded: Collection[str]
) -> dict[str, list[Item]]:
    """Up to `count` usable test items of every source of `READERS` but `medmcqa`, whatever its
    share, and of every MedMCQA subject of `SAMPLE_SUBJECTS` (as `medmcqa-SUBJECT`), by seed.

    They are for measuring the monoliths on each source before `EASY_MIX` is set.
    """
    sources = {s: Share() for s in READERS if s != "medmcqa"}
    items = {s: source_items(data_dir, s, share) for s, share in sources.items()}
    for subject in SAMPLE_SUBJECTS:
        items[f"medmcqa-{subject}"] = source_items(data_dir, "medmcqa", Share(1, (subject,)))
    samples = {}
    for name, source in items.items():
        pool = usable(source, excluded)
        samples[name] = random.Random(f"sample-{name}-{seed}").sample(pool, min(count, len(pool)))
    return samples


__all__ = [
    "CHAIN_STEPS",
    "EASY_MIX",
    "MEDMCQA_SUBJECTS",
    "READERS",
    "SAMPLE_SUBJECTS",
    "THREE_PART_MAX",
    "Share",
    "sample_items",
    "short_chains",
    "source_items",
    "tier_pools",
    "trained_texts",
    "usable",
]
