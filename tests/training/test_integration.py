"""SmolLM2 end to end: a short SFT run lowers the loss, the shipped adapter decomposes, and
`compllm train expert` trains and registers an expert."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from compllm_graph.datasets.decompositions import DecompositionExample, graph_from_steps
from compllm_graph.decomposer import DECOMPOSER_SYSTEM_PROMPT
from compllm_graph.models import SMALL_MODEL, LocalChatModel, LocalModel
from compllm_graph.query_graph import parse_decomposition
from compllm_graph.training.decomposer_sft import encode_example
from compllm_graph.training.settings import LoraSettings, TrainSettings
from compllm_graph.training.sft import IGNORE_INDEX, attach_lora, train
from tests.conftest import smollm2_decomposer

pytestmark = pytest.mark.integration

ADAPTER_DIR = smollm2_decomposer()

EXAMPLES = [
    DecompositionExample(f"t{i}", question, graph_from_steps(steps), "musique")
    for i, (question, steps) in enumerate(
        [
            ("Who is the spouse of the Green performer?", ["performer of Green", "spouse of #1"]),
            ("Where was the author of Dune born?", ["author of Dune", "place of birth of #1"]),
            (
                "Is the Nile longer than the Amazon?",
                ["How long is the Nile?", "How long is the Amazon?", "Is #1 greater than #2?"],
            ),
            (
                "What is the capital of the country of Jenggawah?",
                ["country of Jenggawah", "capital of #1"],
            ),
        ]
    )
]


def base_copy(local: LocalModel) -> object:
    """A private copy of the base weights, so training never touches the shared model."""
    from peft import PeftModel

    model = copy.deepcopy(local.model)
    return model.unload() if isinstance(model, PeftModel) else model


def test_encoding_puts_the_loss_on_the_target_only(smollm2: LocalModel) -> None:
    encoded = encode_example(smollm2.tokenizer, EXAMPLES[0], max_length=256)
    assert encoded is not None
    target = [t for t, label in zip(encoded.input_ids, encoded.labels) if label != IGNORE_INDEX]
    assert smollm2.tokenizer.decode(target) == EXAMPLES[0].target + smollm2.tokenizer.eos_token
    assert encode_example(smollm2.tokenizer, EXAMPLES[0], max_length=20) is None


def test_three_training_steps_lower_the_loss(smollm2: LocalModel, tmp_path: Path) -> None:
    data = [encode_example(smollm2.tokenizer, e, max_length=256) for e in EXAMPLES]
    model = attach_lora(base_copy(smollm2), LoraSettings(top_layers=4, dropout=0.0))
    settings = TrainSettings(epochs=3, batch_size=4, learning_rate=2e-3, warmup_ratio=0)
    result = train(model, [d for d in data if d], settings, tmp_path, tokenizer=smollm2.tokenizer)
    assert result.steps == 3
    assert result.losses[-1] < result.losses[0]
    assert (tmp_path / "adapter_model.safetensors").is_file()


def test_the_shipped_adapter_decomposes_a_question(smollm2: LocalModel) -> None:
    if "decomposer" not in smollm2.adapters:
        smollm2.add_adapter("decomposer", ADAPTER_DIR)
    chat = smollm2.chat_model(adapter="decomposer", max_new_tokens=96)
    reply = chat.invoke(
        [
            SystemMessage(DECOMPOSER_SYSTEM_PROMPT),
            HumanMessage("Who is the spouse of the director of Titanic?"),
        ]
    )
    graph = parse_decomposition(str(reply.content))
    assert len(graph) >= 2 and graph.edges


def test_the_default_decomposer_keeps_the_demo_question_in_two_parts(smollm2: LocalModel) -> None:
    from compllm_graph.cli import DEFAULT_QUESTION
    from compllm_graph.defaults import default_decomposer

    chat, prompt = default_decomposer(smollm2)
    reply = chat.invoke([SystemMessage(prompt), HumanMessage(DEFAULT_QUESTION)])
    graph = parse_decomposition(str(reply.content))
    # Two independent questions: two sub-queries and no dependency between them.
    assert len(graph) == 2 and not graph.edges, reply.content


def test_beam_search_decomposes_the_demo_question_within_the_grammar(
    smollm2: LocalModel,
) -> None:
    from compllm_graph.cli import DEFAULT_QUESTION
    from compllm_graph.defaults import default_decomposer

    chat, prompt = default_decomposer(smollm2, beams=4)
    assert isinstance(chat, LocalChatModel)
    chat_messages = [SystemMessage(prompt), HumanMessage(DEFAULT_QUESTION)]
    beams = chat.generate([chat_messages]).generations[0]
    assert len(beams) == 4
    for beam in beams:  # the tag grammar constrains every beam, not only the best
        parse_decomposition(beam.text)
    graph = parse_decomposition(beams[0].text)
    assert len(graph) == 2 and not graph.edges, beams[0].text


def test_a_decomposer_folder_of_ones_own_is_used_with_its_recorded_prompt(
    smollm2: LocalModel, tmp_path: Path
) -> None:
    from compllm_graph.cli import DEFAULT_QUESTION
    from compllm_graph.defaults import default_decomposer

    # As `compllm train decomposer --out DIR` leaves it: weights, config and training.json.
    folder = shutil.copytree(ADAPTER_DIR, tmp_path / "mine", ignore=shutil.ignore_patterns("*.py"))
    chat, prompt = default_decomposer(smollm2, folder)
    reply = chat.invoke([SystemMessage(prompt), HumanMessage(DEFAULT_QUESTION)])
    assert prompt == DECOMPOSER_SYSTEM_PROMPT
    assert len(parse_decomposition(str(reply.content))) == 2, reply.content


def test_train_expert_command_registers_the_expert(smollm2: LocalModel, tmp_path: Path) -> None:
    from compllm_graph.cli import main
    from compllm_graph.expert_store import ExpertStore

    data = tmp_path / "chemistry.txt"
    data.write_text("Water is H2O.\nTable salt is sodium chloride, NaCl.\nAcids donate protons.\n")
    ExpertStore.create(tmp_path / "store", "hashing:64")
    code = main(
        [
            "train",
            "expert",
            "chemistry",
            "--data",
            str(data),
            "--store",
            str(tmp_path / "store"),
            "--out",
            str(tmp_path / "adapter"),
            "--max-steps",
            "1",
            "--batch-size",
            "3",
            "--lora-top-layers",
            "2",
            "--description",
            "basic chemistry",
            "--base",
            SMALL_MODEL,
            "--json",
        ]
    )
    assert code == 0
    record = json.loads((tmp_path / "adapter" / "training.json").read_text())
    assert record["steps"] == 1 and record["data"]["examples"] == 3
    assert record["objective"] == "text"
    expert = ExpertStore.open(tmp_path / "store").expert("chemistry")
    assert expert.adapter is not None and (expert.adapter / "adapter_model.safetensors").is_file()


def test_question_answer_records_train_on_the_answer_with_the_system_prompt(
    smollm2: LocalModel, tmp_path: Path
) -> None:
    from compllm_graph.cli import main
    from compllm_graph.expert_store import ExpertStore

    data = tmp_path / "chemistry.jsonl"
    rows = [
        {"question": "Which gas is inert? Options: (A) Neon; (B) Oxygen.", "answer": "(A) Neon."},
        {"question": "What is the formula of water?", "answer": "H2O."},
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ExpertStore.create(tmp_path / "store", "hashing:64")
    argv = ["train", "expert", "chemistry", "--data", str(data), "--store", str(tmp_path / "store")]
    argv += ["--out", str(tmp_path / "adapter"), "--max-steps", "1", "--batch-size", "2"]
    argv += ["--lora-top-layers", "2", "--system-prompt", "You are a chemistry expert."]
    argv += ["--base", SMALL_MODEL]
    assert main(argv) == 0
    record = json.loads((tmp_path / "adapter" / "training.json").read_text())
    assert record["objective"] == "answer" and record["data"]["sequences"] == 2
    assert record["system_prompt"] == "You are a chemistry expert."
    expert = ExpertStore.open(tmp_path / "store").expert("chemistry")
    assert expert.system_prompt == "You are a chemistry expert."


def test_train_expert_takes_the_safetensors_folder_as_its_base(tmp_path: Path) -> None:
    """`--base FOLDER` with the folder `compllm models safetensors ALIAS` writes."""
    from compllm_graph.cli import main
    from compllm_graph.expert_store import ExpertStore
    from compllm_graph.models.loading import safetensors_folder
    from tests.conftest import require_smollm2

    require_smollm2()
    folder = safetensors_folder(SMALL_MODEL)
    data = tmp_path / "chemistry.txt"
    data.write_text("Water is H2O.\nTable salt is sodium chloride, NaCl.\n")
    ExpertStore.create(tmp_path / "store", "hashing:64")
    argv = ["train", "expert", "chemistry", "--data", str(data), "--base", str(folder)]
    argv += ["--store", str(tmp_path / "store"), "--out", str(tmp_path / "adapter")]
    assert main([*argv, "--max-steps", "1", "--batch-size", "2", "--lora-top-layers", "2"]) == 0
    record = json.loads((tmp_path / "adapter" / "training.json").read_text())
    assert record["base"] == str(folder) and record["steps"] == 1
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(folder)
