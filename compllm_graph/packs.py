"""Expert packs: the trained adapters of one base model, installed as a distribution of their own.

The core package holds code only. The LoRA adapters (experts and decomposer) trained for a base
model ship as a separate distribution, a *pack* (`packs/compllm-pack-smollm2-135m/` in this
repository), that declares an entry point in the `compllm_graph.packs` group. The entry point
names a Python package (or a folder) laid out as:

    manifest.json        the model's alias and public id, each file's sha256 and size
    decomposer/          a decomposer adapter (optional): adapter_config.json,
                         adapter_model.safetensors, training.json
    experts/NAME/        one adapter per expert, the same three files
    calibration.json     the experts' measured gains over the base model, and the gain-only
                         candidates they were measured with (optional; `expert_store.demo`)

Before any folder of a pack is handed out, every file the manifest lists is checked against its
sha256, as the base models are (`models.download`), and a data file the manifest does not list
is refused. A file's digest is remembered with its size and modification time, in memory and in
`$COMPLLM_HOME/packs/`, so that later loads only `stat` the files. `write_manifest` (`compllm
experts pack-manifest DIR`) writes a pack's manifest; see docs/packs.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

from compllm_graph.adapter_folder import ADAPTER_WEIGHTS, same_base
from compllm_graph.errors import CompLLMError
from compllm_graph.models.download import home, sha256_file

ENTRY_POINT_GROUP = "compllm_graph.packs"
"""The entry point group a pack declares: `NAME = "python_package"` (the folder of the
package holds the manifest)."""
MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
EXPERTS = "experts"
DECOMPOSER = "decomposer"
CALIBRATION = "calibration.json"
SHIPPED_PACKS: dict[str, str] = {
    "smollm2-135m-instruct": "compllm-pack-smollm2-135m",
    "qwen2.5-coder-0.5b-instruct": "compllm-pack-qwen2.5-coder-0.5b",
}
"""The packs built from this repository's `packs/` folder, by the alias of their model."""

_SETTLED_NS = 2 * 10**9
"""A file is remembered as verified only once its modification time is this much in the past:
a file changed within the same clock tick as its check keeps its size and mtime (git's "racy"
entries), so a recent one is hashed again each time."""
_SKIPPED_SUFFIXES = (".py", ".pyc", ".pyi")
# In-process memory of verified files: absolute path -> (size, mtime_ns, sha256).
_VERIFIED: dict[str, tuple[int, int, str]] = {}


class PackError(CompLLMError, ValueError):
    """A pack is unusable: an unreadable manifest, or a file missing, changed or unlisted."""


class PackNotInstalledError(PackError):
    """The model has a pack, but it is not installed."""


@dataclass(frozen=True)
class PackFile:
    """One file of a pack, as its manifest lists it."""

    sha256: str
    size: int


@dataclass(frozen=True)
class Pack:
    """An installed pack (read from its manifest; `verify` checks its files).

    Attributes:
        name: The distribution's name, e.g. `compllm-pack-smollm2-135m`.
        version: The distribution's version.
        folder: The folder holding `manifest.json`.
        model: The alias of the base model its adapters were trained on.
        base_model: The base model's public id (a Hugging Face Hub id), or the alias.
        files: Every data file, by its path relative to `folder` (`/`-separated).
    """

    name: str
    version: str
    folder: Path
    model: str
    base_model: str
    files: Mapping[str, PackFile] = field(repr=False)

    def serves(self, model: str) -> bool:
        """Whether the pack's adapters fit `model` (an alias, a path ending in one, a hub id)."""
        return any(
            same_base(model, known) or same_base(known, model)
            for known in (self.model, self.base_model)
        )

    def experts(self) -> dict[str, Path]:
        """The pack's expert adapter folders, by expert name (not verified: see `verify`)."""
        root = self.folder / EXPERTS
        if not root.is_dir():
            return {}
        return {
            folder.name: folder
            for folder in sorted(root.iterdir())
            if (folder / ADAPTER_WEIGHTS).is_file()
        }

    def calibration(self) -> Path | None:
        """The pack's calibration file, or None (not verified: see `verify`)."""
        path = self.folder / CALIBRATION
        return path if path.is_file() else None

    def decomposer(self) -> Path | None:
        """The pack's decomposer adapter folder, or None (not verified: see `verify`)."""
        folder = self.folder / DECOMPOSER
        return folder if (folder / ADAPTER_WEIGHTS).is_file() else None

    def verify(self) -> None:
        """Check every listed file against its size and sha256, and that none is unlisted.

        A file whose size and modification time match an earlier check is not hashed again
        (unless it was modified in the last two seconds).

        Raises:
            PackError: naming the file that is missing, a link, changed or not listed.
        """
        records = _read_records(self)
        fresh = False
        for relative, expected in sorted(self.files.items()):
            path = self.folder / relative
            if path.is_symlink() or not path.is_file():
                kind = "a symbolic link" if path.is_symlink() else "missing"
                raise PackError(f"{path} is {kind}; {self._fix()}")
            stat = path.stat()
            if stat.st_size != expected.size:
                raise PackError(
                    f"{path} has {stat.st_size} bytes, the manifest says {expected.size}: the "
                    f"file was changed or damaged; {self._fix()}"
                )
            seen = (stat.st_size, stat.st_mtime_ns, expected.sha256)
            key = str(path)
            if _VERIFIED.get(key) == seen or records.get(relative) == list(seen[1:]):
                _VERIFIED[key] = seen
                continue
            digest = sha256_file(path)
            if digest != expected.sha256:
                raise PackError(
                    f"{path} has sha256 {digest}, the manifest says {expected.sha256}: the file "
                    f"was changed or damaged; {self._fix()}"
                )
            if time.time_ns() - stat.st_mtime_ns > _SETTLED_NS:
                _VERIFIED[key] = seen
                records[relative] = list(seen[1:])
                fresh = True
        unlisted = sorted(set(data_files(self.folder)) - set(self.files))
        if unlisted:
            raise PackError(
                f"{self.folder / unlisted[0]} is not listed in {self.folder / MANIFEST}: after "
                f"changing a pack, write its manifest again (`compllm experts pack-manifest "
                f"{self.folder}`)"
            )
        if fresh:
            _write_records(self, records)

    def _fix(self) -> str:
        hint = install_hint(self.model)
        return (
            f"reinstall {self.name}"
            + (f" ({hint})" if hint else "")
            + f", or after retraining an adapter write the manifest again (`compllm experts "
            f"pack-manifest {self.folder}`)"
        )


