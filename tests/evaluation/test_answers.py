"""`compllm eval answers`: the benchmark format, resumable runs, scoring, and every system."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import BaseMessage, SystemMessage

from compllm_graph.cli import main
from compllm_graph.defaults import BASE_SYSTEM_PROMPT
from compllm_graph.evaluation.answers import (
    BenchmarkError,
    answered,
    check_system,
    oracle_router,
    random_router,
    read_benchmark,
    run,
    summarise,
)
from compllm_graph.expert_store import ExpertStore
from compllm_graph.program_expert import PROGRAM_PROMPT
from tests.fakes import FakeChat

CHEMISTRY = {
    "question": "Which gas is inert? Options: (A) Neon; (B) Oxygen.",
    "answer": "Neon",
    "choices": ["Neon", "Oxygen"],
    "domain": "chemistry",
}
MATHS = {"question": "What is 6 times 7?", "answer": "42", "choices": None, "domain": "mathematics"}
RECORDS = [
    {
        "id": f"q{i}",
        "question": f"{CHEMISTRY['question']} Also, {MATHS['question']}",
        "parts": [CHEMISTRY, MATHS],
        "edges": [],
    }
    for i in range(3)
]


def write(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "not JSON"),
        ('{"id": "a", "question": "q", "parts": []}', "exactly"),
        ('{"id": "a", "question": "q", "parts": [], "edges": []}', "non-empty"),
        (
            '{"id": "a", "question": "q", "parts": [{"question": "q", "answer": "x", '
            '"choices": ["y"], "domain": "d"}], "edges": []}',
            "not a choice",
        ),
        (
            '{"id": "a", "question": "q", "parts": [{"question": "q", "answer": "1", '
            '"choices": null, "domain": "d"}], "edges": [[2, 1]]}',
            "bad edge",
        ),
    ],
)
def test_a_malformed_benchmark_is_refused_with_its_line(
    tmp_path: Path, line: str, message: str
) -> None:
    path = tmp_path / "b.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(BenchmarkError, match=message):
        read_benchmark(path)


def test_a_repeated_id_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BenchmarkError, match="used twice"):
        read_benchmark(write(tmp_path / "b.jsonl", [RECORDS[0], RECORDS[0]]))


def test_a_run_appends_and_a_rerun_skips_what_was_answered(tmp_path: Path) -> None:
    outputs = tmp_path / "out.jsonl"
    calls: list[str] = []

    def answerer(record: Any) -> dict[str, Any]:
        calls.append(record["id"])
        return {"answer": "Neon and 42", "sub_answers": [], "routes": []}

    run(RECORDS[:2], answerer, outputs)
    answers = run(RECORDS, answerer, outputs)
    assert calls == ["q0", "q1", "q2"]
    assert [a["id"] for a in answers] == ["q0", "q1", "q2"]
    assert set(answered(outputs)) == {"q0", "q1", "q2"}
    line = json.loads(outputs.read_text().splitlines()[0])
    assert set(line) == {"id", "answer", "sub_answers", "routes", "seconds", "question_sha256"}


def test_a_rerun_refuses_outputs_of_a_rebuilt_benchmark(tmp_path: Path) -> None:
    outputs = tmp_path / "out.jsonl"

    def answerer(record: Any) -> dict[str, Any]:
        return {"answer": "Neon", "sub_answers": [], "routes": []}

    run(RECORDS[:1], answerer, outputs)
    rebuilt = [{**RECORDS[0], "question": "Another question under the same id?"}]
    with pytest.raises(BenchmarkError, match="the benchmark was rebuilt"):
        run(rebuilt, answerer, outputs)
    # a line another tool wrote, without the hash, is taken as it is
    outputs.write_text(json.dumps({"id": "q0", "answer": "Neon"}) + "\n")
    assert run(rebuilt, answerer, outputs)[0]["answer"] == "Neon"


def test_a_rerun_can_answer_the_changed_questions_again(tmp_path: Path) -> None:
    outputs = tmp_path / "p2.jsonl"
    replies = iter(["old 0", "old 1", "new 1"])

    def answerer(record: Any) -> dict[str, Any]:
        return {"answer": next(replies), "sub_answers": [], "routes": []}

    run(RECORDS[:2], answerer, outputs)
    rebuilt = [RECORDS[0], {**RECORDS[1], "question": "Another question under the same id?"}]
    answers = run(rebuilt, answerer, outputs, redo_changed=True)
    assert [a["answer"] for a in answers] == ["old 0", "new 1"]
    assert {k: v["answer"] for k, v in answered(outputs).items()} == {"q0": "old 0", "q1": "new 1"}
    aside = answered(tmp_path / "p2.changed.jsonl")  # the old answer is kept, not lost
    assert {k: v["answer"] for k, v in aside.items()} == {"q1": "old 1"}


def test_concurrent_questions_overlap_and_all_land_once(tmp_path: Path) -> None:
    records = [{**RECORDS[0], "id": f"c{i}"} for i in range(8)]
    in_flight, peak, lock = [0], [0], threading.Lock()

    def answerer(record: Any) -> dict[str, Any]:
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        time.sleep(0.05)
        with lock:
            in_flight[0] -= 1
        return {"answer": record["id"], "sub_answers": [], "routes": []}

    outputs = tmp_path / "out.jsonl"
    answers = run(records, answerer, outputs, concurrency=4)
    assert peak[0] == 4
    assert [a["answer"] for a in answers] == [r["id"] for r in records]  # records' order
    assert sorted(answered(outputs)) == sorted(str(r["id"]) for r in records)
    assert len(outputs.read_text().splitlines()) == 8
    with pytest.raises(ValueError, match="at least 1"):
        run(records, answerer, None, concurrency=0)


def test_a_failing_question_stops_the_run_after_those_in_flight(tmp_path: Path) -> None:
    records = [{**RECORDS[0], "id": f"c{i}"} for i in range(20)]
    started: list[str] = []

    def answerer(record: Any) -> dict[str, Any]:
        started.append(record["id"])
        time.sleep(0.02)
        if record["id"] == "c1":
            raise RuntimeError("model failed")
        return {"answer": "x", "sub_answers": [], "routes": []}

    outputs = tmp_path / "out.jsonl"
    with pytest.raises(RuntimeError, match="model failed"):
        run(records, answerer, outputs, concurrency=2)
    assert len(started) < len(records)  # the queued questions were cancelled
    assert "c1" not in answered(outputs)


def test_the_summary_scores_questions_parts_and_domains() -> None:
    answers = [
        {"id": "q0", "answer": "Neon; 42", "seconds": 1.0},
        {"id": "q1", "answer": "Oxygen; 42", "seconds": 3.0},
        {"id": "q2", "answer": "(A); 41", "seconds": 2.0},
    ]
    summary = summarise(RECORDS, answers)
    assert summary["accuracy"] == pytest.approx(1 / 3, abs=1e-4)
    assert summary["part_accuracy"] == pytest.approx(4 / 6, abs=1e-4)
    assert summary["n"] == 3 and summary["seconds_per_question"] == 2.0
    assert summary["part_accuracy_by_domain"] == {"chemistry": 0.6667, "mathematics": 0.6667}
    low, high = summary["accuracy_ci95"]
    assert 0 <= low <= summary["accuracy"] <= high <= 1
    with pytest.raises(BenchmarkError, match="is not for question"):
        summarise(RECORDS[:1], [{"id": "q9", "answer": ""}])


def test_oracle_and_random_routers() -> None:
    route = oracle_router(RECORDS[0], ["chemistry", "biology"])
    routes = route(["Which gas is inert? (A) Neon (B) Oxygen", "what is 6 times 7"])
    assert [r.expert for r in routes] == ["chemistry", None]  # no mathematics expert: base
    texts = [f"sub-query {i}" for i in range(20)]
    first = [r.expert for r in random_router(["a", "b", "c"], seed=1)(texts)]
    assert first == [r.expert for r in random_router(["a", "b", "c"], seed=1)(texts)]
    assert len(set(first)) > 1
    # the draw follows the text, not the order of calls (questions run concurrently)
    again = random_router(["a", "b", "c"], seed=1)
    assert [again([text])[0].expert for text in reversed(texts)] == first[::-1]
    assert first != [r.expert for r in random_router(["a", "b", "c"], seed=2)(texts)]
    with pytest.raises(ValueError, match="at least one expert"):
        random_router([])


PROGRAM = "```python\nprint(6 * 7)\n```"


class FakeModel:
    """A stand-in for a loaded base model: experts answer their own domain's part only.

    The decomposer splits the question at "Also,"; an expert (known by its system prompt or
    adapter) answers the part of its domain, the base model answers nothing useful. Asked for a
    program (`--program-expert`), it writes one for the arithmetic part only.
    """

    name = "fake"

    def __init__(self, by_adapter: bool = False) -> None:
        self.added: dict[str, Path] = {}
        self.by_adapter = by_adapter  # experts known by their adapter only, not their prompt
        self.budgets: list[tuple[str | None, Any]] = []  # (adapter, max_new_tokens) per chat
        self.asked: list[tuple[str | None, str, str]] = []  # (adapter, system, text) per call

    def add_adapter(self, name: str, folder: Path) -> None:
        self.added[name] = Path(folder)

    def adapters(self) -> list[str]:
        return list(self.added)

    def chat_model(self, adapter: str | None = None, **generation: Any) -> FakeChat:
        self.budgets.append((adapter, generation.get("max_new_tokens")))
        return FakeChat(label=adapter or "base", reply=lambda m: self.reply(m, adapter))

    def reply(self, messages: list[BaseMessage], adapter: str | None) -> str:
        system = " ".join(str(m.content) for m in messages if isinstance(m, SystemMessage))
        text = str(messages[-1].content)
        self.asked.append((adapter, system, text))
        if "<q>" in system or "sub-queries" in system.lower() or "decompos" in system.lower():
            first, _, second = text.partition(" Also, ")
            return f"<q>{first}</q><q>{second}</q>"
        if system.startswith(PROGRAM_PROMPT):
            return PROGRAM if "times" in text else "No program for this one."
        if text.startswith("Here are answers"):  # the aggregator repeats the parts
            return " ".join(line for line in text.splitlines() if line.startswith("Answer:"))
        who = (adapter or "") if self.by_adapter else (adapter or system)
        if "all-domains" in who:  # knows every domain, so it answers a whole question too
            return " and ".join(a for k, a in (("gas", "Neon"), ("times", "42")) if k in text)
        if "chemistry" in who and "gas" in text:
            return "The answer is (A) Neon."
        if "mathematics" in who and "times" in text:
            return "The answer is 42."
        return "I do not know."


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    model = FakeModel()
    monkeypatch.setattr("compllm_graph.evaluation.systems.load_model", lambda *a, **k: model)
    store = ExpertStore.create(tmp_path / "store", "hashing:64")
    for name, texts in {
        "chemistry": ["Which gas is inert?", "noble gases and oxygen", "gas Neon Oxygen"],
        "mathematics": ["What is 6 times 7?", "multiply numbers times", "arithmetic 6 7"],
    }.items():
        store.add_expert(name, texts, system_prompt=f"You are a {name} expert.")
    adapter = tmp_path / "all-domains"
    adapter.mkdir()
    benchmark = write(tmp_path / "p2.jsonl", RECORDS)
    return {"model": model, "store": tmp_path / "store", "file": benchmark, "adapter": adapter}


def eval_answers(fake: dict[str, Any], system: str, *extra: str) -> None:
    argv = ["eval", "answers", str(fake["file"]), "--system", system, "--json"]
    argv += ["--store", str(fake["store"]), "--all-domains-adapter", str(fake["adapter"])]
    assert main([*argv, *extra]) == 0


@pytest.mark.parametrize(
    ("system", "accuracy"),
    [
        ("oracle-router", 1.0),
        ("monolith", 0.0),
        ("ft", 1.0),
        ("one-adapter", 1.0),
        ("all-experts", 1.0),
        ("compllm", None),
    ],
)
def test_each_system_answers_through_the_command(
    fake: dict[str, Any], system: str, accuracy: float | None, capsys: pytest.CaptureFixture
) -> None:
    eval_answers(fake, system)
    out = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(out[-1])
    assert summary["system"] == system and summary["n"] == 3
    assert out[0].startswith(f"{system}: accuracy")
    if accuracy is not None:
        assert summary["accuracy"] == accuracy
    assert ("all-domains" in fake["model"].added) is (system in ("ft", "one-adapter"))


@pytest.mark.parametrize(
    ("flags", "prompt"), [((), BASE_SYSTEM_PROMPT), (("--no-base-prompt",), None)]
)
def test_the_monolith_gets_the_prompt_of_the_pipelines_base_model(
    fake: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    flags: tuple[str, ...],
    prompt: str | None,
) -> None:
    systems: list[str | None] = []
    reply = fake["model"].reply

    def recording(messages: list[BaseMessage], adapter: str | None) -> str:
        first = messages[0]
        systems.append(str(first.content) if isinstance(first, SystemMessage) else None)
        return reply(messages, adapter)

    monkeypatch.setattr(fake["model"], "reply", recording)
    eval_answers(fake, "monolith", *flags)
    assert systems == [prompt] * 3


@pytest.mark.parametrize("system", ["oracle-router", "random-router", "compllm", "all-experts"])
def test_concurrent_answers_match_answers_one_at_a_time(
    fake: dict[str, Any], system: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    rows = {}
    for concurrency in ("1", "3"):
        outputs = tmp_path / f"{system}.{concurrency}.jsonl"
        eval_answers(fake, system, "--outputs", str(outputs), "--concurrency", concurrency)
        rows[concurrency] = {
            k: (v["answer"], v["routes"], v["edges"], v["fallback_reason"], v["sub_answers"])
            for k, v in answered(outputs).items()
        }
    assert all(isinstance(edges, list) for _, _, edges, _, _ in rows["1"].values())
    assert rows["1"] == rows["3"] and len(rows["1"]) == 3
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["eval", "answers", str(fake["file"]), "--concurrency", "0"])
    assert "must be at least 1" in capsys.readouterr().err


def test_the_command_resumes_from_its_outputs(
    fake: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    outputs = tmp_path / "oracle.jsonl"
    eval_answers(fake, "oracle-router", "--outputs", str(outputs), "--limit", "2")
    assert len(outputs.read_text().splitlines()) == 2
    eval_answers(fake, "oracle-router", "--outputs", str(outputs))
    lines = [json.loads(x) for x in outputs.read_text().splitlines()]
    assert [x["id"] for x in lines] == ["q0", "q1", "q2"]
    assert lines[0]["routes"] == ["chemistry", "mathematics"]
    assert len(lines[0]["sub_answers"]) == 2
    capsys.readouterr()
    assert main(["eval", "attribution", str(fake["file"]), str(outputs)]) == 0
    assert "| oracle.jsonl | 3 | 3 (100%) |" in capsys.readouterr().out


def test_a_bad_benchmark_file_exits_2_before_loading_a_model(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{}\n")
    assert main(["eval", "answers", str(bad)]) == 2
    assert "a record needs exactly" in capsys.readouterr().err


def test_the_expert_table_compares_each_expert_with_the_base(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from tests.random_lora import save_random_lora
    from tests.tiny import tiny_llama

    model = FakeModel(by_adapter=True)
    monkeypatch.setattr("compllm_graph.evaluation.systems.load_model", lambda *a, **k: model)
    store = ExpertStore.create(tmp_path / "store", "hashing:64")
    adapter = save_random_lora(tiny_llama(), tmp_path / "lora", seed=0)
    store.add_expert(
        "chemistry", ["gases"], system_prompt="You are a chemistry expert.", adapter=adapter
    )
    single = [
        {"id": f"s{i}", "question": CHEMISTRY["question"], "parts": [CHEMISTRY], "edges": []}
        for i in range(4)
    ]
    path = write(tmp_path / "single-chemistry.jsonl", single)
    argv = ["eval", "experts", str(path), "--store", str(tmp_path / "store"), "--json"]
    assert main([*argv, "--outputs", str(tmp_path / "answers")]) == 0
    out = capsys.readouterr().out.splitlines()
    row = json.loads(out[-1])["rows"][0]
    assert row["domain"] == "chemistry" and row["n"] == 4
    assert row["base"] == 0.0 and row["expert"] == 1.0 and row["difference"]["significant"]
    assert out[0] == "| domain | n | base | expert | expert - base |"
    assert (tmp_path / "answers" / "single-chemistry.expert.jsonl").is_file()
    other = write(
        tmp_path / "single-law.jsonl", [{**single[0], "parts": [{**CHEMISTRY, "domain": "law"}]}]
    )
    assert main(["eval", "experts", str(other), "--store", str(tmp_path / "store")]) == 2
    assert "no expert for 'law'" in capsys.readouterr().err


def test_the_command_answers_changed_questions_again_only_when_asked(
    fake: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    outputs = tmp_path / "out.jsonl"
    eval_answers(fake, "oracle-router", "--outputs", str(outputs))
    changed = {**RECORDS[0], "question": f"{RECORDS[0]['question']} Now?"}
    write(fake["file"], [changed, *RECORDS[1:]])
    argv = ["eval", "answers", str(fake["file"]), "--system", "oracle-router", "--outputs"]
    argv += [str(outputs), "--store", str(fake["store"])]
    assert main(argv) == 1
    assert "--redo-changed" in capsys.readouterr().err
    assert main([*argv, "--redo-changed"]) == 0
    assert set(answered(outputs)) == {"q0", "q1", "q2"}
    assert set(answered(tmp_path / "out.changed.jsonl")) == {"q0"}


@pytest.mark.parametrize(
    ("flags", "prompt"), [((), BASE_SYSTEM_PROMPT), (("--no-base-prompt",), None)]
)
def test_ft_answers_the_whole_question_in_one_call_through_the_all_domains_adapter(
    fake: dict[str, Any], tmp_path: Path, flags: tuple[str, ...], prompt: str | None
) -> None:
    outputs = tmp_path / "ft.jsonl"
    eval_answers(fake, "ft", "--outputs", str(outputs), "--max-new-tokens", "50", *flags)
    model = fake["model"]
    # one call per question, the question whole, with the monolith's prompt and budget
    assert model.asked == [("all-domains", prompt or "", r["question"]) for r in RECORDS]
    assert set(model.budgets) == {("all-domains", 50 * 3)}  # two parts plus the aggregator's
    lines = list(answered(outputs).values())
    assert [line["answer"] for line in lines] == ["Neon and 42"] * 3
    assert all(line["sub_answers"] == [] and line["routes"] == [] for line in lines)


def test_one_adapter_sends_every_sub_query_to_the_all_domains_adapter(
    fake: dict[str, Any], tmp_path: Path
) -> None:
    outputs = tmp_path / "one-adapter.jsonl"
    eval_answers(fake, "one-adapter", "--outputs", str(outputs))
    for line in answered(outputs).values():
        assert line["routes"] == ["all-domains", "all-domains"]
        assert [s["expert"] for s in line["sub_answers"]] == ["all-domains", "all-domains"]
    experts = {adapter for adapter, system, _ in fake["model"].asked if "expert" in system}
    assert experts == set()  # no store expert is asked
    assert ("all-domains", 160) in fake["model"].budgets


def test_all_experts_asks_every_expert_once_per_sub_query_and_combines(
    fake: dict[str, Any], tmp_path: Path
) -> None:
    outputs = tmp_path / "all-experts.jsonl"
    eval_answers(fake, "all-experts", "--outputs", str(outputs))
    asked = [(system, text) for _, system, text in fake["model"].asked if "expert" in system]
    subs = [CHEMISTRY["question"], MATHS["question"]]
    experts = ["You are a chemistry expert.", "You are a mathematics expert."]
    # three questions, two sub-queries each, every sub-query to both experts exactly once
    assert sorted(asked) == sorted((e, q) for q in subs for e in experts for _ in RECORDS)
    for line in answered(outputs).values():
        assert line["routes"] == ["all-experts", "all-experts"]
        chemistry, maths = line["sub_answers"]
        assert chemistry["expert"] == "all-experts" and chemistry["combined"] == "majority"
        assert chemistry["answer"] == "The answer is (A) Neon."  # the one normalised answer
        assert chemistry["expert_answers"] == {
            "chemistry": "The answer is (A) Neon.",
            "mathematics": "I do not know.",
        }
        assert maths["answer"] == "The answer is 42."
        assert maths["expert_answers"]["chemistry"] == "I do not know."


def test_a_store_without_experts_cannot_answer_all_experts(
    fake: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    ExpertStore.create(tmp_path / "empty", "hashing:64")
    argv = ["eval", "answers", str(fake["file"]), "--system", "all-experts"]
    assert main([*argv, "--store", str(tmp_path / "empty")]) == 2
    assert "needs at least one expert" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("system", "route", "writer"),
    [("all-experts", "all-domains", "one-adapter"), ("one-adapter", "all-experts", "all-experts")],
)
def test_outputs_of_the_renamed_system_are_not_resumed_under_the_other(
    fake: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    system: str,
    route: str,
    writer: str,
) -> None:
    # before the paper's all-experts, `--system all-experts` wrote lines routed to all-domains
    outputs = tmp_path / "old.jsonl"
    line = {"id": "q0", "answer": "Neon and 42", "sub_answers": [], "routes": [route, route]}
    outputs.write_text(json.dumps(line) + "\n")
    argv = ["eval", "answers", str(fake["file"]), "--system", system, "--outputs", str(outputs)]
    assert main([*argv, "--store", str(fake["store"])]) == 2
    err = capsys.readouterr().err
    assert f"holds answers of --system {writer}" in err
    assert ("called 'all-experts' before" in err) is (writer == "one-adapter")
    assert fake["model"].asked == []  # refused before any model is asked
    assert len(outputs.read_text().splitlines()) == 1


def test_an_unknown_system_is_refused_with_the_known_ones(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(ValueError, match=r"unknown system 'oracle'.*'oracle-router'"):
        check_system("oracle")
    assert check_system("one-adapter") == "one-adapter"
    with pytest.raises(SystemExit):
        main(["eval", "answers", "b.jsonl", "--system", "all-domains"])
    assert "invalid choice: 'all-domains'" in capsys.readouterr().err


SETTINGS_ALL_DEFAULT = {
    "aggregate": "auto",
    "split_questions": True,
    "program_expert": False,
    "carry_premise": True,
}


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize(
    ("system", "flags", "settings"),
    [
        ("oracle-router", (), SETTINGS_ALL_DEFAULT),
        (
            "oracle-router",
            ("--aggregate", "always", "--no-split-questions", "--program-expert"),
            {
                "aggregate": "always",
                "split_questions": False,
                "program_expert": True,
                "carry_premise": True,
            },
        ),
        (
            "one-adapter",
            ("--aggregate", "always"),
            {"aggregate": "always", "split_questions": True, "carry_premise": True},
        ),
        (  # the chain rule is recorded only when off
            "compllm",
            ("--no-split-chains",),
            {**SETTINGS_ALL_DEFAULT, "split_chains": False},
        ),
        (  # the premise rule is recorded only when on
            "compllm",
            ("--no-carry-premise",),
            {"aggregate": "auto", "split_questions": True, "program_expert": False},
        ),
        ("monolith", (), None),
    ],
)
def test_each_outputs_line_records_the_settings_that_change_its_answer(
    fake: dict[str, Any],
    tmp_path: Path,
    system: str,
    flags: tuple[str, ...],
    settings: dict[str, Any] | None,
) -> None:
    outputs = tmp_path / "out.jsonl"
    eval_answers(fake, system, "--outputs", str(outputs), *flags)
    assert [line.get("settings") for line in _lines(outputs)] == [settings] * len(RECORDS)


@pytest.mark.parametrize(("flags", "reduced"), [((), False), (("--aggregate", "always"), True)])
def test_the_reducer_runs_on_independent_parts_only_under_aggregate_always(
    fake: dict[str, Any], capsys: pytest.CaptureFixture, flags: tuple[str, ...], reduced: bool
) -> None:
    eval_answers(fake, "oracle-router", *flags)
    reducer = [text for _, _, text in fake["model"].asked if text.startswith("Here are answers")]
    assert len(reducer) == (len(RECORDS) if reduced else 0)
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["accuracy"] == 1.0


@pytest.mark.parametrize("system", ["oracle-router", "all-experts"])
def test_the_program_expert_answers_for_the_mathematics_expert(
    fake: dict[str, Any], tmp_path: Path, system: str
) -> None:
    outputs = tmp_path / "out.jsonl"
    eval_answers(fake, system, "--outputs", str(outputs), "--program-expert")
    by_program = f"{PROGRAM}\nThe answer is 42."  # the program the sandbox ran, and its number
    for line in _lines(outputs):
        chemistry, maths = line["sub_answers"]
        assert maths["answer"] == by_program and chemistry["answer"] == "The answer is (A) Neon."
        if system == "all-experts":  # asked of a chemistry part, no program ran: the expert
            assert maths["expert_answers"]["mathematics"] == by_program
            assert chemistry["expert_answers"]["mathematics"] == "I do not know."
    prompts = [system for _, system, _ in fake["model"].asked if system.startswith(PROGRAM_PROMPT)]
    assert prompts  # the base model wrote the programs


def test_the_program_expert_needs_a_mathematics_expert_in_the_store(
    fake: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    store = ExpertStore.create(tmp_path / "chemistry-only", "hashing:64")
    store.add_expert("chemistry", ["Which gas is inert?"])
    argv = ["eval", "answers", str(fake["file"]), "--system", "compllm", "--program-expert"]
    assert main([*argv, "--store", str(tmp_path / "chemistry-only")]) == 2
    assert "has none (its experts: ['chemistry'])" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("system", "flags", "unused"),
    [
        ("monolith", ("--aggregate", "always"), "--aggregate"),
        (
            "ft",
            ("--no-split-questions", "--program-expert"),
            "--no-split-questions, --program-expert",
        ),
        ("one-adapter", ("--program-expert",), "--program-expert"),
        ("monolith", ("--decomposer-model", "small"), "--decomposer-model"),
        ("ft", ("--no-split-chains",), "--no-split-chains"),
        ("monolith", ("--no-carry-premise",), "--no-carry-premise"),
    ],
)
def test_a_flag_the_system_does_not_use_is_refused(
    fake: dict[str, Any],
    capsys: pytest.CaptureFixture,
    system: str,
    flags: tuple[str, ...],
    unused: str,
) -> None:
    argv = ["eval", "answers", str(fake["file"]), "--system", system, "--store", str(fake["store"])]
    assert main([*argv, *flags]) == 2
    assert f"error: --system {system} does not use {unused}: " in capsys.readouterr().err
    assert fake["model"].asked == []


def test_a_resumed_run_with_other_settings_is_refused_before_any_model_is_asked(
    fake: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    outputs = tmp_path / "oracle.jsonl"
    eval_answers(fake, "oracle-router", "--outputs", str(outputs), "--limit", "1")
    asked = len(fake["model"].asked)
    argv = ["eval", "answers", str(fake["file"]), "--system", "oracle-router"]
    argv += ["--outputs", str(outputs), "--store", str(fake["store"])]
    for flags, given in [
        (("--aggregate", "always"), "--aggregate always"),
        (("--no-split-questions",), "--aggregate auto --no-split-questions"),
        (("--program-expert",), "--aggregate auto --program-expert"),
        (("--decomposer-model", "small"), "--aggregate auto --decomposer-model small"),
        (("--no-split-chains",), "--aggregate auto --no-split-chains"),
        (("--no-carry-premise",), "--aggregate auto --no-carry-premise"),
    ]:
        assert main([*argv, *flags]) == 2
        err = capsys.readouterr().err
        made = "holds answers made with --aggregate auto, and this run would answer with"
        assert f"{made} {given}: resume it with the same flags" in err
    assert len(fake["model"].asked) == asked and len(_lines(outputs)) == 1
    assert main(argv) == 0  # the same settings resume it
    assert [line["settings"] for line in _lines(outputs)] == [SETTINGS_ALL_DEFAULT] * 3


def test_lines_without_settings_count_as_answered_before_the_flags_existed(
    fake: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # a committed cell's line: written before --aggregate and the and-split rule existed
    outputs = tmp_path / "compllm.p2.jsonl"
    line = {"id": "q0", "answer": "Neon and 42", "sub_answers": [], "routes": ["chemistry"] * 2}
    outputs.write_text(json.dumps(line) + "\n")
    argv = ["eval", "answers", str(fake["file"]), "--system", "compllm"]
    argv += ["--outputs", str(outputs), "--store", str(fake["store"])]
    assert main(argv) == 2
    assert (
        "holds answers made with --aggregate always --no-split-questions --no-carry-premise (its "
        "lines record no settings: they predate these flags), and this run would answer with "
        "--aggregate auto:"
    ) in capsys.readouterr().err
    assert main([*argv, "--aggregate", "always", "--no-split-questions"]) == 2
    assert "this run would answer with --aggregate always --no-split-questions:" in (
        capsys.readouterr().err
    )
    flags = ["--aggregate", "always", "--no-split-questions", "--no-carry-premise"]
    assert main([*argv, *flags]) == 0
    recorded = [line.get("settings") for line in _lines(outputs)]
    former = {"aggregate": "always", "split_questions": False, "program_expert": False}
    assert recorded == [None, former, former]


@pytest.fixture
def small(fake: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """`fake`, with `--decomposer-model small` loading a model of its own; `loads` keeps what
    each load was asked for."""
    model = FakeModel()
    model.name = "small"
    loads: list[tuple[str, dict[str, Any]]] = []

    def load_model(name: str, **options: Any) -> FakeModel:
        loads.append((name, options))
        return model if name == "small" else fake["model"]

    monkeypatch.setattr("compllm_graph.evaluation.systems.load_model", load_model)
    return {**fake, "small": model, "loads": loads}


@pytest.mark.parametrize("system", ["oracle-router", "all-experts"])
def test_the_decomposer_model_decomposes_and_each_line_records_it(
    small: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture, system: str
) -> None:
    outputs = tmp_path / "out.jsonl"
    flags = ("--outputs", str(outputs), "--decomposer-model", "small", "--threads", "2")
    eval_answers(small, system, *flags)
    assert small["loads"][1:] == [("small", {"engine": None, "n_threads": 2})]  # as --model
    # the small model decomposed each question, and did nothing else; the base model answered
    assert [text for _, _, text in small["small"].asked] == [r["question"] for r in RECORDS]
    assert small["model"].asked and all(
        text not in {r["question"] for r in RECORDS} for _, _, text in small["model"].asked
    )
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["accuracy"] == 1.0
    recorded = {**SETTINGS_ALL_DEFAULT, "decomposer_model": "small"}
    assert [line["settings"] for line in _lines(outputs)] == [recorded] * len(RECORDS)


def test_answers_made_with_and_without_a_decomposer_model_are_not_mixed(
    small: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with_it, without, old = tmp_path / "with.jsonl", tmp_path / "without.jsonl", tmp_path / "old"
    first = ("--limit", "1", "--decomposer-model", "small")
    eval_answers(small, "oracle-router", "--outputs", str(with_it), *first)
    eval_answers(small, "oracle-router", "--outputs", str(without), "--limit", "1")
    line = {"id": "q0", "answer": "Neon and 42", "sub_answers": [], "routes": ["chemistry"] * 2}
    old.write_text(json.dumps(line) + "\n")  # a line from before the settings were recorded
    loads, asked = len(small["loads"]), len(small["model"].asked) + len(small["small"].asked)
    capsys.readouterr()
    argv = ["eval", "answers", str(small["file"]), "--system", "oracle-router"]
    argv += ["--store", str(small["store"]), "--outputs"]
    made = "holds answers made with"
    for outputs, flags, refused in [
        (
            with_it,
            (),
            f"{made} --aggregate auto --decomposer-model small, and this run would answer "
            "with --aggregate auto: resume",
        ),
        (
            without,
            ("--decomposer-model", "small"),
            f"{made} --aggregate auto, and this run would answer with --aggregate auto "
            "--decomposer-model small: resume",
        ),
        (
            with_it,
            ("--decomposer-model", "big"),
            f"{made} --aggregate auto --decomposer-model small, and this run would answer "
            "with --aggregate auto --decomposer-model big: resume",
        ),
        (
            old,
            ("--decomposer-model", "small"),
            f"{made} --aggregate always --no-split-questions --no-carry-premise (its lines "
            "record no settings",
        ),
    ]:
        assert main([*argv, str(outputs), *flags]) == 2
        assert refused in capsys.readouterr().err
    # refused before any model was loaded or asked
    assert len(small["loads"]) == loads
    assert len(small["model"].asked) + len(small["small"].asked) == asked
    assert main([*argv, str(with_it), "--decomposer-model", "small"]) == 0  # the same: resumed
    assert len(_lines(with_it)) == len(RECORDS)


def test_the_decomposer_model_is_refused_with_an_endpoint(
    small: dict[str, Any], capsys: pytest.CaptureFixture
) -> None:
    argv = ["eval", "answers", str(small["file"]), "--decomposer-model", "small"]
    # refused before the server is contacted (nothing listens on port 9)
    assert main([*argv, "--endpoint", "http://127.0.0.1:9/v1"]) == 2
    err = capsys.readouterr().err
    assert "error: --decomposer-model small loads a model in this process; with --endpoint" in err
    assert small["loads"] == []


def test_a_finished_outputs_file_is_scored_whatever_the_flags(
    fake: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    outputs = tmp_path / "oracle.jsonl"
    eval_answers(fake, "oracle-router", "--outputs", str(outputs), "--aggregate", "always")
    asked = len(fake["model"].asked)
    capsys.readouterr()
    eval_answers(fake, "oracle-router", "--outputs", str(outputs))  # nothing left to answer
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["n"] == len(RECORDS)
    assert len(fake["model"].asked) == asked


def test_the_help_says_the_committed_cells_reduced_always(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["eval", "answers", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert (
        "(default: auto). The committed cells in benchmarks/answers were answered with always"
        in text
    )
    assert "--aggregate always --no-split-questions" in text
