"""Beam search through the micro-batcher and the chat model, on a tiny random Llama."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch", reason="needs the [local] extra")

import torch
from langchain_core.messages import HumanMessage

from compllm_graph.models import TransformersModel
from compllm_graph.models.requests import GenerationSettings, Request

from .test_local import request, with_adapters

PROMPTS = ["hello there", "a much longer prompt about the sea", "x"]


def beam_request(
    local: TransformersModel, prompt: str, adapter: str | None = None, **options: Any
) -> Request:
    """A 3-beam, 10-token request unless `options` say otherwise."""
    return request(local, prompt, adapter, **{"beams": 3, "max_new": 10, **options})


def reference_beams(
    local: TransformersModel, prompt: str, beams: int, max_new: int = 10
) -> list[str]:
    """Every beam of transformers' own beam search on the prompt alone."""
    ids = torch.tensor([local.encode_chat([HumanMessage(prompt)])])
    out = local.model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=max_new,
        num_beams=beams,
        num_return_sequences=beams,
        do_sample=False,
        pad_token_id=0,
        eos_token_id=2,
    )
    return [local.tokenizer.decode(row[ids.shape[1] :].tolist()) for row in out]


def test_beam_candidates_are_transformers_beams_best_first(tiny: TransformersModel) -> None:
    group = [beam_request(tiny, p) for p in PROMPTS]
    completions = tiny.batcher.generate(group)
    for prompt, completion in zip(PROMPTS, completions, strict=True):
        texts = [text for text, _ in completion.candidates]
        scores = [score for _, score in completion.candidates]
        assert texts == reference_beams(tiny, prompt, 3)
        assert completion.text == texts[0] and completion.batch_size == 3
        assert scores == sorted(scores, reverse=True)
    greedy = tiny.batcher.generate([Request(group[0].prompt_ids, None, GenerationSettings(10))])
    assert greedy[0].candidates == ()


def test_beam_search_mixes_adapters_like_one_by_one(
    tiny: TransformersModel, tmp_path: Path
) -> None:
    names = with_adapters(tiny, tmp_path, 2)
    adapters: list[str | None] = [None, *names]
    batched = tiny.batcher.generate([beam_request(tiny, "same prompt", a) for a in adapters])
    solos = [tiny.batcher.generate([beam_request(tiny, "same prompt", a)])[0] for a in adapters]
    for b, s in zip(batched, solos, strict=True):
        assert [text for text, _ in b.candidates] == [text for text, _ in s.candidates]
        assert [score for _, score in b.candidates] == pytest.approx(
            [score for _, score in s.candidates]
        )
    assert len({b.text for b in batched}) == 3  # each adapter really steered its own beams


def test_stop_strings_cut_every_beam(tiny: TransformersModel) -> None:
    free = tiny.batcher.generate([beam_request(tiny, "hello there")])[0]
    letter = free.text.strip()[1]
    cut = tiny.batcher.generate([beam_request(tiny, "hello there", stop=(letter,))])[0]
    for (text, _), (whole, _) in zip(cut.candidates, free.candidates, strict=True):
        assert letter not in text and whole.startswith(text)
    assert cut.finish_reason == "stop"


def test_equal_beam_settings_share_a_call_and_others_do_not() -> None:
    four, other_cap = GenerationSettings(num_beams=4), GenerationSettings(8, num_beams=4)
    assert four.group_key() == GenerationSettings(num_beams=4).group_key()
    assert four.group_key() != other_cap.group_key() != GenerationSettings().group_key()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"num_beams": 0}, "num_beams must be >= 1"),
        ({"num_beams": 2, "do_sample": True}, "beam search is deterministic"),
    ],
)
def test_bad_beam_settings_are_refused(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GenerationSettings(**settings)


def test_chat_model_returns_every_beam_and_invoke_the_best(tiny: TransformersModel) -> None:
    chat = tiny.chat_model(max_new_tokens=10, num_beams=3)
    result = chat.generate([[HumanMessage("hello there")]])
    beams = result.generations[0]
    assert [g.text for g in beams] == reference_beams(tiny, "hello there", 3)
    assert all(isinstance((g.generation_info or {})["score"], float) for g in beams)
    best = chat.invoke("hello there")
    assert best.content == beams[0].text
    assert best.usage_metadata and best.usage_metadata["output_tokens"] >= 1
    assert "".join(str(c.content) for c in chat.stream("hello there")) == beams[0].text
