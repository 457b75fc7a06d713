"""Expert training data: answer-only targets, train-split items only, balanced sources."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from compllm_graph.evaluation.items import Item, domain_items
from compllm_graph.evaluation.splits import split_of
from compllm_graph.training.expert import encode_pairs
from compllm_graph.training.expert_data import ALL_DOMAINS, expert_examples, target_of
from compllm_graph.training.sft import IGNORE_INDEX


def test_targets_read_as_a_person_would_answer() -> None:
    choice = Item("x/1", "Which gas is inert?", "Neon", ("Oxygen", "Neon"), "chemistry")
    assert target_of(choice) == "The answer is (B) Neon."
    worked = Item("g/1", "2+2?", "4", None, "mathematics", solution="Two and two make 4.")
    assert target_of(worked) == "Two and two make 4.\nThe answer is 4."
    label = Item("p/1", "Does it work?", "no", None, "medicine", solution="It did not help.")
    assert target_of(label).endswith("The answer is no.")


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
    assert len(records) == 200 and len({r["id"] for r in records}) == 200
    assert all(split_of(r["id"]) == "train" or r["id"].startswith("pubmedqa/") for r in records)
    test_ids = {i.id for i in domain_items(data_dir, "medicine") if i.in_split == "test"}
    assert not test_ids & {r["id"] for r in records}
    sources = {r["id"].split("/")[0] for r in records}
    assert sources == {"mmlu", "medmcqa", "medqa", "pubmedqa"}  # each source has its share
    assert records == expert_examples(data_dir, "medicine", 200)  # seeded


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
