"""The store's on-disk format: `store.json` (the commit point) and one folder per expert.

See `compllm_graph.expert_store.store` for the layout. Readers validate everything they load and
raise `CorruptStoreError` for anything damaged, truncated or inconsistent, or for a symbolic link
among the store's files and folders (`check_no_symlinks`): through a link, a writer would replace
or delete files outside the store.

Crash leftovers (`leftovers`) are recognised by name and never by absence from `store.json`
alone: index files, `.tmp-*` folders and expert folders (an `expert.json` inside, or empty) that
`store.json` does not name, and an expert's retrieval files that its `expert.json` does not name.
Anything else in the store's folders is left alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from compllm_graph.adapter_folder import adapter_files
from compllm_graph.expert_store.calibration import Calibration
from compllm_graph.expert_store.index import read_index
from compllm_graph.expert_store.locking import LOCK, npy_bytes, write_bytes, write_json
from compllm_graph.expert_store.records import (
    BOUND_KINDS,
    NAME_PATTERN,
    CorruptStoreError,
    Expert,
    ExpertKindError,
    StoreError,
    check_kind,
)
from compllm_graph.expert_store.retrieval import read_stored, stale_files

FORMAT = "compllm-expert-store"
FORMAT_VERSION = 1
MANIFEST = "store.json"
STORE_PATHS = (MANIFEST, LOCK, "index", "experts")
"""What the store keeps at its root; nothing in these may be a symbolic link."""
# `index/<generation>.faiss` and `.center.npy`, and `write_bytes`'s temporaries of them
# (`tempfile` adds 8 random characters of a-z, 0-9 and _).
_INDEX_NAME = r"\d+\.(?:faiss|center\.npy)"
_INDEX_FILE = re.compile(rf"^(?:{_INDEX_NAME}|\.{_INDEX_NAME}\.[a-z0-9_]{{8}})$")
# `write_expert`'s and `_delete`'s folders: `.tmp-<expert name>-<8 random characters>`.
_TMP_FOLDER = re.compile(r"^\.tmp-[a-z0-9][a-z0-9_-]*-[a-z0-9_]{8}$")


def write_expert(
    root: Path, record: dict[str, Any], means: np.ndarray, adapter: Path | None
) -> Expert:
    """Write an expert folder under a temporary name, then rename it into place.

    Raises:
        StoreError: something that the store did not write is in the way at `experts/<name>`.
    """
    experts_dir = root / "experts"
    final = experts_dir / record["name"]
    in_the_way = final.exists() or final.is_symlink()
    if in_the_way and not _written_by_store(final):
        raise StoreError(
            f"{final} is in the way and is not an expert folder that the store wrote: "
            f"move it out of {experts_dir}"
        )
    tmp = Path(tempfile.mkdtemp(dir=experts_dir, prefix=f".tmp-{record['name']}-"))
    tmp.chmod(0o755)
    try:
        write_json(tmp / "expert.json", record)
        write_bytes(tmp / "centroids.npy", npy_bytes(means))
        if adapter is not None:
            (tmp / "adapter").mkdir()
            for item in adapter_files(adapter):
                shutil.copyfile(item, tmp / "adapter" / item.name)
        if in_the_way:
            _delete(final)  # an unlisted leftover of a crashed writer
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return read_expert(root, record["name"], means.shape[1])


def leftovers(root: Path, manifest: dict[str, Any]) -> list[Path]:
    """What crashed or killed writers left: the store's own files that `manifest` does not name.

    Only names the store writes count, and never a symbolic link: index files, `.tmp-*` folders
    and expert folders (with an `expert.json`, or empty), and a listed expert's retrieval files
    that its `expert.json` does not name (`retrieval.stale_files`). Anything else is someone
    else's.
    """
    info = manifest["index"] or {}
    keep = {info.get("file"), info.get("center_file")}
    found = [
        item
        for item in _entries(root / "index")
        if f"index/{item.name}" not in keep
        and _INDEX_FILE.match(item.name)
        and item.is_file()
        and not item.is_symlink()
    ]
    listed = set(manifest["experts"])
    found += [
        item
        for item in _entries(root / "experts")
        if item.name not in listed and _written_by_store(item)
    ]
    for name in sorted(listed):  # retrieval files no expert.json names (see `retrieval`)
        folder = root / "experts" / name
        record = _record_if_readable(folder)
        if record is not None and not folder.is_symlink():
            found += stale_files(folder, record.get("retrieval"))
    return found


def _record_if_readable(folder: Path) -> dict[str, Any] | None:
    """A folder's `expert.json`, or None when it cannot be read: then nothing of the folder
    counts as a leftover (`load` reports the damage)."""
    try:
        record = json.loads((folder / "expert.json").read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def remove_unlisted(root: Path, manifest: dict[str, Any]) -> None:
    """Delete the `leftovers` of crashed writers, best effort (what fails stays for later).

    Must be called with the exclusive lock held: a live writer's `.tmp-*` folder looks the same.

    Raises:
        CorruptStoreError: the store holds a symbolic link (see `check_no_symlinks`).
    """
    check_no_symlinks(root)
    for item in leftovers(root, manifest):
        with contextlib.suppress(OSError):
            _delete(item)


def check_no_symlinks(root: Path) -> None:
    """Refuse a store with a symbolic link among its own files and folders (`STORE_PATHS`).

    Through a link the store would read, replace or delete files outside its folder. The store
    folder itself may be a link.

    Raises:
        CorruptStoreError: naming the first link found.
    """
    tops = [root / name for name in STORE_PATHS]
    for path in tops:
        _refuse_link(path)
    for top in tops[2:]:
        for folder, dirs, files in os.walk(top):  # os.walk does not descend into links
            for name in dirs + files:
                _refuse_link(Path(folder, name))


def _refuse_link(path: Path) -> None:
    if path.is_symlink():
        raise CorruptStoreError(
            f"{path} is a symbolic link (to {os.readlink(path)}); an expert store refuses links "
            "so that it never reads, replaces or deletes files outside its folder: replace the "
            "link with a copy of what it points to"
        )


def _entries(folder: Path) -> list[Path]:
    return sorted(folder.iterdir()) if folder.is_dir() else []


def _written_by_store(item: Path) -> bool:
    """Whether `item` is an expert folder or `.tmp-*` folder as the store writes them."""
    if item.is_symlink() or not item.is_dir():
        return False
    if _TMP_FOLDER.match(item.name):
        return True
    # An empty folder holds nothing to lose, whoever made it.
    return bool(NAME_PATTERN.match(item.name)) and (
        (item / "expert.json").is_file() or not any(item.iterdir())
    )


def _delete(item: Path) -> None:
    """Delete a store-written file or folder; `shutil.rmtree` unlinks links, never follows them."""
    if not item.is_dir():
        item.unlink(missing_ok=True)
        return
    if not _TMP_FOLDER.match(item.name):
        # Renamed out of the way first, so that a crash mid-delete leaves a `.tmp-*` folder,
        # recognisably the store's, rather than an expert folder missing its expert.json.
        trash = item.with_name(f".tmp-{item.name}-{secrets.token_hex(4)}")
        item.rename(trash)
        item = trash
    shutil.rmtree(item, ignore_errors=True)


def load(root: Path) -> tuple[dict[str, Any], dict[str, Expert]]:
    """Read and validate `store.json` and every listed expert.

    Raises:
        CorruptStoreError: something is damaged, inconsistent or a symbolic link.
    """
    check_no_symlinks(root)
    manifest = read_manifest(root)
    experts = {name: read_expert(root, name, manifest["dim"]) for name in manifest["experts"]}
    info = manifest["index"]
    indexed = sorted(name for name, expert in experts.items() if not expert.gain_only)
    if (info is None) != (not indexed):
        raise CorruptStoreError(f"{root / MANIFEST}: the index does not match the expert list")
    if info is not None:
        expected = [n for n in indexed for _ in experts[n].counts]
        if info.get("rows") != expected:
            raise CorruptStoreError(f"{root / MANIFEST}: the index rows do not match the experts")
        read_index(root, info, manifest)
    if manifest.get("calibration") is not None:
        try:
            Calibration.from_dict(manifest["calibration"]).check(experts)
        except StoreError as exc:
            raise CorruptStoreError(f"{root / MANIFEST}: {exc}") from None
    return manifest, experts


def read_manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CorruptStoreError(f"{path} is unreadable or not JSON: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CorruptStoreError(f"{path} is not an expert store manifest")
    if manifest.get("version") != FORMAT_VERSION:
        raise CorruptStoreError(
            f"{path} has format version {manifest.get('version')!r}; this compllm-graph reads "
            f"version {FORMAT_VERSION}"
        )
    required: dict[str, type | tuple[type, ...]] = {
        "embedder": str,
        "center": bool,
        "default_threshold": (int, float),
        "generation": int,
        "experts": list,
    }
    for key, kind in required.items():
        if not isinstance(manifest.get(key), kind):
            raise CorruptStoreError(f"{path}: field {key!r} is missing or has the wrong type")
    vote = manifest.get("vote")
    if vote is not None and (isinstance(vote, bool) or not isinstance(vote, int) or vote < 1):
        raise CorruptStoreError(f"{path}: field 'vote' must be a positive integer or null")
    if not all(isinstance(n, str) and NAME_PATTERN.match(n) for n in manifest["experts"]):
        raise CorruptStoreError(f"{path}: the expert list holds an invalid name")
    return manifest


def read_expert(root: Path, name: str, dim: int | None) -> Expert:
    folder = root / "experts" / name
    try:
        record = json.loads((folder / "expert.json").read_text())
        centroids = np.load(folder / "centroids.npy", allow_pickle=False)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CorruptStoreError(f"expert {name!r} in {root} is damaged or missing: {exc}") from exc
    counts = record.get("counts") if isinstance(record, dict) else None
    if (
        not isinstance(counts, list)
        or record.get("name") != name
        or centroids.ndim != 2
        or centroids.shape[0] != len(counts)
        or (dim is not None and centroids.shape[1] != dim)
        or not np.isfinite(centroids).all()
    ):
        raise CorruptStoreError(
            f"expert {name!r} in {root}: expert.json and centroids.npy disagree"
        )
    adapter = folder / "adapter" if record.get("adapter") else None
    if adapter is not None and not (adapter / "adapter_config.json").is_file():
        raise CorruptStoreError(f"expert {name!r} in {root}: its adapter folder is incomplete")
    kind = record.get("kind", "adapter")  # written before kinds existed: an adapter expert
    try:
        check_kind(
            kind,
            adapter=adapter,
            base_model=record.get("base_model"),
            url=record.get("url"),
            model=record.get("model"),
        )
    except ExpertKindError as exc:
        raise CorruptStoreError(f"expert {name!r} in {root}: {exc}") from None
    retrieval = read_stored(folder, record.get("retrieval"))
    if retrieval is not None and (
        kind in BOUND_KINDS or (dim is not None and retrieval.dim != dim)
    ):
        raise CorruptStoreError(
            f"expert {name!r} in {root}: its retrieval set does not fit it (a {kind!r} expert, "
            f"{retrieval.dim} dimensions against the store's {dim})"
        )
    return Expert(
        name=name,
        description=str(record.get("description") or ""),
        base_model=record.get("base_model"),
        adapter=adapter,
        system_prompt=record.get("system_prompt"),
        threshold=record.get("threshold"),
        counts=tuple(int(c) for c in counts),
        stats=dict(record.get("stats") or {}),
        centroids=centroids.astype(np.float32),
        kind=kind,
        url=record.get("url"),
        model=record.get("model"),
        retrieval=retrieval,
        gain_only=record.get("gain_only") is True,
    )


__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST",
    "STORE_PATHS",
    "check_no_symlinks",
    "leftovers",
    "load",
    "read_expert",
    "read_manifest",
    "remove_unlisted",
    "write_expert",
]
