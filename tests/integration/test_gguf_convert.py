"""SmolLM2's safetensors folder (`compllm models safetensors`) on llama.cpp through the GGUF
converter: the same prompts and greedy answers as the transformers engine on that folder."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import gguf
import pytest
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from compllm_graph.models import SMALL_MODEL, TransformersModel, load_model
from compllm_graph.models.loading import safetensors_folder
from compllm_graph.models.requests import GenerationSettings, Request

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        importlib.util.find_spec("llama_cpp") is None,
        reason="llama-cpp-python is not installed: `make setup` builds it (about 10 minutes)",
    ),
]

PROMPTS: list[list[BaseMessage]] = [
    [HumanMessage("What is the capital of France?")],
    [SystemMessage("You are a concise assistant."), HumanMessage("Name three primary colours.")],
    [HumanMessage("What is 12 plus 30? Answer with the number.")],
]


def test_smollm2_folder_converts_and_answers_as_transformers(
    smollm2: TransformersModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = safetensors_folder(SMALL_MODEL)  # what `smollm2` was loaded from
    monkeypatch.setenv("COMPLLM_HOME", str(tmp_path))  # the f32 GGUF (540 MB) goes here
    llama = load_model(folder, engine="llama.cpp", n_threads=2)
    try:
        [path] = list((tmp_path / "converted-gguf").glob("*/model.gguf"))
        fields = gguf.GGUFReader(path).fields
        assert fields["general.architecture"].contents() == "llama"
        # transformers wrote the folder's tokenizer with the plain GPT-2 split (no digit split)
        assert fields["tokenizer.ggml.pre"].contents() == "gpt-2"
        settings = GenerationSettings(max_new_tokens=48)
        for messages in PROMPTS:
            prompt = smollm2.encode_chat(messages)
            assert llama.encode_chat(messages) == prompt
            ours = llama.engine.submit(Request(prompt, None, settings)).result(timeout=600)
            theirs = smollm2.batcher.submit(Request(prompt, None, settings)).result(timeout=600)
            assert ours.token_ids == theirs.token_ids, (ours.text, theirs.text)
            assert ours.text.strip(), messages
    finally:
        llama.close()
