"""`compllm ask --thread ID --checkpoints PATH.sqlite`: runs keep their checkpoints and resume."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

pytest.importorskip("faiss", reason="needs the [router] extra")
pytest.importorskip("torch", reason="needs the [local] extra")

from langchain_core.runnables import RunnableConfig

from compllm_graph.cli import main
from compllm_graph.expert_store import ExpertStore
from compllm_graph.models import TransformersModel

sqlite_saver = pytest.importorskip(
    "langgraph.checkpoint.sqlite", reason="needs langgraph-checkpoint-sqlite ([durable] extra)"
)


def test_a_checkpointed_ask_keeps_its_thread(
    tiny: TransformersModel,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    monkeypatch.setattr("compllm_graph.models.load_model", lambda alias, **options: tiny)
    ExpertStore.create(tmp_path / "store", "hashing:64")
    db = tmp_path / "runs.sqlite"
    argv = ["ask", "why?", "--store", str(tmp_path / "store"), "--max-new-tokens", "4"]
    assert main([*argv, "--thread", "t1", "--checkpoints", str(db)]) == 0
    saver = sqlite_saver.SqliteSaver(sqlite3.connect(db, check_same_thread=False))
    saved = saver.get_tuple({"configurable": {"thread_id": "t1"}})
    assert saved is not None and saved.checkpoint["channel_values"]["answer"] is not None
    assert "Answer:" in capsys.readouterr().out


def test_checkpoints_and_thread_go_together(capsys: pytest.CaptureFixture) -> None:
    assert main(["ask", "why?", "--checkpoints", "x.sqlite"]) == 2
    assert "--checkpoints and --thread go together" in capsys.readouterr().err


def test_an_interrupted_thread_resumes_where_it_stopped(
    tiny: TransformersModel,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    from compllm_graph.defaults import build_default_graph

    monkeypatch.setattr("compllm_graph.models.load_model", lambda alias, **options: tiny)
    store = ExpertStore.create(tmp_path / "store", "hashing:64")
    db = tmp_path / "runs.sqlite"
    saver = sqlite_saver.SqliteSaver(sqlite3.connect(db, check_same_thread=False))
    stopped = build_default_graph(tiny, store, max_new_tokens=4).compile(
        checkpointer=saver, interrupt_before=["aggregate"]
    )
    config: RunnableConfig = {"configurable": {"thread_id": "t2"}}
    stopped.invoke({"query": "the first question?"}, config)
    argv = ["ask", "another question", "--store", str(tmp_path / "store")]
    assert main([*argv, "--thread", "t2", "--checkpoints", str(db)]) == 0
    captured = capsys.readouterr()
    assert "resuming thread 't2' at aggregate" in captured.err
    assert "Question: the first question?" in captured.out  # the interrupted one, not the new
