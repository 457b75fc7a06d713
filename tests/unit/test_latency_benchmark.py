"""benchmarks/latency.py: the records, the per-stage means, the ratios and the results file."""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

import benchmarks.latency as latency
from benchmarks.latency import (
    ANSWER,
    COMPLLM,
    SEQUENTIAL,
    TOTAL,
    check_settings,
    graph_runner,
    interleaved,
    measure,
    monolith,
    monolith_runner,
    ratio,
    ratio_pairs,
    read_out,
    report,
    stage_key,
    stage_means,
    system_names,
    turn,
    with_decomposer,
    write_out,
)
from compllm_graph import create_compllm_graph
from tests.fakes import keyword_router
from tests.unit.test_timing import CountingChat

MONO = monolith("small")
SMALL_DECOMPOSER = with_decomposer("tiny")


def figures(seconds: float, prompt: int = 0, generated: int = 0, model: float = 0.0) -> dict:
    return {
        "seconds": seconds,
        "model_seconds": model,
        "prompt_tokens": prompt,
        "generated_tokens": generated,
        "calls": 1,
        "calls_without_usage": 0,
        "failed_calls": 0,
    }


def record(system: str, qid: str, seconds: float, stages: dict, file: str = "p2") -> dict:
    return {
        "system": system,
        "file": file,
        "id": qid,
        "seconds": seconds,
        "stages": stages,
        "right": qid == "a",
    }


RECORDS = [
    record(
        COMPLLM,
        "a",
        10.0,
        {
            "decompose": figures(2.0, 100, 20, 2.0),
            "execute": figures(6.0),
            "sub_query_1": figures(5.0, 30, 40, 5.0),
            "sub_query_2": figures(6.0, 30, 60, 6.0),
            "aggregate": figures(2.0, 50, 30, 2.0),
        },
    ),
    record(
        COMPLLM,
        "b",
        6.0,
        {
            "decompose": figures(2.0, 100, 10, 2.0),
            "sub_query_1": figures(4.0, 20, 50, 4.0),
            "aggregate": figures(0.0),
        },
    ),
    record(MONO, "a", 5.0, {ANSWER: figures(5.0, 40, 100, 5.0)}),
    record(MONO, "b", 3.0, {ANSWER: figures(3.0, 40, 50, 3.0)}),
    record(MONO, "c", 100.0, {ANSWER: figures(100.0, 1, 1, 100.0)}),  # Comp-LLM has no "c"
]


def test_stages_sort_in_the_order_they_run() -> None:
    stages = ["aggregate", "sub_query_10", "route", ANSWER, "sub_query_2", "decompose", "execute"]
    assert sorted(stages, key=stage_key) == [
        "decompose",
        "route",
        "execute",
        "sub_query_2",
        "sub_query_10",
        "aggregate",
        ANSWER,
    ]


def test_stage_means_count_a_missing_stage_as_zero() -> None:
    means = stage_means(RECORDS[:2])
    assert list(means) == ["decompose", "execute", "sub_query_1", "sub_query_2", "aggregate", TOTAL]
    assert means["sub_query_2"]["generated_tokens"] == 30.0  # 60 on one question of two
    assert means["sub_query_2"]["questions"] == 1
    assert means["sub_query_1"]["seconds"] == 4.5
    # the total's wall time is the run's; its tokens and model time are the stages' sums
    assert means[TOTAL] == {
        "seconds": 8.0,
        "model_seconds": 10.5,
        "prompt_tokens": 165.0,
        "generated_tokens": 105.0,
        "questions": 2,
    }
    assert stage_means([]) == {}


def test_ratios_are_of_sums_over_the_questions_both_answered() -> None:
    assert ratio(RECORDS, COMPLLM, MONO, "seconds", None) == (16.0 / 8.0, 2)
    assert ratio(RECORDS, COMPLLM, MONO, "generated_tokens", "p2") == (210.0 / 150.0, 2)
    assert ratio(RECORDS, COMPLLM, MONO, "seconds", "all2") == (None, 0)
    zero = [record("x", "a", 0.0, {}), record("y", "a", 1.0, {})]
    assert ratio(zero, "y", "x", "seconds", None) == (None, 1)


def test_ratio_pairs_and_the_report() -> None:
    systems = [COMPLLM, SEQUENTIAL, MONO]
    assert ratio_pairs(systems) == [(COMPLLM, MONO), (SEQUENTIAL, MONO), (SEQUENTIAL, COMPLLM)]
    text = report(RECORDS, systems)
    assert "## P-2: 3 questions" in text
    assert "All-2" not in text  # no question of it
    assert f"| {COMPLLM} | total | 2 | 8.00 | 10.50 | 165 | 105 |" in text
    assert f"| {COMPLLM} |   sub-query 2 | 1 | 3.00 | 3.00 | 15 | 30 |" in text
    assert f"| {COMPLLM} / {MONO} | 2 | 2.00x | 4.12x | 1.40x |" in text
    assert f"| {SEQUENTIAL} / {COMPLLM} | 0 | – | – | – |" in text
    assert f"{COMPLLM} 1/2, {MONO} 1/3" in text


