"""A peft LoRA adapter (safetensors) as a GGUF LoRA that llama.cpp loads on the same base model.

The GGUF file holds `general.type=adapter`, `adapter.type=lora`, `adapter.lora.alpha`, the base
model's `general.architecture`, and per adapted linear layer `blk.N.<tensor>.weight.lora_a`
(peft's `lora_A`, r x in) and `.lora_b` (peft's `lora_B`, out x r). llama.cpp scales the product
by alpha / r, as peft does. For llama-architecture bases (SmolLM2), the GGUF's q and k weights
were stored with their rows permuted for llama.cpp's RoPE layout, so q and k `lora_b` rows are
permuted the same way; Qwen2 keeps Hugging Face's layout and needs nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from compllm_graph._extras import requires
from compllm_graph.adapter_folder import ADAPTER_CONFIG, ADAPTER_WEIGHTS, check_adapter_folder
from compllm_graph.errors import CompLLMError

with requires("local"):
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

# Hugging Face module names of the decoder block -> llama.cpp tensor names.
_TENSOR_NAMES = {
    "q_proj": "attn_q",
    "k_proj": "attn_k",
    "v_proj": "attn_v",
    "o_proj": "attn_output",
    "gate_proj": "ffn_gate",
    "up_proj": "ffn_up",
    "down_proj": "ffn_down",
}
_KEY = re.compile(r"layers\.(\d+)\.(?:self_attn|mlp)\.(\w+)\.lora_([AB])(?:\.[\w-]+)?\.weight$")
_ROPE_PERMUTED = {"llama"}  # architectures whose GGUF q/k rows are permuted for RoPE
_CONVERTER_VERSION = "1"


class LoraConversionError(CompLLMError, ValueError):
    """The adapter uses something a GGUF LoRA cannot express."""


@dataclass(frozen=True)
class BaseShape:
    """What the converter needs to know of the base model (from its GGUF metadata)."""

    architecture: str
    heads: int
    kv_heads: int


def convert(adapter_dir: str | Path, base: BaseShape, out: str | Path) -> Path:
    """Write `adapter_dir`'s LoRA as a GGUF LoRA file at `out`.

    Raises:
        AdapterError: the folder is not a safetensors LoRA (see `check_adapter_folder`).
        LoraConversionError: DoRA, `modules_to_save`, rank or alpha patterns, embedding or
            output-layer LoRA, or a module outside the decoder blocks.
    """
    folder, config = check_adapter_folder(adapter_dir)
    _check_expressible(config)
    rank, alpha = int(config["r"]), float(config.get("lora_alpha") or config["r"])
    tensors = load_file(str(folder / ADAPTER_WEIGHTS))
    writer = gguf.GGUFWriter(str(out), base.architecture)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    for name, array in sorted(_gguf_tensors(tensors, base, rank).items()):
        writer.add_tensor(name, np.ascontiguousarray(array, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(out)


def _check_expressible(config: dict) -> None:
    refusals = {
        "use_dora": "DoRA",
        "modules_to_save": "modules_to_save (fully trained layers)",
        "alpha_pattern": "a per-module alpha_pattern",
        "rank_pattern": "a per-module rank_pattern",
    }
    used = [label for key, label in refusals.items() if config.get(key)]
    if used:
        raise LoraConversionError(
            f"a GGUF LoRA cannot express {', '.join(used)}; train a plain LoRA, or load the "
            "model with engine='transformers'"
        )


def _gguf_tensors(tensors: dict[str, np.ndarray], base: BaseShape, rank: int) -> dict:
    out: dict[str, np.ndarray] = {}
    for key, value in tensors.items():
        match = _KEY.search(key)
        module = match.group(2) if match else None
        if match is None or module not in _TENSOR_NAMES:
            raise LoraConversionError(
                f"cannot convert LoRA tensor {key!r}: only the decoder blocks' linear layers "
                f"({', '.join(_TENSOR_NAMES)}) map to llama.cpp"
            )
        layer, side = int(match.group(1)), match.group(3)
        array = np.asarray(value, dtype=np.float32)
        if side == "B" and base.architecture in _ROPE_PERMUTED and module in ("q_proj", "k_proj"):
            array = rope_permute(array, base.heads if module == "q_proj" else base.kv_heads)
        expected_rank = array.shape[0] if side == "A" else array.shape[1]
        if expected_rank != rank:
            raise LoraConversionError(f"{key} has rank {expected_rank}, the config says {rank}")
        out[f"blk.{layer}.{_TENSOR_NAMES[module]}.weight.lora_{side.lower()}"] = array
    return out


def rope_permute(rows: np.ndarray, heads: int) -> np.ndarray:
    """Reorder each head's rows from Hugging Face's rotate-half layout to interleaved pairs.

    Row `h * d + i` (i < d/2 the first half, i >= d/2 the second) moves to `h * d + 2i` and
    `h * d + 2(i - d/2) + 1`, as the GGUF conversion did to the base q and k weights.
    """
    out_features = rows.shape[0]
    half = out_features // heads // 2
    return rows.reshape(heads, 2, half, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)


def cached_conversion(adapter_dir: str | Path, base: BaseShape, cache_root: Path) -> Path:
    """The GGUF LoRA for `adapter_dir`, converted once and cached by content hash.

    The cache sits next to the adapter (`<adapter>/.gguf/`), or under `cache_root` when that
    folder is read-only. A changed adapter or base shape gets a new file.
    """
    folder, _ = check_adapter_folder(adapter_dir)
    digest = hashlib.sha256()
    for part in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
        digest.update((folder / part).read_bytes())
    digest.update(json.dumps([base.architecture, base.heads, base.kv_heads]).encode())
    digest.update(_CONVERTER_VERSION.encode())
    name = f"{digest.hexdigest()[:24]}.gguf"
    for cache in (folder / ".gguf", cache_root):
        target = cache / name
        if target.is_file():
            return target
        try:
            cache.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=cache, suffix=".tmp")
        except OSError:
            continue  # read-only (an installed package): try the next place
        os.close(handle)
        try:
            convert(folder, base, temporary)
            os.replace(temporary, target)
        finally:
            Path(temporary).unlink(missing_ok=True)
        return target
    raise LoraConversionError(f"no writable cache for the converted adapter ({cache_root})")


__all__ = ["BaseShape", "LoraConversionError", "cached_conversion", "convert", "rope_permute"]
