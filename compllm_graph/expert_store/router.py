"""The router: nearest expert centroid by cosine similarity (FAISS), else the base model; over a
calibrated store, an expert only where its measured gain on the part's domain is positive."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

import faiss
import numpy as np

from compllm_graph.expert_store.calibration import Calibration, GainRule
from compllm_graph.expert_store.embedders import Embedder
from compllm_graph.expert_store.store import ExpertStore, StoreError, normalise
from compllm_graph.types import Route

_MARGIN = 0.02  # how far outside the data a threshold is put when all texts go one way


@dataclass(frozen=True)
class ThresholdFit:
    """The outcome of `ExpertRouter.fit_thresholds`.

    Attributes:
        thresholds: The threshold chosen for every expert.
        error_before: Routing error on the labelled texts with the previous thresholds.
        error_after: Routing error with the chosen thresholds.
        texts: Number of labelled texts.
    """

    thresholds: dict[str, float]
    error_before: float
    error_after: float
    texts: int


class ExpertRouter:
    """Routes sub-queries to the expert with the most similar centroid.

    A sub-query goes to the best-scoring expert when its cosine similarity reaches that
    expert's threshold, otherwise to the base model (`Route.expert` None; `Route.score` is then
    the best expert's score). Callable: `router(texts)` is `router.route(texts)`.

    With `vote` set, the index rows are the experts' examples, not their centroids: the expert
    with most rows among the `vote` nearest wins (ties: the nearer one), scored by its nearest
    row.

    Over a calibrated store (`ExpertStore.calibration`), a route the similarity gives to an
    expert is then weighed by measured gains (`Calibration.choose`): the part's domain is the
    domain of its most similar expert that owns one; of the experts whose gain there passes
    the rule, the one with the largest gain takes the part (on a tie the routed expert keeps
    it, else the cheaper), else the base model; `Route.reason` says which and why. Parts below
    every threshold go to the base model as without calibration. A store without calibration
    routes by similarity alone.

    Args:
        store: The expert store to route over (its index is read once, here).
        top_k: Candidates reported per route.
        embedder: Embedder to use instead of the store's own (same spec).
        vote: Nearest rows that vote; None: the store's setting (`ExpertStore.vote`).
        by_gain: Weigh routes by the store's calibration when it has one; False routes by
            similarity alone.
        gain_rule: The rule that says when a gain counts; None: the calibration's own.
    """

    _embedder: Embedder | None
    _store: ExpertStore | None
    calibration: Calibration | None
    gain_rule: GainRule | None

    def __init__(
        self,
        store: ExpertStore,
        top_k: int = 3,
        embedder: Embedder | None = None,
        vote: int | None = None,
        *,
        by_gain: bool = True,
        gain_rule: GainRule | None = None,
    ):
        index, rows, center = store.load_index()
        thresholds = {e.name: store.threshold(e.name) for e in store.experts()}
        self._setup(embedder, index, rows, center, thresholds, top_k, vote or store.vote)
        self._store = store
        self.calibration = store.calibration if by_gain else None
        self.gain_rule = gain_rule

    @classmethod
    def from_centroids(
        cls,
        embedder: Embedder,
        rows: Sequence[str],
        centroids: np.ndarray,
        thresholds: Mapping[str, float],
        center: np.ndarray | None = None,
        top_k: int = 3,
        vote: int | None = None,
        calibration: Calibration | None = None,
        gain_rule: GainRule | None = None,
    ) -> ExpertRouter:
        """A router over given centroids, without a store (benchmarks, experiments).

        Args:
            embedder: Embeds the texts to route.
            rows: The expert of each centroid row.
            centroids: Raw centroid vectors (or examples, to vote), one row per entry of `rows`.
            thresholds: Threshold of every expert.
            center: Vector subtracted from centroids and queries, or None.
            top_k: Candidates reported per route.
            vote: Nearest rows that vote (see the class); None: the best row wins.
            calibration: Measured gains to weigh routes by (see the class); None: none.
            gain_rule: The rule for `calibration`; None: its own.
        """
        vectors = centroids if center is None else centroids - center
        index = faiss.IndexFlatIP(centroids.shape[1])
        index.add(normalise(vectors))
        router = cls.__new__(cls)
        router._setup(embedder, index, list(rows), center, dict(thresholds), top_k, vote)
        router._store = None
        router.calibration = calibration
        router.gain_rule = gain_rule
        return router

    @property
    def embedder(self) -> Embedder:
        """The embedder for texts: the one given, else the store's (built on first use)."""
        if self._embedder is None:
            assert self._store is not None, "from_centroids always sets an embedder"
            self._embedder = self._store.embedder
        return self._embedder

    def _setup(
        self,
        embedder: Embedder | None,
        index: faiss.Index,
        rows: list[str],
        center: np.ndarray | None,
        thresholds: dict[str, float],
        top_k: int,
        vote: int | None = None,
    ) -> None:
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        if vote is not None and vote < 1:
            raise ValueError(f"vote must be >= 1 nearest rows, or None, got {vote}")
        self._embedder = embedder
        self.index = index
        self.experts = sorted(set(rows))
        missing = set(self.experts) - set(thresholds)
        if missing:
            raise StoreError(f"no threshold for experts {sorted(missing)}")
        self.thresholds = {name: float(thresholds[name]) for name in self.experts}
        self.center = None if center is None else np.asarray(center, dtype=np.float32)
        self.top_k = top_k
        self._row_expert = np.array(rows, dtype=object)
        most = max(Counter(rows).values(), default=1)
        self.vote = vote
        self._search_k = min(len(rows), vote if vote else top_k * most)

    def __call__(self, texts: list[str]) -> list[Route]:
        """Same as `route`."""
        return self.route(texts)

    def route(self, texts: Sequence[str]) -> list[Route]:
        """Route each text (one batched embedding call for all of them)."""
        if not texts:
            return []
        if not self.experts:
            return [Route(expert=None) for _ in texts]
        return self.route_vectors(self.embedder.embed(list(texts)))

    def route_vectors(self, vectors: np.ndarray) -> list[Route]:
        """Route already embedded texts (raw embedder output, one row per text): by similarity
        (`nearest_routes`), then, over a calibrated store, by measured gains."""
        routes = self.nearest_routes(vectors)
        if self.calibration is None:
            return routes
        return [self._by_gain(route) for route in routes]

    def nearest_routes(self, vectors: np.ndarray) -> list[Route]:
        """Route by similarity alone: the best expert when it reaches its threshold, else base.

        What routing error measures (`error_vectors`) and thresholds are fitted on.
        """
        candidates = self.candidates(vectors)
        routes = []
        for ranked in candidates:
            best, score = ranked[0]
            chosen = best if score >= self.thresholds[best] else None
            routes.append(Route(expert=chosen, score=score, candidates=ranked))
        return routes

    def _by_gain(self, route: Route) -> Route:
        """`route` weighed by the calibration; a route to base stays one."""
        if route.expert is None or self.calibration is None:
            return route
        ranked = [name for name, _ in route.candidates]
        choice = self.calibration.choose(route.expert, ranked, self.gain_rule)
        scores = dict(route.candidates)
        return replace(
            route,
            expert=choice.expert,
            score=scores.get(choice.expert, route.score) if choice.expert else route.score,
            reason=choice.reason,
        )

    def candidates(self, vectors: np.ndarray) -> list[list[tuple[str, float]]]:
        """The `top_k` best experts with their scores (best centroid each), best first."""
        query = np.asarray(vectors, dtype=np.float32)
        if self.center is not None:
            query = query - self.center
        scores, ids = search_per_query(self.index, normalise(query), self._search_k)
        ranked_all = []
        for row_scores, row_ids in zip(scores, ids):
            best: dict[str, float] = {}
            votes: Counter[str] = Counter()
            for score, idx in zip(row_scores, row_ids):
                if idx >= 0:
                    name = self._row_expert[idx]
                    votes[name] += 1
                    best.setdefault(name, float(score))
            order = sorted(best, key=lambda n: (-votes[n], -best[n])) if self.vote else list(best)
            ranked_all.append([(name, best[name]) for name in order[: self.top_k]])
        return ranked_all

    def routing_error(self, labelled: Iterable[tuple[str, str | None]]) -> float:
        """Fraction of labelled texts (label None: base) that are routed wrongly."""
        texts, labels = self._split(labelled)
        return self.error_vectors(self.embedder.embed(texts), labels)

    def fit_thresholds(self, labelled: Iterable[tuple[str, str | None]]) -> ThresholdFit:
        """Choose each expert's threshold to minimise routing error on labelled texts.

        A text whose best expert is E goes to E when its score reaches E's threshold, else to
        base; so each threshold is fitted on the texts E wins, independently. Among equally
        good thresholds the one nearest the current threshold is kept. The router uses the
        fitted thresholds afterwards; `ExpertStore.set_thresholds` persists them.

        Args:
            labelled: (text, expert name or None for texts that belong to no expert).

        Raises:
            ValueError: no texts, or a label that is not an expert of this router.
        """
        texts, labels = self._split(labelled)
        return self.fit_thresholds_vectors(self.embedder.embed(texts), labels)

    def fit_thresholds_vectors(
        self, vectors: np.ndarray, labels: Sequence[str | None]
    ) -> ThresholdFit:
        """`fit_thresholds` on already embedded texts (raw embedder output, one row per label)."""
        labels = list(labels)
        before = self.error_vectors(vectors, labels)
        best = [ranked[0] for ranked in self.candidates(vectors)]
        for name in self.experts:
            won = [(score, label) for (top, score), label in zip(best, labels) if top == name]
            if won:
                self.thresholds[name] = _best_threshold(won, name, self.thresholds[name])
        return ThresholdFit(
            dict(self.thresholds), before, self.error_vectors(vectors, labels), len(labels)
        )

    def error_vectors(self, vectors: np.ndarray, labels: Sequence[str | None]) -> float:
        """Routing error of already embedded texts against their labels (None: base), by
        similarity alone (`nearest_routes`): gains send parts elsewhere on purpose."""
        routes = self.nearest_routes(vectors)
        return float(np.mean([r.expert != label for r, label in zip(routes, labels)]))

    def _split(
        self, labelled: Iterable[tuple[str, str | None]]
    ) -> tuple[list[str], list[str | None]]:
        pairs = list(labelled)
        if not pairs:
            raise ValueError("no labelled texts given")
        unknown = sorted({str(lab) for _, lab in pairs if lab is not None} - set(self.experts))
        if unknown:
            raise ValueError(f"labels {unknown} are not experts of this router ({self.experts})")
        if not self.experts:
            raise ValueError("the router has no experts")
        return [t for t, _ in pairs], [lab for _, lab in pairs]