def test_questions_alternate_and_systems_take_turns_first() -> None:
    by_file = {"p2": [{"id": "p0"}, {"id": "p1"}], "all2": [{"id": "a0"}]}
    assert [(f, q["id"]) for f, q in interleaved(by_file, 2)] == [
        ("p2", "p0"),
        ("all2", "a0"),
        ("p2", "p1"),
    ]
    assert [turn(["x", "y", "z"], i) for i in range(4)] == [
        ["x", "y", "z"],
        ["y", "z", "x"],
        ["z", "x", "y"],
        ["x", "y", "z"],
    ]


QUESTION = {
    "id": "p2-0",
    "question": "chem a and bio b?",
    "parts": [{"question": "chem a"}, {"question": "bio b"}],
}


def test_measure_a_graph_on_fake_models() -> None:
    graph = create_compllm_graph(
        decomposer=CountingChat(reply=lambda _: "<q>chem a</q><q>bio b</q>"),
        experts={"chemistry": CountingChat(reply=lambda _: "one two three")},
        router=keyword_router({"chem": "chemistry"}),
        base=CountingChat(reply=lambda _: "four five"),
    ).compile()
    out = measure(COMPLLM, graph_runner(graph), "p2", QUESTION, lambda answer, parts: True)
    assert out["sub_queries"] == 2 and out["right"] is True
    assert out["stages"]["sub_query_1"]["generated_tokens"] == 3
    assert out["stages"]["sub_query_2"]["generated_tokens"] == 2
    assert out["seconds"] >= out["stages"]["execute"]["seconds"]
    json.dumps(out)  # a record goes to the results file as it is


class FakeModel:
    """Stands in for a loaded model: hands out counting chat models, remembering the budget."""

    def __init__(self) -> None:
        self.budgets: list[int] = []

    def chat_model(self, max_new_tokens: int) -> CountingChat:
        self.budgets.append(max_new_tokens)
        return CountingChat(reply=lambda _: "the answer is 4")


def test_a_monolith_gets_one_answer_per_part_plus_the_aggregators() -> None:
    model = FakeModel()
    runner = monolith_runner(model, 10, "Be brief.")
    out = measure(MONO, runner, "p2", QUESTION, lambda answer, parts: answer.endswith("4"))
    assert model.budgets == [30]
    assert list(out["stages"]) == [ANSWER]
    assert out["stages"][ANSWER]["prompt_tokens"] == 2 + 5  # the system prompt and the question
    assert out["stages"][ANSWER]["generated_tokens"] == 4
    assert out["answer"] == "the answer is 4" and out["right"] is True
    bare = measure(MONO, monolith_runner(model, 10, None), "p2", QUESTION, lambda a, p: False)
    assert bare["stages"][ANSWER]["prompt_tokens"] == 5  # the question alone


SETTINGS: dict[str, Any] = {"model": "m", "monoliths": ["small"], "threads": None}


def test_the_results_file_round_trips_and_guards_its_settings(tmp_path: Path) -> None:
    path = tmp_path / "out" / "latency.json"
    assert read_out(path) == (None, [])
    write_out(path, SETTINGS, RECORDS)
    assert read_out(path) == (SETTINGS, RECORDS)
    assert not list(path.parent.glob("*.partial"))
    check_settings(SETTINGS, SETTINGS)
    check_settings(None, SETTINGS)
    with pytest.raises(SystemExit, match="another --out"):
        check_settings(SETTINGS, {**SETTINGS, "threads": 2})
    path.write_text("[1, 2]")
    with pytest.raises(SystemExit, match="not a latency results file"):
        read_out(path)


