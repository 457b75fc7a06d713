"""A tiny random Llama written as a GGUF, for tests of the llama.cpp engine in milliseconds.

Two layers of width 64, F32 weights, and a SentencePiece vocabulary of the three special tokens,
the 256 byte tokens and `words` word pieces (`▁w0`, `▁w1`, ...; ids from `FIRST_WORD`). It
has no chat template: tests hand the engine token ids.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

BOS, EOS = 1, 2
FIRST_WORD = 3 + 256
_UNKNOWN, _NORMAL, _CONTROL, _BYTE = 2, 1, 3, 6


def write_tiny_gguf(
    path: Path, *, seed: int = 0, words: int = 40, width: int = 64, layers: int = 2
) -> Path:
    """Write the model to `path` (weights drawn from `seed`) and return `path`."""
    rng = np.random.default_rng(seed)
    pieces = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    pieces += [f"\u2581w{i}" for i in range(words)]
    kinds = [_UNKNOWN, _CONTROL, _CONTROL] + [_BYTE] * 256 + [_NORMAL] * words
    heads, kv_heads, ffn = 4, 2, 2 * width
    head = width // heads
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(512)
    writer.add_embedding_length(width)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(head)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(pieces)
    writer.add_token_scores([0.0] * len(pieces))
    writer.add_token_types(kinds)
    writer.add_bos_token_id(BOS)
    writer.add_eos_token_id(EOS)
    writer.add_unk_token_id(0)

    def weight(name: str, rows: int, columns: int, scale: float | None = None) -> None:
        scale = columns**-0.5 if scale is None else scale
        writer.add_tensor(name, (rng.standard_normal((rows, columns)) * scale).astype(np.float32))

    weight("token_embd.weight", len(pieces), width, 1.0)
    for layer in range(layers):
        block = f"blk.{layer}"
        writer.add_tensor(f"{block}.attn_norm.weight", np.ones(width, np.float32))
        weight(f"{block}.attn_q.weight", width, width)
        weight(f"{block}.attn_k.weight", kv_heads * head, width)
        weight(f"{block}.attn_v.weight", kv_heads * head, width)
        weight(f"{block}.attn_output.weight", width, width)
        writer.add_tensor(f"{block}.ffn_norm.weight", np.ones(width, np.float32))
        weight(f"{block}.ffn_gate.weight", ffn, width)
        weight(f"{block}.ffn_up.weight", ffn, width)
        weight(f"{block}.ffn_down.weight", width, ffn)
    writer.add_tensor("output_norm.weight", np.ones(width, np.float32))
    # sharp enough that greedy decoding falls into the loops prompt lookup can draft
    weight("output.weight", len(pieces), width, 3 * width**-0.5)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
