"""ExpertRouter: nearest centroid, thresholds and fallback to base, k-means, threshold fitting."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("faiss", reason="needs the [router] extra")

import numpy as np

from compllm_graph.expert_store import ExpertRouter, ExpertStore
from compllm_graph.expert_store.store import StoreError, cluster_means
from compllm_graph.types import Route


class TableEmbedder:
    """Embeds known texts as given vectors; counts embed calls."""

    def __init__(self, table: Mapping[str, Any]) -> None:
        self.table = {k: np.asarray(v, dtype=np.float32) for k, v in table.items()}
        self.calls = 0

    @property
    def spec(self) -> str:
        return "hashing:3"  # any valid spec; the store only compares it

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        return np.stack([self.table[t] for t in texts])


TABLE = {
    "c1": [1, 0, 0],
    "c2": [0.9, 0.1, 0],
    "m1": [0, 1, 0],
    "m2": [0.1, 0.9, 0],
    "near-chem": [1, 0.05, 0],
    "between": [1, 1, 0.2],
    "unrelated": [0, 0, 1],
}


@pytest.fixture
def router(tmp_path: Path) -> ExpertRouter:
    embedder = TableEmbedder(TABLE)
    store = ExpertStore.create(tmp_path / "s", embedder)
    store.add_expert("chemistry", ["c1", "c2"])
    store.add_expert("mathematics", ["m1", "m2"], threshold=0.9)
    return ExpertRouter(ExpertStore.open(store.path, embedder=embedder), top_k=2)


def test_routes_to_the_nearest_expert_with_ranked_candidates(router: ExpertRouter) -> None:
    (route,) = router(["near-chem"])
    assert route.expert == "chemistry" and route.score > 0.99
    assert [name for name, _ in route.candidates] == ["chemistry", "mathematics"]
    assert route.candidates[0][1] >= route.candidates[1][1]
    assert isinstance(route, Route)


def test_below_threshold_goes_to_base(router: ExpertRouter) -> None:
    unrelated, between = router(["unrelated", "between"])
    assert unrelated.expert is None and unrelated.score < 0.7
    assert unrelated.candidates  # the near misses are still reported
    assert between.expert is None  # best is 'mathematics' or 'chemistry' but below threshold
    router.thresholds = dict.fromkeys(router.thresholds, -1.0)
    assert router(["unrelated"])[0].expert is not None


def test_per_expert_threshold_override_applies(router: ExpertRouter) -> None:
    assert router.thresholds == {"chemistry": 0.7, "mathematics": 0.9}
    (route,) = router(["m2"])
    assert route.expert == "mathematics"


def test_all_sub_queries_are_embedded_in_one_call(router: ExpertRouter) -> None:
    embedder = router.embedder
    assert isinstance(embedder, TableEmbedder)
    before = embedder.calls
    assert len(router(["c1", "m1", "unrelated", "between"])) == 4
    assert embedder.calls == before + 1
    assert router([]) == []


def test_empty_store_routes_everything_to_base(tmp_path: Path) -> None:
    store = ExpertStore.create(tmp_path / "empty", "hashing:16")
    router = ExpertRouter(store)
    assert router(["anything"]) == [Route(expert=None)]
    assert router.experts == []


def test_kmeans_finds_separate_clusters() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal([5, 0, 0], 0.1, (30, 3))
    b = rng.normal([0, 5, 0], 0.1, (20, 3))
    means, counts = cluster_means(np.concatenate([a, b]).astype(np.float32), 2)
    assert sorted(counts) == [20, 30]
    found = {tuple(np.round(m).astype(int)) for m in means}
    assert found == {(5, 0, 0), (0, 5, 0)}
    single, n = cluster_means(a.astype(np.float32), 1)
    np.testing.assert_allclose(single[0], a.mean(0), rtol=1e-5)
    assert n == (30,)
    with pytest.raises(StoreError, match="centroids must be in"):
        cluster_means(a.astype(np.float32), 0)


def test_several_centroids_let_a_split_domain_match(tmp_path: Path) -> None:
    table = {
        "a1": [1, 0, 0],
        "a2": [1, 0.02, 0],
        "b1": [0, 0, 1],
        "b2": [0.02, 0, 1],
        "probe": [0.05, 0, 1],
    }
    embedder = TableEmbedder(table)
    one = ExpertStore.create(tmp_path / "one", embedder)
    one.add_expert("mixed", ["a1", "a2", "b1", "b2"], centroids=1)
    two = ExpertStore.create(tmp_path / "two", embedder)
    two.add_expert("mixed", ["a1", "a2", "b1", "b2"], centroids=2)
    score_one = ExpertRouter(one, embedder=embedder)(["probe"])[0].score
    score_two = ExpertRouter(two, embedder=embedder)(["probe"])[0].score
    assert score_one < 0.75 < 0.99 < score_two


def test_centring_separates_vectors_that_share_a_common_direction(tmp_path: Path) -> None:
    common = np.array([10, 10, 10, 10], np.float32)
    table = {
        "a": common + np.array([1, 0, 0, 0]),
        "b": common + np.array([0, 1, 0, 0]),
        "q": common + np.array([0.1, 0, 0, 1]),
    }
    embedder = TableEmbedder(table)
    raw = ExpertStore.create(tmp_path / "raw", embedder)
    centred = ExpertStore.create(tmp_path / "centred", embedder, center=True)
    for store in (raw, centred):
        store.add_expert("alpha", ["a"])
        store.add_expert("beta", ["b"])
    assert ExpertRouter(raw, embedder=embedder)(["q"])[0].expert is not None  # cos ~ 0.98
    assert ExpertRouter(centred, embedder=embedder)(["q"])[0].expert is None


def test_fit_thresholds_separates_in_domain_from_out_of_domain(tmp_path: Path) -> None:
    table = {"c": [1, 0, 0], "m": [0, 1, 0]}
    labelled: list[tuple[str, str | None]] = []
    for i, angle in enumerate(np.linspace(0.1, 0.6, 6)):  # cos 0.995 .. 0.825: chemistry
        table[f"in{i}"] = [np.cos(angle), 0, np.sin(angle)]
        labelled.append((f"in{i}", "chemistry"))
    for i, angle in enumerate(np.linspace(0.9, 1.2, 4)):  # cos 0.62 .. 0.36: no expert
        table[f"out{i}"] = [np.cos(angle), 0, np.sin(angle)]
        labelled.append((f"out{i}", None))
    embedder = TableEmbedder(table)
    store = ExpertStore.create(tmp_path / "s", embedder, threshold=0.9)
    store.add_expert("chemistry", ["c"])
    store.add_expert("mathematics", ["m"])
    router = ExpertRouter(store, embedder=embedder)
    fit = router.fit_thresholds(labelled)
    assert fit.error_before == pytest.approx(0.2)  # cos 0.878 and 0.825 are under 0.9
    assert fit.error_after == 0.0
    assert np.cos(0.9) < fit.thresholds["chemistry"] < np.cos(0.6)
    assert fit.thresholds["mathematics"] == 0.9  # no evidence: unchanged
    assert router.routing_error(labelled) == 0.0
    store.set_thresholds(fit.thresholds)
    reopened = ExpertStore.open(store.path, embedder=embedder)
    assert ExpertRouter(reopened).thresholds == pytest.approx(fit.thresholds)
    with pytest.raises(ValueError, match="not experts"):
        router.fit_thresholds([("c", "physics")])
    with pytest.raises(ValueError, match="no labelled texts"):
        router.fit_thresholds([])


def test_fit_thresholds_takes_tied_scores_with_mixed_labels(tmp_path: Path) -> None:
    # The same text labelled both ways (a question asked in two datasets) ties on score.
    embedder = TableEmbedder({"c": [1, 0, 0], "m": [0, 1, 0], "q": [0.8, 0, 0.6]})
    store = ExpertStore.create(tmp_path / "s", embedder)
    store.add_expert("chemistry", ["c"])
    store.add_expert("mathematics", ["m"])
    fit = ExpertRouter(store, embedder=embedder).fit_thresholds([("q", None), ("q", "chemistry")])
    assert fit.error_after == 0.5  # one of the two is wrong whichever way it goes


def test_from_centroids_matches_a_store_router(router: ExpertRouter) -> None:
    centroids = np.array([[0.95, 0.05, 0], [0.05, 0.95, 0]], np.float32)
    direct = ExpertRouter.from_centroids(
        router.embedder, ["chemistry", "mathematics"], centroids, router.thresholds, top_k=2
    )
    for text in TABLE:
        got, want = direct([text])[0], router([text])[0]
        assert got.expert == want.expert and got.score == pytest.approx(want.score, abs=1e-5)


def test_a_voting_store_routes_by_the_nearest_examples_majority(tmp_path: Path) -> None:
    # One chemistry example sits right by the probe, but three biology ones are nearly as near.
    table = {
        "c1": [1, 0, 0],
        "c2": [0, 0, 1],
        "b1": [0.9, 0.3, 0],
        "b2": [0.9, 0.32, 0],
        "b3": [0.9, 0.28, 0],
        "probe": [1, 0.15, 0],
    }
    embedder = TableEmbedder(table)
    nearest = ExpertStore.create(tmp_path / "nearest", embedder, threshold=0.0)
    voting = ExpertStore.create(tmp_path / "voting", embedder, threshold=0.0, vote=3)
    for store in (nearest, voting):
        store.add_expert("chemistry", ["c1", "c2"])
        store.add_expert("biology", ["b1", "b2", "b3"])
    assert voting.vote == 3 and ExpertStore.open(voting.path).vote == 3 and nearest.vote is None
    assert ExpertStore.open(voting.path).expert("biology").counts == (1, 1, 1)  # every example
    assert ExpertRouter(nearest, embedder=embedder)(["probe"])[0].expert == "biology"
    route = ExpertRouter(voting, embedder=embedder)(["probe"])[0]
    assert route.expert == "biology" and route.candidates[0][0] == "biology"
    one_vote = ExpertRouter(voting, embedder=embedder, vote=1)(["probe"])[0]
    assert one_vote.expert == "chemistry"  # the single nearest example decides
    with pytest.raises(StoreError, match="leave centroids at 1"):
        voting.add_expert("physics", ["c1", "c2"], centroids=2)
    with pytest.raises(StoreError, match="vote must be"):
        ExpertStore.create(tmp_path / "bad", embedder, vote=0)
