"""Safe concurrent access to a store folder: `store.lock` (flock) and atomic file replacement."""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from compllm_graph.expert_store.records import StoreError

LOCK = "store.lock"


@contextlib.contextmanager
def locked(root: Path, exclusive: bool) -> Iterator[None]:
    """Hold `store.lock` (exclusive for writers, shared for readers).

    A reader that cannot create the lock file (a read-only store) reads without it: writers
    replace files atomically, so it still never sees a half-written file.
    """
    lock_path = root / LOCK
    try:
        handle = _open_lock(lock_path)
    except OSError as exc:
        if not exclusive:
            yield
            return
        raise StoreError(f"cannot open the store lock {lock_path}: {exc}") from exc
    try:
        fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        os.close(handle)


@contextlib.contextmanager
def exclusive_if_free(root: Path) -> Iterator[bool]:
    """Hold `store.lock` exclusively if no other process holds it; yield whether it is held.

    For upkeep that may be skipped but must never wait for other readers or writers.
    """
    try:
        handle = _open_lock(root / LOCK)
    except OSError:  # a read-only store, where there is nothing to tidy anyway
        yield False
        return
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
        else:
            yield True
    finally:
        os.close(handle)  # closing the only descriptor releases the lock


def _open_lock(path: Path) -> int:
    # O_NOFOLLOW: a linked lock file would be created or locked outside the store.
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)


def write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically (temp file in the same folder, fsync, rename)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o644)  # mkstemp's 0600 would hide the store from others
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json(path: Path, obj: Any) -> None:
    write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False)
    return buffer.getvalue()


__all__ = ["LOCK", "exclusive_if_free", "locked", "npy_bytes", "write_bytes", "write_json"]
