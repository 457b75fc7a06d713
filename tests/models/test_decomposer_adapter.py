"""`default_decomposer` with a decomposer adapter folder of the user's own (`ask --decomposer`)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("faiss", reason="needs the [router] extra")
pytest.importorskip("torch", reason="needs the [local] extra")

from compllm_graph.cli import main
from compllm_graph.decomposer.prompts import DECOMPOSER_PROMPT
from compllm_graph.defaults import default_decomposer
from compllm_graph.expert_store import ExpertStore
from compllm_graph.models import AdapterError, LocalChatModel, TransformersModel
from tests.fakes import RefusingModel
from tests.random_lora import save_random_lora


def adapter_of(chat: object) -> str | None:
    assert isinstance(chat, LocalChatModel)
    return chat.adapter


def trained_folder(local: TransformersModel, folder: Path, record: dict | str | None) -> Path:
    """A random LoRA for `local` with a `training.json` as `compllm train decomposer` writes."""
    save_random_lora(local.model, folder, seed=len(folder.name))
    if record is not None:
        text = record if isinstance(record, str) else json.dumps(record)
        (folder / "training.json").write_text(text)
    return folder


def test_an_adapter_folder_is_loaded_once_with_its_recorded_prompt(
    tiny: TransformersModel, tmp_path: Path
) -> None:
    record = {"base": "tiny", "system_prompt": "Split the question."}
    first = trained_folder(tiny, tmp_path / "first", record)
    second = trained_folder(tiny, tmp_path / "second", None)

    chat, prompt = default_decomposer(tiny, first)
    again, _ = default_decomposer(tiny, first)
    _, default_prompt = default_decomposer(tiny, second)

    assert prompt == "Split the question."
    name = adapter_of(chat)
    assert name == adapter_of(again) and name is not None and name.startswith("decomposer_")
    assert len(tiny.adapters) == 2  # one per folder, the repeat reused the first
    # Without a training record the adapter gets the prompt the trainer always writes.
    assert default_prompt is not None and "<dep>" in default_prompt
    assert default_prompt != DECOMPOSER_PROMPT


def test_graphs_built_at_once_load_the_adapter_once(tmp_path: Path) -> None:
    # `eval answers --system all-experts` builds a graph per question in flight, on one model.
    folder = tmp_path / "first"
    folder.mkdir()
    (folder / "training.json").write_text(json.dumps({"base": "tiny"}))
    model = RefusingModel()
    with ThreadPoolExecutor(4) as pool:
        names = list(pool.map(lambda _: default_decomposer(model, folder)[0], range(4)))  # type: ignore[arg-type]
    assert len(model.loaded) == 1 and len(set(names)) == 1


def test_without_an_adapter_a_non_smollm2_model_gets_the_few_shot_prompt(
    tiny: TransformersModel,
) -> None:
    chat, prompt = default_decomposer(tiny)
    assert prompt == DECOMPOSER_PROMPT and adapter_of(chat) is None and not tiny.adapters


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"base": "qwen2.5-coder-0.5b-instruct"}, "--model qwen2.5-coder-0.5b-instruct"),
        ("{not json", "training.json is unreadable"),
        ({"base": "tiny", "system_prompt": ""}, "no usable system_prompt"),
    ],
)
def test_an_unusable_adapter_folder_is_refused_before_loading(
    tiny: TransformersModel, tmp_path: Path, record: dict | str, message: str
) -> None:
    folder = trained_folder(tiny, tmp_path / "decomposer", record)
    with pytest.raises(ValueError, match=message):
        default_decomposer(tiny, folder)
    assert not tiny.adapters


def test_a_folder_without_weights_is_an_adapter_error(
    tiny: TransformersModel, tmp_path: Path
) -> None:
    with pytest.raises(AdapterError, match="does not exist"):
        default_decomposer(tiny, tmp_path / "missing")


def test_ask_reports_a_bad_decomposer_folder_and_exits_2(
    tiny: TransformersModel,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    monkeypatch.setattr("compllm_graph.models.load_model", lambda alias, **options: tiny)
    ExpertStore.create(tmp_path / "store", "hashing:64")
    folder = trained_folder(tiny, tmp_path / "qwen", {"base": "qwen2.5-coder-0.5b-instruct"})

    code = main(["ask", "why?", "--store", str(tmp_path / "store"), "--decomposer", str(folder)])

    assert code == 2
    assert "was trained on 'qwen2.5-coder-0.5b-instruct'" in capsys.readouterr().err


def test_the_decomposer_searches_beams_when_asked(tiny: TransformersModel) -> None:
    greedy, _ = default_decomposer(tiny)
    wide, _ = default_decomposer(tiny, beams=3)
    assert isinstance(wide, LocalChatModel) and wide.num_beams == 3
    assert isinstance(greedy, LocalChatModel) and greedy.num_beams == 1
    with pytest.raises(ValueError, match="decomposer beams must be >= 1"):
        default_decomposer(tiny, beams=0)
