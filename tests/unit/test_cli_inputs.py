"""`compllm ask` with bad input: one error line and exit code 2, or the cleaned question answered.

The model and the graph are fakes (`load_model` and `build_default_graph` patched), so these run
the real `main` in milliseconds.
"""

import json
import sqlite3

import pytest
from langchain_core.messages import HumanMessage

from compllm_graph.cli import describe_event, main
from tests.unit.test_inputs import ARGV_BYTES, echo_graph, tokenizing_router


@pytest.fixture
def loads(monkeypatch) -> list[str]:
    """The models `ask` loads; the graph it builds is made of fakes."""
    pytest.importorskip("torch", reason="`compllm ask` needs the [local] extra")
    pytest.importorskip("faiss", reason="`compllm ask` needs the [router] extra")
    loaded: list[str] = []

    def load_model(name, **kwargs):
        loaded.append(name)
        return object()

    def build_default_graph(local_model, store, **kwargs):
        return echo_graph(tokenizing_router())

    monkeypatch.setattr("compllm_graph.models.load_model", load_model)
    monkeypatch.setattr("compllm_graph.defaults.build_default_graph", build_default_graph)
    return loaded


@pytest.mark.parametrize("question", ["", "   ", "\n\t"])
def test_an_empty_question_is_one_error_line_before_any_model_loads(loads, capsys, question):
    assert main(["ask", question]) == 2
    captured = capsys.readouterr()
    assert captured.err == "error: the question is empty or only whitespace: ask a question\n"
    assert captured.out == "" and loads == []


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["ask", "  "], "the question is empty or only whitespace"),
        (["ask", "q", "--checkpoints", "run.sqlite"], "--checkpoints and --thread go together"),
    ],
)
def test_with_json_a_failed_ask_ends_with_an_error_object(loads, capsys, argv, error):
    assert main([*argv, "--json"]) == 2
    (line,) = capsys.readouterr().out.splitlines()
    data = json.loads(line)
    assert list(data) == ["error"] and data["error"].startswith(error)


def test_undecodable_command_line_bytes_are_replaced_and_answered(loads, capsys):
    assert main(["ask", ARGV_BYTES, "--json"]) == 0
    out = capsys.readouterr().out
    report = json.loads(out.splitlines()[-1])
    assert report["query"] == "\ufffd\ufffd What is H2O?"
    assert report["routes"][0]["expert"] == "chemistry" and report["fallback_reason"] is None
    assert "Question: \ufffd\ufffd What is H2O?" in out


def test_the_stream_echo_says_when_the_router_failed():
    event = {
        "event": "route",
        "sub_query": 1,
        "expert": None,
        "score": 0.0,
        "on_ancestors": False,
        "fallback_reason": "the router raised TypeError: ...; the base model answers",
    }
    assert describe_event(event) == "route [1] -> base (0.00, the router failed)"


def test_asking_on_a_chat_thread_that_ends_in_an_answer_is_an_error(loads, capsys, tmp_path):
    sqlite_saver = pytest.importorskip("langgraph.checkpoint.sqlite").SqliteSaver
    path = tmp_path / "run.sqlite"
    chat = echo_graph().compile(
        checkpointer=sqlite_saver(sqlite3.connect(path, check_same_thread=False))
    )
    # another client chatted on the thread: its messages end in the answer, not a question
    chat.invoke({"messages": [HumanMessage("first?")]}, {"configurable": {"thread_id": "t"}})
    argv = ["ask", "second?", "--checkpoints", str(path), "--thread", "t", "--json"]
    assert main(argv) == 2
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line)["error"].startswith("the last message must be the question")