def search_per_query(
    index: faiss.Index, queries: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """`index.search`, one query at a time, on the calling thread only.

    Routing searches a handful of queries: microseconds of work each. OpenMP's thread team costs
    far more, and on a busy CPU it waits for descheduled threads; and FAISS's multi-query path is
    slower than separate single-query searches at this size. Measured on 2 shared cores at
    10,000 experts: 30-60 ms with threads vs 0.55 ms without, and 4 queries in 8-9 ms batched vs
    2.4-4.2 ms one by one. The OpenMP setting is per thread, so other threads keep theirs.
    """
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        found = [index.search(queries[i : i + 1], k) for i in range(len(queries))]
    finally:
        faiss.omp_set_num_threads(previous)
    if not found:
        return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
    return np.concatenate([f[0] for f in found]), np.concatenate([f[1] for f in found])


def _best_threshold(won: list[tuple[float, str | None]], name: str, current: float) -> float:
    """The threshold minimising errors on the texts expert `name` scores best on.

    At threshold t a text goes to `name` if its score >= t (wrong unless labelled `name`), else
    to base (wrong unless labelled None).
    """
    won.sort(key=lambda pair: pair[0])  # by score only: tied scores may carry None and a name
    scores = np.array([s for s, _ in won])
    own = np.array([lab == name for _, lab in won])
    base = np.array([lab is None for _, lab in won])
    # Candidate cut i: the first i texts go to base, the rest to the expert.
    to_base_ok = np.concatenate([[0], np.cumsum(base)])
    to_expert_ok = np.concatenate([np.cumsum(own[::-1])[::-1], [0]])
    errors = len(won) - to_base_ok - to_expert_ok
    edges = np.concatenate([[-np.inf], scores, [np.inf]])
    errors = np.where(edges[:-1] < edges[1:], errors, np.inf)  # tied scores cannot be split
    options = []
    for cut in np.flatnonzero(errors == errors.min()):
        low, high = edges[cut], edges[cut + 1]  # any t in (low, high] makes this cut
        if low < current <= high:
            return current
        if np.isinf(low):
            options.append(high - _MARGIN)
        elif np.isinf(high):
            options.append(low + _MARGIN)
        else:
            options.append((low + high) / 2)
    chosen = min(options, key=lambda t: abs(t - current))
    return float(np.clip(chosen, -1.0, 1.0))


__all__ = ["ExpertRouter", "ThresholdFit", "search_per_query"]
