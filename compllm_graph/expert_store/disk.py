"""The store's on-disk format: `store.json` (the commit point) and one folder per expert.

See `compllm_graph.expert_store.store` for the layout. Readers validate everything they load and
raise `CorruptStoreError` for anything damaged, truncated or inconsistent.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from compllm_graph.expert_store.index import read_index
from compllm_graph.expert_store.locking import npy_bytes, write_bytes, write_json
from compllm_graph.expert_store.records import NAME_PATTERN, CorruptStoreError, Expert

FORMAT = "compllm-expert-store"
FORMAT_VERSION = 1
MANIFEST = "store.json"


def write_expert(
    root: Path, record: dict[str, Any], means: np.ndarray, adapter: Path | None
) -> Expert:
    """Write an expert folder under a temporary name, then rename it into place."""
    experts_dir = root / "experts"
    tmp = Path(tempfile.mkdtemp(dir=experts_dir, prefix=f".tmp-{record['name']}-"))
    tmp.chmod(0o755)
    try:
        write_json(tmp / "expert.json", record)
        write_bytes(tmp / "centroids.npy", npy_bytes(means))
        if adapter is not None:
            (tmp / "adapter").mkdir()
            for item in adapter.iterdir():
                if item.is_file() and item.suffix in (".json", ".safetensors"):
                    shutil.copyfile(item, tmp / "adapter" / item.name)
        final = experts_dir / record["name"]
        shutil.rmtree(final, ignore_errors=True)  # an unlisted leftover of a crashed writer
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return read_expert(root, record["name"], means.shape[1])


def remove_unlisted(root: Path, manifest: dict[str, Any]) -> None:
    """Delete index files and expert folders the manifest does not name (crash leftovers)."""
    info = manifest["index"] or {}
    keep = {info.get("file"), info.get("center_file")}
    for item in (root / "index").iterdir():
        if f"index/{item.name}" not in keep:
            item.unlink(missing_ok=True)
    listed = set(manifest["experts"])
    for item in (root / "experts").iterdir():
        if item.name not in listed:
            shutil.rmtree(item, ignore_errors=True)


def load(root: Path) -> tuple[dict[str, Any], dict[str, Expert]]:
    """Read and validate `store.json` and every listed expert."""
    manifest = read_manifest(root)
    experts = {name: read_expert(root, name, manifest["dim"]) for name in manifest["experts"]}
    info = manifest["index"]
    if (info is None) != (not experts):
        raise CorruptStoreError(f"{root / MANIFEST}: the index does not match the expert list")
    if info is not None:
        expected = [n for n in sorted(experts) for _ in experts[n].counts]
        if info.get("rows") != expected:
            raise CorruptStoreError(f"{root / MANIFEST}: the index rows do not match the experts")
        read_index(root, info, manifest)
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
    )


__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST",
    "load",
    "read_expert",
    "read_manifest",
    "remove_unlisted",
    "write_expert",
]
