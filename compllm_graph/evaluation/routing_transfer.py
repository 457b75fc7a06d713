"""Routing across sources: centroids from one benchmark, questions from others.

A router must generalise past the data that built it. The experts' rows come from MMLU's
subjects (train split); the questions routed come from sources no row has seen (test split):
ARC for chemistry and biology, GSM8K for mathematics, MedQA and MedMCQA for medicine. Each
method is scored on the same embeddings, with thresholds out of the way (every question has an
expert), so the error is misrouting between experts only.

Every method runs raw and centred: centring subtracts the mean of all rows from rows and
questions, as a store created with `center=True` does (`index.write_index`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compllm_graph.datasets.items import Item, domain_items
from compllm_graph.evaluation.stats import bootstrap_interval, paired_difference
from compllm_graph.expert_store.embedders import Embedder
from compllm_graph.expert_store.index import cluster_means
from compllm_graph.expert_store.router import ExpertRouter
from compllm_graph.types import Route

ROW_SOURCE = "mmlu"
CENTRED = ", centred"
METHODS: Mapping[str, tuple[str, int, bool]] = {
    f"{name}{CENTRED if center else ''}": (kind, size, center)
    for name, kind, size in (
        ("1 centroid", "centroids", 1),
        ("4 centroids", "centroids", 4),
        ("vote of 5 nearest", "vote", 5),
        ("vote of 20 nearest", "vote", 20),
    )
    for center in (False, True)
}
"""Method name -> (kind, centroids per expert or nearest examples that vote, centred). The
first, one raw centroid per expert, was the store's default before this measurement."""


@dataclass(frozen=True)
class TransferData:
    """Row texts per expert (MMLU, train split) and routed questions (other sources, test)."""

    rows: dict[str, list[str]]
    questions: list[tuple[str, str, str]]
    """(text, gold expert, source) for every routed question."""


def transfer_data(
    data_dir: Path,
    per_expert: int = 300,
    per_source: int = 150,
    seed: int = 0,
    sources: Collection[str] | None = None,
) -> TransferData:
    """Seeded samples: up to `per_expert` rows per domain, `per_source` questions per source
    (of `sources` only, when given: `arc`, `gsm8k`, `medmcqa`, `medqa`).

    Raises:
        ValueError: `sources` names a source no question comes from.
    """
    known = {"arc", "gsm8k", "medmcqa", "medqa"}
    if sources is not None and (not sources or set(sources) - known):
        raise ValueError(f"sources are some of {sorted(known)}, got {sorted(sources)}")
    rng = random.Random(f"routing-transfer-{seed}")
    rows: dict[str, list[str]] = {}
    questions: list[tuple[str, str, str]] = []
    for domain in ("biology", "chemistry", "mathematics", "medicine"):
        items = domain_items(data_dir, domain)
        own = [i.question for i in items if _source(i) == ROW_SOURCE and i.in_split == "train"]
        rows[domain] = rng.sample(own, min(per_expert, len(own)))
        by_source: dict[str, list[Item]] = {}
        for item in items:
            if _source(item) != ROW_SOURCE and item.in_split == "test":
                by_source.setdefault(_source(item), []).append(item)
        for source, found in sorted(by_source.items()):
            if source == "pubmedqa" or (sources is not None and source not in sources):
                continue  # PubMedQA's titles read as research questions of any field
            chosen = rng.sample(found, min(per_source, len(found)))
            questions.extend((i.question, domain, source) for i in chosen)
    return TransferData(rows, questions)


def _source(item: Item) -> str:
    return item.id.split("/")[0]


def transfer_errors(data: TransferData, embedder: Embedder) -> dict[str, Any]:
    """Routing error of every method in `METHODS`, overall and per question source."""
    names = sorted(data.rows)
    row_vectors = {n: np.asarray(embedder.embed(data.rows[n]), np.float32) for n in names}
    vectors = np.asarray(embedder.embed([q for q, _, _ in data.questions]), np.float32)
    gold = [g for _, g, _ in data.questions]
    sources = [s for _, _, s in data.questions]
    results: dict[str, Any] = {}
    baseline: list[bool] | None = None
    for method, (kind, size, center) in METHODS.items():
        router = method_router(embedder, row_vectors, kind, size, center)
        routed = [r.expert for r in router.route_vectors(vectors)]
        wrong = [r != g for r, g in zip(routed, gold)]
        baseline = wrong if baseline is None else baseline
        results[method] = {
            "error": round(float(np.mean(wrong)), 4),
            "error_ci95": bootstrap_interval(wrong),
            "minus_first_method": paired_difference(wrong, baseline),
            "by_source": {
                s: round(float(np.mean([w for w, src in zip(wrong, sources) if src == s])), 4)
                for s in sorted(set(sources))
            },
        }
    return {
        "n": len(gold),
        "rows_per_expert": {n: len(data.rows[n]) for n in names},
        "questions_per_source": {s: sources.count(s) for s in sorted(set(sources))},
        "methods": results,
    }


