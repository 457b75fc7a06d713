"""Routing latency per sub-query with 10, 1,000 and 10,000 experts (synthetic centroids).

Measures, side by side in one run:
  * FAISS search alone (IndexFlatIP over L2-normalised centroids, on the calling thread as the
    router runs it), one sub-query at a time;
  * the router without embedding (`route_vectors`: centring, normalising, search, ranking);
  * the router with embedding (`route`: a query's sub-queries embedded in one batch, then routed).

Target: FAISS search <= 1 ms per sub-query at 10,000 experts.

Usage: python -m benchmarks.routing [--embedder minilm|mean-pool:ALIAS|hashing:DIM] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import numpy as np

from compllm_graph.expert_store.embedders import embedder_from_spec
from compllm_graph.expert_store.router import ExpertRouter, search_per_query
from compllm_graph.expert_store.store import normalise

SUB_QUERIES = [
    "What is the molar mass of sulfuric acid?",
    "Which organelle produces most of a cell's ATP?",
    "How many apples are left if Tom eats 3 of his 10 apples?",
    "What are the first-line treatments for hypertension?",
]
TARGET_MS = 1.0


def per_call_ms(func: Callable[[], object], repeats: int) -> float:
    """Median wall time of `func` in milliseconds, after one warm-up call."""
    func()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        func()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def bench(n_experts: int, embedder_spec: str, repeats: int) -> dict[str, float]:
    """Latencies (ms per sub-query) for a router over `n_experts` random centroids."""
    embedder = embedder_from_spec(embedder_spec)
    dim = embedder.embed(SUB_QUERIES[:1]).shape[1]
    rng = np.random.default_rng(0)
    centroids = rng.normal(size=(n_experts, dim)).astype(np.float32)
    names = [f"expert-{i:05d}" for i in range(n_experts)]
    router = ExpertRouter.from_centroids(
        embedder, names, centroids, dict.fromkeys(names, 0.7), center=centroids.mean(axis=0)
    )
    vectors = embedder.embed(SUB_QUERIES)
    one = normalise(vectors[:1])
    n = len(SUB_QUERIES)
    return {
        "experts": n_experts,
        "faiss_search_ms": per_call_ms(lambda: search_per_query(router.index, one, 3), repeats),
        "route_no_embedding_ms": per_call_ms(lambda: router.route_vectors(vectors), repeats) / n,
        "route_with_embedding_ms": per_call_ms(
            lambda: router.route(SUB_QUERIES), max(3, repeats // 20)
        )
        / n,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embedder", default="minilm")
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = [bench(n, args.embedder, args.repeats) for n in (10, 1_000, 10_000)]
    print(
        f"routing latency per sub-query (ms), embedder {args.embedder}, "
        f"{len(SUB_QUERIES)} sub-queries per query"
    )
    print(
        f"{'experts':>8} {'FAISS search':>13} {'route, no embed':>16} {'route + embed':>14} "
        f"{'embed share':>12}"
    )
    for row in rows:
        share = 1 - row["route_no_embedding_ms"] / row["route_with_embedding_ms"]
        print(
            f"{row['experts']:>8,} {row['faiss_search_ms']:>13.4f} "
            f"{row['route_no_embedding_ms']:>16.4f} {row['route_with_embedding_ms']:>14.3f} "
            f"{share:>11.1%}"
        )
    big = rows[-1]["faiss_search_ms"]
    ratio = big / rows[0]["faiss_search_ms"]
    verdict = "meets" if big <= TARGET_MS else "misses"
    print(
        f"FAISS search at 10,000 experts: {big:.4f} ms ({ratio:.1f}x the 10-expert time); "
        f"{verdict} the {TARGET_MS} ms target"
    )
    if args.json:
        print(
            json.dumps(
                {
                    "embedder": args.embedder,
                    "rows": rows,
                    "target_ms": TARGET_MS,
                    "meets_target": big <= TARGET_MS,
                }
            )
        )


if __name__ == "__main__":
    main()
