"""Hugging Face folders on llama.cpp through the GGUF converter, on tiny random Llama and Qwen2.

Parity is token for token: the prompt ids (chat template and tokenizer) and the greedy answer
ids of the llama.cpp engine on the converted GGUF equal the transformers engine's on the folder.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gguf
import pytest
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from compllm_graph.models import TransformersModel, gguf_convert, load_model
from compllm_graph.models.loading import ModelLoadError
from compllm_graph.models.requests import GenerationSettings, Request
from tests.models.tiny_hf import PRE_TOKENIZERS, USER_DEFINED, write_tiny_folder
from tests.training.tiny_folder import write_tiny_folder as write_char_folder

# load_model(..., engine="llama.cpp") needs llama-cpp-python before it converts anything.
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None,
    reason="llama-cpp-python is not installed: `make setup` builds it (about 10 minutes)",
)
PROMPTS: list[list[BaseMessage]] = [
    [HumanMessage("What is the capital of France?")],
    [SystemMessage("Answer briefly."), HumanMessage("It's 2024: add 12 and 30.")],
    [HumanMessage("Ünïcödé café, naïve <tool_call> and 日本語")],
]
TEXTS = [
    "Hello world, it's 2024!",
    "numbers 1234567 and 3.14, or 12,345",
    "  two  spaces\n\nnew lines\ttabs   \n",
    "I'LL DO IT, YOU'RE SURE? they've",
    "Ünïcödé café, naïve façade 日本語のテキスト Ελληνικά",
    f"<|im_start|>user\nhi<|im_end|>\ncall {USER_DEFINED} now",
    "def add(a, b):\n    return a + b",
]


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private $COMPLLM_HOME, so conversions land in the test's folder."""
    monkeypatch.setenv("COMPLLM_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def conversions(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The folders converted during the test (the converter itself still runs)."""
    seen: list[Path] = []
    real = gguf_convert.convert_folder

    def counting(folder: Path, out: Path, **kwargs: Any) -> None:
        seen.append(folder)
        real(folder, out, **kwargs)

    monkeypatch.setattr(gguf_convert, "convert_folder", counting)
    return seen


@contextmanager
def both_engines(folder: Path) -> Iterator[tuple[Any, TransformersModel]]:
    """The folder on llama.cpp (converted) and on transformers, closed afterwards."""
    llama = load_model(folder, engine="llama.cpp", n_threads=1)
    hf = load_model(folder, engine="transformers", max_wait_ms=1.0)
    try:
        yield llama, hf
    finally:
        llama.close()


def greedy(model: Any, prompt_ids: list[int], tokens: int = 16) -> list[int]:
    settings = GenerationSettings(max_new_tokens=tokens)
    request = Request(list(prompt_ids), None, settings)
    return list(model.batcher.submit(request).result(timeout=120).token_ids)


def metadata(path: Path) -> dict[str, Any]:
    reader = gguf.GGUFReader(path)
    fields = {key: reader.fields[key].contents() for key in reader.fields if "ggml.t" not in key}
    fields["tensor_types"] = {t.tensor_type.name for t in reader.tensors}
    fields["tensor_names"] = [t.name for t in reader.tensors]
    return fields


def converted(home: Path) -> list[Path]:
    return sorted((home / "converted-gguf").glob("*/model.gguf"))


def assert_same_answers(folder: Path, home: Path) -> dict[str, Any]:
    with both_engines(folder) as (llama, hf):
        for messages in PROMPTS:
            prompt = hf.encode_chat(messages)
            assert llama.encode_chat(messages) == prompt
            assert greedy(llama, prompt) == greedy(hf, prompt), messages
    [path] = converted(home)
    return metadata(path)


@pytest.mark.parametrize(
    "config",
    [{}, {"attention_bias": True, "tie_word_embeddings": True}],
    ids=["plain", "biases-tied"],
)
def test_tiny_llama_answers_as_on_transformers(
    tmp_path: Path, home: Path, config: dict[str, Any]
) -> None:
    folder = write_tiny_folder(tmp_path / "llama", model_type="llama", **config)
    meta = assert_same_answers(folder, home)
    assert meta["general.architecture"] == "llama"
    assert meta["tokenizer.ggml.pre"] == "gpt-2"
    assert meta["general.file_type"] == gguf.LlamaFileType.ALL_F32
    assert meta["tensor_types"] == {"F32"}
    assert ("output.weight" in meta["tensor_names"]) == (not config.get("tie_word_embeddings"))
    assert ("blk.0.attn_output.bias" in meta["tensor_names"]) is bool(config)


def test_tiny_qwen2_answers_as_on_transformers(tmp_path: Path, home: Path) -> None:
    """bf16 weights, q/k/v biases, tied embeddings and a vocabulary padded past the tokenizer."""
    folder = write_tiny_folder(
        tmp_path / "qwen", model_type="qwen2", style="qwen2", extra_rows=5, bf16=True,
        tie_word_embeddings=True,
    )  # fmt: skip
    meta = assert_same_answers(folder, home)
    assert meta["general.architecture"] == "qwen2"
    assert meta["tokenizer.ggml.pre"] == "qwen2"
    assert "blk.1.attn_q.bias" in meta["tensor_names"]
    assert "output.weight" not in meta["tensor_names"]
    padded = gguf.GGUFReader(converted(home)[0]).fields["tokenizer.ggml.tokens"]
    assert padded.contents()[-1] == f"[PAD{len(padded.data) - 1}]"


@pytest.mark.parametrize("style", PRE_TOKENIZERS)
def test_llama_cpp_splits_text_as_the_tokenizer_does(
    tmp_path: Path, home: Path, style: str
) -> None:
    folder = write_tiny_folder(tmp_path / style, style=style)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    llama = load_model(folder, engine="llama.cpp", n_threads=1)
    try:
        for text in TEXTS:
            expected = tokenizer(text, add_special_tokens=False)["input_ids"]
            assert llama.engine.tokenize(text) == expected, text
        assert llama.engine.detokenize(tokenizer(TEXTS[0])["input_ids"]) == TEXTS[0]
    finally:
        llama.close()
    assert metadata(converted(home)[0])["tokenizer.ggml.pre"] == style


def test_conversion_is_cached_and_a_changed_source_converts_again(
    tmp_path: Path, home: Path, conversions: list[Path]
) -> None:
    folder = write_tiny_folder(tmp_path / "llama", seed=0)
    for _ in range(2):
        load_model(folder, engine="llama.cpp", n_threads=1).close()
    assert len(conversions) == 1 and len(converted(home)) == 1
    stamp = json.loads((converted(home)[0].parent / "compllm.json").read_text())
    assert stamp["source"] == str(folder) and stamp["converter"] == gguf_convert.CONVERTER_VERSION
    write_tiny_folder(folder, seed=1)  # new weights, same folder
    model = load_model(folder, engine="llama.cpp", n_threads=1)
    assert model.name == "llama"
    model.close()
    assert len(conversions) == 2 and len(converted(home)) == 2


def test_the_default_engine_keeps_a_folder_on_transformers(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch, conversions: list[Path]
) -> None:
    monkeypatch.setenv("COMPLLM_ENGINE", "llama.cpp")
    model = load_model(write_tiny_folder(tmp_path / "llama"))
    assert isinstance(model, TransformersModel)
    assert conversions == []


ADVICE = r"use engine='transformers'.*convert_hf_to_gguf\.py"


def edit_json(path: Path, **changes: Any) -> None:
    """Set the keys of a JSON file's object; a None value removes the key."""
    data = {**json.loads(path.read_text()), **changes}
    path.write_text(json.dumps({key: value for key, value in data.items() if value is not None}))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"model_type": "mystery", "architectures": ["MysteryForCausalLM"]}, "MysteryForCausalLM"),
        (  # the form of configs written before transformers 5
            {"rope_parameters": None, "rope_theta": 5e5, "rope_scaling": {"rope_type": "llama3"}},
            "'llama3' RoPE scaling",
        ),
        ({"rope_parameters": {"rope_type": "yarn", "rope_theta": 1e4}}, "'yarn' RoPE scaling"),
        ({"mlp_bias": True}, "mlp_bias=True"),
        ({"hidden_act": "gelu"}, "hidden_act='gelu'"),
    ],
    ids=["model-type", "llama3-rope", "yarn-rope", "mlp-bias", "gelu"],
)
def test_unsupported_configs_are_refused_with_advice(
    tmp_path: Path, home: Path, changes: dict[str, Any], message: str
) -> None:
    folder = write_tiny_folder(tmp_path / "model")
    edit_json(folder / "config.json", **changes)
    with pytest.raises(ModelLoadError, match=f"{message}.*LlamaForCausalLM.*{ADVICE}"):
        load_model(folder, engine="llama.cpp")
    assert converted(home) == [] and not list((home / "converted-gguf").glob(".*"))


