"""Prompt-lookup decoding: draft tokens copied from the prompt, verified by the model in one step.

A greedy answer that copies its prompt (a decomposer restating the question, a reducer repeating
the part answers) spends one `llama_decode` per copied token. Prompt lookup guesses the next
tokens instead: it finds the most recent earlier place where the last n tokens of prompt plus
answer occurred and drafts the tokens that followed there. The engine feeds the draft with the
last token in one batch and keeps the longest prefix that greedy decoding picks anyway, so the
output is the same as plain greedy decoding; only the number of decode steps changes.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field

_TOKENS = "i"  # token ids are int32 in llama.cpp
_WIDTH = array(_TOKENS).itemsize


@dataclass(frozen=True)
class LookupConfig:
    """How a greedy request drafts tokens by prompt lookup (llama.cpp engine only).

    Attributes:
        draft_tokens: most tokens drafted per step.
        ngram: longest suffix of prompt plus answer looked up; shorter ones are tried when it
            does not occur earlier, down to `min_ngram`.
        min_ngram: shortest suffix looked up; a shorter one drafts more often and is right
            less often.
    """

    draft_tokens: int = field(default=4, metadata={"help": "most tokens drafted per step"})
    ngram: int = field(default=3, metadata={"help": "longest suffix of the text looked up"})
    min_ngram: int = field(default=1, metadata={"help": "shortest suffix of the text looked up"})

    def __post_init__(self) -> None:
        if self.draft_tokens < 1:
            raise ValueError(f"draft_tokens must be >= 1, got {self.draft_tokens}")
        if not 1 <= self.min_ngram <= self.ngram:
            raise ValueError(
                f"need 1 <= min_ngram <= ngram, got min_ngram={self.min_ngram}, ngram={self.ngram}"
            )


def token_array(tokens: Sequence[int] = ()) -> array:
    """Token ids in the compact form `find_draft` searches fastest."""
    return array(_TOKENS, tokens)


def find_draft(
    history: Sequence[int], limit: int, *, ngram: int = 3, min_ngram: int = 1
) -> list[int]:
    """The tokens that followed the most recent earlier occurrence of `history`'s last n tokens.

    Tries n = `ngram` first, then shorter suffixes down to `min_ngram`; the occurrence must end
    before the last token of `history` (so at least one token follows it).

    Args:
        history: Prompt plus generated tokens so far (a `token_array` is searched without a
            copy of its ids).
        limit: Most tokens returned.
        ngram: Longest suffix looked up.
        min_ngram: Shortest suffix looked up.

    Returns:
        Up to `limit` draft tokens; empty when no suffix of length `min_ngram` or more occurs
        earlier, or `limit` is below 1.
    """
    if limit < 1 or min_ngram < 1:
        return []
    tokens = history if isinstance(history, array) and history.typecode == _TOKENS else None
    data = (tokens if tokens is not None else token_array(history)).tobytes()
    count = len(data) // _WIDTH
    for size in range(min(ngram, count - 1), min_ngram - 1, -1):
        start = _last_occurrence(data, data[-size * _WIDTH :], (count - 1) * _WIDTH)
        if start >= 0:
            begin = start + size
            return list(history[begin : begin + limit])
    return []


def _last_occurrence(data: bytes, key: bytes, end: int) -> int:
    """Token index of the last whole-token match of `key` lying within `data[:end]`, or -1.

    `bytes.rfind` runs in C; a match that straddles two tokens (an offset not divisible by the
    token width) is skipped and the search goes on to the left.
    """
    while True:
        found = data.rfind(key, 0, end)
        if found < 0:
            return -1
        if found % _WIDTH == 0:
            return found // _WIDTH
        end = found + len(key) - 1


__all__ = ["LookupConfig", "find_draft", "token_array"]
