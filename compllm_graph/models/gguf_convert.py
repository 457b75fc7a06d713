"""A Hugging Face causal LM folder (safetensors + `tokenizer.json`) as a GGUF file for llama.cpp.

What converts: `LlamaForCausalLM` (SmolLM2; plain or linear RoPE) and `Qwen2ForCausalLM`
(Qwen2.5: q/k/v biases, often tied embeddings), with a byte-level BPE `tokenizer.json` whose
pre-tokenizer is one llama.cpp knows by name (`gpt-2`, `smollm`, `qwen2`, `llama-bpe`, read
from the tokenizer itself, not guessed from the model's name). Every tensor is written as f32:
llama.cpp then computes with the weights the transformers engine uses, so both engines give the
same greedy answers (f16 halves the file but rounds every weight). Anything else is refused with
`UnsupportedModelError` before a byte is written.

llama.cpp's `llama` architecture applies RoPE to interleaved pairs, Hugging Face's Llama to the
two halves of each head, so q and k rows (and biases) are permuted per head as for GGUF LoRAs;
Qwen2 runs in Hugging Face's layout on both sides.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compllm_graph._extras import requires
from compllm_graph.errors import CompLLMError
from compllm_graph.models.download import sha256_file
from compllm_graph.models.gguf_lora import rope_permute

with requires("local"):
    import gguf
    import numpy as np
    import torch
    from safetensors import SafetensorError, safe_open

CONVERTER_VERSION = "1"
"""Part of every conversion's cache key: a new version converts cached models again."""

SUPPORTED = (
    "the converter handles LlamaForCausalLM and Qwen2ForCausalLM with a byte-level BPE "
    "tokenizer.json"
)

SOURCE_NAMES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "chat_template.json",
    "model.safetensors.index.json",
)
"""Files besides the `*.safetensors` weights whose bytes decide the GGUF (the cache key)."""
_WEIGHT_DTYPES = {"F32", "F16", "BF16"}


class GGUFConversionError(CompLLMError, ValueError):
    """The folder could not be read as a Hugging Face model (missing or corrupt files)."""


class UnsupportedModelError(GGUFConversionError):
    """The model or tokenizer is one this converter does not handle."""


@dataclass(frozen=True)
class _Architecture:
    hf_class: str
    arch: gguf.MODEL_ARCH
    permute_qk: bool  # llama.cpp's llama RoPE takes interleaved pairs
    qkv_bias: bool  # q/k/v biases always present (Qwen2)


_ARCHITECTURES = {
    "llama": _Architecture("LlamaForCausalLM", gguf.MODEL_ARCH.LLAMA, True, False),
    "qwen2": _Architecture("Qwen2ForCausalLM", gguf.MODEL_ARCH.QWEN2, False, True),
}


@dataclass(frozen=True)
class _Shape:
    """The hyperparameters llama.cpp needs, read from config.json."""

    vocab: int
    hidden: int
    ffn: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    context: int
    rms_eps: float
    rope_theta: float
    rope_linear_factor: float | None
    tied: bool
    attention_bias: bool


# Pre-tokenizers llama.cpp knows by name, as (tokenizer.json steps, model.ignore_merges).
_QWEN2_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_LLAMA3_REGEX = _QWEN2_REGEX.replace(r"\p{N}|", r"\p{N}{1,3}|", 1)
_PRE_TOKENIZERS: dict[tuple[tuple[tuple[str, object], ...], bool], str] = {
    ((("byte_level", True),), False): "gpt-2",
    ((("digits", True), ("byte_level", True)), False): "smollm",
    ((("split", _QWEN2_REGEX), ("byte_level", False)), False): "qwen2",
    ((("split", _LLAMA3_REGEX), ("byte_level", False)), True): "llama-bpe",
}


