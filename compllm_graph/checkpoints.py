"""Checkpointers from a target string: a SQLite file path or a PostgreSQL URL.

`compllm ask --checkpoints TARGET` opens its checkpointer here: `postgresql://...` (or
`postgres://...`) chooses LangGraph's `PostgresSaver` (the `[postgres]` extra), which creates or
migrates its tables on first use; anything else without a scheme is a SQLite file
(`SqliteSaver`, the `[durable]` extra). A database that cannot be opened, or that goes away in
the middle of a run, raises `CheckpointError` naming it (password hidden); what was checkpointed
before stays in the database, so the thread resumes once it is back.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING, Any

from compllm_graph._extras import requires
from compllm_graph.errors import CompLLMError

if TYPE_CHECKING:
    from langgraph.checkpoint.base import BaseCheckpointSaver

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
CONNECT_TIMEOUT_S = 10
"""How long to wait for the server when the URL sets no `connect_timeout` (libpq waits forever)."""
SETUP_WAIT_S = 60.0
"""How long a client waits for another one that is setting up the same database."""
_SETUP_LOCK = 0x636F6D706C6C6D
"""The advisory lock (b"compllm") that serialises `setup()` of clients starting at once: two
concurrent `CREATE TABLE IF NOT EXISTS` or migration inserts can fail in PostgreSQL."""


class CheckpointError(CompLLMError, RuntimeError):
    """The checkpoint database cannot be opened, or was lost in the middle of a run."""


def open_checkpointer(target: str | None) -> BaseCheckpointSaver | None:
    """The checkpointer that `target` names; None for None.

    The connection lives as long as the saver (for a command-line run, the process).

    Args:
        target: A PostgreSQL URL (`postgresql://user:password@host:port/database`, any libpq
            parameter in the query string) or a SQLite file path.

    Raises:
        MissingExtraError: The `[postgres]` or `[durable]` extra is not installed.
        CheckpointError: An unknown URL scheme, a malformed URL, or a database that cannot be
            reached or opened.
    """
    if target is None:
        return None
    if target.startswith(POSTGRES_SCHEMES):
        return open_postgres(target)
    if "://" in target:
        raise CheckpointError(
            f"unsupported checkpoint database {display_url(target)}: give a SQLite file path "
            "or a postgresql:// URL"
        )
    return open_sqlite(target)


def open_sqlite(path: str) -> BaseCheckpointSaver:
    """A `SqliteSaver` on the file at `path` (created if missing); needs the [durable] extra."""
    import sqlite3

    with requires("durable"):
        from langgraph.checkpoint.sqlite import SqliteSaver
    try:
        connection = sqlite3.connect(path, check_same_thread=False)
    except sqlite3.Error as err:
        raise CheckpointError(f"cannot open the checkpoint database {path}: {err}") from err
    return SqliteSaver(connection)


def open_postgres(url: str) -> BaseCheckpointSaver:
    """A `PostgresSaver` on `url`, its tables set up; needs the [postgres] extra.

    The connection is the one `PostgresSaver.from_conn_string` makes (autocommit, no prepared
    statements, dict rows); it waits `CONNECT_TIMEOUT_S` for the server unless the URL says.
    """
    with requires("postgres"):
        import psycopg
        from langgraph.checkpoint.postgres import PostgresSaver
        from psycopg.rows import dict_row

    saver_class = _reporting_saver(PostgresSaver)
    name = display_url(url)
    try:
        given = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError as err:
        raise CheckpointError(f"not a valid PostgreSQL URL: {name} ({_first_line(err)})") from err
    timeout: dict[str, Any] = (
        {} if "connect_timeout" in given else {"connect_timeout": CONNECT_TIMEOUT_S}
    )
    try:
        connection = psycopg.Connection.connect(
            url, autocommit=True, prepare_threshold=0, row_factory=dict_row, **timeout
        )
    except psycopg.Error as err:
        raise CheckpointError(
            f"cannot connect to the checkpoint database {name}: {_first_line(err)}"
        ) from err
    saver = saver_class(connection, database=name)
    try:
        with _setup_lock(connection, name):
            saver.setup()  # creates or migrates the tables; a no-op once they are current
    except psycopg.Error as err:  # no right to create tables, say
        connection.close()
        raise CheckpointError(
            f"cannot set up the checkpoint tables in {name}: {_first_line(err)}"
        ) from err
    except BaseException:
        connection.close()
        raise
    return saver


@contextmanager
def _setup_lock(connection: Any, name: str) -> Iterator[None]:
    """Hold the database's setup lock, polling for it: a client blocked in `pg_advisory_lock`
    is an open transaction, which the holder's `CREATE INDEX CONCURRENTLY` waits for (a
    deadlock); between polls a waiting client holds none."""
    deadline = time.monotonic() + SETUP_WAIT_S
    query = "SELECT pg_try_advisory_lock(%s) AS locked"
    while not connection.execute(query, (_SETUP_LOCK,)).fetchone()["locked"]:
        if time.monotonic() > deadline:
            raise CheckpointError(
                f"another client has been setting up the checkpoint tables in {name} for "
                f"{SETUP_WAIT_S:.0f} s"
            )
        time.sleep(0.05)
    try:
        yield
    finally:
        if not connection.closed:
            connection.execute("SELECT pg_advisory_unlock(%s)", (_SETUP_LOCK,))


def display_url(url: str) -> str:
    """`url` with any password replaced by `***`, for messages and logs."""
    hidden = re.sub(r"(://[^/@?#]*?:)[^/@?#]*@", r"\1***@", url)
    return re.sub(r"(?i)(\bpassword=)[^&#]*", r"\1***", hidden)


def _first_line(err: BaseException) -> str:
    """libpq's messages run over several lines (hints, each address tried): the first says it."""
    return next((line.strip() for line in str(err).splitlines() if line.strip()), repr(err))


@cache
def _reporting_saver(postgres_saver: type) -> type:
    """`postgres_saver` (LangGraph's `PostgresSaver`) whose database errors (a lost connection, a
    server shutting down) are a `CheckpointError` naming the database; built on first use, since
    psycopg is optional (the caller imports it, so a missing extra is reported on every call)."""
    import psycopg

    class ReportingPostgresSaver(postgres_saver):
        def __init__(self, conn: Any, *, database: str) -> None:
            super().__init__(conn)
            self.database = database

        # Every query of PostgresSaver, sync API and setup() included, runs in this cursor.
        @contextmanager
        def _cursor(self, *, pipeline: bool = False) -> Iterator[Any]:
            try:
                with super()._cursor(pipeline=pipeline) as cursor:
                    yield cursor
            except (psycopg.OperationalError, psycopg.InterfaceError) as err:
                if getattr(self.conn, "closed", False):  # lost; a pool would reconnect
                    raise CheckpointError(
                        f"lost the checkpoint database {self.database} ({_first_line(err)}); "
                        "what was checkpointed is kept there: resume the thread once it is back"
                    ) from err
                raise CheckpointError(  # a deadlock, a full disk, ...: the server said why
                    f"the checkpoint database {self.database} failed: {_first_line(err)}"
                ) from err

    return ReportingPostgresSaver


__all__ = [
    "CONNECT_TIMEOUT_S",
    "POSTGRES_SCHEMES",
    "SETUP_WAIT_S",
    "CheckpointError",
    "display_url",
    "open_checkpointer",
    "open_postgres",
    "open_sqlite",
]