def install_hint(model: str) -> str | None:
    """The command that installs the pack built from this repository for `model`, if any."""
    for alias, project in SHIPPED_PACKS.items():
        if same_base(model, alias) or same_base(alias, model):
            return f"pip install -e packs/{project}"
    return None


def missing_pack_message(model: str) -> str | None:
    """What to do when `model` has a pack in this repository that is not installed, or None."""
    hint = install_hint(model)
    if hint is None:
        return None
    return (
        f"no expert pack for {model} is installed: {hint} (from a checkout of compllm-graph; "
        "`make demo` and `make test` install it), or see docs/packs.md"
    )


def installed_packs() -> list[Pack]:
    """Every installed pack, by distribution name (read from the manifests, not verified).

    Raises:
        PackError: an installed pack's entry point does not load or its manifest is unreadable.
    """
    return list(_discover(tuple(sys.path)))


def pack_for(model: str) -> Pack | None:
    """The installed pack for `model` (alias, path ending in one, or hub id), verified; None
    when no installed pack serves it. With two, the first by distribution name wins.

    Raises:
        PackError: the pack's manifest is unreadable or one of its files fails `Pack.verify`.
    """
    for pack in installed_packs():
        if pack.serves(model):
            pack.verify()
            return pack
    return None


def require_pack(model: str) -> Pack | None:
    """`pack_for(model)`; None for a model no pack of this repository is for.

    Raises:
        PackNotInstalledError: `model` has a pack in this repository and it is not installed
            (the message says how to install it).
        PackError: see `pack_for`.
    """
    pack = pack_for(model)
    message = missing_pack_message(model) if pack is None else None
    if message is not None:
        raise PackNotInstalledError(message)
    return pack


def data_files(folder: Path) -> Iterator[str]:
    """The files of a pack folder that its manifest lists: all but `manifest.json`, Python
    sources and caches, and hidden files and folders (such as llama.cpp's `.gguf/` cache)."""
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__")
        for name in sorted(files):
            path = Path(root, name)
            relative = path.relative_to(folder).as_posix()
            if name.startswith(".") or name.endswith(_SKIPPED_SUFFIXES) or relative == MANIFEST:
                continue
            yield relative


def write_manifest(
    folder: str | os.PathLike[str], model: str | None = None, base_model: str | None = None
) -> dict[str, Any]:
    """Hash every data file of a pack folder into its `manifest.json`.

    Args:
        folder: The pack's folder (the Python package its entry point names).
        model: The base model's alias; by default the one the existing manifest records.
        base_model: The base model's public id; by default the existing manifest's, or the
            catalogue's public id of `model`, or `model` itself.

    Returns:
        The manifest written.

    Raises:
        PackError: no model was given or recorded, the folder holds no adapter, or a data file
            is a symbolic link.
    """
    root = Path(folder).expanduser().resolve()
    previous: dict[str, Any] = {}
    if (root / MANIFEST).is_file():
        previous = _read_manifest(root / MANIFEST)
    model = model or previous.get("model")
    if not model:
        raise PackError(f"give the base model's alias for {root} (--model)")
    if base_model is None:
        base_model = previous.get("base_model") if previous.get("model") == model else None
    base_model = base_model or _public_id(model) or model
    files: dict[str, dict[str, Any]] = {}
    for relative in data_files(root):
        path = root / relative
        if path.is_symlink():
            raise PackError(f"{path} is a symbolic link: put a copy of the file in the pack")
        files[relative] = {"sha256": sha256_file(path), "size": path.stat().st_size}
    if not any(Path(r).name == ADAPTER_WEIGHTS for r in files):
        raise PackError(f"{root} holds no adapter ({EXPERTS}/NAME/ or {DECOMPOSER}/)")
    manifest = {"format": MANIFEST_FORMAT, "model": model, "base_model": base_model, "files": files}
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _public_id(model: str) -> str | None:
    from compllm_graph.models.catalogue import CATALOGUE

    spec = CATALOGUE.get(model)
    return spec.public_id if spec is not None else None


