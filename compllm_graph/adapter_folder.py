"""The one check of a LoRA adapter folder, shared by the model runtime and the expert store.

Only peft LoRA adapters saved as safetensors are accepted: `adapter_model.safetensors` beside an
`adapter_config.json` whose `peft_type` is `LORA`. Pickle weights are refused before anything
opens them.

Two further checks serve whoever copies an adapter (the expert store): `adapter_files` lists the
files a copy takes and refuses symlinks among them, so that a copy never pulls in what a link
points at; `check_adapter_weights` parses the safetensors header by hand (no torch or
safetensors needed, no weights read) and checks that its tensors are LoRA pairs of the config's
target modules, so that a damaged file is refused when it is copied rather than when it is
served.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from compllm_graph.errors import CompLLMError
from compllm_graph.types import BASE

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
COPIED_SUFFIXES = (".json", ".safetensors")
"""The files of an adapter folder that a copy takes (configs, weights); the rest stay behind."""
# peft keys adapters in ModuleDicts, so no dots; keep names filesystem- and log-friendly too.
_ADAPTER_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
# peft's on-disk keys: <module>.lora_A.weight, <module>.lora_embedding_B, optionally with the
# adapter's name before `.weight`.
_LORA_KEY = re.compile(r"^(?P<module>.+)\.lora_(?:embedding_)?(?P<side>[AB])(?:\.[\w-]+)*$")
_MAX_HEADER = 100 * 1024 * 1024  # the safetensors library's own limit on the JSON header
_DTYPE_BYTES = {
    **dict.fromkeys(("BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0"), 1),
    **dict.fromkeys(("U16", "I16", "F16", "BF16"), 2),
    **dict.fromkeys(("U32", "I32", "F32"), 4),
    **dict.fromkeys(("U64", "I64", "F64", "C64"), 8),
}


class AdapterError(CompLLMError, ValueError):
    """An adapter name or folder is unusable (unsafe name, missing files, pickle weights...)."""


def check_adapter_folder(folder: str | os.PathLike[str]) -> tuple[Path, dict[str, Any]]:
    """Validate a peft LoRA adapter folder.

    Args:
        folder: The folder `save_pretrained` wrote.

    Returns:
        The resolved folder and its parsed `adapter_config.json`.

    Raises:
        AdapterError: the folder is missing, holds pickle weights or no safetensors weights, or
            its config is unreadable or not a LoRA config.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise AdapterError(f"adapter folder {folder} does not exist")
    if not (folder / ADAPTER_WEIGHTS).is_file():
        if any(folder.glob("*.bin")) or any(folder.glob("*.pt")):
            raise AdapterError(
                f"{folder} holds pickle weights (.bin/.pt); only safetensors "
                "adapters are loaded: re-save with safe_serialization=True"
            )
        raise AdapterError(f"{folder} has no {ADAPTER_WEIGHTS}")
    try:
        config = json.loads((folder / ADAPTER_CONFIG).read_text())
    except (OSError, ValueError) as exc:
        raise AdapterError(f"{folder}/{ADAPTER_CONFIG} is missing or invalid: {exc}") from exc
    if not isinstance(config, dict) or config.get("peft_type") != "LORA":
        peft_type = config.get("peft_type") if isinstance(config, dict) else None
        raise AdapterError(f"{folder} is a {peft_type!r} adapter; mixed batches need LoRA")
    return folder.resolve(), config


def adapter_files(folder: Path) -> list[Path]:
    """The files of `folder` that a copy of the adapter takes (`COPIED_SUFFIXES`).

    Raises:
        AdapterError: one of them is a symbolic link (copying it would copy what it points at).
    """
    files = sorted(p for p in folder.iterdir() if p.suffix in COPIED_SUFFIXES)
    for path in files:
        if path.is_symlink():
            raise AdapterError(
                f"{path} is a symbolic link (to {os.readlink(path)}); adapter files are copied, "
                "never followed: replace the link with a copy of the real file"
            )
    return [p for p in files if p.is_file()]


def check_adapter_weights(folder: Path, config: Mapping[str, Any]) -> None:
    """Check that `folder`'s `adapter_model.safetensors` is whole and holds LoRA weights.

    The header must parse and its tensors must fill the file exactly (as the safetensors library
    demands); the tensors must include `lora_A`/`lora_B` pairs, each `lora_A` with its
    `lora_B`, on modules that the config's `target_modules` names (when it is a list).

    Raises:
        AdapterError: the file is unreadable, truncated or not safetensors, or its tensors are
            not LoRA weights of the configured modules.
    """
    path = folder / ADAPTER_WEIGHTS
    sides: dict[str, set[str]] = {}
    for key in _tensor_names(path):
        match = _LORA_KEY.match(key)
        if match:
            sides.setdefault(match["module"], set()).add(match["side"])
    if not sides:
        raise AdapterError(f"{path} holds no LoRA weights (no lora_A/lora_B tensors)")
    unpaired = sorted(module for module, found in sides.items() if found != {"A", "B"})
    if unpaired:
        raise AdapterError(f"{path}: {unpaired[0]} has lora_A or lora_B but not both")
    targets = config.get("target_modules")
    if isinstance(targets, list):  # a string is a regex or "all-linear": any module may match
        stray = sorted(m for m in sides if not any(_targets(m, str(t)) for t in targets))
        if stray:
            raise AdapterError(
                f"{path}: module {stray[0]} is not among the target_modules {targets} of "
                f"{folder / ADAPTER_CONFIG}"
            )


