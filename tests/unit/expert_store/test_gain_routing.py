"""Routing by measured gain: calibrations stored and read back, the rule the router applies, the
measurement on fake models, and stores without calibration routing as before."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("faiss", reason="needs the [router] extra")

import numpy as np
from langchain_core.messages import BaseMessage

from compllm_graph.cli import build_parser, main
from compllm_graph.expert_store import CorruptStoreError, ExpertRouter, ExpertStore, StoreError
from compllm_graph.expert_store.calibration import (
    Calibration,
    DomainResult,
    ExpertResult,
    GainRule,
    Question,
    measure,
    report_lines,
)
from compllm_graph.types import BASE, Route
from tests.fakes import FakeChat

CODER = "qwen2.5-coder-1.5b-instruct"
TABLE = {
    "c1": [1, 0, 0],
    "c2": [0.9, 0.1, 0],
    "m1": [0, 1, 0],
    "m2": [0.1, 0.9, 0],
    "k1": [0, 0, 1],
    "near-chem": [1, 0.05, 0],
    "near-math": [0.05, 1, 0],
    "near-code": [0, 0.1, 1],
}


class TableEmbedder:
    """Embeds known texts as given vectors."""

    def __init__(self, table: Mapping[str, Any]) -> None:
        self.table = {k: np.asarray(v, dtype=np.float32) for k, v in table.items()}

    @property
    def spec(self) -> str:
        return "hashing:3"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self.table[t] for t in texts])


def result(right: int, only_expert: int, only_base: int) -> ExpertResult:
    return ExpertResult(right, only_expert, only_base)


def calibration(
    chemistry_coder: ExpertResult | None = None, mathematics_coder: ExpertResult | None = None
) -> Calibration:
    """Chemistry's expert loses to the base (12 vs 15 of 30); mathematics' gains (15 vs 5); the
    costlier coder gains on both unless `chemistry_coder` says otherwise, on mathematics as
    much as its own expert unless `mathematics_coder` says otherwise."""
    return Calibration(
        model="smollm2-135m-instruct",
        domains={
            "chemistry": DomainResult(
                30,
                15,
                {
                    "chemistry": result(12, 2, 5),
                    "mathematics": result(14, 1, 2),
                    "coder": chemistry_coder or result(20, 8, 3),
                },
            ),
            "mathematics": DomainResult(
                30,
                5,
                {
                    "chemistry": result(5, 0, 0),
                    "mathematics": result(15, 10, 0),
                    "coder": mathematics_coder or result(15, 12, 2),
                },
            ),
        },
        owners={"chemistry": "chemistry", "mathematics": "mathematics"},
        seconds_per_call={BASE: 0.4, "chemistry": 0.4, "mathematics": 0.5, "coder": 2.5},
        items="test",
        created="2026-12-06",
    )


@pytest.fixture
def store(tmp_path: Path) -> ExpertStore:
    embedder = TableEmbedder(TABLE)
    made = ExpertStore.create(tmp_path / "s", embedder, threshold=0.5)
    made.add_expert("chemistry", ["c1", "c2"])
    made.add_expert("mathematics", ["m1", "m2"])
    made.add_expert("coder", ["k1"], kind="model", model=CODER)
    return ExpertStore.open(made.path, embedder=embedder)


def routes(store: ExpertStore, texts: list[str], **options: Any) -> list[Route]:
    return ExpertRouter(store, top_k=3, **options).route(texts)


def test_a_calibration_is_stored_and_read_back(store: ExpertStore) -> None:
    assert store.calibration is None
    store.set_calibration(calibration())
    reopened = ExpertStore.open(store.path, embedder=store.embedder)
    assert reopened.calibration == calibration()
    assert Calibration.from_dict(json.loads(json.dumps(calibration().to_dict()))) == calibration()
    store.set_calibration(None)
    assert ExpertStore.open(store.path, embedder=store.embedder).calibration is None


def test_a_calibration_of_unknown_experts_or_bad_counts_is_refused(store: ExpertStore) -> None:
    unknown = Calibration("m", {"chemistry": DomainResult(30, 1, {"physics": result(1, 0, 0)})}, {})
    with pytest.raises(StoreError, match="physics"):
        store.set_calibration(unknown)
    inconsistent = Calibration(
        "m", {"chemistry": DomainResult(30, 15, {"chemistry": result(12, 9, 5)})}, {}
    )
    with pytest.raises(CorruptStoreError, match="paired counts"):
        store.set_calibration(inconsistent)
    assert store.calibration is None


def test_a_damaged_calibration_in_store_json_is_refused_on_open(store: ExpertStore) -> None:
    store.set_calibration(calibration())
    manifest_path = store.path / "store.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest["calibration"]["domains"]["chemistry"]["base_right"]
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(CorruptStoreError, match="calibration"):
        ExpertStore.open(store.path)


def test_removing_an_expert_removes_its_gains(store: ExpertStore) -> None:
    store.set_calibration(calibration())
    store.remove_expert("coder")
    kept = ExpertStore.open(store.path, embedder=store.embedder).calibration
    assert kept is not None
    assert all("coder" not in d.experts for d in kept.domains.values())
    assert "coder" not in kept.seconds_per_call and kept.result("mathematics", "mathematics")


def test_an_expert_with_a_positive_gain_keeps_its_parts_against_one_no_better(
    store: ExpertStore,
) -> None:
    store.set_calibration(calibration())
    (route,) = routes(store, ["near-math"])
    assert route.expert == "mathematics"  # the coder gains as much: a tie stays where routed
    assert route.reason and "+33.3%" in route.reason and "mathematics" in route.reason
    assert "coder" not in route.reason
    assert route.fallback_reason is None


def test_the_largest_gain_takes_the_part_and_a_tie_among_others_goes_to_the_cheaper() -> None:
    found = calibration(mathematics_coder=result(16, 12, 1))
    assert found.choose("mathematics", ["mathematics"]).expert == "coder"  # +36.7 vs +33.3
    # chemistry's own expert loses; mathematics and the coder both gain +16.7 there
    tied = calibration(chemistry_coder=result(20, 8, 3))
    tied.domains["chemistry"].experts["mathematics"] = result(20, 6, 1)
    choice = tied.choose("chemistry", ["chemistry"])
    assert choice.expert == "mathematics"  # 0.5 s a call against the coder's 2.5 s
    assert "at 0.50 s a call" in choice.reason


def test_a_costlier_candidate_takes_the_parts_only_it_is_measured_right_on(
    store: ExpertStore,
) -> None:
    store.set_calibration(calibration())
    (route,) = routes(store, ["near-chem"])
    assert route.expert == "coder"
    assert route.reason is not None
    assert "chemistry -10.0%" in route.reason and "coder +16.7%" in route.reason
    assert "2.50 s a call" in route.reason


def test_where_no_expert_beats_the_base_model_the_base_answers(store: ExpertStore) -> None:
    store.set_calibration(calibration(chemistry_coder=result(15, 0, 0)))
    (route,) = routes(store, ["near-chem"])
    assert route.expert is None and route.fallback_reason is None
    assert (
        route.reason is not None and "no expert beats the base model on chemistry" in route.reason
    )
    assert route.candidates[0][0] == "chemistry"  # what the similarity said is kept


def test_the_domain_is_the_most_similar_owner_s(store: ExpertStore) -> None:
    store.set_calibration(calibration())
    (route,) = routes(store, ["near-code"])  # nearest is the coder, which owns no domain
    ranked = [name for name, _ in route.candidates]
    assert ranked[0] == "coder" and ranked[1] == "mathematics"
    assert route.expert == "coder" and "on mathematics" in str(route.reason)


def thin_chemistry(coder: ExpertResult) -> Calibration:
    """Chemistry with 15 questions, where the coder loses 1 to 3; mathematics with 30."""
    return Calibration(
        "m",
        {
            "chemistry": DomainResult(
                15,
                8,
                {"chemistry": result(3, 2, 7), "mathematics": result(6, 1, 3), "coder": coder},
            ),
            "mathematics": DomainResult(
                30,
                12,
                {
                    "chemistry": result(11, 2, 3),
                    "mathematics": result(13, 4, 3),
                    "coder": result(18, 8, 2),
                },
            ),
        },
        {"chemistry": "chemistry", "mathematics": "mathematics"},
        seconds_per_call={"chemistry": 0.4, "mathematics": 0.5, "coder": 2.5},
    )


def test_a_domain_with_too_few_items_is_judged_on_all_domains_pooled(store: ExpertStore) -> None:
    store.set_calibration(thin_chemistry(coder=result(6, 1, 3)))
    pooled = thin_chemistry(coder=result(6, 1, 3)).pooled()
    assert (pooled.n, pooled.base_right) == (45, 20)
    assert pooled.experts["coder"] == result(24, 9, 5)  # +4 of 45 pooled, -2 of 15 on its own
    assert pooled.experts["chemistry"] == result(14, 4, 10)
    (chem,) = routes(store, ["near-chem"])
    assert chem.expert == "coder", chem.reason
    reason = str(chem.reason)
    assert "on all domains (chemistry has 15 calibration items (< 20))" in reason
    assert "(14/45 vs 20/45)" in reason and "(24/45 vs 20/45)" in reason
    # the cheaper mathematics adapter loses pooled (+5 -6 of 45): not a winner
    store.set_calibration(thin_chemistry(coder=result(2, 0, 6)))  # level pooled
    (alone,) = routes(store, ["near-chem"])
    assert alone.expert is None and "no expert beats the base model on all domains" in str(
        alone.reason
    )
    # enough items of its own: chemistry is judged on its 15 alone, where the coder loses
    store.set_calibration(thin_chemistry(coder=result(6, 1, 3)))
    (lenient,) = routes(store, ["near-chem"], gain_rule=GainRule(min_items=10))
    assert lenient.expert is None and "beats the base model on chemistry" in str(lenient.reason)


def test_pooled_keeps_only_experts_measured_on_every_domain() -> None:
    calibration_ = thin_chemistry(coder=result(6, 1, 3))
    del calibration_.domains["chemistry"].experts["coder"]
    assert set(calibration_.pooled().experts) == {"chemistry", "mathematics"}
    assert Calibration("m", {}, {}).pooled() == DomainResult(0, 0, {})


def test_too_few_items_even_pooled_routes_by_similarity(store: ExpertStore) -> None:
    small = {"chemistry": result(6, 1, 2), "coder": result(10, 4, 1)}
    store.set_calibration(
        Calibration("m", {"chemistry": DomainResult(15, 7, small)}, {"chemistry": "chemistry"})
    )
    (chem,) = routes(store, ["near-chem"])
    assert chem.expert == "chemistry"
    assert "15 calibration items (< 20), all domains 15: routed by similarity" in str(chem.reason)
    (lenient,) = routes(store, ["near-chem"], gain_rule=GainRule(min_items=10))
    assert lenient.expert == "coder"


def test_the_interval_rule_asks_for_a_gain_the_data_can_call(store: ExpertStore) -> None:
    small = Calibration(
        "m",
        {"chemistry": DomainResult(30, 10, {"chemistry": result(12, 3, 1)})},
        {"chemistry": "chemistry"},
    )
    store.set_calibration(small)
    assert routes(store, ["near-chem"])[0].expert == "chemistry"  # +6.7 points
    strict = routes(store, ["near-chem"], gain_rule=GainRule(interval=True))[0]
    assert strict.expert is None and "[-" in str(strict.reason)


def test_a_store_without_calibration_routes_as_before(store: ExpertStore) -> None:
    texts = ["near-chem", "near-math", "near-code", "c1"]
    calibrated_off = routes(store, texts, by_gain=False)
    assert routes(store, texts) == calibrated_off
    assert [r.expert for r in calibrated_off] == ["chemistry", "mathematics", "coder", "chemistry"]
    assert all(r.reason is None for r in calibrated_off)
    store.set_calibration(calibration())
    assert routes(store, texts, by_gain=False) == calibrated_off


def test_parts_below_every_threshold_go_to_base_without_a_gain_reason(store: ExpertStore) -> None:
    store.set_calibration(calibration())
    router = ExpertRouter(store)
    router.thresholds = dict.fromkeys(router.thresholds, 1.01)
    (route,) = router(["near-math"])
    assert route.expert is None and route.reason is None


def test_routing_error_and_thresholds_ignore_the_gains(store: ExpertStore) -> None:
    store.set_calibration(calibration())
    router = ExpertRouter(store)
    assert router.routing_error([("near-chem", "chemistry"), ("near-math", "mathematics")]) == 0
    assert [r.expert for r in router.nearest_routes(store.embedder.embed(["near-chem"]))] == [
        "chemistry"
    ]


def test_a_route_with_a_reason_round_trips_and_old_routes_read() -> None:
    route = Route("coder", 0.9, [("chemistry", 0.95)], reason="chemistry loses")
    assert Route.from_dict(route.to_dict()) == route
    old: dict[str, Any] = {"expert": None, "score": 0.1, "candidates": [], "fallback_reason": None}
    assert Route.from_dict(old).reason is None


def answering(replies: Mapping[str, str]) -> FakeChat:
    """A chat model that answers each question text from `replies` ("?" otherwise)."""

    def reply(messages: list[BaseMessage]) -> str:
        return replies.get(str(messages[-1].content), "?")

    return FakeChat(reply=reply)


QUESTIONS = {
    "chemistry": [Question(f"chem {i}", {"answer": str(i)}) for i in range(4)],
    "mathematics": [Question(f"math {i}", {"answer": str(i)}) for i in range(4)],
}


def is_right(reply: str, gold: Mapping[str, Any]) -> bool:
    return reply == gold["answer"]


def test_measure_tallies_paired_answers_and_seconds_per_call() -> None:
    base = answering({"chem 0": "0", "chem 1": "1", "math 0": "0"})
    chemist = answering({"chem 0": "0", "chem 2": "2", "chem 3": "3"})
    lines: list[str] = []
    found = measure(
        {BASE: base, "chemistry": chemist},
        QUESTIONS,
        is_right,
        model="fake",
        owners={"chemistry": "chemistry"},
        items="four each",
        progress=lines.append,
    )
    chem = found.domains["chemistry"]
    assert (chem.n, chem.base_right) == (4, 2)
    assert chem.experts["chemistry"] == result(3, 2, 1)
    assert found.domains["mathematics"].experts["chemistry"] == result(0, 0, 1)
    assert set(found.seconds_per_call) == {BASE, "chemistry"}
    assert all(s >= 0 for s in found.seconds_per_call.values())
    assert len(base.calls) == len(chemist.calls) == 8
    assert lines[0] == "chemistry: base 2/4 right"
    assert found.choose("chemistry", ["chemistry"], GainRule(min_items=4)).expert == "chemistry"
    report = "\n".join(report_lines(found))
    assert "chemistry (n=4, owner chemistry): base 2/4" in report and "+25.0%" in report


def test_measure_needs_the_base_model_and_questions_for_owned_domains() -> None:
    chat = answering({})
    with pytest.raises(StoreError, match="base model"):
        measure({"chemistry": chat}, QUESTIONS, is_right, model="m", owners={})
    with pytest.raises(StoreError, match="biology"):
        measure({BASE: chat}, QUESTIONS, is_right, model="m", owners={"chemistry": "biology"})


def test_a_gain_rule_needs_a_positive_count() -> None:
    with pytest.raises(StoreError):
        GainRule(min_items=0)


def test_the_list_shows_gains_and_seconds_per_call(
    store: ExpertStore, capsys: pytest.CaptureFixture[str]
) -> None:
    store.set_calibration(calibration())
    ExpertStore.open(store.path)  # the CLI opens it with the spec's embedder
    assert main(["experts", "list", "--store", str(store.path), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out.splitlines()[-1])
    coder = next(e for e in listed["experts"] if e["name"] == "coder")
    assert coder["calibration"]["seconds_per_call"] == 2.5
    assert coder["calibration"]["gains"]["chemistry"]["passes"] is True
    assert listed["calibration"]["seconds_per_call"][BASE] == 0.4
    assert main(["experts", "list", "--store", str(store.path)]) == 0
    text = capsys.readouterr().out
    assert "chemistry -10.0% (n 30)" in text and "2.50 s/call" in text
    assert "base 0.40 s/call" in text and "\n  measured on: test\n" in text


def test_calibrate_is_an_experts_command() -> None:
    args = build_parser("experts").parse_args(
        ["experts", "calibrate", "--model", "smollm2-135m-instruct", "--items", "5"]
    )
    assert (args.items, args.min_items, args.interval, args.dry_run) == (5, 20, False, False)
