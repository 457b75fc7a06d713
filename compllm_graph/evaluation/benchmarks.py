"""Writing the benchmark files: MultiExpertQA-P and -All with 2 and 3 parts, and one
single-domain file per expert domain (its held-out items, for the single-domain table).

Two tiers, built the same way (test-split items only, every question that trains something
left out, seeded), with the same record keys:

- `standard`: `p2`, `p3`, `all2`, `all3`, `single-DOMAIN` from MMLU, GSM8K, MedMCQA, MedQA,
  PubMedQA and ARC. The small bases answer 0 to 12 % of its questions; its files and ids stay
  as they are (the committed answers are to them).
- `easy`: the same files with an `easy-` prefix, from sources the small bases can partly
  answer (`datasets.easy_tier`), and `easy-sample-SOURCE`, one-part samples of each candidate
  source for measuring the monoliths before `easy_tier.EASY_MIX` is set.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, get_args

from compllm_graph.datasets.compositions import (
    benchmark_items,
    compose_dependent,
    compose_parallel,
    left_out,
)
from compllm_graph.datasets.easy_tier import (
    EASY_MIX,
    THREE_PART_MAX,
    Share,
    sample_items,
    short_chains,
    tier_pools,
    trained_texts,
)
from compllm_graph.datasets.items import (
    SOURCES,
    Item,
    as_text,
    domain_items,
    gsm8k_items,
    round_robin,
    socratic_chains,
)
from compllm_graph.datasets.jsonl import write_jsonl

COMPOSED = ("p2", "p3", "all2", "all3")
Tier = Literal["standard", "easy"]
TIERS: tuple[Tier, ...] = get_args(Tier)
TIER_PREFIX: Mapping[str, str] = {"standard": "", "easy": "easy-"}
"""Each tier's file-name (and question-id) prefix."""
SAMPLE_COUNT = 50
"""Questions per `easy-sample-SOURCE` file."""


def build_benchmarks(
    data_dir: Path,
    count: int,
    single_count: int,
    seed: int = 0,
    *,
    tier: Tier = "standard",
    sample_count: int = SAMPLE_COUNT,
) -> dict[str, list[dict[str, Any]]]:
    """Every benchmark of `tier` by file stem.

    Args:
        data_dir: The shared data folder.
        count: Questions per composed file (the easy tier's 3-part files hold at most
            `easy_tier.THREE_PART_MAX`).
        single_count: Questions per single-domain file (at most what the domain holds).
        seed: Makes the build reproducible.
        tier: `standard`: `p2`, `p3`, `all2`, `all3` and `single-DOMAIN`; `easy`: the same
            stems prefixed `easy-`, and `easy-sample-SOURCE` (see `build_easy_benchmarks`).
        sample_count: Questions per sample file of the easy tier.

    Raises:
        ValueError: an unknown tier, or the test split holds too few items for `count`.
    """
    if tier == "easy":
        return build_easy_benchmarks(data_dir, count, single_count, seed, sample_count)
    if tier != "standard":
        raise ValueError(f"unknown benchmark tier {tier!r}; use one of {list(TIERS)}")
    pools = {domain: domain_items(data_dir, domain) for domain in SOURCES}
    maths, chains = list(gsm8k_items(data_dir)), list(socratic_chains(data_dir))
    files = {
        "p2": compose_parallel(pools, 2, count, seed),
        "p3": compose_parallel(pools, 3, count, seed),
        "all2": compose_dependent(maths, chains, 2, count, seed),
        "all3": compose_dependent(maths, chains, 3, count, seed),
    }
    used = left_out(None, "test", pools.values())  # across domains: a text may repeat in two
    for domain, items in pools.items():
        files[f"single-{domain}"] = single_domain(items, domain, single_count, seed, used)
    return files


