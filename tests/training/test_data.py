"""Dataset builders: exact target strings on real records, splits, mixing, bad files."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from compllm_graph.datasets.decompositions import (
    CONJUNCTION,
    DATASETS,
    DatasetFormatError,
    DecompositionExample,
    break_step,
    conjunctions,
    default_files,
    graph_from_steps,
    load_examples,
    mix,
    musique_step,
    select,
)
from compllm_graph.datasets.splits import decomposition_split
from compllm_graph.query_graph import DecompositionError, parse_decomposition
from compllm_graph.training.decomposer_sft import DecomposerPlan, load_pools, training_examples


def _by_id(data_dir: Path, dataset: str) -> dict[str, object]:
    return {e.qid: e for e in load_examples(default_files(data_dir)[dataset])}


def test_musique_targets(data_dir: Path) -> None:
    examples = _by_id(data_dir, "musique")
    assert examples["2hop__460946_294723"].target == (  # type: ignore[attr-defined]
        "<q>performer of Green</q><q>spouse of #1</q><dep>1->2</dep>"
    )
    assert examples["3hop1__751782_2053_5289"].target == (  # type: ignore[attr-defined]
        "<q>original broadcaster of Undercovers</q>"
        "<q>Along with ABC and #1, what other major broadcaster is based in New York?</q>"
        "<q>What lable was bought by #2 in the UK?</q><dep>1->2, 2->3</dep>"
    )
    # A 4-hop question whose graph is not a chain.
    assert examples["4hop3__862_846_326964_7713"].target == (  # type: ignore[attr-defined]
        "<q>Who did the Ming court think the representatives were sent by?</q>"
        "<q>Where did the Yongle Emperor greet the #1?</q>"
        "<q>headquarters location of Yaxing Coach</q>"
        "<q>How long had #2 been the capital city of #3?</q><dep>1->2, 2->4, 3->4</dep>"
    )


def test_strategyqa_target(data_dir: Path) -> None:
    example = _by_id(data_dir, "strategyqa")["2bc9c4f9c19c167187f2"]
    assert example.question == (  # type: ignore[attr-defined]
        "Are more people today related to Genghis Khan than Julius Caesar?"
    )
    assert example.target == (  # type: ignore[attr-defined]
        "<q>How many kids did Julius Caesar have?</q><q>How many kids did Genghis Khan have?</q>"
        "<q>Is #2 greater than #1?</q><dep>1->3, 2->3</dep>"
    )


def test_break_targets(data_dir: Path) -> None:
    examples = _by_id(data_dir, "break")
    first = examples["CWQ_dev_WebQTest-1011_c0be4f76a5397ba6d0d06f53905e504b"]
    assert first.target == (  # type: ignore[attr-defined]
        "<q>Tibetan speaking countries</q>"
        "<q>#1 that have a population of less than 993885000</q><dep>1->2</dep>"
    )
    five = examples["DROP_dev_history_2199_f7819d7b-bf66-4963-beaa-6c39dec5e9a9"]
    assert five.target == (  # type: ignore[attr-defined]
        "<q>times Tendulkar crossed the 50-run mark</q>"
        "<q>times Allan Border crossed the 50-run mark</q><q>number of #1</q>"
        "<q>number of #2</q><q>which is highest of #3, #4</q>"
        "<dep>1->3, 2->4, 3->5, 4->5</dep>"
    )


@pytest.mark.parametrize("dataset", ["musique", "strategyqa", "break"])
def test_every_target_parses_back_to_its_graph(data_dir: Path, dataset: str) -> None:
    examples = load_examples(default_files(data_dir)[dataset])
    assert len(examples) > 1000
    for example in examples:
        assert parse_decomposition(example.target) == example.graph
    splits = Counter(e.split for e in examples)
    assert splits["train"] > 7 * splits["test"] > 0 and splits["validation"] > 0


def test_step_rewriting() -> None:
    assert musique_step("Green >> performer") == "performer of Green"
    assert musique_step("#1 >> owned by") == "#1 owned by what?"
    assert musique_step("What is the population of #2 ?") == "What is the population of #2?"
    assert break_step("return the  country where  #1 is ") == "the country where #1 is"


def test_graph_from_steps_rejects_bad_references() -> None:
    assert graph_from_steps(["a", "b #1", "c #1 #2"]).edges == ((1, 2), (1, 3), (2, 3))
    with pytest.raises(DecompositionError):
        graph_from_steps(["a #2", "b"])
    with pytest.raises(DecompositionError):
        graph_from_steps(["a", ""])


def test_split_is_deterministic_and_proportioned() -> None:
    ids = [f"q{i}" for i in range(5000)]
    assert [decomposition_split(q) for q in ids] == [decomposition_split(q) for q in ids]
    shares = Counter(decomposition_split(q) for q in ids)
    assert 0.77 < shares["train"] / 5000 < 0.83
    assert 0.08 < shares["test"] / 5000 < 0.12


def test_mix_respects_weights_and_pool_sizes(tmp_path: Path) -> None:
    rows = [
        {"qid": f"s{i}", "question": f"q{i}?", "decomposition": ["a", "b #1"]} for i in range(50)
    ]
    path = tmp_path / "strategy.json"
    path.write_text(json.dumps(rows))
    small = load_examples(path)
    big = [replace(e, qid=f"{e.qid}-{k}", dataset="musique") for e in small for k in range(4)]
    chosen = mix({"strategyqa": small, "musique": big}, 100, {"strategyqa": 0.8, "musique": 0.2})
    counts = Counter(e.dataset for e in chosen)
    # The small pool gives all it has and the big one makes up the difference.
    assert counts == {"strategyqa": 50, "musique": 50}
    assert mix({"strategyqa": small}, 10, {"strategyqa": 1.0}, seed=3) == mix(
        {"strategyqa": small}, 10, {"strategyqa": 1.0}, seed=3
    )
    with pytest.raises(ValueError, match="only 50"):
        mix({"strategyqa": small}, 51, {"strategyqa": 1.0})
    assert {e.split for e in select(small, "test")} <= {"test"}


def _components(example: DecompositionExample) -> int:
    """Weakly connected components of an example's graph."""
    root = {sq.id: sq.id for sq in example.graph.sub_queries}

    def find(i: int) -> int:
        while root[i] != i:
            i = root[i]
        return i

    for parent, child in example.graph.edges:
        root[find(child)] = find(parent)
    return len({find(i) for i in root})