@lru_cache(maxsize=8)
def _discover(path: tuple[str, ...]) -> tuple[Pack, ...]:
    """The packs installed on `path` (sys.path: a changed one is looked at again)."""
    packs: dict[str, Pack] = {}
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(entry, "dist", None)
        name = dist.metadata["Name"] if dist is not None else entry.name
        if name in packs:  # the same distribution seen twice on sys.path: the first counts
            continue
        version = dist.version if dist is not None else "unknown"
        packs[name] = _load(name, version, entry)
    return tuple(packs[name] for name in sorted(packs))


def _load(name: str, version: str, entry: metadata.EntryPoint) -> Pack:
    try:
        target = entry.load()
    except Exception as exc:  # an entry point runs the pack's code: report any failure
        raise PackError(
            f"pack {name}: its entry point {entry.value!r} does not load ({exc}); reinstall it"
        ) from exc
    folder = _folder_of(target)
    if folder is None:
        raise PackError(
            f"pack {name}: its entry point {entry.value!r} names neither a package nor a folder"
        )
    return read_pack(folder, name, version)


def read_pack(folder: str | os.PathLike[str], name: str | None = None, version: str = "") -> Pack:
    """The pack in `folder`, read from its manifest (installed or not; not verified).

    Args:
        folder: The folder holding `manifest.json`.
        name: The distribution's name; by default the folder's.
        version: The distribution's version.

    Raises:
        PackError: the manifest is missing, unreadable or incomplete.
    """
    folder = Path(folder).expanduser()
    name = name or folder.name
    manifest = _read_manifest(folder / MANIFEST, name)
    model, base_model = manifest.get("model"), manifest.get("base_model")
    listed: dict[str, PackFile] = {}
    try:
        for relative, item in manifest["files"].items():
            listed[str(relative)] = PackFile(str(item["sha256"]), int(item["size"]))
    except (KeyError, TypeError, ValueError, AttributeError):
        listed = {}
    if manifest.get("format") != MANIFEST_FORMAT or not isinstance(model, str) or not listed:
        raise PackError(
            f"pack {name}: {folder / MANIFEST} is not a format-{MANIFEST_FORMAT} manifest with "
            "a model and its files; write it with `compllm experts pack-manifest`"
        )
    return Pack(
        name=name,
        version=version,
        folder=folder.resolve(),
        model=model,
        base_model=base_model if isinstance(base_model, str) and base_model else model,
        files=listed,
    )


def _folder_of(target: object) -> Path | None:
    if isinstance(target, ModuleType):
        locations = list(getattr(target, "__path__", []))
        if locations:
            return Path(locations[0])
        return Path(target.__file__).parent if target.__file__ else None
    if isinstance(target, (str, os.PathLike)):
        return Path(target)
    return None


def _read_manifest(path: Path, name: str | None = None) -> dict[str, Any]:
    owner = f"pack {name}: " if name else ""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PackError(f"{owner}{path} is missing or unreadable ({exc})") from exc
    if not isinstance(value, dict):
        raise PackError(f"{owner}{path} is not a JSON object")
    return value


def _records_path(pack: Pack) -> Path:
    """Where the verified digests of `pack`'s files are remembered."""
    key = hashlib.sha256(str(pack.folder).encode()).hexdigest()[:16]
    return home() / "packs" / f"{pack.folder.name}-{key}.verified.json"


def _read_records(pack: Pack) -> dict[str, list[Any]]:
    """The remembered `[mtime_ns, sha256]` of each file verified before, by relative path."""
    path = _records_path(pack)
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(value, dict) or value.get("folder") != str(pack.folder):
        return {}
    files = value.get("files")
    return dict(files) if isinstance(files, dict) else {}


def _write_records(pack: Pack, records: dict[str, list[Any]]) -> None:
    path = _records_path(pack)
    listed = {k: v for k, v in records.items() if k in pack.files}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    except OSError:
        return  # a read-only home: the next process hashes again
    try:
        with os.fdopen(handle, "w") as out:
            json.dump({"folder": str(pack.folder), "files": listed}, out)
        os.replace(temporary, path)
    except OSError:
        pass
    finally:
        Path(temporary).unlink(missing_ok=True)


__all__ = [
    "ENTRY_POINT_GROUP",
    "MANIFEST",
    "SHIPPED_PACKS",
    "Pack",
    "PackError",
    "PackFile",
    "PackNotInstalledError",
    "install_hint",
    "installed_packs",
    "missing_pack_message",
    "pack_for",
    "read_pack",
    "require_pack",
    "write_manifest",
]
