"""The demo store's routing data: centroid and calibration questions from the train split.

Each expert's centroid is built from questions of the sources its adapter learned from (MMLU,
ARC, GSM8K, MedQA, PubMedQA; not MedMCQA, see `NOT_SHIPPED`), written as a model reads them,
options included, since decomposed parts keep their options. Over the 3,000 parts of the
composed benchmarks, centroids of MMLU questions alone routed 78.0 % right and sent 14.9 % to
the base model; these route 83.3 % right and send 9.0 % to base (README, "Answer quality").
Calibration adds further train-split questions of each expert and out-of-domain MMLU test
questions (subjects no expert covers, and no benchmark uses) that belong to no expert.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from compllm_graph.datasets.items import (
    SOURCES,
    Item,
    as_text,
    domain_items,
    mmlu_subject_items,
    round_robin,
)
from compllm_graph.training.expert_data import source_pools

CENTROID_TEXTS = 240
"""Questions per expert for its centroid (240 routed the benchmark's parts better than 480)."""
CALIBRATION_TEXTS = 50
"""Further questions per expert for fitting its threshold."""
OUT_OF_DOMAIN_TEXTS = 200
OUT_OF_DOMAIN_SUBJECTS = (
    "high_school_geography",
    "high_school_macroeconomics",
    "high_school_us_history",
    "high_school_world_history",
    "international_law",
    "jurisprudence",
    "management",
    "marketing",
    "philosophy",
    "prehistory",
    "professional_law",
    "sociology",
    "us_foreign_policy",
    "world_religions",
)
"""MMLU subjects outside every expert's domain, for the texts that belong to no expert."""
NOT_SHIPPED = ("medmcqa",)
"""Sources whose text the shipped files leave out: MedMCQA's licence is not stated as allowing
redistribution, and these files hold question text (the adapters hold only weights)."""


def routing_records(data_dir: Path) -> dict[str, list[dict[str, str | None]]]:
    """The demo store's data files, by file stem: one per expert, and `calibration`.

    Each expert's train-split items are shuffled per source (seeded by the expert's name) and
    taken round-robin over its sources: the first `CENTROID_TEXTS` build the centroid, the next
    `CALIBRATION_TEXTS` go to calibration. Deterministic: the same data gives the same files.

    Returns:
        Records `{"text", "source"}` per expert file; calibration records also have `expert`
        (None for out-of-domain questions).
    """
    files: dict[str, list[dict[str, str | None]]] = {}
    calibration: list[dict[str, str | None]] = []
    for domain in sorted(SOURCES):
        chosen = _sample(domain_items(data_dir, domain), CENTROID_TEXTS + CALIBRATION_TEXTS, domain)
        files[domain] = [_record(item) for item in chosen[:CENTROID_TEXTS]]
        calibration += [{**_record(item), "expert": domain} for item in chosen[CENTROID_TEXTS:]]
    outside = [i for s in OUT_OF_DOMAIN_SUBJECTS for i in mmlu_subject_items(data_dir, s, "")]
    rng = random.Random("demo-out-of-domain")
    calibration += [
        {**_record(item), "expert": None} for item in rng.sample(outside, OUT_OF_DOMAIN_TEXTS)
    ]
    files["calibration"] = calibration
    return files


def write_routing_data(data_dir: Path, out: Path) -> dict[str, int]:
    """Write `routing_records` as `out/NAME.jsonl`; returns the records per file."""
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name, records in routing_records(data_dir).items():
        lines = [json.dumps(r, ensure_ascii=False) for r in records]
        (out / f"{name}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        counts[name] = len(records)
    return counts


def _sample(items: list[Item], limit: int, domain: str) -> list[Item]:
    shippable = [
        i for i in items if i.in_split == "train" and i.id.split("/")[0] not in NOT_SHIPPED
    ]
    return round_robin(source_pools(shippable, random.Random(f"demo-{domain}")), limit)


def _record(item: Item) -> dict[str, str | None]:
    return {"text": as_text(item), "source": item.id.rsplit("/", 1)[0]}


__all__ = [
    "CALIBRATION_TEXTS",
    "CENTROID_TEXTS",
    "NOT_SHIPPED",
    "OUT_OF_DOMAIN_SUBJECTS",
    "routing_records",
    "write_routing_data",
]
