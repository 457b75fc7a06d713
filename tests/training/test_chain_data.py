"""The decomposer's chain-shaped training data: chained conjunctions, relative-clause chains and
Break's single-hop counts (`datasets.decompositions`), and how the mix draws them."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from compllm_graph.datasets.decompositions import (
    CHAINED_CONJUNCTION,
    DATASETS,
    RELATIVE_CHAIN,
    SINGLE_COUNT,
    DecompositionExample,
    chained_conjunctions,
    graph_from_steps,
    is_bridge_chain,
    is_single_count,
    relative_chains,
    select,
    single_counts,
)
from compllm_graph.datasets.splits import DecompositionSplit, decomposition_split
from compllm_graph.query_graph import parse_decomposition
from compllm_graph.training.decomposer_sft import DecomposerPlan, load_pools, training_examples
from compllm_graph.training.train_commands import parse_mix

NEW_KINDS = (CHAINED_CONJUNCTION, RELATIVE_CHAIN, SINGLE_COUNT)


def _qids(split: DecompositionSplit) -> Iterator[str]:
    """Endless ids that fall in `split`."""
    return (f"id{i}" for i in itertools.count() if decomposition_split(f"id{i}") == split)


def _example(qid: str, question: str, steps: list[str], dataset: str) -> DecompositionExample:
    return DecompositionExample(qid, question, graph_from_steps(steps), dataset)


def _pools(split: DecompositionSplit) -> dict[str, list[DecompositionExample]]:
    """A MuSiQue and a Break pool with every shape the builders tell apart, ids in `split`."""
    ids = _qids(split)
    musique = [
        _example(next(ids), f"Who founded the company that distributed film {i}?",
                 [f"film {i} distributed by what?", "#1 founded by what?"], "musique")
        for i in range(6)
    ] + [
        _example(next(ids), f"What is the capital of country {i}?",
                 [f"What is the capital of country {i}?"], "musique")
        for i in range(4)
    ] + [
        _example(next(ids), "When was the ruler that was dissolved after the war born?",
                 ["What ruler was dissolved after the war?", "ruler of #1", "When was #2 born?"],
                 "musique"),
    ]  # fmt: skip
    breaks = [
        _example(next(ids), "What form of government is used in the place where the breed "
                 "originated?", ["the place where the breed originated",
                                 "the form of government of #1"], "break"),
        _example(next(ids), "What character in the show speaks Arabic?",
                 ["character in the show", "#1 that speaks Arabic"], "break"),
        _example(next(ids), "How many cities did Venice try to take?",
                 ["the cities Venice try to take", "the number of #1"], "break"),
        _example(next(ids), "How many points were scored in the game that was played first?",
                 ["the game that was played first", "points scored in #1", "number of #2"],
                 "break"),
        _example(next(ids), "How many years did the war last?",
                 ["years the war did last", "number of #1"], "break"),
    ]  # fmt: skip
    return {"musique": musique, "break": breaks}


def _all(pools: dict[str, list[DecompositionExample]]) -> list[DecompositionExample]:
    return [e for pool in pools.values() for e in pool]


def test_bridge_chains_are_chains_of_bridges() -> None:
    by_question = {e.question: e for e in _all(_pools("train"))}
    bridge = by_question["Who founded the company that distributed film 0?"]
    assert is_bridge_chain(bridge) and is_bridge_chain(bridge, 3)
    three = by_question["When was the ruler that was dissolved after the war born?"]
    assert not is_bridge_chain(three) and is_bridge_chain(three, 3)
    assert not is_bridge_chain(by_question["What character in the show speaks Arabic?"])
    assert not is_bridge_chain(by_question["How many cities did Venice try to take?"])
    assert not is_bridge_chain(by_question["What is the capital of country 0?"])


def test_chained_conjunctions_join_a_chain_and_a_single_hop_with_ids_shifted() -> None:
    examples = _all(_pools("train"))
    chained = chained_conjunctions(examples, examples, 30, seed=3)
    assert len(chained) == 30 and len({e.qid for e in chained}) == 30
    parts = {e.qid: e for e in examples}
    orders: Counter[bool] = Counter()
    for example in chained:
        assert example.dataset == CHAINED_CONJUNCTION
        assert ", and " in example.question or "? Also, " in example.question
        first, second = example.qid.split("+")
        texts = [sq.text for sq in example.graph.sub_queries]
        chain_first = "/" not in first
        chain_qid, single_qid = (first, second) if chain_first else (second, first)
        chain = parts[chain_qid]
        assert is_bridge_chain(chain)
        single = parts[single_qid.split("/")[0]].graph.sub_queries[
            int(single_qid.split("/")[1]) - 1
        ]
        assert not single.parents and single.text.endswith("?")
        assert single_qid.split("/")[0] != chain_qid  # never a step of the chain itself
        steps = [sq.text for sq in chain.graph.sub_queries]
        if chain_first:
            assert texts == [*steps, single.text]
            assert example.graph.edges == ((1, 2),)
        else:
            assert texts == [single.text, steps[0], steps[1].replace("#1", "#2")]
            assert example.graph.edges == ((2, 3),)
        # The target parses back to the same graph, as the decomposer must write it.
        assert parse_decomposition(example.target) == example.graph
        orders[chain_first] += 1
    assert orders[True] and orders[False]


def test_chained_conjunctions_are_deterministic_by_seed() -> None:
    examples = _all(_pools("train"))
    first = chained_conjunctions(examples, examples, 20, seed=1)
    assert first == chained_conjunctions(examples, examples, 20, seed=1)
    assert first != chained_conjunctions(examples, examples, 20, seed=2)
    flat = [e for e in examples if len(e.graph.sub_queries) == 1]
    assert chained_conjunctions(flat, examples, 5) == []  # no chain to take
    assert chained_conjunctions(examples, [], 5) == []  # no single hop to take


def test_relative_chains_select_bridges_named_by_a_relative_clause() -> None:
    pools = _pools("train")
    chosen = relative_chains(_all(pools))
    assert {e.dataset for e in chosen} == {RELATIVE_CHAIN}
    assert sorted(e.question for e in chosen) == sorted(
        [f"Who founded the company that distributed film {i}?" for i in range(6)]
        + [
            "When was the ruler that was dissolved after the war born?",
            "What form of government is used in the place where the breed originated?",
        ]
    )
    originals = {e.qid: e for e in _all(pools)}
    assert all(e.graph == originals[e.qid].graph for e in chosen)
    assert len(relative_chains(_all(pools), max_steps=2)) == 7


def test_single_counts_become_one_sub_query_the_question() -> None:
    breaks = _pools("train")["break"]
    assert [is_single_count(e) for e in breaks] == [False, False, True, False, True]
    counts = single_counts(breaks)
    assert [(e.question, e.target, e.dataset) for e in counts] == [
        (
            "How many cities did Venice try to take?",
            "<q>How many cities did Venice try to take?</q><dep></dep>",
            SINGLE_COUNT,
        ),
        (
            "How many years did the war last?",
            "<q>How many years did the war last?</q><dep></dep>",
            SINGLE_COUNT,
        ),
    ]
    assert [e.qid for e in counts] == [breaks[2].qid, breaks[4].qid]
    # A question that reads as holding a `#k` cannot be one sub-query: left out.
    odd = _example(
        "x", "How many goals did #1 score?", ["goals scored by team one", "number of #1"], "break"
    )
    assert single_counts([odd]) == []


def _part_ids(example: DecompositionExample) -> list[str]:
    return [part.split("/")[0] for part in example.qid.split("+")]


def test_the_mix_draws_the_new_kinds_from_the_train_split_only() -> None:
    train, test = _pools("train"), _pools("test")
    pools = {name: train[name] + test[name] for name in train}
    weights = {"musique": 0.3, "break": 0.1, CHAINED_CONJUNCTION: 0.3, RELATIVE_CHAIN: 0.2,
               SINGLE_COUNT: 0.1}  # fmt: skip
    plan = DecomposerPlan(data_dir=Path("unused"), train_size=30, weights=weights)
    chosen = training_examples(pools, plan)
    assert len(chosen) == 30 and set(Counter(e.dataset for e in chosen)) == {
        "musique", "break", *NEW_KINDS
    }  # fmt: skip
    assert all(decomposition_split(qid) == "train" for e in chosen for qid in _part_ids(e))
    # With single counts in the mix, no Break example splits a count any more.
    assert not [e for e in chosen if e.dataset == "break" and is_single_count(e)]
    assert training_examples(pools, plan) == chosen


def test_the_new_kinds_are_mix_names() -> None:
    assert parse_mix("musique=0.5,chained_conjunction=0.2,relative_chain=0.2,single_count=0.1") == {
        "musique": 0.5, CHAINED_CONJUNCTION: 0.2, RELATIVE_CHAIN: 0.2, SINGLE_COUNT: 0.1
    }  # fmt: skip
    with pytest.raises(ValueError, match="bad --mix entry"):
        parse_mix("chains=1")


def test_on_the_real_data(data_dir: Path) -> None:
    pools = load_pools(data_dir, DATASETS)
    train = {name: select(pool, "train") for name, pool in pools.items()}
    # 11 % of Break's rows are the count of one retrieval; 161 of them are in the train split.
    counts = single_counts(train["break"])
    assert len(counts) == 161 and sum(map(is_single_count, pools["break"])) == 195
    assert all("how many" in e.question.lower() for e in counts)
    chains = train["musique"] + train["break"]
    relative = relative_chains(chains)
    assert Counter(e.qid.split("_")[0][:4] for e in relative) == {
        "2hop": 432, "3hop": 328, "CWQ": 113, "DROP": 3
    }  # fmt: skip
    plan = DecomposerPlan(
        data_dir=data_dir,
        train_size=400,
        weights={"musique": 0.3, "break": 0.3, **dict.fromkeys(NEW_KINDS, 0.4 / 3)},
    )
    chosen = training_examples(pools, plan)
    assert Counter(e.dataset for e in chosen) == {
        "musique": 120, "break": 121, CHAINED_CONJUNCTION: 53, RELATIVE_CHAIN: 53,
        SINGLE_COUNT: 53,
    }  # fmt: skip
    assert all(decomposition_split(qid) == "train" for e in chosen for qid in _part_ids(e))
