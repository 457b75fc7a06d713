"""`compllm eval answers|decomposition --endpoint` against a real OpenAI-compatible server.

The server is `compllm serve`'s app on 127.0.0.1, in this process, serving the fake base model
of `test_answers` and its all-domains adapter; the in-process runs use the same fake, so the
two runs must give the same answers line for line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langchain_openai", reason="needs the [remote] extra")
pytest.importorskip("starlette", reason="needs the [serve] extra")

from langchain_core.messages import BaseMessage

from compllm_graph.cli import main
from compllm_graph.evaluation.answers import answered
from compllm_graph.evaluation.endpoints import ENDPOINT_KEY
from compllm_graph.expert_store import ExpertStore
from compllm_graph.models.remote import endpoint_limit
from compllm_graph.serve import create_app, serve_in_thread
from tests.evaluation.test_answers import RECORDS, FakeModel, write

SYSTEMS = [
    "monolith",
    "ft",
    "compllm",
    "all-experts",
    "one-adapter",
    "random-router",
    "oracle-router",
]


@pytest.fixture
def setup(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The fake model, in-process (patched `load_model`) and served, with a store and a file."""
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
    served = {
        "fake": model.chat_model(),
        "all-domains": model.chat_model(adapter="all-domains"),
        "decomposer": model.chat_model(adapter="decomposer"),  # for `eval decomposition`
    }
    with serve_in_thread(create_app(served, max_new_tokens=4096)) as url:
        yield {
            "model": model,
            "served": served,
            "url": url,
            "store": store.path,
            "adapter": adapter,
            "file": write(tmp_path / "p2.jsonl", RECORDS),
            "tmp": tmp_path,
        }


def answers(setup: dict[str, Any], system: str, outputs: Path, *extra: str) -> int:
    argv = ["eval", "answers", str(setup["file"]), "--system", system, "--json"]
    argv += ["--store", str(setup["store"]), "--all-domains-adapter", str(setup["adapter"])]
    return main([*argv, "--outputs", str(outputs), *extra])


def comparable(outputs: Path) -> dict[str, Any]:
    """Each line less what differs between two runs of the same answers."""
    return {
        key: {k: v for k, v in row.items() if k not in ("seconds", ENDPOINT_KEY)}
        for key, row in answered(outputs).items()
    }


