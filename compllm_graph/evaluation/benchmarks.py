"""Writing the benchmark files: MultiExpertQA-P and -All with 2 and 3 parts, and one
single-domain file per expert domain (its held-out items, for the single-domain table)."""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from compllm_graph.datasets.compositions import (
    benchmark_items,
    compose_dependent,
    compose_parallel,
    left_out,
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


def build_benchmarks(
    data_dir: Path, count: int, single_count: int, seed: int = 0
) -> dict[str, list[dict[str, Any]]]:
    """Every benchmark by file stem: `p2`, `p3`, `all2`, `all3` and `single-DOMAIN`.

    Raises:
        ValueError: the test split holds too few items for `count` questions.
    """
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
    return [
        {
            "id": f"single-{domain}-{seed}-{number}",
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
        for number, item in enumerate(chosen)
    ]


def write_benchmarks(
    data_dir: Path, out: Path, count: int, single_count: int, seed: int = 0
) -> dict[Path, list[dict[str, Any]]]:
    """Build every benchmark and write it to `out/STEM.jsonl`; returns what was written."""
    written = {}
    for stem, records in build_benchmarks(data_dir, count, single_count, seed).items():
        path = out / f"{stem}.jsonl"
        write_jsonl(records, path)
        written[path] = records
    return written


__all__ = [
    "COMPOSED",
    "build_benchmarks",
    "single_domain",
    "write_benchmarks",
]
