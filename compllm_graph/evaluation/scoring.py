"""Scoring a final answer against a composed question's parts.

A multiple-choice part is right when the answer contains the gold option's text and no other
option's text, or names the gold letter unambiguously ("(B)", "option B", "answer: B"); a
numeric part when a number in the answer equals the gold within 1e-4 relative; a yes/no/maybe
part when its label is the only one stated. A question is right when all its parts are.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

LABELS = ("yes", "no", "maybe")
_NUMBER = re.compile(r"-?(?:\d[\d,]*(?:\.\d+)?|\.\d+)")
_LETTER = re.compile(
    r"\(([A-J])\)|\boption\s+([A-J])\b|\banswer(?:\s+is)?\s*:?\s*\(?([A-J])\b|^([A-J])[.)]",
    re.IGNORECASE | re.MULTILINE,
)
_RELATIVE = 1e-4


@dataclass(frozen=True)
class Score:
    """One question's score: whether each part is right, in order."""

    parts: tuple[bool, ...]

    @property
    def right(self) -> bool:
        """All parts right."""
        return all(self.parts)


def score_question(answer: str, parts: Sequence[Mapping[str, Any]]) -> Score:
    """Score `answer` against every part of one benchmark record (`parts` as in the JSONL)."""
    return Score(tuple(part_right(answer, part) for part in parts))


def part_right(answer: str, part: Mapping[str, Any]) -> bool:
    """Whether `answer` answers one part (see the module docstring for the rules)."""
    gold = str(part["answer"]).strip()
    choices = part.get("choices")
    if choices:
        return _choice_right(answer, [str(c) for c in choices], gold)
    if gold.lower() in LABELS:
        return _label_right(answer, gold.lower())
    return _number_right(answer, gold)


def _choice_right(answer: str, choices: list[str], gold: str) -> bool:
    if gold not in choices:
        raise ValueError(f"the gold answer {gold!r} is not among the choices {choices}")
    text = _normalise(answer)
    present = {c for c in choices if _mentions(text, _normalise(c))}
    if present - {gold}:
        return False  # another option's text, whatever letter is named
    if gold in present:
        return True
    letters = {next(g for g in m.groups() if g).upper() for m in _LETTER.finditer(answer)}
    letter = "ABCDEFGHIJ"[choices.index(gold)]
    return letters == {letter}


def _label_right(answer: str, gold: str) -> bool:
    stated = {label for label in LABELS if re.search(rf"\b{label}\b", answer, re.IGNORECASE)}
    return stated == {gold}


def _number_right(answer: str, gold: str) -> bool:
    try:
        target = float(gold.replace(",", ""))
    except ValueError as exc:
        raise ValueError(
            f"a part without choices needs a numeric or yes/no/maybe answer: {gold!r}"
        ) from exc
    for match in _NUMBER.finditer(answer):
        value = float(match.group(0).replace(",", ""))
        if abs(value - target) <= _RELATIVE * max(abs(target), 1e-12):
            return True
    return False


def _normalise(text: str) -> str:
    return " ".join(text.lower().split()).rstrip(".")


def _mentions(text: str, option: str) -> bool:
    """`option` in `text` as whole words ("tin" is not in "continue", "4" not in "14")."""
    return bool(option) and re.search(rf"(?<!\w){re.escape(option)}(?!\w)", text) is not None


_BARE_LETTER = re.compile(r"^\(?([A-J])\)?\.?$")


def answer_key(answer: str, choices: Sequence[str] | None = None) -> str | None:
    """What `answer` commits to, read by this module's rules, so that replies can be compared
    without a gold answer (two replies agree when their keys are equal); None when it commits
    to nothing these rules read.

    With `choices`: the letter of the one option whose text it mentions, else the one letter
    it names (as "(B)"). Without: the one yes/no/maybe label it states, else its last number
    ("1,200" and "1200.0" are "1200"), else the one letter it names. Give it what a reply
    states as its answer (`nodes.execute.stated_answer`), not a worked derivation, whose
    numbers and mentions are not the answer.
    """
    if choices:
        text = _normalise(answer)
        present = [i for i, c in enumerate(choices) if _mentions(text, _normalise(str(c)))]
        if len(present) == 1:
            return f"({'ABCDEFGHIJ'[present[0]]})"
        letters = _letters(answer) & set("ABCDEFGHIJ"[: len(choices)])
        return f"({letters.pop()})" if len(letters) == 1 and not present else None
    stated = {label for label in LABELS if re.search(rf"\b{label}\b", answer, re.IGNORECASE)}
    if len(stated) == 1:
        return stated.pop()
    numbers = _NUMBER.findall(answer)
    if numbers:
        value = float(numbers[-1].replace(",", ""))
        return str(int(value)) if value.is_integer() else repr(value)
    letters = _letters(answer)
    return f"({letters.pop()})" if len(letters) == 1 else None


def _letters(answer: str) -> set[str]:
    """The option letters `answer` names: "(B)", "option B", "answer: B", "B." or a bare "B"."""
    named = {next(g for g in m.groups() if g).upper() for m in _LETTER.finditer(answer)}
    bare = _BARE_LETTER.match(answer.strip())
    return (named | {bare.group(1)}) if bare else named


def accuracy(scores: Sequence[Score]) -> dict[str, float | int]:
    """Question accuracy, part accuracy and the counts behind them."""
    parts = [p for s in scores for p in s.parts]
    return {
        "accuracy": sum(s.right for s in scores) / len(scores) if scores else 0.0,
        "part_accuracy": sum(parts) / len(parts) if parts else 0.0,
        "n": len(scores),
        "parts": len(parts),
    }


__all__ = ["LABELS", "Score", "accuracy", "answer_key", "part_right", "score_question"]
