"""The decomposer's composed training questions: socratic steps keep their dependencies."""

from __future__ import annotations

from pathlib import Path

from compllm_graph.datasets.compositions import STEP_TEMPLATES, compose_dependent
from compllm_graph.datasets.decompositions import as_examples, socratic_graph
from compllm_graph.datasets.items import Chain, Item
from compllm_graph.training.composed import TRAINING_STEP_TEMPLATES, composed_examples


def test_socratic_steps_keep_the_context_in_the_first_and_depend_on_every_earlier_one() -> None:
    context = "Ann has 3 boxes. Each box holds 4 pens."
    graph = socratic_graph(
        [f"{context} How many pens?", f"{context} How many left after 2?", f"{context} Half?"]
    )
    assert [q.text for q in graph] == [
        f"{context} How many pens?",
        "How many left after 2?",
        "Half?",
    ]
    assert [q.parents for q in graph] == [(), (1,), (1, 2)]
    assert graph.edges == ((1, 2), (1, 3), (2, 3))


def test_steps_that_share_no_whole_sentence_keep_their_text() -> None:
    # "How many" is shared, but no sentence ends inside it: nothing is cut.
    graph = socratic_graph(["How many pens?", "How many boxes?"])
    assert [q.text for q in graph] == ["How many pens?", "How many boxes?"]
    assert graph.edges == ((1, 2),)


def _maths() -> list[Item]:
    return [
        Item(f"m/{i}", f"Problem {i}?", str(i % 40 + 1), None, "mathematics") for i in range(300)
    ]


def _chains() -> list[Chain]:
    steps = (("How many A?", "3"), ("How many B?", "6"), ("Total?", "9"))
    return [Chain(f"c/{i}", f"Context {i}.", steps) for i in range(300)]


def test_composed_steps_and_bridges_become_their_graphs() -> None:
    records = compose_dependent(
        _maths(), _chains(), 2, 4, split="train", step_templates=TRAINING_STEP_TEMPLATES
    )
    socratic, bridge = as_examples(records)[:2]
    context = socratic.question.split(" ")[:2]
    assert socratic.target == (
        f"<q>{' '.join(context)} How many A?</q><q>Total?</q><dep>1->2</dep>"
    )
    assert bridge.graph.edges == ((1, 2),) and "#1" in bridge.graph[2].text


def test_the_training_mix_teaches_steps_with_their_dependencies(data_dir: Path) -> None:
    examples = composed_examples(data_dir, 48)
    steps = [e for e in examples if e.graph.edges and "#" not in e.target]
    assert len(steps) >= 8 and {len(e.graph) for e in steps} == {2, 3}
    for example in steps:
        first, *later = example.graph
        assert all(q.parents == tuple(range(1, q.id)) for q in later)
        assert all(q.text in example.question for q in later)
        assert first.text.rpartition(". ")[2] in example.question
        opening = first.text.split(". ")[0]
        assert all(not q.text.startswith(opening) for q in later)  # the context is not repeated
    # The training templates are not the benchmarks': their wording stays unseen.
    for parts in (2, 3):
        assert not set(TRAINING_STEP_TEMPLATES[parts]) & set(STEP_TEMPLATES[parts])