def single_domain(
    items: Sequence[Item],
    domain: str,
    count: int,
    seed: int = 0,
    exclude: Collection[str] | None = None,
) -> list[dict[str, Any]]:
    """Up to `count` one-part records of `domain`'s test items, drawn from each source in turn.

    `exclude` as in `compose.left_out`.
    """
    rng = random.Random(f"single-{domain}-{seed}")
    tested = benchmark_items(items, left_out(exclude, "test", [items]), rng)
    by_source: dict[str, list[Item]] = {}
    for item in tested:
        by_source.setdefault(item.id.split("/")[0], []).append(item)
    chosen = round_robin(list(by_source.values()), count)
    return one_part_records(chosen, f"single-{domain}-{seed}")


def one_part_records(items: Iterable[Item], prefix: str) -> list[dict[str, Any]]:
    """Each item as a one-part record with id `PREFIX-N` (N from 0, in order)."""
    return [
        {
            "id": f"{prefix}-{number}",
            "question": as_text(item),
            "parts": [
                {
                    "question": as_text(item),
                    "answer": item.answer,
                    "choices": list(item.choices) if item.choices else None,
                    "domain": item.domain,
                }
            ],
            "edges": [],
        }
        for number, item in enumerate(items)
    ]


def build_easy_benchmarks(
    data_dir: Path,
    count: int,
    single_count: int,
    seed: int = 0,
    sample_count: int = SAMPLE_COUNT,
    mix: Mapping[str, Share] = EASY_MIX,
) -> dict[str, list[dict[str, Any]]]:
    """The easy tier's files by stem, every stem and question id prefixed `easy-`.

    `p2`, `p3` and `single-DOMAIN` draw from `mix`'s pools (`easy_tier.tier_pools`). `all2`
    and `all3` are `compose_dependent` on easier material: the bridges' first hop is a word
    problem of the tier's mathematics pool (ASDiv's answers are mostly small, so the element
    asked next is a light, well-known one), and the socratic half takes only GSM8K's shortest
    problems (`easy_tier.short_chains`). 3-part files hold at most `THREE_PART_MAX` questions.
    `sample-SOURCE`: up to `sample_count` one-part questions of each candidate source.

    Raises:
        ValueError: a bad mix, or the pools hold too few items for `count`.
    """
    excluded = trained_texts(data_dir)
    pools = tier_pools(data_dir, mix, seed, excluded)
    maths, three = pools.get("mathematics", []), min(count, THREE_PART_MAX)
    files = {
        "p2": compose_parallel(pools, 2, count, seed, excluded),
        "p3": compose_parallel(pools, 3, three, seed, excluded),
        "all2": compose_dependent(maths, short_chains(data_dir, 2), 2, count, seed, excluded),
        "all3": compose_dependent(maths, short_chains(data_dir, 3), 3, three, seed, excluded),
    }
    for domain, items in pools.items():
        files[f"single-{domain}"] = single_domain(items, domain, single_count, seed, excluded)
    for source, items in sample_items(data_dir, sample_count, seed, excluded).items():
        files[f"sample-{source}"] = one_part_records(items, f"sample-{source}-{seed}")
    prefix = TIER_PREFIX["easy"]
    return {
        f"{prefix}{stem}": [record | {"id": f"{prefix}{record['id']}"} for record in records]
        for stem, records in files.items()
    }


def write_benchmarks(
    data_dir: Path,
    out: Path,
    count: int,
    single_count: int,
    seed: int = 0,
    *,
    tier: Tier = "standard",
    sample_count: int = SAMPLE_COUNT,
) -> dict[Path, list[dict[str, Any]]]:
    """Build every benchmark of `tier` (see `build_benchmarks`) and write it to
    `out/STEM.jsonl`; returns what was written."""
    written = {}
    built = build_benchmarks(
        data_dir, count, single_count, seed, tier=tier, sample_count=sample_count
    )
    for stem, records in built.items():
        path = out / f"{stem}.jsonl"
        write_jsonl(records, path)
        written[path] = records
    return written


__all__ = [
    "COMPOSED",
    "SAMPLE_COUNT",
    "TIERS",
    "TIER_PREFIX",
    "Tier",
    "build_benchmarks",
    "build_easy_benchmarks",
    "one_part_records",
    "single_domain",
    "write_benchmarks",
]
