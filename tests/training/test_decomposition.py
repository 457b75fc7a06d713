"""Batched decomposer generation on a tiny random model: greedy and beam search."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from compllm_graph.decomposer.generation import generate
from tests.tiny import tiny_llama

EOS, PAD = 1, 0


class DigitTokenizer:
    """Renders a chat as the token ids written in its messages; decodes ids as numbers."""

    eos_token_id, pad_token_id = EOS, PAD

    def apply_chat_template(self, messages: Any, **_: Any) -> list[int]:
        return [int(word) for m in messages for word in m["content"].split()]

    def decode(self, ids: Any, skip_special_tokens: bool = True) -> str:
        return " ".join(str(int(i)) for i in ids if int(i) not in (EOS, PAD))


def reference(model: Any, prompt: list[int], **kwargs: Any) -> str:
    """The reply to the prompt generated alone."""
    out = model.generate(
        input_ids=torch.tensor([prompt]),
        max_new_tokens=6,
        do_sample=False,
        pad_token_id=PAD,
        eos_token_id=EOS,
        **kwargs,
    )
    return DigitTokenizer().decode(out[0, len(prompt) :])


def test_beam_search_reaches_generate_and_differs_from_greedy() -> None:
    model, tokenizer = tiny_llama(seed=3), DigitTokenizer()
    prompts = [[5, 9, 12], [7, 7, 30, 2], [40, 41]]
    chats = [[{"role": "user", "content": " ".join(map(str, p))}] for p in prompts]
    greedy = generate(model, tokenizer, chats, max_new_tokens=6)
    beams = generate(model, tokenizer, chats, max_new_tokens=6, num_beams=4)
    assert greedy == [reference(model, p) for p in prompts]
    assert beams == [reference(model, p, num_beams=4) for p in prompts]
    assert beams != greedy  # otherwise this test could not tell the two apart


def test_beams_below_one_are_refused() -> None:
    with pytest.raises(ValueError, match="num_beams must be >= 1"):
        generate(tiny_llama(), DigitTokenizer(), [[{"role": "user", "content": "5"}]], num_beams=0)
