"""The one check of a LoRA adapter folder, shared by the model runtime and the expert store.

Only peft LoRA adapters saved as safetensors are accepted: `adapter_model.safetensors` beside an
`adapter_config.json` whose `peft_type` is `LORA`. Pickle weights are refused before anything
opens them.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from compllm_graph.errors import CompLLMError
from compllm_graph.types import BASE

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
# peft keys adapters in ModuleDicts, so no dots; keep names filesystem- and log-friendly too.
_ADAPTER_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")


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


def same_base(recorded: str, name: str) -> bool:
    """Whether a recorded base model (alias, path or hub id) names the loaded model."""
    return recorded == name or name in Path(recorded).parts or Path(recorded).name == name


__all__ = [
    "ADAPTER_CONFIG",
    "ADAPTER_WEIGHTS",
    "AdapterError",
    "check_adapter_folder",
    "check_adapter_name",
    "same_base",
]
