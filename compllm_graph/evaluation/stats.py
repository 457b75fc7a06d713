"""Bootstrap intervals for accuracies, and whether two systems' accuracies differ."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypedDict

RESAMPLES = 2000


class Difference(TypedDict):
    """A paired difference of means with its bootstrap interval."""

    difference: float
    ci95: list[float]
    significant: bool


def bootstrap_interval(
    values: Sequence[bool | float], level: float = 0.95, resamples: int = RESAMPLES, seed: int = 0
) -> list[float]:
    """The percentile bootstrap interval of the mean of `values` ([0, 0] when empty)."""
    if not values:
        return [0.0, 0.0]
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    low = means[int((1 - level) / 2 * resamples)]
    high = means[min(resamples - 1, int((1 + level) / 2 * resamples))]
    return [round(low, 4), round(high, 4)]


def paired_difference(
    a: Sequence[bool | float],
    b: Sequence[bool | float],
    level: float = 0.95,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> Difference:
    """Mean of a minus mean of b on the same questions, with its paired bootstrap interval.

    `significant` is True when the interval leaves out 0: only then is there a difference to
    call.

    Raises:
        ValueError: the two do not score the same number of questions.
    """
    if len(a) != len(b):
        raise ValueError(f"paired scores need the same questions: {len(a)} against {len(b)}")
    differences = [float(x) - float(y) for x, y in zip(a, b)]
    interval = bootstrap_interval(differences, level, resamples, seed)
    mean = sum(differences) / len(differences) if differences else 0.0
    return {
        "difference": round(mean, 4),
        "ci95": interval,
        "significant": bool(differences) and (interval[0] > 0 or interval[1] < 0),
    }


__all__ = ["Difference", "bootstrap_interval", "paired_difference"]
