"""Constrained decoding: a logits processor that only lets the model write the tag grammar

    (<q>text</q>)+ <dep>(i->j(, i->j)*)?</dep> <end of turn>

with at most `max_sub_queries` sub-queries, and edges i->j with 1 <= i < j <= the number of
sub-queries (so the graph is always a DAG). Text inside `<q>` is free except for `<`, `>` and
new lines. Every output therefore parses, unless it runs out of new tokens.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from compllm_graph._extras import requires
from compllm_graph.query_graph import DEFAULT_MAX_SUB_QUERIES

with requires("local"):
    import torch

_OPEN_Q, _CLOSE_Q, _OPEN_DEP, _CLOSE_DEP = "<q>", "</q>", "<dep>", "</dep>"
_DEP_CHARS = set("0123456789->, ")
_REFERENCE = re.compile(r"#(\d*)")
_OPEN_REFERENCE = re.compile(r"#\d*$")
_PARTIAL_EDGE = re.compile(r"(\d+)(?:-(?:>(\d*))?)?")
_PAIR = re.compile(r"(\d+)->(\d+)")
_MAX_QUESTION_CHARS = 300
"""A sub-query is closed at this length, or at its prompt's length if that is longer (a part
may carry long options)."""
_TAG_LETTERS = {"q", "d", "de", "dep", "e", "ep", "p"}  # pieces of `q>` and `dep>`


@dataclass(frozen=True)
class _State:
    """Where a partial output stands.

    `kind` is "tag" (inside or before a tag; `key` is the text since the last complete
    element), "text" (inside `<q>…`; `key` is "empty", "text", or an unfinished `#k` at the
    end), "dep" (inside `<dep>…`; `key` is its content), or "end".
    """

    kind: str
    key: str
    questions: int
    text_chars: int = 0


def scan(text: str, max_sub_queries: int = DEFAULT_MAX_SUB_QUERIES) -> _State | None:
    """The state after `text`, or None if no continuation of `text` fits the grammar."""
    pos, questions = 0, 0
    while True:
        rest = text[pos:]
        options = [_OPEN_Q] if questions < max_sub_queries else []
        if questions:
            options.append(_OPEN_DEP)
        tag = next((o for o in options if rest.startswith(o)), None)
        if tag is None:
            fits = any(o.startswith(rest) for o in options)
            return _State("tag", rest, questions) if fits else None
        pos += len(tag)
        if tag == _OPEN_Q:
            end = text.find(_CLOSE_Q, pos)
            if end == -1:
                return _inside_question(text[pos:], questions)
            body = text[pos:end]
            if not body or not _plain(body) or not _references_ok(body, questions, False):
                return None
            pos, questions = end + len(_CLOSE_Q), questions + 1
            continue
        end = text.find(_CLOSE_DEP, pos)
        if end == -1:
            return _inside_dependencies(text[pos:], questions)
        if not _dep_valid(text[pos:end], questions, complete=True):
            return None
        return _State("end", "", questions) if end + len(_CLOSE_DEP) == len(text) else None


def _plain(text: str) -> bool:
    return not any(c in text for c in "<>\n")


def _inside_question(inner: str, questions: int) -> _State | None:
    cut = inner.find("<")
    body, tail = (inner, "") if cut == -1 else (inner[:cut], inner[cut:])
    if not _plain(body) or not _references_ok(body, questions, open_end=not tail):
        return None
    if tail:
        if not body or not _CLOSE_Q.startswith(tail):
            return None
        return _State("tag", "q-close:" + tail, questions)
    open_reference = _OPEN_REFERENCE.search(body)
    key = open_reference.group(0) if open_reference else ("text" if body else "empty")
    return _State("text", key, questions, len(body))


def _references_ok(body: str, questions: int, open_end: bool) -> bool:
    """`#k` may only name an earlier sub-query; at the open end `#` or `#1` may still grow."""
    for match in _REFERENCE.finditer(body):
        digits = match.group(1)
        if open_end and match.end() == len(body):
            if not any(str(k).startswith(digits) for k in range(1, questions + 1)):
                return False
        elif not digits or digits.startswith("0") or not 1 <= int(digits) <= questions:
            return False
    return True


def _inside_dependencies(inner: str, questions: int) -> _State | None:
    cut = inner.find("<")
    body, tail = (inner, "") if cut == -1 else (inner[:cut], inner[cut:])
    if tail:
        if not _CLOSE_DEP.startswith(tail) or not _dep_valid(body, questions, complete=True):
            return None
        return _State("tag", "dep-close:" + tail, questions)
    return _State("dep", body, questions) if _dep_valid(body, questions, complete=False) else None


def _dep_valid(body: str, questions: int, complete: bool) -> bool:
    """Is `body` a list of forward edges between existing ids (or, if not `complete`, the
    beginning of one)?"""
    if not set(body) <= _DEP_CHARS:
        return False
    *done, last = (item.strip() for item in body.split(","))
    if not all(_edge_ok(_PAIR.fullmatch(item), questions) for item in done):
        return False
    if complete:
        return body.strip() == "" or _edge_ok(_PAIR.fullmatch(last), questions)
    return _tail_can_complete(last, questions)


def _edge_ok(match: re.Match[str] | None, questions: int) -> bool:
    return match is not None and 1 <= int(match.group(1)) < int(match.group(2)) <= questions


def _tail_can_complete(tail: str, questions: int) -> bool:
    """Can the last, possibly unfinished, edge still become a valid i->j?"""
    match = _PARTIAL_EDGE.fullmatch(tail)
    if tail == "":
        return True
    if match is None or match.group(1).startswith("0"):
        return False
    first, second = match.group(1), match.group(2)
    if second is None:
        return any(str(i).startswith(first) for i in range(1, questions))
    source = int(first)
    if not 1 <= source < questions:
        return False
    return second == "" or (
        not second.startswith("0")
        and any(str(j).startswith(second) for j in range(source + 1, questions + 1))
    )


class TagGrammarProcessor:
    """A transformers logits processor masking every token that would break the grammar.

    Args:
        vocabulary: The decoded text of every token id.
        eos_token_id: The end-of-turn token, allowed only once `</dep>` is written.
        prompt_width: Length of the (left-padded) prompt; generated tokens follow it.
        decode: Turns a row's ids into text (without special tokens).
        max_sub_queries: Most `<q>` elements allowed.
    """

    def __init__(
        self,
        vocabulary: _Vocabulary,
        eos_token_id: int,
        prompt_width: int,
        decode: Callable[[list[int]], str],
        max_sub_queries: int = DEFAULT_MAX_SUB_QUERIES,
    ) -> None:
        self.vocabulary = vocabulary
        self.eos = eos_token_id
        self.width = prompt_width
        self.decode = decode
        self.max_sub_queries = max_sub_queries
        self._caps: list[int] | None = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self._caps is None:  # a row's prompt (and beams) never change within a batch
            prompts = input_ids[:, : self.width].tolist()
            self._caps = [max(_MAX_QUESTION_CHARS, len(self.decode(p))) for p in prompts]
        mask = torch.full_like(scores, float("-inf"))
        for row, ids in enumerate(input_ids[:, self.width :].tolist()):
            if self.eos in ids:
                mask[row, self.eos] = 0.0  # finished rows are padded with end-of-turn
                continue
            allowed = self._allowed(self.decode(ids), self._caps[row])
            mask[row, allowed] = 0.0
        return scores + mask

    def _allowed(self, text: str, cap: int) -> torch.Tensor:
        state = scan(text, self.max_sub_queries)
        if state is None or state.kind == "end":
            return torch.tensor([self.eos])
        if state.kind == "text" and state.text_chars >= cap:
            # Only the start of `</q>`: any other tag-like token (`/`, a digit) would be allowed
            # inside the text and let an over-long sub-query ramble on in symbols.
            return self.vocabulary.closing
        return self.vocabulary.allowed(state, text, self.max_sub_queries)


class _Vocabulary:
    """Token texts split into always-safe text tokens and tokens to check, with memoised
    allowed sets per grammar state."""

    def __init__(self, texts: list[str], special_ids: set[int]) -> None:
        self.texts = texts
        ids = [i for i, t in enumerate(texts) if t and i not in special_ids]
        # Tokens that may be part of a tag, a reference or an edge are checked against the
        # grammar in each state; the rest are safe inside <q> (new lines are never allowed).
        self.checked = [
            i
            for i in ids
            if "\n" not in texts[i]
            and (
                any(c in "<>#/" for c in texts[i])
                or texts[i][0].isdigit()
                or texts[i] in _TAG_LETTERS
            )
        ]
        self.closing = torch.tensor(
            [i for i in ids if _CLOSE_Q.startswith(texts[i])], dtype=torch.long
        )
        checked = set(self.checked)
        safe = [i for i in ids if i not in checked and "\n" not in texts[i]]
        self.safe = torch.tensor(safe, dtype=torch.long)
        self._memo: dict[tuple[str, str, int, int], torch.Tensor] = {}

    def allowed(self, state: _State, text: str, max_sub_queries: int) -> torch.Tensor:
        key = (state.kind, state.key, state.questions, max_sub_queries)
        if key not in self._memo:
            fits = [
                i for i in self.checked if scan(text + self.texts[i], max_sub_queries) is not None
            ]
            extra = torch.tensor(fits, dtype=torch.long)
            # After a bare `#` only digits may follow, so the safe text tokens are out.
            with_text = state.kind == "text" and state.key != "#"
            self._memo[key] = torch.cat([self.safe, extra]) if with_text else extra
        return self._memo[key]


@lru_cache(maxsize=4)
def _vocabulary_for(tokenizer: Any) -> _Vocabulary:
    texts = [tokenizer.decode([i]) for i in range(len(tokenizer))]
    return _Vocabulary(texts, set(tokenizer.all_special_ids))


def tag_grammar_factory(
    tokenizer: Any, max_sub_queries: int = DEFAULT_MAX_SUB_QUERIES
) -> Callable[[int], TagGrammarProcessor]:
    """A factory for `decomposition.generate`: one processor per batch, given the prompt width."""
    vocabulary = _vocabulary_for(tokenizer)

    def decode(ids: list[int]) -> str:
        return str(tokenizer.decode(ids, skip_special_tokens=True))

    def make(prompt_width: int) -> TagGrammarProcessor:
        return TagGrammarProcessor(
            vocabulary, tokenizer.eos_token_id, prompt_width, decode, max_sub_queries
        )

    return make


def tag_grammar_gbnf(max_sub_queries: int = DEFAULT_MAX_SUB_QUERIES) -> str:
    """The same tag grammar as GBNF, for llama.cpp's grammar sampler (root rule `root`).

    Sub-query k may reference only `#1`..`#k-1` (a reference is never followed by a digit, so
    `#1` cannot grow into `#12`), and `<dep>` lists only edges i->j with i < j <= the number of
    sub-queries written, so every complete output parses as a DAG.
    """
    if not 1 <= max_sub_queries <= 99:
        raise ValueError(f"max_sub_queries must be in 1..99, got {max_sub_queries}")
    rules = [
        'root ::= "<q>" text1 "</q>" rest1',
        "plain ::= [^<>\\n#]",
        "free ::= [^<>\\n#0-9]",
        'sep ::= "," " "*',
    ]
    for k in range(1, max_sub_queries + 1):
        more = f' | "<q>" text{k + 1} "</q>" rest{k + 1}' if k < max_sub_queries else ""
        rules.append(f"rest{k} ::= dep{k}{more}")
        if k == 1:
            rules.append("text1 ::= plain+")
        else:
            targets = " | ".join(f'"{i}"' for i in range(1, k))
            rules += [
                f'ref{k} ::= ("#" ({targets}))+',
                f"text{k} ::= (plain | ref{k} free)+ ref{k}? | ref{k}",
            ]
        edges = [f'" "* "{i}->{j}" " "*' for j in range(2, k + 1) for i in range(1, j)]
        if edges:
            rules.append(f"edge{k} ::= " + " | ".join(f"({e})" for e in edges))
            rules.append(f'dep{k} ::= "<dep>" (edge{k} (sep edge{k})*)? " "* "</dep>"')
        else:
            rules.append(f'dep{k} ::= "<dep>" " "* "</dep>"')
    return "\n".join(rules) + "\n"
