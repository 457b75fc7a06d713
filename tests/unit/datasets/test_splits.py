"""The two splits by id, pinned: no refactoring may move an example between splits.

The expected splits were computed before `item_split` and `decomposition_split` moved into
`compllm_graph.datasets` (as `evaluation.splits.split_of` and `training.data.split_of`); every
item and question id of the shared data was compared then too, and none moved. Changing any of
these would change which items trained the shipped adapters and which ones the benchmarks hold.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from compllm_graph.datasets.items import Item, domain_items
from compllm_graph.datasets.splits import DECOMPOSITION_SPLITS, decomposition_split, item_split

ITEM_SPLITS = {
    "arc/arc_challenge_train/ACTAAP_2010_7_7": "test",
    "arc/arc_easy_train/Mercury_7032655": "test",
    "arc/arc_challenge_train/ACTAAP_2008_5_7": "train",
    "arc/arc_easy_train/Mercury_7057120": "train",
    "gsm8k/test/0": "test",
    "gsm8k/test/418": "test",
    "gsm8k/test/1": "train",
    "gsm8k/test/4": "train",
    "gsm8k/train/1": "test",  # by hash; the train file's items are train all the same
    "gsm8k/train/0": "train",
    "medmcqa/Anaesthesia/15": "test",
    "medmcqa/Gynaecology_Obstetrics/91": "test",
    "medmcqa/Anaesthesia/0": "train",
    "medmcqa/Gynaecology_Obstetrics/92": "train",
    "medqa/1001": "test",
    "medqa/444": "test",
    "medqa/0": "train",
    "medqa/416": "train",
    "mmlu/abstract_algebra/10": "test",
    "mmlu/machine_learning/99": "test",
    "mmlu/abstract_algebra/0": "train",
    "mmlu/marketing/0": "train",
    "pubmedqa/10135926": "train",  # by hash; PubMedQA's official test ids decide instead
    "pubmedqa/21368683": "train",
}
"""Item ids of every source, both splits, as `item_split` gives them (70/30 by hash)."""

DECOMPOSITION_SPLITS_BY_QID = {
    "CWQ_dev_WebQTest-1137_2556f08f589714ccae48884d43d5641e": "test",
    "DROP_dev_history_1860_354675ed-a147-4b07-b41c-78c6cbdc9b82": "test",
    "CWQ_dev_WebQTest-1011_c0be4f76a5397ba6d0d06f53905e504b": "train",
    "DROP_dev_history_1853_f5e1c2fb-22ec-4fcf-8c67-55ab538039ea": "train",
    "CWQ_dev_WebQTest-1036_4e73509d14bda62590480b655eee8751": "validation",
    "DROP_dev_history_1891_c8b0e443-f866-47cd-af2b-f2e969d5f7c1": "validation",
    "2hop__10620_49084": "test",
    "3hop1__108062_720914_27537": "test",
    "2hop__10017_18974": "train",
    "2hop__88906_55840": "train",
    "2hop__108158_83769": "validation",
    "3hop1__109185_720914_41132": "validation",
    "03053431e0985719a2ee": "test",
    "87e2a3e37113fbfc4efc": "test",
    "0010f6920845dd38d867": "train",
    "7f15e59dacdc8269d000": "train",
    "0a0259cb52b97155c169": "validation",
    "8497718847564957358b": "validation",
}
"""Break, MuSiQue and StrategyQA question ids, every split, as `decomposition_split` gives them."""


@pytest.mark.parametrize(("item_id", "split"), ITEM_SPLITS.items())
def test_item_split_is_pinned(item_id: str, split: str) -> None:
    assert item_split(item_id) == split


@pytest.mark.parametrize(("qid", "split"), DECOMPOSITION_SPLITS_BY_QID.items())
def test_decomposition_split_is_pinned(qid: str, split: str) -> None:
    assert decomposition_split(qid) == split


def test_the_two_splits_are_different_functions() -> None:
    """One hash with two sets of shares would move examples: the pinned ids show it."""
    assert (item_split("gsm8k/test/0"), decomposition_split("gsm8k/test/0")) == ("test", "train")
    assert (item_split("2hop__10620_49084"), decomposition_split("2hop__10620_49084")) == (
        "train",
        "test",
    )
    assert set(DECOMPOSITION_SPLITS) == set(DECOMPOSITION_SPLITS_BY_QID.values())


def test_shares_over_many_ids() -> None:
    ids = [f"id-{n}" for n in range(20_000)]
    items = Counter(item_split(i) for i in ids)
    assert abs(items["test"] / len(ids) - 0.3) < 0.01
    questions = Counter(decomposition_split(i) for i in ids)
    assert abs(questions["train"] / len(ids) - 0.8) < 0.01
    assert abs(questions["validation"] / len(ids) - 0.1) < 0.01


def test_an_official_split_wins_over_the_hash() -> None:
    hashed_test = Item("gsm8k/train/1", "q", "1", None, "mathematics", split="train")
    assert hashed_test.in_split == "train"
    assert Item("gsm8k/test/1", "q", "1", None, "mathematics").in_split == "train"


def test_the_readers_give_the_pinned_splits(data_dir: Path) -> None:
    by_id = {i.id: i for d in ("mathematics", "medicine") for i in domain_items(data_dir, d)}
    assert by_id["gsm8k/train/1"].in_split == "train"
    assert by_id["gsm8k/test/0"].in_split == "test"
    assert by_id["pubmedqa/10135926"].in_split == "test"  # an official test id
    assert by_id["pubmedqa/21368683"].in_split == "train"