def test_table_only_prints_the_saved_records(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "latency.json"
    write_out(path, SETTINGS, RECORDS)
    assert latency.main(["--out", str(path), "--table-only", "--monoliths", "other"]) == 0
    printed = capsys.readouterr().out
    assert f"| {COMPLLM} / {MONO} |" in printed  # the file's monoliths, not the flag's
    with pytest.raises(SystemExit):
        latency.main(["--out", str(tmp_path / "missing.json"), "--table-only"])


def test_a_run_refuses_a_file_of_other_settings(tmp_path: Path) -> None:
    path = tmp_path / "latency.json"
    write_out(path, SETTINGS, RECORDS)
    with pytest.raises(SystemExit, match="another --out"):
        latency.main(["--out", str(path), "--questions", "1"])


def test_settings_name_what_a_rerun_must_match() -> None:
    args = argparse.Namespace(
        model="m", monoliths=["a", "b"], threads=2, max_new_tokens=8, decomposer_model=None
    )
    assert latency.settings_of(args) == {
        "model": "m",
        "monoliths": ["a", "b"],
        "threads": 2,
        "max_new_tokens": 8,
        "engine": "llama.cpp",
        "store": latency.store_of("m"),
    }
    if importlib.util.find_spec("faiss") is not None:
        assert latency.store_of("m") == "demo v5, by similarity"  # no pack for "m"
    args.decomposer_model = "tiny"
    assert latency.settings_of(args)["decomposer_model"] == "tiny"


def test_the_other_decomposer_is_one_more_system_with_its_ratios() -> None:
    assert SMALL_DECOMPOSER == "Comp-LLM, tiny decomposer"
    assert system_names(SETTINGS) == [COMPLLM, SEQUENTIAL, MONO]
    systems = system_names({**SETTINGS, "decomposer_model": "tiny"})
    assert systems == [COMPLLM, SEQUENTIAL, SMALL_DECOMPOSER, MONO]
    assert ratio_pairs(systems) == [
        (COMPLLM, MONO),
        (SEQUENTIAL, MONO),
        (SMALL_DECOMPOSER, MONO),
        (SEQUENTIAL, COMPLLM),
        (SMALL_DECOMPOSER, COMPLLM),
    ]
    faster = [
        record(SMALL_DECOMPOSER, "a", 5.0, {"decompose": figures(1.0, 100, 20, 1.0)}),
        record(SMALL_DECOMPOSER, "b", 3.0, {"decompose": figures(1.0, 100, 10, 1.0)}),
    ]
    text = report([*RECORDS, *faster], systems)
    assert f"| {SMALL_DECOMPOSER} | decompose | 2 | 1.00 | 1.00 | 100 | 15 |" in text
    assert f"| {SMALL_DECOMPOSER} / {COMPLLM} | 2 | 0.50x |" in text
    assert f"| {SMALL_DECOMPOSER} / {MONO} | 2 | 1.00x |" in text


def test_a_file_of_the_other_decomposer_is_neither_mixed_nor_misread(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "latency.json"
    saved = {**SETTINGS, "decomposer_model": "tiny"}
    write_out(path, saved, RECORDS)
    assert latency.main(["--out", str(path), "--table-only"]) == 0
    assert f"| {SMALL_DECOMPOSER} / {COMPLLM} |" in capsys.readouterr().out  # the file's
    with pytest.raises(SystemExit, match="another --out"):
        check_settings(saved, SETTINGS)
    with pytest.raises(SystemExit, match="another --out"):
        check_settings(SETTINGS, saved)


def test_the_other_decomposers_graph_is_comp_llms_with_that_model_decomposing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("torch", reason="compllm_graph.defaults loads the [local] engines")
    pytest.importorskip("faiss", reason="the expert store needs the [router] extra")
    loads: list[tuple[str, dict[str, Any]]] = []
    graphs: list[dict[str, Any]] = []

    class Loaded:
        def __init__(self, alias: str) -> None:
            self.name = alias

    def load_model(alias: str, **options: Any) -> Loaded:
        loads.append((alias, options))
        return Loaded(alias)

    def build_default_graph(model: Loaded, store: Any, **options: Any) -> Any:
        graphs.append({"model": model.name, **options})
        return create_compllm_graph(
            decomposer=CountingChat(reply=lambda _: "<q>x</q>"),
            experts={},
            router=keyword_router({}),
            base=CountingChat(reply=lambda _: "y"),
        )

    monkeypatch.setattr("compllm_graph.models.load_model", load_model)
    monkeypatch.setattr("compllm_graph.expert_store.demo_store", lambda name: None)
    monkeypatch.setattr("compllm_graph.defaults.program_by_default", lambda model, store: True)
    monkeypatch.setattr("compllm_graph.defaults.build_default_graph", build_default_graph)
    args = argparse.Namespace(
        model="m", monoliths=["big"], threads=3, max_new_tokens=8, decomposer_model="tiny"
    )
    systems, _ = latency.build_systems(args)
    assert list(systems) == [COMPLLM, SEQUENTIAL, SMALL_DECOMPOSER, monolith("big")]
    on_llama = {"engine": "llama.cpp", "n_threads": 3}
    assert loads == [("m", on_llama), ("tiny", on_llama), ("big", on_llama)]
    plain, _, other = graphs
    assert other.pop("decomposer_model").name == "tiny"
    assert other == plain and plain["model"] == "m"  # otherwise Comp-LLM's graph
    assert plain["program_expert"] is True  # as `compllm ask` builds it