def test_gpt2_is_refused(tmp_path: Path) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64)).save_pretrained(
        folder
    )
    with pytest.raises(ModelLoadError, match=f"GPT2LMHeadModel is not supported.*{ADVICE}"):
        load_model(folder, engine="llama.cpp")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda f: None, "'WordLevel' model"),
        (lambda f: (f / "tokenizer.json").unlink(), "no tokenizer.json"),
    ],
    ids=["word-level", "missing"],
)
def test_unsupported_tokenizers_are_refused(tmp_path: Path, edit: Any, message: str) -> None:
    folder = write_char_folder(tmp_path / "chars")  # a character-level WordLevel tokenizer
    edit(folder)
    with pytest.raises(ModelLoadError, match=f"{message}.*{ADVICE}"):
        load_model(folder, engine="llama.cpp")


def test_an_unknown_pre_tokenizer_is_refused(tmp_path: Path) -> None:
    folder = write_tiny_folder(tmp_path / "model")
    edit_json(folder / "tokenizer.json", pre_tokenizer={"type": "Whitespace"})
    with pytest.raises(ModelLoadError, match=f"none of llama.cpp's gpt-2, smollm.*{ADVICE}"):
        load_model(folder, engine="llama.cpp")


def test_bad_folders_get_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match=r"without config\.json"):
        load_model(tmp_path / "empty", engine="llama.cpp")
    folder = write_tiny_folder(tmp_path / "model")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ModelLoadError, match=r"could not read .*model\.safetensors"):
        load_model(folder, engine="llama.cpp")
    weights.unlink()
    with pytest.raises(ModelLoadError, match=r"no \*\.safetensors weights"):
        load_model(folder, engine="llama.cpp")


def test_a_weight_that_does_not_fit_the_config_is_refused(tmp_path: Path) -> None:
    folder = write_tiny_folder(tmp_path / "model")
    edit_json(folder / "config.json", intermediate_size=96)
    with pytest.raises(ModelLoadError, match=r"mlp\.\w+_proj\.weight has shape .* implies"):
        load_model(folder, engine="llama.cpp")


def test_a_hub_id_without_the_network_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ModelLoadError, match="could not fetch 'nobody/no-such-model' from the"):
        load_model("nobody/no-such-model", engine="llama.cpp")