def _targets(module: str, target: str) -> bool:
    """peft's rule for a list of target modules: the name or a dotted suffix of it."""
    return module == target or module.endswith(f".{target}")


def _tensor_names(path: Path) -> list[str]:
    """The tensor names of a safetensors file, after checking its header against its size."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            length = int.from_bytes(handle.read(8), "little")
            whole = size >= 8 and length <= min(_MAX_HEADER, size - 8)
            raw = handle.read(length) if whole else None
    except OSError as exc:
        raise AdapterError(f"cannot read {path}: {exc}") from exc
    if raw is None:
        raise AdapterError(f"{path} is not a safetensors file (truncated or no header)")
    try:
        header = json.loads(raw)
    except ValueError:  # UnicodeDecodeError and JSONDecodeError included
        raise AdapterError(f"{path} is not a safetensors file (header is not JSON)") from None
    if not isinstance(header, dict):
        raise AdapterError(f"{path} is not a safetensors file (header is not a JSON object)")
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    _check_offsets(path, tensors, size - 8 - length)
    return list(tensors)


def _check_offsets(path: Path, tensors: dict[str, Any], data_bytes: int) -> None:
    """Each tensor's bytes follow the previous one's and the last ends where the file does."""
    position = 0
    for begin, end in sorted(_span(path, name, info) for name, info in tensors.items()):
        if begin != position:
            raise AdapterError(f"{path}: tensors overlap or leave gaps (a damaged file)")
        position = end
    if position != data_bytes:
        raise AdapterError(
            f"{path} is truncated or padded: its tensors need {position} bytes, it has {data_bytes}"
        )


def _span(path: Path, name: str, info: Any) -> tuple[int, int]:
    """A header entry's byte range, checked against its dtype and shape."""
    try:
        begin, end = info["data_offsets"]
        shape, width = info["shape"], _DTYPE_BYTES[info["dtype"]]
    except (KeyError, TypeError, ValueError):
        raise AdapterError(f"{path}: tensor {name!r} has a malformed header entry") from None
    numbers = [begin, end, *shape] if isinstance(shape, list) else [None]
    if not all(isinstance(n, int) and n >= 0 for n in numbers):
        raise AdapterError(f"{path}: tensor {name!r} has a malformed header entry")
    if end - begin != math.prod(shape) * width:
        raise AdapterError(f"{path}: tensor {name!r} does not match its dtype and shape")
    return begin, end


def check_adapter_name(name: str, loaded: Mapping[str, Path]) -> None:
    """Refuse an unsafe adapter name, the base model's name, or one already loaded.

    Raises:
        AdapterError: the name is not a letter followed by letters, digits, `_` or `-` (64 at
            most), is `BASE`, or names an adapter in `loaded`.
    """
    if not isinstance(name, str) or not _ADAPTER_NAME.match(name) or name == BASE:
        raise AdapterError(
            f"unsafe adapter name {name!r}: use a letter followed by letters, "
            f"digits, '_' or '-' (at most 64 characters; {BASE!r} is the base model)"
        )
    if name in loaded:
        raise AdapterError(f"adapter {name!r} is already loaded (from {loaded[name]})")


_LOADING = threading.Lock()


def add_adapter_once(model: Any, name: str, folder: str | os.PathLike[str]) -> None:
    """Load `folder` on `model` as `name` unless an adapter of that name is loaded already.

    The check and the load happen under one lock: graphs built at once on one model (an
    evaluation building one per question in flight, as the oracle and all-experts systems do)
    would each find the adapter missing, and the engine refuses the second load.

    Args:
        model: A loaded model with `adapters` (names; a property or a method) and
            `add_adapter(name, folder)`.
        name: The adapter's name on `model`.
        folder: The adapter folder.
    """
    with _LOADING:
        loaded = getattr(model, "adapters", None)
        if name not in set((loaded() if callable(loaded) else loaded) or ()):
            model.add_adapter(name, folder)


def same_base(recorded: str, name: str) -> bool:
    """Whether a recorded base model (alias, path or hub id) names the loaded model.

    A hub id names the alias made from it in lower case: `HuggingFaceTB/SmolLM2-135M-Instruct`
    (what the shipped adapters' configs record) names `smollm2-135m-instruct`.
    """
    return (
        recorded == name
        or name in Path(recorded).parts
        or Path(recorded).name.lower() == name.lower()
    )


__all__ = [
    "ADAPTER_CONFIG",
    "ADAPTER_WEIGHTS",
    "COPIED_SUFFIXES",
    "AdapterError",
    "adapter_files",
    "add_adapter_once",
    "check_adapter_folder",
    "check_adapter_name",
    "check_adapter_weights",
    "same_base",
]
