"""The demo store raw against centred, on the composed benchmarks' own parts.

Builds the demo store's experts from the shipped routing data (`expert_store/demo_data/`) twice,
uncentred and centred, fits each one's thresholds on `demo_data/calibration.jsonl` as
`build-demo` does, and routes every part of P-2, P-3, All-2 and All-3 (gold domain known):
how many go to their gold expert, how many to the base model, and whether the nearest expert
is the gold one. No model runs; MiniLM embeds every text once.

Usage: python -m benchmarks.routing_parts [--data-dir benchmarks/answers/data] [--json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from compllm_graph.expert_store.data import read_labelled, read_texts
from compllm_graph.expert_store.demo import DEMO_DATA, DEMO_EMBEDDER, DEMO_EXPERTS
from compllm_graph.expert_store.embedders import Embedder, embedder_from_spec
from compllm_graph.expert_store.router import ExpertRouter
from compllm_graph.expert_store.store import ExpertStore

FILES = ("p2", "p3", "all2", "all3")


def parts(folder: Path) -> tuple[list[str], list[str]]:
    """Every part's text and gold domain in the composed files."""
    texts, gold = [], []
    for name in FILES:
        for line in (folder / f"{name}.jsonl").read_text(encoding="utf-8").splitlines():
            for part in json.loads(line)["parts"]:
                texts.append(part["question"])
                gold.append(part["domain"])
    return texts, gold


def measure(embedder: Embedder, texts: list[str], gold: list[str]) -> dict[str, Any]:
    """Raw and centred demo stores on the parts."""
    vectors = embedder.embed(texts)
    rows = {name: read_texts(DEMO_DATA / f"{name}.jsonl") for name in DEMO_EXPERTS}
    row_vectors = {name: embedder.embed(t) for name, t in rows.items()}
    labelled = read_labelled(DEMO_DATA / "calibration.jsonl")
    labelled_vectors = embedder.embed([t for t, _ in labelled])
    out: dict[str, Any] = {"parts": len(texts)}
    for center in (False, True):
        with tempfile.TemporaryDirectory() as folder:
            store = ExpertStore.create(Path(folder) / "store", embedder, center=center)
            for name in DEMO_EXPERTS:
                store.add_expert(name, rows[name], embeddings=row_vectors[name])
            router = ExpertRouter(store)
            fit = router.fit_thresholds_vectors(labelled_vectors, [lab for _, lab in labelled])
            routes = router.nearest_routes(vectors)
            nearest = [ranked[0][0] for ranked in router.candidates(vectors)]
            out["centred" if center else "raw"] = {
                "to_gold": round(float(np.mean([r.expert == g for r, g in zip(routes, gold)])), 4),
                "to_base": round(float(np.mean([r.expert is None for r in routes])), 4),
                "nearest_is_gold": round(
                    float(np.mean([n == g for n, g in zip(nearest, gold)])), 4
                ),
                "thresholds": {k: round(v, 3) for k, v in fit.thresholds.items()},
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("benchmarks/answers/data"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    texts, gold = parts(args.data_dir)
    result = measure(embedder_from_spec(DEMO_EMBEDDER), texts, gold)
    for name in ("raw", "centred"):
        row = result[name]
        print(
            f"{name:<8} to gold {row['to_gold']:.1%}, to base {row['to_base']:.1%}, nearest "
            f"gold {row['nearest_is_gold']:.1%}, thresholds {row['thresholds']}"
        )
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
