"""The prompt-lookup draft finder (`models.lookup`) against a brute-force search; its settings."""

from __future__ import annotations

import random

import pytest

from compllm_graph.models.lookup import LookupConfig, find_draft, token_array
from compllm_graph.models.requests import GenerationSettings


def brute_force(history: list[int], limit: int, ngram: int, min_ngram: int) -> list[int]:
    """The definition: longest suffix first, its latest earlier occurrence, what followed."""
    for size in range(ngram, min_ngram - 1, -1):
        if size >= len(history):
            continue
        suffix = history[-size:]
        for start in range(len(history) - size - 1, -1, -1):
            if history[start : start + size] == suffix:
                return history[start + size : start + size + limit]
    return []


def test_the_latest_occurrence_of_the_longest_suffix_is_used() -> None:
    #          0  1  2  3  4  5  6  7  8  9 10 11
    history = [5, 6, 7, 1, 5, 6, 8, 2, 9, 5, 6]
    # "5 6" occurs at 0 and 4: the later one is followed by 8 2 9
    assert find_draft(history, 3, ngram=2) == [8, 2, 9]
    # with n = 3, "9 5 6" never occurred before, so it falls back to "5 6"
    assert find_draft(history, 3, ngram=3) == [8, 2, 9]
    # the draft stops at the end of the history and at the limit
    assert find_draft(history, 10, ngram=2) == [8, 2, 9, 5, 6]
    assert find_draft(history, 1, ngram=2) == [8]


def test_a_longer_match_wins_over_a_more_recent_shorter_one() -> None:
    history = [1, 2, 3, 4, 9, 3, 7, 1, 2, 3]
    # "3" alone last occurred before 7; "1 2 3" occurred before 4
    assert find_draft(history, 2, ngram=3) == [4, 9]
    assert find_draft(history, 2, ngram=1) == [7, 1]


def test_no_draft_without_an_earlier_occurrence() -> None:
    assert find_draft([1, 2, 3, 4], 4, ngram=2, min_ngram=1) == []
    assert find_draft([1, 2, 3, 1, 9], 4, ngram=2, min_ngram=2) == []
    assert find_draft([], 4) == []
    assert find_draft([7], 4) == []
    assert find_draft([1, 1, 1], 0) == []


def test_matches_never_straddle_two_tokens() -> None:
    # As bytes, 256 = 00 01 00 00 and 1 = 01 00 00 00: the byte pattern of [1] appears inside
    # [256, 0] at a misaligned offset, which must not count as an occurrence.
    history = [256, 0, 42, 1]
    assert find_draft(token_array(history), 2, ngram=1) == []
    assert find_draft([1, 5, 256, 0, 1], 2, ngram=1) == [5, 256]


def test_overlapping_repeats_draft_the_repetition() -> None:
    assert find_draft([4, 4, 4, 4], 3, ngram=2) == [4]
    assert find_draft([1, 2, 1, 2, 1, 2], 4, ngram=2) == [1, 2]


def test_agrees_with_brute_force_on_random_histories() -> None:
    rng = random.Random(0)
    for _ in range(500):
        vocabulary = rng.choice([2, 3, 5, 70000])
        history = [rng.randrange(vocabulary) for _ in range(rng.randrange(0, 40))]
        ngram = rng.randrange(1, 5)
        min_ngram = rng.randrange(1, ngram + 1)
        limit = rng.randrange(0, 6)
        expected = brute_force(history, limit, ngram, min_ngram)
        assert find_draft(history, limit, ngram=ngram, min_ngram=min_ngram) == expected
        assert find_draft(token_array(history), limit, ngram=ngram, min_ngram=min_ngram) == (
            expected
        )


def test_config_is_checked_and_carried_by_the_settings() -> None:
    with pytest.raises(ValueError, match="draft_tokens"):
        LookupConfig(draft_tokens=0)
    with pytest.raises(ValueError, match="min_ngram"):
        LookupConfig(ngram=2, min_ngram=3)
    with pytest.raises(ValueError, match="min_ngram"):
        LookupConfig(ngram=2, min_ngram=0)
    config = LookupConfig(draft_tokens=8, ngram=2)
    settings = GenerationSettings(lookup=config)
    assert settings.lookup is config
    # lookup changes how many decode steps run, never the output, so it does not split batches
    assert settings.group_key() == GenerationSettings().group_key()