@pytest.mark.parametrize("system", SYSTEMS)
def test_every_system_answers_through_the_endpoint_as_in_process(
    setup: dict[str, Any], system: str, capsys: pytest.CaptureFixture
) -> None:
    local, remote = setup["tmp"] / "local.jsonl", setup["tmp"] / "remote.jsonl"
    assert answers(setup, system, local) == 0
    assert answers(setup, system, remote, "--endpoint", setup["url"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["endpoint"] == {"url": setup["url"], "model": "fake"} and summary["n"] == 3
    assert comparable(remote) == comparable(local) and len(comparable(local)) == 3
    rows = answered(remote).values()
    assert all(row[ENDPOINT_KEY] == {"url": setup["url"], "model": "fake"} for row in rows)
    assert all(ENDPOINT_KEY not in row for row in answered(local).values())


def test_a_resume_needs_the_same_endpoint_and_model(
    setup: dict[str, Any], capsys: pytest.CaptureFixture
) -> None:
    remote, local = setup["tmp"] / "remote.jsonl", setup["tmp"] / "local.jsonl"
    assert answers(setup, "monolith", remote, "--endpoint", setup["url"], "--limit", "2") == 0
    asked = len(setup["model"].asked)
    assert answers(setup, "monolith", remote, "--endpoint", setup["url"], "--model", "fake") == 0
    assert len(setup["model"].asked) == asked + 1  # only the third question was asked
    assert list(answered(remote)) == ["q0", "q1", "q2"]
    write(setup["file"], [*RECORDS, {**RECORDS[0], "id": "q3"}])
    capsys.readouterr()
    assert answers(setup, "monolith", remote) == 2  # in-process onto endpoint answers
    assert "answers made by 'fake' at http://127.0.0.1" in capsys.readouterr().err
    assert answers(setup, "monolith", local, "--limit", "1") == 0
    assert answers(setup, "monolith", local, "--endpoint", setup["url"]) == 2
    err = capsys.readouterr().err
    assert "holds answers made in-process" in err and "another --outputs" in err
    wrong = ["--endpoint", setup["url"], "--model", "all-domains"]
    assert answers(setup, "monolith", remote, *wrong) == 2  # another served model
    assert "resume it with the same --endpoint and --model" in capsys.readouterr().err
    assert answers(setup, "monolith", remote, "--endpoint", setup["url"]) == 0
    assert len(answered(remote)) == 4


def test_a_finished_file_is_scored_without_the_server(
    setup: dict[str, Any], capsys: pytest.CaptureFixture
) -> None:
    remote = setup["tmp"] / "remote.jsonl"
    assert answers(setup, "monolith", remote, "--endpoint", setup["url"]) == 0
    closed = "http://127.0.0.1:9/v1"  # nothing listens there
    assert answers(setup, "monolith", remote, "--endpoint", closed) == 0
    capsys.readouterr()
    write(setup["file"], [*RECORDS, {**RECORDS[0], "id": "q3"}])
    assert answers(setup, "monolith", remote, "--endpoint", closed) == 2
    assert "cannot list the models served at http://127.0.0.1:9/v1" in capsys.readouterr().err


def test_a_model_or_adapter_the_server_lacks_is_named_before_any_question(
    setup: dict[str, Any], capsys: pytest.CaptureFixture
) -> None:
    outputs = setup["tmp"] / "out.jsonl"
    url = setup["url"]
    assert answers(setup, "monolith", outputs, "--endpoint", url, "--model", "nope") == 2
    served = "it serves ['fake', 'all-domains', 'decomposer']"
    assert f"does not serve 'nope'; {served}" in capsys.readouterr().err
    store = ExpertStore.open(setup["store"])
    store.add_expert("biology", ["cells"], adapter=_fake_adapter(setup["tmp"] / "biology"))
    lora = next(e.adapter for e in store.experts() if e.name == "biology")  # the store's copy
    assert answers(setup, "compllm", outputs, "--endpoint", url) == 2
    err = capsys.readouterr().err
    assert f"does not serve the adapter 'biology' ({lora})" in err
    assert f"--adapter biology={lora}" in err and f"--lora-modules biology={lora}" in err
    assert not outputs.exists() and setup["model"].asked == []


def _fake_adapter(folder: Path) -> Path:
    """A LoRA folder a store accepts: a config and weights (the server never reads it)."""
    from tests.random_lora import save_random_lora
    from tests.tiny import tiny_llama

    return save_random_lora(tiny_llama(), folder, seed=0)


def test_a_failing_server_stops_the_run_and_records_nothing_degraded(
    setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    outputs = setup["tmp"] / "out.jsonl"
    model, reply = setup["model"], setup["model"].reply
    chemistry: list[str] = []

    def failing(messages: list[BaseMessage], adapter: str | None) -> str:
        if "chemistry expert" in str(messages[0].content):
            chemistry.append(str(messages[-1].content))
            if len(chemistry) > 1:  # q0's expert answers; every later call fails
                raise RuntimeError("the GPU fell over")
        return reply(messages, adapter)

    monkeypatch.setattr(model, "reply", failing)
    flags = ["--endpoint", setup["url"], "--retries", "0"]
    assert answers(setup, "oracle-router", outputs, *flags) == 1
    err = capsys.readouterr().err
    assert "a request to http://127.0.0.1" in err and "failed after its retries" in err
    assert "while 'q1' was answered" in err and "Error code: 500" in err
    assert list(answered(outputs)) == ["q0"]  # q1 fell back to the base model: not recorded
    monkeypatch.setattr(model, "reply", reply)
    assert answers(setup, "oracle-router", outputs, *flags) == 0
    done = answered(outputs)
    assert list(done) == ["q0", "q1", "q2"]
    assert not any(row["fallback_reason"] for row in done.values())


def test_the_endpoint_limit_bounds_requests_in_flight(
    setup: dict[str, Any], capsys: pytest.CaptureFixture
) -> None:
    outputs = setup["tmp"] / "out.jsonl"
    setup["served"]["fake"].delay = 0.2  # so the three questions' requests overlap
    flags = ["--endpoint", setup["url"], "--endpoint-concurrency", "2", "--concurrency", "3"]
    assert answers(setup, "compllm", outputs, *flags) == 0
    limit = endpoint_limit(setup["url"])
    assert limit.capacity == 2 and limit.peak == 2 and limit.failures == 0
    assert len(answered(outputs)) == 3


def test_runs_in_one_process_share_the_endpoints_limit(
    setup: dict[str, Any], capsys: pytest.CaptureFixture
) -> None:
    """A second run without --endpoint-concurrency keeps the limit an earlier run set (it is
    shared by every chat model of the endpoint); only a contradicting number is refused."""
    flags = ["--endpoint", setup["url"], "--endpoint-concurrency", "3"]
    assert answers(setup, "monolith", setup["tmp"] / "first.jsonl", *flags) == 0
    assert decomposition(setup) == 0
    assert endpoint_limit(setup["url"]).capacity == 3
    again = ["--endpoint", setup["url"], "--endpoint-concurrency", "5"]
    assert answers(setup, "monolith", setup["tmp"] / "third.jsonl", *again) == 2
    assert "already has max_concurrency=3" in capsys.readouterr().err


def decomposition(setup: dict[str, Any], *extra: str) -> int:
    argv = ["eval", "decomposition", str(setup["file"]), "--json"]
    return main([*argv, "--endpoint", setup["url"], *extra])


def test_the_decomposition_f1_through_the_endpoint(
    setup: dict[str, Any], capsys: pytest.CaptureFixture
) -> None:
    outputs = setup["tmp"] / "decompositions.jsonl"
    assert decomposition(setup, "--outputs", str(outputs)) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["n"] == 3 and report["parse_rate"] == 1.0 and report["subquery_f1"] == 1.0
    rows = [json.loads(line) for line in outputs.read_text().splitlines()]
    assert rows[0]["output"].startswith("<q>Which gas is inert?")
    assert rows[0]["endpoint"] == {"url": setup["url"], "model": "decomposer"}
    asked = setup["model"].asked
    assert [adapter for adapter, _, _ in asked] == ["decomposer"] * 3
    assert decomposition(setup, "--few-shot") == 0  # the base model, with the few-shot prompt
    assert [adapter for adapter, _, _ in asked[3:]] == [None] * 3
    assert "Question: " in asked[3][2]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--constrained"], "--constrained over an endpoint needs --endpoint-grammar vllm"),
        (["--endpoint-grammar", "vllm"], "--endpoint-grammar sends --constrained's grammar"),
        (["--beams", "2"], "beam search runs in-process only"),
        (["--adapter", "some/folder"], "the server holds the decomposer adapter: serve some"),
        (["--served-decomposer", "dec-v2"], "does not serve the decomposer 'dec-v2'"),
        (["--model", "nope"], "does not serve 'nope'"),
    ],
)
def test_decomposition_options_the_server_cannot_honour_exit_2(
    setup: dict[str, Any], flags: list[str], message: str, capsys: pytest.CaptureFixture
) -> None:
    assert decomposition(setup, *flags) == 2
    assert message in capsys.readouterr().err
    assert setup["model"].asked == []


def test_a_failed_decomposition_request_exits_1(
    setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    def failing(messages: list[BaseMessage], adapter: str | None) -> str:
        raise RuntimeError("out of memory")

    monkeypatch.setattr(setup["model"], "reply", failing)
    assert decomposition(setup, "--retries", "0") == 1
    assert "3 requests failed after their retries (first, for 'q0'" in capsys.readouterr().err