def source_files(folder: Path) -> list[Path]:
    """The files of `folder` a conversion reads: config, tokenizer and safetensors weights.

    Raises:
        GGUFConversionError: no config.json, or no safetensors weights.
    """
    if not (folder / "config.json").is_file():
        raise GGUFConversionError(f"{folder} has no config.json (not a Hugging Face model folder)")
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        raise GGUFConversionError(
            f"{folder} has no *.safetensors weights (pickle .bin weights are not read)"
        )
    named = [folder / name for name in SOURCE_NAMES if (folder / name).is_file()]
    return sorted(named + weights)


def source_digest(folder: Path) -> str:
    """sha256 over the converter version and each source file's name and sha256."""
    digest = hashlib.sha256(f"compllm-gguf-convert {CONVERTER_VERSION}\n".encode())
    for path in source_files(folder):
        digest.update(f"{path.name}\0{sha256_file(path)}\n".encode())
    return digest.hexdigest()


def convert_folder(folder: Path, out: Path, *, name: str | None = None) -> None:
    """Write the model in `folder` to `out` as an f32 GGUF file that llama.cpp loads.

    Everything is checked (architecture, hyperparameters, tokenizer, tensor names and shapes)
    before the file is opened; the weights are then read and written one tensor at a time.

    Args:
        folder: A Hugging Face model folder: config.json, *.safetensors, tokenizer.json.
        out: The GGUF file to write.
        name: `general.name` of the model (default: the folder's name).

    Raises:
        UnsupportedModelError: an architecture, setting or tokenizer the converter does not handle.
        GGUFConversionError: a missing, unreadable or inconsistent file.
    """
    config = _read_json(folder / "config.json")
    architecture = _architecture(config)
    shape = _shape(config)
    tokenizer = _tokenizer_json(folder)
    tokens, token_types = _vocabulary(tokenizer, shape.vocab)
    pre = _pre_tokenizer(tokenizer)
    try:
        special = gguf.SpecialVocab(folder, load_merges=True, n_vocab=len(tokens))
    except (OSError, ValueError) as exc:
        raise GGUFConversionError(f"could not read the tokenizer files: {exc}") from exc
    if not special.merges:
        raise UnsupportedModelError("tokenizer.json has no BPE merges")
    # Written explicitly: llama.cpp's defaults for a BPE vocabulary depend on the pre-tokenizer.
    special.add_special_token.setdefault("bos", False)
    special.add_special_token.setdefault("eos", False)
    with ExitStack() as stack:
        sources = _open_weights(folder, stack)
        plan = _tensor_plan(sources, architecture, shape)
        writer = gguf.GGUFWriter(out, gguf.MODEL_ARCH_NAMES[architecture.arch])
        stack.callback(writer.close)
        _add_hyperparameters(writer, shape, name or folder.name)
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(pre)
        writer.add_token_list(tokens)
        writer.add_token_types(token_types)
        special.add_to_gguf(writer, quiet=True)
        for gguf_name, (_, _, dims) in plan.items():
            writer.add_tensor_info(gguf_name, dims, np.dtype(np.float32), 4 * _count(dims))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for gguf_name, (handle, hf_name, _) in plan.items():
            writer.write_tensor_data(_tensor(handle, hf_name, gguf_name, architecture, shape))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise GGUFConversionError(f"{path.parent} has no {path.name}") from exc
    except (OSError, ValueError) as exc:
        raise GGUFConversionError(f"could not read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise GGUFConversionError(f"{path} does not hold a JSON object")
    return data


def _architecture(config: dict[str, Any]) -> _Architecture:
    model_type = config.get("model_type")
    classes = config.get("architectures") or []
    known = _ARCHITECTURES.get(str(model_type))
    if known is None or (classes and known.hf_class not in classes):
        described = "/".join(str(c) for c in classes) or f"model_type {model_type!r}"
        raise UnsupportedModelError(f"{described} is not supported")
    return known


def _shape(config: dict[str, Any]) -> _Shape:
    """The hyperparameters, refusing settings llama.cpp's llama/qwen2 graphs would not apply."""
    refused = {
        "hidden_act": (config.get("hidden_act") or "silu") != "silu",
        "mlp_bias": bool(config.get("mlp_bias")),
        "use_sliding_window": bool(config.get("use_sliding_window")),
        "partial_rotary_factor": (config.get("partial_rotary_factor") or 1.0) != 1.0,
    }
    for setting, bad in refused.items():
        if bad:
            raise UnsupportedModelError(f"config.json sets {setting}={config[setting]!r}")
    rope = _rope(config)
    try:
        hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
        return _Shape(
            vocab=int(config["vocab_size"]),
            hidden=hidden,
            ffn=int(config["intermediate_size"]),
            layers=int(config["num_hidden_layers"]),
            heads=heads,
            kv_heads=int(config.get("num_key_value_heads") or heads),
            head_dim=int(config.get("head_dim") or hidden // heads),
            context=int(config.get("max_position_embeddings") or 4096),
            rms_eps=float(config.get("rms_norm_eps", 1e-6)),
            rope_theta=rope[0],
            rope_linear_factor=rope[1],
            tied=bool(config.get("tie_word_embeddings", False)),
            attention_bias=bool(config.get("attention_bias", False)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise GGUFConversionError(f"config.json lacks or mangles {exc}") from exc


def _rope(config: dict[str, Any]) -> tuple[float, float | None]:
    """RoPE base and linear scaling factor; other scalings (llama3, yarn, dynamic) are refused."""
    # transformers 5 writes `rope_parameters`; older configs `rope_theta` and `rope_scaling`.
    parameters = config.get("rope_parameters") or {}
    scaling = config.get("rope_scaling") or {}
    theta = float(parameters.get("rope_theta") or config.get("rope_theta") or 10000.0)
    kind = parameters.get("rope_type") or scaling.get("rope_type") or scaling.get("type")
    if kind in (None, "default"):
        return theta, None
    if kind == "linear":
        try:
            return theta, float(parameters.get("factor") or scaling["factor"])
        except (KeyError, TypeError, ValueError) as exc:
            raise GGUFConversionError("config.json asks for linear RoPE without a factor") from exc
    raise UnsupportedModelError(f"config.json asks for {kind!r} RoPE scaling")


def _tokenizer_json(folder: Path) -> dict[str, Any]:
    """tokenizer.json, refused unless it holds a BPE model without byte fallback."""
    if not (folder / "tokenizer.json").is_file():
        raise UnsupportedModelError(
            f"{folder} has no tokenizer.json (a tokenizer.model or vocab.json alone is not read)"
        )
    tokenizer = _read_json(folder / "tokenizer.json")
    model = tokenizer.get("model") or {}
    if model.get("type") != "BPE" or model.get("byte_fallback"):
        raise UnsupportedModelError(
            f"tokenizer.json holds a {model.get('type')!r} model"
            + (" with byte fallback" if model.get("byte_fallback") else "")
            + ", not byte-level BPE"
        )
    if not isinstance(model.get("vocab"), dict):
        raise GGUFConversionError("tokenizer.json's BPE model has no vocab")
    return tokenizer


def _vocabulary(tokenizer: dict[str, Any], size: int) -> tuple[list[str], list[int]]:
    """Token texts and llama.cpp token types by id, padded to the embedding's `size` rows."""
    model, added = tokenizer["model"], tokenizer.get("added_tokens") or []
    tokens = [f"[PAD{i}]" for i in range(size)]
    types = [gguf.TokenType.UNUSED.value] * size
    try:
        entries = [(int(i), str(text), gguf.TokenType.NORMAL) for text, i in model["vocab"].items()]
        for token in added:
            kind = gguf.TokenType.CONTROL if token.get("special") else gguf.TokenType.USER_DEFINED
            entries.append((int(token["id"]), str(token["content"]), kind))
    except (KeyError, TypeError, ValueError) as exc:
        raise GGUFConversionError(f"tokenizer.json has a malformed token list ({exc})") from exc
    for token_id, text, kind in entries:
        if not 0 <= token_id < size:
            raise GGUFConversionError(
                f"token {text!r} has id {token_id}, outside the model's {size} embedding rows"
            )
        tokens[token_id], types[token_id] = text, kind.value
    if len(set(tokens)) != size:
        # llama.cpp maps text to id and aborts the process on a duplicate.
        raise UnsupportedModelError("tokenizer.json gives two ids the same text")
    return tokens, types


def _pre_tokenizer(tokenizer: dict[str, Any]) -> str:
    """llama.cpp's name for the tokenizer's pre-tokenizer (`tokenizer.ggml.pre`).

    Read from tokenizer.json's steps (a regex split, digit split, byte-level mapping) and
    matched to the regexes llama.cpp implements; a tokenizer that matches none is refused,
    since llama.cpp would split text differently from Hugging Face.
    """
    normalizer = tokenizer.get("normalizer")
    if normalizer is not None and normalizer.get("type") != "NFC":
        raise UnsupportedModelError(f"tokenizer.json has a {normalizer.get('type')} normalizer")
    decoder = tokenizer.get("decoder") or {}
    if decoder.get("type") != "ByteLevel":
        raise UnsupportedModelError(f"tokenizer.json has a {decoder.get('type')} decoder")
    pre = tokenizer.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    ignore_merges = bool(tokenizer["model"].get("ignore_merges"))
    signature = (tuple(_step(step) for step in steps), ignore_merges)
    name = _PRE_TOKENIZERS.get(signature)
    if name is None:
        raise UnsupportedModelError(
            "tokenizer.json's pre-tokenizer is none of llama.cpp's gpt-2, smollm, qwen2, llama-bpe"
        )
    return name


def _step(step: dict[str, Any]) -> tuple[str, object]:
    kind = step.get("type")
    if kind == "ByteLevel" and not step.get("add_prefix_space"):
        return "byte_level", bool(step.get("use_regex", True))
    if kind == "Digits":
        return "digits", bool(step.get("individual_digits"))
    if kind == "Split" and step.get("behavior") == "Isolated" and not step.get("invert"):
        return "split", (step.get("pattern") or {}).get("Regex")
    return "other", json.dumps(step, sort_keys=True)


def _open_weights(folder: Path, stack: ExitStack) -> dict[str, Any]:
    """Each tensor name of the safetensors files, with the open file that holds it."""
    handles: dict[str, Any] = {}
    for path in sorted(folder.glob("*.safetensors")):
        try:
            handle = stack.enter_context(safe_open(str(path), framework="pt"))
        except (SafetensorError, OSError) as exc:
            raise GGUFConversionError(f"could not read {path}: {exc}") from exc
        names = handle.keys()
        for key in names:
            if key in handles:
                raise GGUFConversionError(f"tensor {key} is in two safetensors files")
            handles[key] = handle
    return handles


def _expected(architecture: _Architecture, shape: _Shape) -> dict[str, tuple[int, ...]]:
    """Every GGUF tensor llama.cpp's graph reads, with its (rows, columns) shape."""
    q, kv = shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
    hidden, ffn = shape.hidden, shape.ffn
    tensors: dict[str, tuple[int, ...]] = {
        "token_embd.weight": (shape.vocab, hidden),
        "output_norm.weight": (hidden,),
    }
    if not shape.tied:
        tensors["output.weight"] = (shape.vocab, hidden)
    block = {
        "attn_norm.weight": (hidden,),
        "attn_q.weight": (q, hidden),
        "attn_k.weight": (kv, hidden),
        "attn_v.weight": (kv, hidden),
        "attn_output.weight": (hidden, q),
        "ffn_norm.weight": (hidden,),
        "ffn_gate.weight": (ffn, hidden),
        "ffn_up.weight": (ffn, hidden),
        "ffn_down.weight": (hidden, ffn),
    }
    if architecture.qkv_bias or shape.attention_bias:
        block |= {"attn_q.bias": (q,), "attn_k.bias": (kv,), "attn_v.bias": (kv,)}
    if shape.attention_bias:
        block["attn_output.bias"] = (hidden,)
    for layer in range(shape.layers):
        tensors |= {f"blk.{layer}.{key}": dims for key, dims in block.items()}
    return tensors


def _tensor_plan(
    sources: dict[str, Any], architecture: _Architecture, shape: _Shape
) -> dict[str, tuple[Any, str, tuple[int, ...]]]:
    """GGUF name -> (open file, Hugging Face name, shape), checked against what llama.cpp reads."""
    names = gguf.get_tensor_name_map(architecture.arch, shape.layers)
    expected = _expected(architecture, shape)
    plan: dict[str, tuple[Any, str, tuple[int, ...]]] = {}
    for hf_name, handle in sources.items():
        if hf_name.endswith("rotary_emb.inv_freq") or (shape.tied and hf_name == "lm_head.weight"):
            continue  # recomputed by llama.cpp / the same tensor as the embedding
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None or gguf_name not in expected:
            raise UnsupportedModelError(f"tensor {hf_name} has no place in llama.cpp's graph")
        view = handle.get_slice(hf_name)
        dims = tuple(int(d) for d in view.get_shape())
        if dims != expected[gguf_name]:
            raise GGUFConversionError(
                f"tensor {hf_name} has shape {list(dims)}, config.json implies "
                f"{list(expected[gguf_name])}"
            )
        if view.get_dtype() not in _WEIGHT_DTYPES:
            raise UnsupportedModelError(f"tensor {hf_name} is {view.get_dtype()}, not a float")
        plan[gguf_name] = (handle, hf_name, dims)
    missing = sorted(set(expected) - set(plan), key=list(expected).index)
    if missing:
        raise GGUFConversionError(f"the weights lack {len(missing)} tensors, e.g. {missing[0]}")
    return {key: plan[key] for key in expected}  # llama.cpp's order: embedding first


def _tensor(
    handle: Any, hf_name: str, gguf_name: str, architecture: _Architecture, shape: _Shape
) -> np.ndarray:
    """One tensor as contiguous f32, q/k rows permuted for llama.cpp's llama RoPE."""
    try:
        array = handle.get_tensor(hf_name).to(torch.float32).numpy()
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise GGUFConversionError(f"could not read tensor {hf_name}: {exc}") from exc
    if architecture.permute_qk and ".attn_q." in gguf_name:
        array = rope_permute(array, shape.heads)
    elif architecture.permute_qk and ".attn_k." in gguf_name:
        array = rope_permute(array, shape.kv_heads)
    return np.ascontiguousarray(array, dtype=np.float32)


def _add_hyperparameters(writer: gguf.GGUFWriter, shape: _Shape, name: str) -> None:
    writer.add_name(name)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_vocab_size(shape.vocab)
    writer.add_context_length(shape.context)
    writer.add_embedding_length(shape.hidden)
    writer.add_block_count(shape.layers)
    writer.add_feed_forward_length(shape.ffn)
    writer.add_head_count(shape.heads)
    writer.add_head_count_kv(shape.kv_heads)
    writer.add_rope_dimension_count(shape.head_dim)
    if shape.head_dim * shape.heads != shape.hidden:
        writer.add_key_length(shape.head_dim)
        writer.add_value_length(shape.head_dim)
    writer.add_rope_freq_base(shape.rope_theta)
    if shape.rope_linear_factor is not None:
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(shape.rope_linear_factor)
    writer.add_layer_norm_rms_eps(shape.rms_eps)


def _count(dims: tuple[int, ...]) -> int:
    total = 1
    for size in dims:
        total *= size
    return total


__all__ = [
    "CONVERTER_VERSION",
    "SOURCE_NAMES",
    "SUPPORTED",
    "GGUFConversionError",
    "UnsupportedModelError",
    "convert_folder",
    "source_digest",
    "source_files",
]