def method_router(
    embedder: Embedder,
    row_vectors: Mapping[str, np.ndarray],
    kind: str,
    size: int,
    center: bool = False,
) -> ExpertRouter:
    """A router over `row_vectors` (expert -> its rows' embeddings) as one of `METHODS` builds
    it, with thresholds out of the way (every text goes to some expert).

    Args:
        embedder: Embeds the texts to route.
        row_vectors: Each expert's row embeddings.
        kind: `centroids` (k-means means of each expert's rows) or `vote` (every row kept).
        size: Centroids per expert, or nearest rows that vote.
        center: Subtract the mean of all rows, as a centred store does.
    """
    names: list[str] = []
    parts: list[np.ndarray] = []
    for name, vectors in sorted(row_vectors.items()):
        rows = vectors if kind == "vote" else cluster_means(vectors, size)[0]
        names.extend([name] * len(rows))
        parts.append(rows)
    thresholds = dict.fromkeys(row_vectors, -1.0)  # every question goes to some expert
    vote = size if kind == "vote" else None
    mean = np.concatenate(list(row_vectors.values())).mean(axis=0) if center else None
    return ExpertRouter.from_centroids(
        embedder, names, np.concatenate(parts), thresholds, center=mean, vote=vote
    )


def sample_questions(
    data: TransferData, size: int = 100, seed: int = 0
) -> list[tuple[str, str, str]]:
    """A seeded sample of `data`'s questions, for a router that costs a model call each."""
    rng = random.Random(f"routing-transfer-sample-{seed}")
    return rng.sample(data.questions, min(size, len(data.questions)))


def router_errors(
    router: Callable[[list[str]], Sequence[Route]], questions: Sequence[tuple[str, str, str]]
) -> dict[str, Any]:
    """Error and seconds of any router (an LLM's, say) on `questions`: a route to base or to
    another expert than the gold one is wrong."""
    started = time.perf_counter()
    routes = router([q for q, _, _ in questions])
    seconds = time.perf_counter() - started
    wrong = [r.expert != gold for r, (_, gold, _) in zip(routes, questions)]
    sources = [s for _, _, s in questions]
    return {
        "n": len(questions),
        "error": round(float(np.mean(wrong)), 4),
        "error_ci95": bootstrap_interval(wrong),
        "to_base": round(float(np.mean([r.expert is None for r in routes])), 4),
        "seconds_per_question": round(seconds / max(len(questions), 1), 4),
        "by_source": {
            s: round(float(np.mean([w for w, src in zip(wrong, sources) if src == s])), 4)
            for s in sorted(set(sources))
        },
        "wrong": wrong,
    }


def transfer_table(result: Mapping[str, Any]) -> str:
    """The errors as a Markdown table, one row per method, one column per source."""
    sources = list(result["questions_per_source"])
    head = " | ".join(f"{s} (n={result['questions_per_source'][s]})" for s in sources)
    first = next(iter(result["methods"]))
    lines = [
        f"| method | all (n={result['n']}) | minus {first} | {head} |",
        "|---" * (len(sources) + 3) + "|",
    ]
    for method, row in result["methods"].items():
        cells = " | ".join(f"{row['by_source'][s]:.1%}" for s in sources)
        low, high = row["error_ci95"]
        diff = row["minus_first_method"]
        change = f"{diff['difference']:+.1%} [{diff['ci95'][0]:+.1%}, {diff['ci95'][1]:+.1%}]"
        mark = " *" if diff["significant"] else ""
        lines.append(
            f"| {method} | {row['error']:.1%} [{low:.1%}, {high:.1%}] | {change}{mark} | {cells} |"
        )
    return "\n".join(lines)


def best_method(result: Mapping[str, Any]) -> str:
    """The method with the lowest overall error."""
    methods: Sequence[str] = list(result["methods"])
    return min(methods, key=lambda m: result["methods"][m]["error"])


__all__ = [
    "METHODS",
    "TransferData",
    "best_method",
    "method_router",
    "router_errors",
    "sample_questions",
    "transfer_data",
    "transfer_errors",
    "transfer_table",
]
