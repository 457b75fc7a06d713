"""Expert training data: answer-only targets, train-split items only, balanced sources."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from compllm_graph.cli import main
from compllm_graph.datasets.items import Item, domain_items, gsm8k_items
from compllm_graph.datasets.programs import prints_gold
from compllm_graph.datasets.splits import item_split
from compllm_graph.evaluation.benchmarks import build_benchmarks
from compllm_graph.program_expert import extract_program
from compllm_graph.training.expert import encode_pairs
from compllm_graph.training.expert_data import (
    ALL_DOMAINS,
    OPEN_FORM,
    expert_examples,
    open_form,
    program_examples,
    target_of,
)
from compllm_graph.training.sft import IGNORE_INDEX


def test_targets_read_as_a_person_would_answer() -> None:
    choice = Item("x/1", "Which gas is inert?", "Neon", ("Oxygen", "Neon"), "chemistry")
    assert target_of(choice) == "The answer is (B) Neon."
    worked = Item("g/1", "2+2?", "4", None, "mathematics", solution="Two and two make 4.")
    assert target_of(worked) == "Two and two make 4.\nThe answer is 4."
    label = Item("p/1", "Does it work?", "no", None, "medicine", solution="It did not help.")
    assert target_of(label).endswith("The answer is no.")


def test_open_form_pairs_answer_in_words_only_where_the_question_stands_alone() -> None:
    item = Item(
        "x/1", "Which organelle makes ATP?", "Mitochondria", ("Nucleus", "Mitochondria"), "biology"
    )
    assert open_form(item) == {
        "id": "x/1" + OPEN_FORM,
        "question": "Which organelle makes ATP?",
        "answer": "The answer is Mitochondria.",
        "domain": "biology",
    }
    pointing = Item(
        "x/2", "Which of the following makes ATP?", "Mitochondria", ("N", "Mitochondria"), "biology"
    )
    relative = Item(
        "x/3",
        "Which organelles make ATP?",
        "All of the above",
        ("N", "All of the above"),
        "biology",
    )
    lettered = Item("x/4", "Which is larger?", "Both A and B", ("A", "Both A and B"), "biology")
    open_already = Item("x/5", "How many?", "4", None, "mathematics")
    assert [open_form(i) for i in (pointing, relative, lettered, open_already)] == [None] * 4


class ChatTokenizer:
    """Characters as token ids, and a chat template that marks roles."""

    eos_token_id = 0

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        return {"input_ids": [ord(c) for c in text]}

    def apply_chat_template(self, messages: list[dict[str, Any]], **kwargs: Any) -> list[int]:
        text = "".join(f"[{m['role']}]{m['content']}" for m in messages) + "[assistant]"
        return [ord(c) for c in text]


def test_the_loss_is_on_the_answer_only() -> None:
    tokenizer = ChatTokenizer()
    (encoded,) = encode_pairs(tokenizer, [("Q?", "A.")], 200, system_prompt="Be brief.")
    prompt = tokenizer.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q?"}]
    )
    assert encoded.input_ids == [*prompt, ord("A"), ord("."), 0]
    assert encoded.labels == [IGNORE_INDEX] * len(prompt) + [ord("A"), ord("."), 0]
    # a long answer is cut; a prompt that leaves no room for an answer is left out
    (cut,) = encode_pairs(tokenizer, [("Q?", "x" * 500)], len(prompt) + 10)
    assert len(cut.input_ids) <= len(prompt) + 10
    assert encode_pairs(tokenizer, [("Q" * 300, "A.")], 100) == []


def test_expert_data_comes_from_the_train_split_only(data_dir: Path) -> None:
    records = expert_examples(data_dir, "medicine", 200)
    items = [r for r in records if not r["id"].endswith(OPEN_FORM)]
    assert len(items) == 200 and len({r["id"] for r in items}) == 200
    opened = {r["id"].removesuffix(OPEN_FORM) for r in records} - {r["id"] for r in items}
    assert not opened and len(records) > 200  # open-form pairs come from chosen items only
    ids = {r["id"].removesuffix(OPEN_FORM) for r in records}
    assert all(item_split(i) == "train" or i.startswith("pubmedqa/") for i in ids)
    test_ids = {i.id for i in domain_items(data_dir, "medicine") if i.in_split == "test"}
    assert not test_ids & ids
    sources = {r["id"].split("/")[0] for r in records}
    assert sources == {"mmlu", "medmcqa", "medqa", "pubmedqa"}  # each source has its share
    assert records == expert_examples(data_dir, "medicine", 200)  # seeded
    assert expert_examples(data_dir, "medicine", 200, open_forms=False) == items


def test_the_all_domains_data_is_the_union_of_the_experts(data_dir: Path) -> None:
    union = expert_examples(data_dir, ALL_DOMAINS, 30)
    each = [
        r
        for d in ("biology", "chemistry", "mathematics", "medicine")
        for r in expert_examples(data_dir, d, 30)
    ]
    assert sorted(r["id"] for r in union) == sorted(r["id"] for r in each)
    with pytest.raises(ValueError, match="unknown domain"):
        expert_examples(data_dir, "law", 10)


def test_program_data_is_train_split_programs_that_print_the_gold_answer(data_dir: Path) -> None:
    records = program_examples(data_dir, 40, seed=3)
    assert len(records) == 40 and len({r["id"] for r in records}) == 40
    train = {i.id: i for i in gsm8k_items(data_dir, "train")}
    assert all(train[r["id"]].in_split == "train" for r in records)  # GSM8K's own split
    assert {r["domain"] for r in records} == {"mathematics"}
    gold = {i: item.answer for i, item in train.items()}
    for record in records:
        # the target is what the program expert asks for and reads: one fenced program
        assert record["answer"].startswith("```python\n") and record["answer"].endswith("\n```")
        assert prints_gold(extract_program(record["answer"]), gold[record["id"]])
    assert records == program_examples(data_dir, 40, seed=3)  # seeded
    assert records != program_examples(data_dir, 40, seed=4)
    named = program_examples(data_dir, 40, seed=3, names="words")
    assert [r["id"] for r in named] == [r["id"] for r in records]  # the same draw, renamed
    assert all(prints_gold(extract_program(r["answer"]), gold[r["id"]]) for r in named)
    assert sum("step" in r["answer"] for r in named) < sum("step" in r["answer"] for r in records)
    with pytest.raises(ValueError, match="at least 1"):
        program_examples(data_dir, 0)


def test_no_program_question_is_a_benchmark_question(data_dir: Path) -> None:
    asked = {
        part["question"]
        for tier in ("standard", "easy")
        for records in build_benchmarks(data_dir, 300, 200, tier=tier).values()  # as shipped
        for record in records
        for part in record["parts"]
    }
    questions = {r["question"] for r in program_examples(data_dir, 10_000)}
    assert len(questions) > 6_000 and not questions & asked


def test_the_program_data_command_writes_mathematics_only(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "programs.jsonl"
    args = ["train", "expert-data", "mathematics", "--programs", "--limit", "5"]
    assert main([*args, "--out", str(out), "--data-dir", str(data_dir)]) == 0
    assert len(out.read_text(encoding="utf-8").splitlines()) == 5
    assert "wrote 5 mathematics records" in capsys.readouterr().out
    named = tmp_path / "named.jsonl"
    words = ["--program-names", "words", "--out", str(named), "--data-dir", str(data_dir)]
    assert main([*args, *words]) == 0
    assert named.read_text(encoding="utf-8") != out.read_text(encoding="utf-8")
    refused = ["train", "expert-data", "biology", "--programs", "--out", str(out)]
    assert main([*refused, "--data-dir", str(data_dir)]) == 2
    assert "--programs writes mathematics records" in capsys.readouterr().err
