"""`open_checkpointer`, what `compllm ask --checkpoints` opens: the target chooses the saver, and
every way it can fail is one `CheckpointError` or `MissingExtraError` naming the database (its
password hidden) or the extra. No server runs here: tests/integration/test_durable_postgres.py
starts one."""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path

import pytest

from compllm_graph._extras import MissingExtraError
from compllm_graph.checkpoints import CheckpointError, display_url, open_checkpointer


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (tests/servers.py's needs httpx, which the
    core-only venv lacks)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _needs_postgres_extra() -> None:
    pytest.importorskip("psycopg", reason="needs the [postgres] extra")
    pytest.importorskip("langgraph.checkpoint.postgres", reason="needs the [postgres] extra")


def test_no_target_is_no_checkpointer() -> None:
    assert open_checkpointer(None) is None


@pytest.mark.parametrize("module", ["psycopg", "langgraph.checkpoint.postgres"])
def test_a_postgres_url_without_the_extra_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, module: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    with pytest.raises(MissingExtraError, match=r"\[postgres\] extra"):
        open_checkpointer("postgresql://localhost/runs")


def test_an_unreachable_server_is_one_line_naming_the_database_not_its_password() -> None:
    _needs_postgres_extra()
    url = f"postgresql://compllm:s3cret@127.0.0.1:{free_port()}/runs"
    started = time.monotonic()
    with pytest.raises(CheckpointError) as caught:
        open_checkpointer(url)
    message = str(caught.value)
    assert message.startswith(
        f"cannot connect to the checkpoint database {display_url(url)}: connection"
    ), message
    assert "s3cret" not in message and "\n" not in message, message
    assert time.monotonic() - started < 10  # refused at once, not a hang


@pytest.mark.parametrize(
    ("target", "says"),
    [
        ("mysql://root:s3cret@db/runs", "unsupported checkpoint database mysql://root:***@db/runs"),
        ("postgresql://db/runs?bogus=1", "not a valid PostgreSQL URL: postgresql://db/runs"),
    ],
)
def test_a_bad_url_is_refused_before_connecting(target: str, says: str) -> None:
    if target.startswith("postgresql"):
        _needs_postgres_extra()
    with pytest.raises(CheckpointError) as caught:
        open_checkpointer(target)
    assert str(caught.value).startswith(says), caught.value


def test_a_sqlite_path_opens_a_sqlite_saver(tmp_path: Path) -> None:
    sqlite = pytest.importorskip("langgraph.checkpoint.sqlite", reason="needs the [durable] extra")
    saver = open_checkpointer(str(tmp_path / "runs.sqlite"))
    assert isinstance(saver, sqlite.SqliteSaver)


def test_a_sqlite_file_that_cannot_be_opened_is_a_checkpoint_error(tmp_path: Path) -> None:
    pytest.importorskip("langgraph.checkpoint.sqlite", reason="needs the [durable] extra")
    path = tmp_path / "no such folder" / "runs.sqlite"
    with pytest.raises(CheckpointError, match="cannot open the checkpoint database"):
        open_checkpointer(str(path))


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:pw@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgres://:pw@h/db", "postgres://:***@h/db"),
        (
            "postgresql://u@h/db?password=pw&sslmode=require",
            "postgresql://u@h/db?password=***&sslmode=require",
        ),
        ("postgresql://u@[::1]:5432/db", "postgresql://u@[::1]:5432/db"),
        ("postgresql:///db?host=/run/postgresql", "postgresql:///db?host=/run/postgresql"),
    ],
)
def test_display_url_hides_only_the_password(url: str, shown: str) -> None:
    assert display_url(url) == shown


def test_ask_with_an_unreachable_database_fails_before_loading_a_model(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    pytest.importorskip("torch", reason="`compllm ask` needs the [local] extra")
    _needs_postgres_extra()
    from compllm_graph.cli import main

    def load_model(*args: object, **kwargs: object) -> object:
        raise AssertionError("a model loaded before the database was reached")

    monkeypatch.setattr("compllm_graph.models.load_model", load_model)
    url = f"postgresql://compllm:s3cret@127.0.0.1:{free_port()}/runs"
    argv = ["ask", "why?", "--thread", "t", "--checkpoints", url, "--json"]
    assert main(argv) == 2
    captured = capsys.readouterr()
    (line,) = captured.err.splitlines()
    assert line.startswith("error: cannot connect to the checkpoint database postgresql://"), line
    assert "s3cret" not in captured.err + captured.out
    assert json.loads(captured.out)["error"] == line.removeprefix("error: ")
