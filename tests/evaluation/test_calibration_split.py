"""The calibration split on the real data: disjoint from everything that trains an expert, the
decomposer or a centroid, and from every benchmark file and every question the easy tier may
draw. Skips when the shared data is absent."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest

from compllm_graph.datasets.calibration import (
    CALIBRATION_SOURCES,
    HEALTH_SUBJECTS,
    calibration_items,
    calibration_split,
    reserved_questions,
    source_items,
)
from compllm_graph.datasets.easy_tier import READERS, Share, short_chains
from compllm_graph.datasets.easy_tier import source_items as easy_source_items
from compllm_graph.datasets.items import (
    MMLU_SUBJECTS,
    SOURCES,
    Item,
    asked_question,
    domain_items,
    socratic_chains,
    unlettered,
)
from compllm_graph.training.composed import composed_examples
from compllm_graph.training.expert_data import ALL_DOMAINS, expert_examples
from compllm_graph.training.routing_data import OUT_OF_DOMAIN_SUBJECTS


@pytest.fixture(scope="module")
def split(data_dir: Path) -> dict[str, list[Item]]:
    return calibration_split(data_dir)


@pytest.fixture(scope="module")
def questions(split: dict[str, list[Item]]) -> set[str]:
    return {item.question for items in split.values() for item in items}


def overlap(questions: set[str], texts: Iterable[str]) -> set[str]:
    return questions & {unlettered(t) for t in texts}


def test_every_domain_has_items_from_its_sources_only(split: dict[str, list[Item]]) -> None:
    assert sorted(split) == sorted(SOURCES)
    sizes = {domain: len(items) for domain, items in split.items()}
    assert sizes["chemistry"] == 15 and min(sizes.values()) == 15  # the smallest, said in docs
    assert all(item.domain == domain for domain, items in split.items() for item in items)
    prefixes = {item.id.split("/")[0] for items in split.values() for item in items}
    assert prefixes == {"mmlu-dev", "openbookqa", "asdiv", "mmlu"}
    assert all(
        item.id.split("/")[1] in HEALTH_SUBJECTS
        for item in split["medicine"]
        if item.id.startswith("mmlu/")
    )
    ids = [item.id for items in split.values() for item in items]
    assert len(ids) == len(set(ids))


def test_openbookqa_and_asdiv_give_only_their_train_split(split: dict[str, list[Item]]) -> None:
    borrowed = [
        i
        for items in split.values()
        for i in items
        if i.id.split("/")[0] in ("openbookqa", "asdiv")
    ]
    assert borrowed and all(item.in_split == "train" for item in borrowed)


def test_no_question_of_the_experts_sources_in_either_split(
    data_dir: Path, questions: set[str]
) -> None:
    """Experts, the FT baseline, the decomposer's composed questions and the demo centroids all
    learn from these sources' items, whatever the sample: none may share a question."""
    texts = {i.question for domain in SOURCES for i in domain_items(data_dir, domain)}
    assert not questions & texts
    assert questions.isdisjoint(reserved_questions(data_dir))


def test_disjoint_from_every_expert_s_training_data(data_dir: Path, questions: set[str]) -> None:
    for domain in [*SOURCES, ALL_DOMAINS]:
        pairs = expert_examples(data_dir, domain, 800)  # the shipped adapters' data (seed 0)
        assert not overlap(questions, (p["question"] for p in pairs)), domain


def test_disjoint_from_the_decomposer_s_composed_questions(
    data_dir: Path, questions: set[str]
) -> None:
    examples = composed_examples(data_dir, 3000)  # the largest recorded stage; draws grow with it
    parts = [sq.text for example in examples for sq in example.graph]
    assert parts and not overlap(questions, parts)
    chains = [step for chain in socratic_chains(data_dir) for step, _ in chain.steps]
    assert not overlap(questions, chains)


def test_disjoint_from_the_demo_centroids(questions: set[str]) -> None:
    pytest.importorskip("faiss", reason="the demo data is read through the [router] extra")
    from compllm_graph.datasets.items import centroid_texts

    assert not questions & centroid_texts()


def test_disjoint_from_every_benchmark_file(data_dir: Path, questions: set[str]) -> None:
    """Both tiers' files as `compllm eval benchmarks` writes them by default."""
    from compllm_graph.evaluation.benchmarks import build_benchmarks

    built = {
        **build_benchmarks(data_dir, 300, 200, 0),
        **build_benchmarks(data_dir, 300, 200, 0, tier="easy"),
    }
    assert any(name.startswith("easy-") for name in built) and "p2" in built
    for name, records in built.items():
        texts = []
        for record in records:
            texts += [record["question"], *(p["question"] for p in record["parts"])]
        assert not overlap(questions, texts), name
        assert not any(q in text for text in texts for q in questions if len(q) > 40), name


def test_disjoint_from_whatever_the_easy_tier_may_draw(data_dir: Path, questions: set[str]) -> None:
    """The easy tier's files hold test-split items of its sources (and GSM8K test chains)."""
    drawable: set[str] = set()
    for source in READERS:
        share = Share(1.0, tuple(_medmcqa_subjects(data_dir))) if source == "medmcqa" else Share()
        for item in easy_source_items(data_dir, source, share):
            if item.in_split == "test":
                drawable.update((item.question, asked_question(item.question)))
    assert not questions & drawable
    contexts = [chain.context for parts in (2, 3) for chain in short_chains(data_dir, parts)]
    assert not any(q in context for context in contexts for q in questions if len(q) > 40)


def test_health_subjects_are_read_by_nothing_else() -> None:
    experts_subjects = {s for subjects in MMLU_SUBJECTS.values() for s in subjects}
    assert not set(HEALTH_SUBJECTS) & (experts_subjects | set(OUT_OF_DOMAIN_SUBJECTS))


def test_items_are_seeded_and_balanced_over_sources(data_dir: Path) -> None:
    first = calibration_items(data_dir, "mathematics", 10)
    assert first == calibration_items(data_dir, "mathematics", 10)
    assert first != calibration_items(data_dir, "mathematics", 10, seed=1)
    sources = [item.id.split("/")[0] for item in first]
    assert sources.count("mmlu-dev") == sources.count("asdiv") == 5


def test_bad_arguments_are_refused(data_dir: Path) -> None:
    with pytest.raises(ValueError, match="physics"):
        calibration_items(data_dir, "physics")
    with pytest.raises(ValueError, match="limit"):
        calibration_items(data_dir, "biology", 0)
    with pytest.raises(ValueError, match="asdiv-train"):
        source_items(data_dir, "biology", "asdiv-train")
    assert set(CALIBRATION_SOURCES) == set(SOURCES)


def _medmcqa_subjects(data_dir: Path) -> list[str]:
    folder = data_dir / "medical_and_science" / "medmcqa_validation"
    return sorted(p.stem for p in folder.glob("*.jsonl"))
