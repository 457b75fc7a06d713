"""Tiny random Llama and Qwen2 folders with a byte-level BPE tokenizer, for the GGUF converter.

The tokenizer is trained offline with `tokenizers` on a few lines of text, with one of the four
pre-tokenizers llama.cpp knows by name (`PRE_TOKENIZERS`), so tests can check that llama.cpp
splits text as Hugging Face does. Every parameter (norms and biases included) is drawn at
random, so a q/k bias or a norm that the converter dropped or misplaced changes the output.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.training.tiny_folder import CHAT_TEMPLATE

SPECIAL = ["<pad>", "<|im_start|>", "<|im_end|>"]
USER_DEFINED = "<tool_call>"  # an added token that is not special
PRE_TOKENIZERS = ("gpt-2", "smollm", "qwen2", "llama-bpe")
QWEN2_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
LLAMA3_REGEX = QWEN2_REGEX.replace(r"\p{N}|", r"\p{N}{1,3}|", 1)
CORPUS = [
    "The capital of France is Paris. The capital of Italy is Rome.",
    "It's 2024 and they've said we'll see 12,345 people at 3.14 pm!",
    "def add(a, b):\n    return a + b  # numbers 1234567890\n\n\tindented",
    "Ünïcödé wörds: café, naïve, façade, 日本語のテキスト, Ελληνικά, русский.",
    "I'LL DO IT, YOU'RE SURE? <html><body>Hello world</body></html>",
    "Questions and answers: what is two plus two? Four. What colour is the sky? Blue.",
]


def _pre_tokenizer(style: str) -> Any:
    from tokenizers import Regex, pre_tokenizers

    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=style == "gpt-2")
    if style == "gpt-2":
        return byte_level
    if style == "smollm":
        return pre_tokenizers.Sequence(
            [
                pre_tokenizers.Digits(individual_digits=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
            ]
        )
    regex = QWEN2_REGEX if style == "qwen2" else LLAMA3_REGEX
    split = pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False)
    return pre_tokenizers.Sequence([split, byte_level])


def bpe_tokenizer(style: str = "gpt-2", vocab_size: int = 400) -> Any:
    """A trained byte-level BPE fast tokenizer with ChatML specials; `<|im_end|>` ends a turn."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, trainers
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import PreTrainedTokenizerFast

    if style not in PRE_TOKENIZERS:
        raise ValueError(f"style must be one of {PRE_TOKENIZERS}, got {style!r}")
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = _pre_tokenizer(style)
    core.decoder = decoders.ByteLevel()
    if style == "qwen2":
        core.normalizer = normalizers.NFC()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL,
        initial_alphabet=ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(CORPUS * 4, trainer)
    if style == "llama-bpe":  # Llama 3 tokenizers take a whole word from the vocabulary first
        data = json.loads(core.to_str())
        data["model"]["ignore_merges"] = True
        core = Tokenizer.from_str(json.dumps(data))
    core.add_tokens([AddedToken(USER_DEFINED, special=False, normalized=False)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<pad>",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def tiny_model(
    model_type: str, vocab_size: int, *, seed: int = 0, eos: int, pad: int, **config: Any
) -> Any:
    """A random two-layer Llama or Qwen2 whose every parameter is drawn from `seed`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    settings = {
        "vocab_size": vocab_size,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 512,
        "eos_token_id": eos,
        "pad_token_id": pad,
        "bos_token_id": None,
        **config,
    }
    torch.manual_seed(seed)
    if model_type == "llama":
        model: Any = LlamaForCausalLM(LlamaConfig(**settings))
    elif model_type == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**settings))
    else:
        raise ValueError(f"model_type must be llama or qwen2, got {model_type!r}")
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("norm.weight"):
                parameter.uniform_(0.5, 1.5)
            else:
                parameter.normal_(0.0, 0.15)
    return model


def write_tiny_folder(
    folder: Path,
    *,
    model_type: str = "llama",
    style: str = "gpt-2",
    seed: int = 0,
    extra_rows: int = 0,
    bf16: bool = False,
    **config: Any,
) -> Path:
    """Save a tiny model and its tokenizer as a Hugging Face folder and return the folder.

    Args:
        folder: Where to save.
        model_type: "llama" or "qwen2".
        style: The tokenizer's pre-tokenizer, one of `PRE_TOKENIZERS`.
        seed: Draws the weights.
        extra_rows: Embedding rows beyond the tokenizer's ids (Qwen2.5 pads its vocabulary).
        bf16: Save the weights as bfloat16 (as most hub models are) instead of float32.
        **config: Overrides of the model config (`tie_word_embeddings`, `attention_bias`, ...).
    """
    import torch

    tokenizer = bpe_tokenizer(style)
    model = tiny_model(
        model_type,
        len(tokenizer) + extra_rows,
        seed=seed,
        eos=tokenizer.eos_token_id,
        pad=tokenizer.pad_token_id,
        **config,
    )
    if bf16:
        model = model.to(torch.bfloat16)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
