"""The easy tier's readers (OpenBookQA, ASDiv, PubMedQA with its abstract, ARC-Easy, MedMCQA by
subject) and its source table: stable ids, splits, domains, and bad mixes refused.

Most tests read small files written here; those over the shared data skip without it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compllm_graph.datasets.easy_tier import (
    EASY_MIX,
    READERS,
    SAMPLE_SUBJECTS,
    Share,
    short_chains,
    source_items,
    usable,
)
from compllm_graph.datasets.items import (
    Item,
    arc_easy_items,
    arc_items,
    asdiv_items,
    asked_question,
    medmcqa_items,
    openbookqa_items,
    pubmedqa_abstract_items,
    pubmedqa_items,
    word_domain,
)
from compllm_graph.datasets.splits import item_split

ASDIV_ROWS = [
    ("Seven red apples and two green apples are in the basket.", "How many apples?", "9 apples"),
    ("A van holds 9.", "How many vans for 18?", "3:4"),  # a ratio: left out
    ("Ann pays.", "How much?", "3.5 dollars"),
    ("He drives.", "How fast?", "8 km/hour"),
    ("Ages.", "How old are they?", "6 cm; 15 cm"),  # two numbers: left out
    ("Who?", "Who won?", "Mrs. Hilt"),
    ("Half.", "What part?", "5/2"),
    ("", "What is 7 less than 10? ", "3"),
]


def _write_lines(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def test_asdiv_keeps_answers_of_one_number_under_stable_row_ids(tmp_path: Path) -> None:
    rows = [{"passage": p, "question": q, "answer": a} for p, q, a in ASDIV_ROWS]
    _write_lines(tmp_path / "medical_and_science" / "asdiv_test.jsonl", rows)
    items = list(asdiv_items(tmp_path))
    assert [(i.id, i.answer) for i in items] == [
        ("asdiv/0", "9"),
        ("asdiv/2", "3.5"),
        ("asdiv/3", "8"),
        ("asdiv/7", "3"),
    ]
    assert items[0].question == (
        "Seven red apples and two green apples are in the basket. How many apples?"
    )
    assert items[3].question == "What is 7 less than 10?"
    assert {i.domain for i in items} == {"mathematics"} and all(i.choices is None for i in items)
    assert [i.in_split for i in items] == [item_split(i.id) for i in items]


def test_openbookqa_takes_the_arc_word_rule_and_keeps_row_ids(tmp_path: Path) -> None:
    options = "A. oxygen\nB. gold\nC. sand\nD. wood"
    rows = [
        {"question": "Plants release ", "options": options, "answer": "A. oxygen"},
        {"question": "Fog is most likely around ", "options": options, "answer": "C. sand"},
        {"question": "Salt dissolves in ", "options": options, "answer": "D. wood"},
        {"question": "Plant cells and atoms ", "options": options, "answer": "A. oxygen"},
    ]
    _write_lines(tmp_path / "medical_and_science" / "openbookqa_test.jsonl", rows)
    items = list(openbookqa_items(tmp_path))
    assert [(i.id, i.domain) for i in items] == [
        ("openbookqa/0", "biology"),
        ("openbookqa/2", "chemistry"),
    ]
    assert items[0].question == "Plants release" and items[0].answer == "oxygen"
    assert items[0].choices == ("oxygen", "gold", "sand", "wood")


def test_the_word_rule_gives_one_domain_or_none() -> None:
    assert word_domain("Which organ digests food?") == "biology"
    assert word_domain("Which gas is an element?") == "chemistry"
    assert word_domain("Which cells hold atoms?") is None  # both
    assert word_domain("How fast does a ball roll?") is None  # neither


def _pubmedqa(folder: Path) -> None:
    rows = {
        "111": {
            "QUESTION": "Does coffee help? ",
            "CONTEXTS": ["Coffee was given. ", "Sleep fell."],
            "final_decision": "no",
            "LONG_ANSWER": "It does not.",
        },
        "222": {
            "QUESTION": "Does tea help?",
            "CONTEXTS": ["Tea was given."],
            "final_decision": "Yes",
            "LONG_ANSWER": "It does.",
        },
    }
    folder.mkdir(parents=True)
    (folder / "ori_pqal.json").write_text(json.dumps(rows), encoding="utf-8")
    (folder / "test_ground_truth.json").write_text(json.dumps({"222": "yes"}), encoding="utf-8")


def test_pubmedqa_with_its_abstract_keeps_the_official_split(tmp_path: Path) -> None:
    _pubmedqa(tmp_path / "medical_and_science" / "pubmedqa")
    items = {i.id: i for i in pubmedqa_abstract_items(tmp_path)}
    assert set(items) == {"pubmedqa-abstract/111", "pubmedqa-abstract/222"}
    coffee, tea = items["pubmedqa-abstract/111"], items["pubmedqa-abstract/222"]
    assert coffee.question == "Abstract: Coffee was given. Sleep fell. Question: Does coffee help?"
    assert (coffee.answer, coffee.in_split, tea.answer, tea.in_split) == (
        "no",
        "train",
        "yes",
        "test",
    )
    assert asked_question(coffee.question) == "Does coffee help?"
    plain = {i.id: i for i in pubmedqa_items(tmp_path)}
    assert plain["pubmedqa/111"].question == "Does coffee help?"  # the first tier's, unchanged


def test_a_question_that_trained_something_is_not_let_in_by_its_abstract() -> None:
    text = "Abstract: A trial. Question: Does it help?"
    item = Item("pubmedqa-abstract/1", text, "yes", None, "medicine", split="test")
    assert usable([item], frozenset()) == [item]
    assert usable([item], frozenset({"Does it help?"})) == []
    assert usable([item], frozenset({text})) == []
    assert usable([Item("x/1", "q", "1", None, "mathematics", split="train")], ()) == []


def test_medmcqa_reads_only_the_subjects_asked_for(tmp_path: Path) -> None:
    folder = tmp_path / "medical_and_science" / "medmcqa_validation"
    row = {"question": "Which bone?", "options": "A. Femur\nB. Ulna", "answer": "A. Femur"}
    for subject in ("Anatomy", "Surgery"):
        _write_lines(folder / f"{subject}.jsonl", [row])
    assert [i.id for i in medmcqa_items(tmp_path)] == ["medmcqa/Anatomy/0", "medmcqa/Surgery/0"]
    assert [i.id for i in medmcqa_items(tmp_path, ["Surgery"])] == ["medmcqa/Surgery/0"]
    with pytest.raises(ValueError, match="no MedMCQA subject file for \\['Dental'\\]"):
        list(medmcqa_items(tmp_path, ["Dental"]))


def test_bad_mixes_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        Share(1.5)
    with pytest.raises(ValueError, match="unknown easy-tier source 'mmlu'"):
        source_items(tmp_path, "mmlu", Share())
    with pytest.raises(ValueError, match="subjects are for medmcqa only"):
        source_items(tmp_path, "medmcqa", Share())
    with pytest.raises(ValueError, match="subjects are for medmcqa only"):
        source_items(tmp_path, "asdiv", Share(1, ("Anatomy",)))
    assert set(EASY_MIX) <= set(READERS)


def test_the_real_sources_read(data_dir: Path) -> None:
    easy = list(arc_easy_items(data_dir))
    assert easy and {i.id for i in easy} <= {i.id for i in arc_items(data_dir)}
    assert all(i.id.startswith("arc/arc_easy_") for i in easy)
    books = list(openbookqa_items(data_dir))
    assert len(books) > 80 and {i.domain for i in books} == {"biology", "chemistry"}
    problems = list(asdiv_items(data_dir))
    assert len(problems) > 2000
    assert all(float(i.answer) >= 0 for i in problems)  # each answer reads as one number
    abstracts = list(pubmedqa_abstract_items(data_dir))
    assert sum(i.in_split == "test" for i in abstracts) == 500
    assert all(i.question.startswith("Abstract: ") for i in abstracts)
    for subject in SAMPLE_SUBJECTS:
        assert source_items(data_dir, "medmcqa", Share(1, (subject,)))
    chains = short_chains(data_dir, 2)
    assert len(chains) > 150 and all(2 <= len(c.steps) <= 3 for c in chains)
