"""Resolve a model name or path to a loaded `LocalModel`.

GGUF files are dequantised by transformers to fp32, which is slow (about 14 s for SmolLM2 on two
cores); the first load therefore saves a safetensors copy in the cache and later loads use it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from compllm_graph._extras import requires
from compllm_graph.errors import CompLLMError
from compllm_graph.models.catalogue import CATALOGUE
from compllm_graph.models.download import fetch, gguf_path, home, is_cached, model_dir, sha256_file
from compllm_graph.models.local import LocalModel

with requires("local"):
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_STAMP = "compllm.json"


class ModelLoadError(CompLLMError, RuntimeError):
    """A model name or path could not be resolved or loaded."""


def load_model(
    name_or_path: str | os.PathLike[str],
    *,
    dtype: torch.dtype = torch.float32,
    max_batch_size: int = 8,
    max_wait_ms: float = 5.0,
) -> LocalModel:
    """Load a causal LM and its tokenizer as a `LocalModel`.

    Args:
        name_or_path: a catalogue alias (fetched on first use), a local Hugging Face folder, a
            `.gguf` file, or a Hugging Face model id (needs the hub).
        dtype: parameter dtype; fp32 by default (what GGUF dequantises to).
        max_batch_size: most requests coalesced into one `generate` call.
        max_wait_ms: how long the batcher waits for more requests after the first arrives.

    Returns:
        The loaded model; all chat models made from it share its weights.

    Raises:
        ModelLoadError: the name is neither an alias, an existing path, nor a hub id, or
            loading failed.
    """
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if text in CATALOGUE:
        folder, name = _alias_folder(text), text
    elif path.is_file() and path.suffix.lower() == ".gguf":
        folder, name = _converted_folder(path), path.stem
    elif path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{path} is a folder without config.json (not a model folder)")
        folder, name = path, path.name
    elif path.exists():
        raise ModelLoadError(f"{path} is neither a .gguf file nor a Hugging Face model folder")
    elif _HUB_ID.match(text):
        folder, name = None, text
    else:
        known = ", ".join(sorted(CATALOGUE))
        raise ModelLoadError(
            f"{text!r} is not a known alias ({known}), an existing path, or a hub id (org/name)"
        )
    source = str(folder) if folder is not None else text
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"could not load {text!r}: {exc}") from exc
    return LocalModel(
        model, tokenizer, name=name, max_batch_size=max_batch_size, max_wait_ms=max_wait_ms
    )


def _alias_folder(alias: str) -> Path:
    """Safetensors folder for a catalogued model, fetching and converting on first use."""
    folder = model_dir(alias) / "hf"
    if _stamp_matches(folder, CATALOGUE[alias].sha256):
        return folder
    gguf = gguf_path(alias) if is_cached(alias) else fetch(alias)
    return _convert(gguf, folder, CATALOGUE[alias].sha256)


def _converted_folder(gguf: Path) -> Path:
    """Safetensors folder for an arbitrary GGUF file, keyed by its content hash."""
    digest = sha256_file(gguf)
    folder = home() / "converted" / digest[:16]
    if _stamp_matches(folder, digest):
        return folder
    return _convert(gguf, folder, digest)


def _stamp_matches(folder: Path, digest: str) -> bool:
    """True when `folder` holds a finished conversion of the GGUF with sha256 `digest`."""
    try:
        stamp = json.loads((folder / _STAMP).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(stamp, dict) and stamp.get("gguf_sha256") == digest


def _convert(gguf: Path, folder: Path, digest: str) -> Path:
    """Dequantise `gguf` once and save model + tokenizer as safetensors into `folder`.

    The copy is written to a temporary sibling and renamed, so a crash never leaves a half-written
    folder that a later load would trust.
    """
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"could not read GGUF {gguf}: {exc}") from exc
    # The weights are already dequantised to fp32; drop the GGUF quantizer so transformers
    # agrees to save them as plain safetensors.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-"))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        stamp = {"gguf": gguf.name, "gguf_sha256": digest, "transformers": transformers.__version__}
        (tmp / _STAMP).write_text(json.dumps(stamp, indent=2) + "\n")
        if folder.exists() and not _stamp_matches(folder, digest):
            shutil.rmtree(folder)  # a copy without a matching stamp is never trusted
        try:
            os.replace(tmp, folder)
        except OSError:
            # Another process finished the same conversion first; its copy is as good as ours.
            if not _stamp_matches(folder, digest):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


__all__ = ["ModelLoadError", "load_model"]
