"""Resolve a model name or path to a loaded model: `LlamaCppModel` or `TransformersModel`.

GGUF files are dequantised by transformers to fp32, which is slow (about 14 s for SmolLM2 on two
cores); the first load therefore saves a safetensors copy in the cache and later loads use it.
The other way round, a Hugging Face folder asked for on llama.cpp is converted to an f32 GGUF
once (`gguf_convert`) and cached by the content hash of its files.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args, overload

from compllm_graph._extras import requires
from compllm_graph._progress import quiet_library_bars, quiet_stderr, say
from compllm_graph.errors import CompLLMError
from compllm_graph.models import InferenceModel, gguf_convert
from compllm_graph.models.catalogue import CATALOGUE
from compllm_graph.models.download import fetch, gguf_path, home, is_cached, model_dir, sha256_file
from compllm_graph.models.local import TransformersModel

if TYPE_CHECKING:
    from compllm_graph.models.llama_model import LlamaCppModel

with requires("local"):
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

Engine = Literal["llama.cpp", "transformers"]
"""Which runtime serves a model: llama.cpp on the GGUF file, or transformers on fp32 weights."""

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_STAMP = "compllm.json"
_SOURCE_KEY = "source_sha256"  # stamp field of a Hugging Face folder converted to GGUF
_GGUF_NAME = "model.gguf"
# What a hub snapshot for the GGUF converter needs (no pickle weights, no other formats).
_HUB_FILES = [*gguf_convert.SOURCE_NAMES, "*.safetensors"]


class ModelLoadError(CompLLMError, RuntimeError):
    """A model name or path could not be resolved or loaded."""


def default_engine() -> Engine:
    """`$COMPLLM_ENGINE` if set, else llama.cpp where it is installed, else transformers."""
    chosen = os.environ.get("COMPLLM_ENGINE")
    if chosen:
        if chosen not in get_args(Engine):
            raise ModelLoadError(
                f"COMPLLM_ENGINE must be one of {get_args(Engine)}, got {chosen!r}"
            )
        return "llama.cpp" if chosen == "llama.cpp" else "transformers"
    return "llama.cpp" if importlib.util.find_spec("llama_cpp") is not None else "transformers"


@overload
def load_model(
    name_or_path: str | os.PathLike[str],
    *,
    engine: Literal["transformers"],
    n_threads: int | None = None,
    dtype: torch.dtype = torch.float32,
    max_batch_size: int = 8,
    max_wait_ms: float = 5.0,
) -> TransformersModel: ...


@overload
def load_model(
    name_or_path: str | os.PathLike[str],
    *,
    engine: Literal["llama.cpp"],
    n_threads: int | None = None,
    dtype: torch.dtype = torch.float32,
    max_batch_size: int = 8,
    max_wait_ms: float = 5.0,
) -> LlamaCppModel: ...


@overload
def load_model(
    name_or_path: str | os.PathLike[str],
    *,
    engine: Engine | None = None,
    n_threads: int | None = None,
    dtype: torch.dtype = torch.float32,
    max_batch_size: int = 8,
    max_wait_ms: float = 5.0,
) -> InferenceModel: ...


def load_model(
    name_or_path: str | os.PathLike[str],
    *,
    engine: Engine | None = None,
    n_threads: int | None = None,
    dtype: torch.dtype = torch.float32,
    max_batch_size: int = 8,
    max_wait_ms: float = 5.0,
) -> InferenceModel:
    """Load a model for inference on the llama.cpp engine or the transformers one.

    Args:
        name_or_path: a catalogue alias (fetched on first use), a `.gguf` file, a local Hugging
            Face folder, or a Hugging Face model id (fetched through the hub's cache).
        engine: "llama.cpp" runs the GGUF file natively (fast, no training or beam search);
            a Hugging Face folder or id is converted to an f32 GGUF first, once, and cached
            under `$COMPLLM_HOME/converted-gguf/` by the content hash of its files (Llama and
            Qwen2 models with a byte-level BPE tokenizer.json; others raise ModelLoadError).
            "transformers" dequantises a GGUF to fp32 (training, beam search, hidden-state
            embedders) and loads any Hugging Face causal LM. None: `default_engine()`, falling
            back to transformers for a source that is not a GGUF file (no conversion unasked).
        n_threads: CPU threads for llama.cpp; None: `$COMPLLM_THREADS` or the physical cores.
        dtype: parameter dtype on transformers; fp32 by default (what GGUF dequantises to).
        max_batch_size: most requests decoded together: in one transformers `generate` call,
            or at once in one llama.cpp adapter context (its sequences). Batched rows take other
            kernels than a lone request's, so a nearly tied greedy choice can flip with what
            else runs; 1 makes every answer the one the request gets alone.
        max_wait_ms: how long the transformers batcher waits for more requests.

    Returns:
        The loaded model; all chat models made from it share its weights.

    Raises:
        ValueError: `max_batch_size` is below 1.
        ModelLoadError: the name is neither an alias, an existing path, nor a hub id, the hub
            could not be reached, a folder for llama.cpp could not be converted (the message
            says what converts and what to do instead), or loading failed.
    """
    if engine is not None and engine not in get_args(Engine):
        raise ModelLoadError(f"engine must be one of {get_args(Engine)}, got {engine!r}")
    if max_batch_size < 1:
        raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
    text = os.fspath(name_or_path)
    gguf = _gguf_source(text)
    chosen = engine or default_engine()
    if chosen == "llama.cpp":
        if gguf is not None:
            return _load_llama(text, gguf, n_threads, max_batch_size)
        if engine is not None:  # asked for by name: convert the Hugging Face model
            importlib.import_module("compllm_graph.models.llama_engine")  # no llama.cpp: fail now
            local = _hf_folder(text)
            folder = local or _hub_snapshot(text)
            name = text if local is None else local.name
            converted = _converted_gguf(text, folder, name)
            return _load_llama(text, converted, n_threads, max_batch_size, name=name)
    return _load_transformers(text, dtype, max_batch_size, max_wait_ms)


def _gguf_source(text: str) -> Path | None:
    """The GGUF file behind an alias (fetched on first use) or a `.gguf` path, else None."""
    if text in CATALOGUE:
        return gguf_path(text) if is_cached(text) else fetch(text)
    path = Path(text).expanduser()
    if path.is_file() and path.suffix.lower() == ".gguf":
        return path
    return None


def _load_llama(
    text: str, gguf: Path, n_threads: int | None, sequences: int, *, name: str | None = None
) -> LlamaCppModel:
    from compllm_graph.models.llama_engine import EngineError, LlamaEngine
    from compllm_graph.models.llama_model import LlamaCppModel

    try:
        engine = LlamaEngine(gguf, n_threads=n_threads, n_seq_max=sequences)
    except EngineError as exc:
        raise ModelLoadError(f"could not load {text!r} on llama.cpp: {exc}") from exc
    name = name or (text if text in CATALOGUE else gguf.stem)
    return LlamaCppModel(engine, name=name, cache_dir=home() / "cache" / "lora")


def _hf_folder(text: str) -> Path | None:
    """The local Hugging Face folder `text` names, or None for a hub id.

    Raises:
        ModelLoadError: `text` is an existing path that is not a model folder, or neither a
            path nor a hub id.
    """
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{path} is a folder without config.json (not a model folder)")
        return path
    if path.exists():
        raise ModelLoadError(f"{path} is neither a .gguf file nor a Hugging Face model folder")
    if _HUB_ID.match(text):
        return None
    known = ", ".join(sorted(CATALOGUE))
    raise ModelLoadError(
        f"{text!r} is not a known alias ({known}), an existing path, or a hub id (org/name)"
    )


def _hub_snapshot(repo_id: str) -> Path:
    """The hub model's config, tokenizer and safetensors files, from the hub's cache or the hub."""
    import httpx
    from huggingface_hub import snapshot_download

    quiet_library_bars()
    try:
        return Path(snapshot_download(repo_id, allow_patterns=_HUB_FILES))
    except (OSError, ValueError, httpx.HTTPError) as exc:  # offline, unknown id, no access
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(
            f"could not fetch {repo_id!r} from the Hugging Face hub ({reason}); check the id "
            "and the network (HF_HUB_OFFLINE=1 reads only the local hub cache), or pass a local "
            "model folder"
        ) from exc


def _converted_gguf(text: str, folder: Path, name: str) -> Path:
    """The f32 GGUF of a Hugging Face folder for llama.cpp, converted once per content hash."""
    try:
        digest = gguf_convert.source_digest(folder)
    except gguf_convert.GGUFConversionError as exc:
        raise ModelLoadError(f"cannot convert {text!r} for llama.cpp: {exc}") from exc
    target = home() / "converted-gguf" / digest[:16]
    if _stamp_matches(target, digest, key=_SOURCE_KEY):
        return target / _GGUF_NAME
    say(f"converting {name} to an f32 GGUF for the llama.cpp engine (once)")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    try:
        try:
            gguf_convert.convert_folder(folder, tmp / _GGUF_NAME, name=name)
        except gguf_convert.UnsupportedModelError as exc:
            raise ModelLoadError(
                f"cannot convert {text!r} for llama.cpp: {exc}; {gguf_convert.SUPPORTED}: use "
                "engine='transformers', or convert it with llama.cpp's convert_hf_to_gguf.py "
                "and pass the .gguf file"
            ) from exc
        except gguf_convert.GGUFConversionError as exc:
            raise ModelLoadError(f"cannot convert {text!r} for llama.cpp: {exc}") from exc
        stamp = {
            "source": str(folder),
            _SOURCE_KEY: digest,
            "converter": gguf_convert.CONVERTER_VERSION,
            "gguf": _GGUF_NAME,
        }
        _publish(tmp, target, stamp, _SOURCE_KEY)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target / _GGUF_NAME


def _load_transformers(
    text: str, dtype: torch.dtype, max_batch_size: int, max_wait_ms: float
) -> TransformersModel:
    path = Path(text).expanduser()
    folder: Path | None
    if text in CATALOGUE:
        folder, name = safetensors_folder(text), text
    elif path.is_file() and path.suffix.lower() == ".gguf":
        folder, name = _converted_folder(path), path.stem
    else:
        folder = _hf_folder(text)
        name = text if folder is None else folder.name
    source = str(folder) if folder is not None else text
    quiet_library_bars()
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"could not load {text!r}: {exc}") from exc
    return TransformersModel(
        model, tokenizer, name=name, max_batch_size=max_batch_size, max_wait_ms=max_wait_ms
    )


def safetensors_folder(alias: str) -> Path:
    """The Hugging Face (safetensors) copy of a catalogued model, fetched and converted once.

    The transformers engine loads it, and other engines can serve it as it is
    (`vllm serve FOLDER`).

    Raises:
        KeyError: `alias` is not in the catalogue.
        FetchError: the GGUF could not be fetched.
        ModelLoadError: the GGUF could not be read.
    """
    if alias not in CATALOGUE:
        raise KeyError(f"unknown model alias {alias!r}; use one of {sorted(CATALOGUE)}")
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


def _stamp_matches(folder: Path, digest: str, *, key: str = "gguf_sha256") -> bool:
    """True when `folder` holds a finished conversion of the source whose hash is `digest`
    (`key` names the stamp's field: the GGUF's sha256, or a Hugging Face folder's digest)."""
    try:
        stamp = json.loads((folder / _STAMP).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(stamp, dict) and stamp.get(key) == digest


def _publish(tmp: Path, folder: Path, stamp: dict[str, str], key: str) -> None:
    """Stamp the finished conversion in `tmp` and rename it to `folder`.

    The stamp is written last and the folder renamed whole, so a crash never leaves a half-written
    folder that a later load would trust.
    """
    (tmp / _STAMP).write_text(json.dumps(stamp, indent=2) + "\n")
    if folder.exists() and not _stamp_matches(folder, stamp[key], key=key):
        shutil.rmtree(folder)  # a copy without a matching stamp is never trusted
    try:
        os.replace(tmp, folder)
    except OSError:
        # Another process finished the same conversion first; its copy is as good as ours.
        if not _stamp_matches(folder, stamp[key], key=key):
            raise


def _convert(gguf: Path, folder: Path, digest: str) -> Path:
    """Dequantise `gguf` once and save model + tokenizer as safetensors into `folder`.

    The copy is written to a temporary sibling and renamed, so a crash never leaves a half-written
    folder that a later load would trust.
    """
    say(f"converting {gguf.name} to safetensors for the transformers engine (once; about 15 s)")
    quiet_library_bars()
    try:
        with quiet_stderr():
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
        _publish(tmp, folder, stamp, "gguf_sha256")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


__all__ = [
    "Engine",
    "InferenceModel",
    "ModelLoadError",
    "default_engine",
    "load_model",
    "safetensors_folder",
]
