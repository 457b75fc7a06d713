"""Per-stage attribution, bootstrap intervals, and the benchmark and expert-table commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compllm_graph.cli import main
from compllm_graph.evaluation.attribution import attribution, attribution_table, first_wrong_stage
from compllm_graph.evaluation.stats import bootstrap_interval, paired_difference

PARTS = [
    {
        "question": "Gas? (A) Neon (B) Oxygen",
        "answer": "Neon",
        "choices": ["Neon", "Oxygen"],
        "domain": "chemistry",
    },
    {"question": "6 times 7?", "answer": "42", "choices": None, "domain": "mathematics"},
]
RECORD = {"id": "q", "question": "Gas? Also 6 times 7?", "parts": PARTS, "edges": []}


def answer(final: str, subs: list[tuple[str, str]], routes: list[str] | None = None) -> dict:
    return {
        "id": "q",
        "answer": final,
        "sub_answers": [{"question": q, "answer": a, "expert": "x"} for q, a in subs],
        "routes": routes if routes is not None else ["chemistry", "mathematics"],
    }


@pytest.mark.parametrize(
    ("reply", "stage"),
    [
        (answer("Neon and 42", [("a", "Neon"), ("b", "42")]), None),
        (answer("Neon", [("a", "Neon and 42")]), "decomposition"),
        (answer("Neon", [("a", "Neon"), ("b", "42")], ["chemistry", "biology"]), "routing"),
        (answer("Neon and 41", [("a", "Neon"), ("b", "41")]), "expert"),
        (answer("Neon", [("a", "Neon"), ("b", "42")]), "aggregation"),
        ({"id": "q", "answer": "Oxygen", "sub_answers": [], "routes": []}, "model"),
    ],
)
def test_the_first_stage_that_went_wrong(reply: dict, stage: str | None) -> None:
    assert first_wrong_stage(RECORD, reply) == stage


def test_a_domain_without_an_expert_is_rightly_routed_to_base() -> None:
    reply = answer("Neon", [("a", "Neon"), ("b", "41")], ["chemistry", "base"])
    assert first_wrong_stage(RECORD, reply, frozenset({"chemistry"})) == "expert"


def test_a_route_to_a_candidate_named_after_no_domain_is_not_judged() -> None:
    reply = answer("Neon", [("a", "Neon"), ("b", "41")], ["chemistry", "big"])
    domains = frozenset({"chemistry", "mathematics", "biology"})
    assert first_wrong_stage(RECORD, reply, domains=domains) == "expert"
    assert first_wrong_stage(RECORD, reply) == "routing"  # without the domains: judged
    # a route to another domain's expert still is
    misrouted = answer("Neon", [("a", "Neon"), ("b", "41")], ["chemistry", "biology"])
    assert first_wrong_stage(RECORD, misrouted, domains=domains) == "routing"
    # `attribution` takes the domains from the benchmark's parts
    biology = {"question": "Cell? (A) Yes (B) No", "answer": "Yes", "choices": ["Yes", "No"]}
    other = {**RECORD, "id": "r", "parts": [{**biology, "domain": "biology"}, PARTS[1]]}
    assert attribution([RECORD, other], [reply, {**misrouted, "id": "r"}]) == {
        "expert": 1,
        "routing": 1,
    }


@pytest.mark.parametrize("route", ["all-domains", "all-experts"])
def test_one_adapter_and_all_experts_are_rightly_routed_for_every_domain(route: str) -> None:
    reply = answer("Neon", [("a", "Neon"), ("b", "41")], [route, route])
    assert first_wrong_stage(RECORD, reply) == "expert"


def combined(final: str, subs: list[tuple[str, dict[str, str]]]) -> dict:
    """An `all-experts` line: each sub-answer with every expert's own reply."""
    reply = answer(final, [(f"q{i}", a) for i, (a, _) in enumerate(subs)], ["all-experts"] * 2)
    for sub, (_, replies) in zip(reply["sub_answers"], subs, strict=True):
        sub.update(combined="labelled", expert_answers=replies)
    return reply