def test_conjunctions_join_independent_parts(tmp_path: Path) -> None:
    rows = [
        {"qid": "chain", "question": "Who wrote the book Gone Girl was based on?",
         "decomposition": ["Which book was Gone Girl based on?", "Who wrote #1?"]},
        {"qid": "pair", "question": "Is the Nile longer than the Amazon?",
         "decomposition": ["How long is the Nile?", "How long is the Amazon?", "Is #1 > #2?"]},
        {"qid": "flat", "question": "What is the capital of Peru?",
         "decomposition": ["What is the capital of Peru?"]},
    ]  # fmt: skip
    path = tmp_path / "strategy.json"
    path.write_text(json.dumps(rows))
    pool = load_examples(path)
    parts = {e.qid: [sq.text for sq in e.graph.sub_queries] for e in pool}
    parts.update({f"{e.qid}/{sq.id}": [sq.text] for e in pool for sq in e.graph.sub_queries})

    composed = conjunctions({"strategyqa": pool}, 20, seed=1)
    assert composed and composed == conjunctions({"strategyqa": pool}, 20, seed=1)
    for example in composed:
        first, second = example.qid.split("+")
        shifted = [s.replace("#1", "#X").replace("#2", "#Y") for s in parts[second]]
        offset = len(parts[first])
        shifted = [s.replace("#X", f"#{1 + offset}").replace("#Y", f"#{2 + offset}")
                   for s in shifted]  # fmt: skip
        assert [sq.text for sq in example.graph.sub_queries] == parts[first] + shifted
        assert _components(example) >= 2
        assert example.dataset == CONJUNCTION
        assert ", and " in example.question or "? Also, " in example.question
    used = {part for e in composed for part in e.qid.split("+")}
    # Steps that need an earlier answer never stand alone as a part.
    assert not used & {"chain/2", "pair/3"}
    assert {"chain/1", "pair/1", "pair/2", "flat/1", "chain", "pair"} <= used
    assert conjunctions({"strategyqa": pool[:1]}, 5) == []


def test_default_mix_composes_conjunctions_from_train_questions(data_dir: Path) -> None:
    plan = DecomposerPlan(data_dir=data_dir, train_size=400)
    pools = load_pools(data_dir, DATASETS)
    chosen = training_examples(pools, plan)
    counts = Counter(e.dataset for e in chosen)
    assert counts == {"musique": 220, "break": 80, "strategyqa": 40, CONJUNCTION: 60}
    parts = [p.split("/")[0] for e in chosen if e.dataset == CONJUNCTION for p in e.qid.split("+")]
    assert {decomposition_split(qid) for qid in parts} == {"train"}
    assert all(e.split == "train" for e in chosen if e.dataset != CONJUNCTION)


def test_bad_files_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_examples(tmp_path / "missing.json")
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps([{"foo": 1}]))
    with pytest.raises(DatasetFormatError, match="expected MuSiQue"):
        load_examples(odd)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(DatasetFormatError):
        load_examples(broken)
    csv_file = tmp_path / "x.csv"
    csv_file.write_text("a,b\n1,2\n")
    with pytest.raises(DatasetFormatError, match="missing columns"):
        load_examples(csv_file)
