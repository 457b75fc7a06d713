"""Checks on a decomposer run's plan that need no model: the earlier stage it continues from."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from compllm_graph.models import SMALL_MODEL
from compllm_graph.training.decomposer_sft import DecomposerPlan, earlier_stage
from compllm_graph.training.settings import LoraSettings
from tests.conftest import smollm2_decomposer

# SmolLM2's decomposer: a finished second stage whose record holds its data.
ADAPTER_DIR = smollm2_decomposer()


def plan(
    init_adapter: Path | None, r: int = 16, alpha: int = 32, hold_out: tuple[str, ...] = ()
) -> DecomposerPlan:
    return DecomposerPlan(
        data_dir=Path("unused"),
        lora=LoraSettings(r=r, alpha=alpha),
        init_adapter=init_adapter,
        hold_out=hold_out,
    )


def test_earlier_stage_summarises_the_adapter_it_continues_from() -> None:
    shipped = json.loads((ADAPTER_DIR / "training.json").read_text())
    earlier = earlier_stage(plan(ADAPTER_DIR), SMALL_MODEL)
    assert earlier == {
        "adapter": str(ADAPTER_DIR),
        "command": shipped["command"],
        "steps": shipped["steps"],
        "examples": shipped["data"]["examples"],
    }
    assert earlier_stage(plan(None), SMALL_MODEL) is None


def test_earlier_stage_refuses_another_shape_or_an_unreadable_record(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--lora-r 16 --lora-alpha 32"):
        earlier_stage(plan(ADAPTER_DIR, r=16, alpha=16), SMALL_MODEL)
    (tmp_path / "training.json").write_text("[1, 2]")
    (tmp_path / "adapter_config.json").write_text("{}")
    with pytest.raises(ValueError, match="not a JSON object"):
        earlier_stage(plan(tmp_path), SMALL_MODEL)


def test_earlier_stage_tolerates_a_record_without_data(tmp_path: Path) -> None:
    (tmp_path / "training.json").write_text(json.dumps({"base": SMALL_MODEL, "data": "?"}))
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 16, "lora_alpha": 32}))
    earlier = earlier_stage(plan(tmp_path), SMALL_MODEL)
    assert earlier is not None and earlier["examples"] is None and earlier["command"] is None


def test_composed_questions_join_the_mix_with_their_options_kept(data_dir: Path) -> None:
    from compllm_graph.datasets.compositions import TEMPLATES
    from compllm_graph.datasets.decompositions import COMPOSED
    from compllm_graph.training.composed import TRAINING_TEMPLATES
    from compllm_graph.training.decomposer_sft import load_pools, training_examples

    plan = DecomposerPlan(data_dir, train_size=200, weights={"musique": 0.5, COMPOSED: 0.5})
    examples = training_examples(load_pools(data_dir, ["musique"]), plan)
    composed = [e for e in examples if e.dataset == COMPOSED]
    assert len(composed) == 100 and len(examples) == 200
    for example in composed:
        steps = [node.text for node in example.graph.sub_queries]
        # A socratic step's first sub-query joins the context to the step (test_composed.py).
        socratic = example.graph.edges and "#" not in example.target
        assert socratic or all(step in example.question or "#" in step for step in steps)
    with_options = [e for e in composed if "Options: (A)" in e.question]
    assert with_options and all("Options: (A)" in e.target for e in with_options)
    # The training templates are not the benchmarks': their wording stays unseen.
    assert not set(TRAINING_TEMPLATES[2]) & set(TEMPLATES[2])


def test_a_decomposer_trains_and_validates_on_a_tiny_llama(data_dir: Path, tmp_path: Path) -> None:
    from compllm_graph.training.decomposer_sft import train_decomposer
    from compllm_graph.training.settings import TrainSettings
    from tests.training.tiny_folder import char_tokenizer, tiny_model

    tiny_plan = DecomposerPlan(
        data_dir,
        train_size=24,
        weights={"musique": 1.0},
        max_length=512,
        validation_size=2,
        lora=LoraSettings(r=4, alpha=8),
        settings=TrainSettings(epochs=1, batch_size=4, save_every=2, max_steps=3),
    )
    record = train_decomposer(
        tiny_model(), char_tokenizer(), tiny_plan, tmp_path, base="tiny", command="test"
    )
    assert (record["status"], record["steps"], record["total_steps"]) == ("partial", 3, 6)
    assert record["trainer"]["library"] == "trl.SFTTrainer"
    assert set(record["validation"]) == {"musique"}
    written = json.loads((tmp_path / "training.json").read_text())
    assert written["steps"] == 3 and len(written["loss"]["per_step"]) == 3
    assert (tmp_path / "adapter_model.safetensors").is_file()


def test_earlier_stage_refuses_an_adapter_that_saw_a_held_out_set(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"has seen \['cwq'\]: start from fresh weights"):
        earlier_stage(plan(ADAPTER_DIR, hold_out=("cwq",)), SMALL_MODEL)
    record = json.loads((ADAPTER_DIR / "training.json").read_text())
    record["data"]["held_out"] = ["cwq", "drop"]
    (tmp_path / "training.json").write_text(json.dumps(record))
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 16, "lora_alpha": 32}))
    assert earlier_stage(plan(tmp_path, hold_out=("cwq",)), SMALL_MODEL) is not None


def test_a_plan_names_only_question_sets_it_can_hold_out() -> None:
    with pytest.raises(ValueError, match=r"cannot hold out \['hotpotqa'\]: the question sets"):
        DecomposerPlan(Path("unused"), hold_out=("hotpotqa",))


def test_a_held_out_set_reaches_no_example_of_the_mix(data_dir: Path) -> None:
    from compllm_graph.datasets.decompositions import (
        CHAINED_CONJUNCTION,
        CONJUNCTION,
        RELATIVE_CHAIN,
        without_sources,
    )
    from compllm_graph.training.decomposer_sft import load_pools, training_examples

    weights = {"break": 0.4, CONJUNCTION: 0.2, CHAINED_CONJUNCTION: 0.2, RELATIVE_CHAIN: 0.2}
    loaded = load_pools(data_dir, ["musique", "strategyqa", "break"])
    cwq = {e.question for e in loaded["break"] if e.source == "cwq"}
    assert len(cwq) > 400 and {e.source for e in loaded["break"]} == {"cwq", "drop"}

    def mixed(hold_out: tuple[str, ...]) -> list[str]:
        pools = {name: without_sources(pool, hold_out) for name, pool in loaded.items()}
        plan = DecomposerPlan(data_dir, train_size=400, weights=weights, hold_out=hold_out)
        return [e.question for e in training_examples(pools, plan)]

    def from_cwq(question: str) -> bool:
        return any(q in question for q in cwq)

    assert any(from_cwq(q) for q in mixed(()))  # the check below can fail
    assert not any(from_cwq(q) for q in mixed(("cwq",)))


def test_easy_compositions_keep_an_abstract_and_its_question_one_part(data_dir: Path) -> None:
    from compllm_graph.datasets.decompositions import COMPOSED_EASY
    from compllm_graph.datasets.easy_tier import EASY_MIX, source_items
    from compllm_graph.datasets.items import as_text
    from compllm_graph.training.composed import composed_easy_examples
    from compllm_graph.training.decomposer_sft import load_pools, training_examples
    from compllm_graph.training.train_commands import parse_mix

    examples = composed_easy_examples(data_dir, 120)
    assert len(examples) == 120 and {e.dataset for e in examples} == {COMPOSED_EASY}
    parts = [[node.text for node in e.graph.sub_queries] for e in examples]
    passages = [text for texts in parts for text in texts if text.startswith("Abstract: ")]
    assert len(passages) > 30
    assert all("Question: " in text and text.endswith("?") for text in passages)
    assert all(text in e.question for e, texts in zip(examples, parts) for text in texts)
    # Train-split items only: no part is a question the easy tier may ask.
    tested = {
        as_text(item)
        for source, share in EASY_MIX.items()
        if share.share > 0
        for item in source_items(data_dir, source, share)
        if item.in_split == "test"
    }
    assert tested and not tested & {text for texts in parts for text in texts}
    weights = parse_mix("musique=0.85,composed_easy=0.15")
    assert weights == {"musique": 0.85, COMPOSED_EASY: 0.15}
    # Its pools hold about 850 two-part questions: a big mix builds only its own share.
    plan = DecomposerPlan(data_dir, train_size=1200, weights=weights)
    mixed = training_examples(load_pools(data_dir, ["musique"]), plan)
    assert Counter(e.dataset for e in mixed) == {"musique": 1020, COMPOSED_EASY: 180}