@pytest.mark.parametrize(
    ("subs", "stage"),
    [
        # the mathematics expert said 42, but the combined reply lost it
        (
            [("Neon", {"chemistry": "Neon"}), ("41", {"a": "41", "mathematics": "42"})],
            "combination",
        ),
        # no expert said 42: the experts went wrong first
        ([("Neon", {"chemistry": "Neon"}), ("41", {"a": "41", "b": "40"})], "expert"),
        ([("Oxygen", {"c": "Oxygen"}), ("41", {"a": "41", "mathematics": "42"})], "expert"),
        ([("Neon", {"chemistry": "Neon"}), ("42", {"mathematics": "42"})], "aggregation"),
    ],
)
def test_a_combination_that_lost_an_experts_right_reply(
    subs: list[tuple[str, dict[str, str]]], stage: str
) -> None:
    assert first_wrong_stage(RECORD, combined("Neon and 41", subs)) == stage


@pytest.mark.parametrize(
    ("edges", "stage"),
    [
        ([], "decomposition"),  # the second step lost the first
        ([[2, 3]], "decomposition"),
        ([[1, 2], [2, 3]], "expert"),  # 1 -> 3 through 2
        ([[1, 2], [1, 3], [2, 3]], "expert"),
        (None, "expert"),  # outputs written before edges were recorded
    ],
)
def test_a_lost_gold_dependency_is_the_decompositions(
    edges: list[list[int]] | None, stage: str
) -> None:
    steps = [
        {"question": f"Step {i}?", "answer": str(i), "choices": None, "domain": "mathematics"}
        for i in (1, 2, 3)
    ]
    record = {"id": "s", "question": "?", "parts": steps, "edges": [[1, 2], [2, 3]]}
    reply = answer("1, 2 and 4", [("a", "1"), ("b", "2"), ("c", "4")], ["mathematics"] * 3)
    if edges is not None:
        reply["edges"] = edges
    assert first_wrong_stage(record, reply) == stage


def test_the_table_counts_and_shares() -> None:
    replies = [answer("Neon and 42", [("a", "Neon"), ("b", "42")]), answer("x", [("a", "x")])]
    counts = attribution([RECORD, RECORD], replies)
    assert counts == {"right": 1, "decomposition": 1}
    table = attribution_table({"run": counts})
    assert "| run | 2 | 1 (50%) | 1 (50%) |" in table


def test_bootstrap_intervals_cover_the_mean_and_narrow_with_n() -> None:
    small = bootstrap_interval([True, False] * 10)
    large = bootstrap_interval([True, False] * 500)
    assert small[0] < 0.5 < small[1] and large[0] < 0.5 < large[1]
    assert large[1] - large[0] < small[1] - small[0]
    assert bootstrap_interval([]) == [0.0, 0.0]
    assert bootstrap_interval([True] * 5) == [1.0, 1.0]


def test_a_paired_difference_is_called_only_outside_zero() -> None:
    better = paired_difference([True] * 80 + [False] * 20, [True] * 40 + [False] * 60)
    assert better["significant"] and better["difference"] == 0.4
    same = paired_difference([True, False] * 20, [False, True] * 20)
    assert not same["significant"]
    with pytest.raises(ValueError, match="same questions"):
        paired_difference([True], [True, False])


def test_the_benchmarks_command_writes_every_file(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "bench"
    argv = ["eval", "benchmarks", "--out", str(out), "--count", "20", "--single-count", "10"]
    assert main([*argv, "--data-dir", str(data_dir)]) == 0
    names = sorted(p.name for p in out.glob("*.jsonl"))
    assert names == sorted(
        ["p2.jsonl", "p3.jsonl", "all2.jsonl", "all3.jsonl"]
        + [f"single-{d}.jsonl" for d in ("biology", "chemistry", "mathematics", "medicine")]
    )
    p3 = [json.loads(line) for line in (out / "p3.jsonl").read_text().splitlines()]
    assert len(p3) == 20 and all(len(r["parts"]) == 3 for r in p3)
    first = (out / "all2.jsonl").read_text()
    assert main([*argv, "--data-dir", str(data_dir)]) == 0
    assert (out / "all2.jsonl").read_text() == first  # deterministic
    printed = capsys.readouterr().out
    assert "p2.jsonl: 20 questions" in printed and "share a passage" in printed


def test_benchmarks_never_share_an_item_with_expert_training(data_dir: Path) -> None:
    from compllm_graph.evaluation.benchmarks import build_benchmarks
    from compllm_graph.training.expert_data import ALL_DOMAINS, expert_examples

    trained = {r["question"] for r in expert_examples(data_dir, ALL_DOMAINS, 10_000)}
    benchmarks = build_benchmarks(data_dir, 300, 200)
    used = {p["question"] for records in benchmarks.values() for r in records for p in r["parts"]}
    assert len(used) > 1500 and not used & trained
