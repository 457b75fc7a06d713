"""A tiny random-init Llama saved as a Hugging Face folder, with a real (fast) tokenizer.

The trainer needs a transformers tokenizer (TRL checks its class) and `compllm train --base
FOLDER` loads config, weights and tokenizer from disk, so the fixture is a folder like the one
`compllm models safetensors ALIAS` writes: a character-level tokenizer with a ChatML template,
built offline with `tokenizers`, and a two-layer Llama built from a config.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

SPECIAL = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>"]
VOCAB_SIZE = 128
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def char_tokenizer() -> Any:
    """A character-level fast tokenizer: printable ASCII, ChatML specials, `<|im_end|>` ends."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = sorted(set(string.printable) - set("\t\r\x0b\x0c"))
    vocab = {token: i for i, token in enumerate([*SPECIAL, *chars])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    core.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<pad>",
        unk_token="<unk>",
        eos_token="<|im_end|>",
        additional_special_tokens=["<|im_start|>"],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def tiny_model(seed: int = 0, layers: int = 2) -> Any:
    """A random-init Llama over `char_tokenizer`'s vocabulary."""
    from tests.tiny import tiny_llama

    return tiny_llama(
        seed,
        vocab_size=VOCAB_SIZE,
        num_hidden_layers=layers,
        max_position_embeddings=1024,  # character tokens: a chat turn runs to a few hundred
        pad_token_id=0,
        eos_token_id=SPECIAL.index("<|im_end|>"),
        bos_token_id=None,
    )


def write_tiny_folder(folder: Path, seed: int = 0, layers: int = 2) -> Path:
    """Save the tiny Llama and its tokenizer as a Hugging Face model folder."""
    tiny_model(seed, layers).save_pretrained(folder)
    char_tokenizer().save_pretrained(folder)
    return folder
