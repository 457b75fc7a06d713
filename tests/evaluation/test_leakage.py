"""Benchmark questions that share a passage with a train-split item."""

from __future__ import annotations

from compllm_graph.evaluation.leakage import shared_passage_ids, shared_share, word_runs

PASSAGE = (
    "An eager student studying osmosis took a dialysis bag containing a 0.5 M solution of "
    "sucrose and placed it in a beaker of distilled water for one hour at room temperature."
)
TRAIN = f"{PASSAGE} Which way did the water move? Options: (A) in; (B) out."
VIGNETTE = "Which of the following is the most likely cause of this patient's symptoms and signs?"


def record(qid: str, *questions: str) -> dict:
    parts = [{"question": q, "answer": "a", "choices": None, "domain": "x"} for q in questions]
    return {"id": qid, "question": " ".join(questions), "parts": parts, "edges": []}


def test_word_runs_ignore_case_punctuation_and_options() -> None:
    text = "One two three, four five six seven eight nine ten eleven TWELVE thirteen?"
    assert word_runs(text) == {
        "one two three four five six seven eight nine ten eleven twelve",
        "two three four five six seven eight nine ten eleven twelve thirteen",
    }
    assert word_runs(f"{text} Options: (A) yes; (B) no.") == word_runs(text)
    assert word_runs("Too short to have a run.") == set()


def test_a_question_on_a_train_items_passage_is_found() -> None:
    runs = frozenset(word_runs(TRAIN))
    sibling = f"{PASSAGE} What happened to the mass of the bag?"
    assert shared_share(sibling, runs) > 0.5
    fresh = "A 30-year-old man has had a cough for three weeks and night sweats since the spring."
    benchmark = [record("q1", fresh, sibling), record("q2", fresh), record("q3", "Short?")]
    assert shared_passage_ids(benchmark, runs) == ["q1"]


def test_a_shared_template_phrase_is_not_a_shared_passage() -> None:
    runs = frozenset(word_runs(f"A 60-year-old woman has chest pain. {VIGNETTE}"))
    case = (
        "A 45-year-old man comes to the emergency department with two days of fever, a stiff "
        "neck and a rash on both legs that does not blanch; he returned from a trip last week. "
        f"{VIGNETTE}"
    )
    assert 0 < shared_share(case, runs) < 0.2
    assert shared_passage_ids([record("q", case)], runs) == []
