"""Early stop for a decomposer's reply: can the text written so far still become a decomposition?

The decompose node reads the decomposer's reply as it streams and stops it as soon as
`check_prefix` says the reply can no longer parse (`parse_decomposition`) or can only repeat
itself, instead of letting it run to its token limit and then answering the question whole.
The check follows what the parser accepts, with the tag format held to its shape once begun:

- before the first tag or numbered line: a preamble of at most `max_chars` characters;
- tags (from the first `<`): only `<q>`, `</q>`, `<dep>`, `</dep>` (and the parser's `<\\q>`,
  `<\\dep>`, in any case), only whitespace between elements, at most `max_sub_queries`
  sub-queries, none empty, longer than `max_chars` or a repeat of an earlier one, and
  dependency items that read as `i->j` chains between written sub-queries. A dependency item
  that repeats an earlier one ends the reply before it (the list is looping; what it said
  before stands), as does any text after a `</dep>` other than another `<dep>`;
- a numbered list `1. …` (the paper's format): lines of at most `max_chars`, numbered 1, 2, 3
  in order, no repeat, at most `max_sub_queries`; the reply ends after its `Dependency Graph:`
  line, or where a `Question:` line begins another example.

A grammar-constrained decomposer (`grammar.py`) writes only the tag format, but the grammar
lets a sub-query run on (llama.cpp's GBNF sets no length), a sub-query repeat, and a dependency
list repeat its edges; all three end here.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Literal

from compllm_graph.query_graph import DEFAULT_MAX_SUB_QUERIES, MAX_SUB_QUERY_CHARS

Status = Literal["open", "complete", "invalid"]

GAP_CHARS = 32
"""Most whitespace between two tags, or around a sub-query's text."""
DEP_ITEM_CHARS = 16
"""Most characters of one unfinished dependency item, per sub-query written."""

_PIECE = re.compile(r"<[^<>]*>?|[^<]+")
_NUMBERED_START = re.compile(r"^[ \t]*(?:Q[ \t]*)?\d+[ \t]*[.):]", re.IGNORECASE | re.MULTILINE)
_NUMBERED = re.compile(r"^\s*(?:Q\s*)?(\d+)\s*[.):](?:\s+(.*?))?\s*$", re.IGNORECASE)
_DEP_GRAPH = re.compile(r"dependency\s+graph\s*:?", re.IGNORECASE)
_NEXT_QUESTION = re.compile(r"^\s*question\s*:", re.IGNORECASE)
_ITEM_SEP = re.compile(r"[,;\n]")
_ARROW = re.compile(r"\s*(?:-\s*>|→|=>)\s*")
_NO_DEPS = {"", "none", "n/a", "no dependencies", "-"}


@dataclass(frozen=True)
class PrefixCheck:
    """What a reply written so far can still become.

    Attributes:
        status: "open" (it may still become a decomposition), "complete" (`text[:cut]` holds
            the decomposition and whatever follows adds nothing), or "invalid" (no
            continuation parses, or it only repeats itself).
        reason: Why it is invalid.
        cut: For "complete", where the decomposition ends.
    """

    status: Status
    reason: str | None = None
    cut: int | None = None

    @property
    def stop(self) -> bool:
        """Whether generating more is useless."""
        return self.status != "open"


OPEN = PrefixCheck("open")


def check_prefix(
    text: str,
    max_sub_queries: int = DEFAULT_MAX_SUB_QUERIES,
    max_chars: int = MAX_SUB_QUERY_CHARS,
) -> PrefixCheck:
    """Whether the reply `text`, written so far, can still become a valid decomposition.

    Args:
        text: The decomposer's reply so far (reasoning spans already removed).
        max_sub_queries: The parser's limit on sub-queries.
        max_chars: The parser's limit on one sub-query (`sub_query_char_limit(query)`); the
            preamble and each line of a numbered list get the same bound.

    Returns:
        Keep generating ("open"), stop and parse `text[:cut]` ("complete"), or stop and fall
        back ("invalid", with the reason).

    Example:
        >>> check_prefix("<q>Who directed Titanic?</q><q>Who directed")
        PrefixCheck(status='open', reason=None, cut=None)
        >>> check_prefix("<q>Who directed Titanic?</q><q>Who directed Titanic?</q>").reason
        'sub-query 2 repeats sub-query 1'
        >>> check_prefix("<q>a</q><dep></dep> Hope this helps!")
        PrefixCheck(status='complete', reason=None, cut=19)
    """
    tag = text.find("<")
    listed = _NUMBERED_START.search(text)
    starts = [p for p in (tag, listed.start() if listed else -1) if p >= 0]
    start = min(starts, default=len(text))
    if start > max_chars:
        return _invalid(f"no sub-query began within {max_chars} characters")
    if start == len(text):
        return OPEN
    if start == tag:
        return _TagScan(text, max_sub_queries, max_chars).run(start)
    return _check_list(text, start, max_sub_queries, max_chars)


def _invalid(reason: str) -> PrefixCheck:
    return PrefixCheck("invalid", reason)


def _complete(cut: int) -> PrefixCheck:
    return PrefixCheck("complete", cut=cut)


def _normal(text: str) -> str:
    """Text as compared for repeats: lower case, single spaces, no end punctuation."""
    return " ".join(text.lower().split()).rstrip(" ?.!")


class _TagScan:
    """One left-to-right pass over the tag format, piece by piece (a tag, or text)."""

    def __init__(self, text: str, max_sub_queries: int, max_chars: int) -> None:
        self.text = text
        self.max_sub_queries = max_sub_queries
        self.max_chars = max_chars
        self.state = "between"  # or "q", "dep", "after" (a </dep> was written)
        self.start = 0  # where the open element's content starts
        self.end = 0  # where the current piece ends
        self.dep_end = 0  # after the last </dep>
        self.content_end = len(text)  # before an unfinished tag at the end
        self.questions: list[str] = []
        self.items: list[str] = []  # dependency items read so far, without spaces

    def run(self, start: int) -> PrefixCheck:
        for match in _PIECE.finditer(self.text, start):
            piece, self.end = match.group(0), match.end()
            if piece.startswith("<"):
                verdict = self._tag(piece, match.start())
            else:
                verdict = self._text(piece)
            if verdict is not None:
                return verdict
        if self.state == "dep":
            # Up to an unfinished closing tag at the end, if there is one.
            return self._dependencies(self.content_end, final=False) or OPEN
        return OPEN

    def _tag(self, tag: str, at: int) -> PrefixCheck | None:
        name = tag.lower().replace("\\", "/")
        if not tag.endswith(">"):
            return self._unfinished(tag, at)
        if self.state == "after":
            return self._open(name) if name == "<dep>" else _complete(self.dep_end)
        if self.state == "q":
            if name not in ("</q>", "<q>", "<dep>"):
                return None  # a `<` inside a sub-query is text to the parser
            # The parser also reads a <q> or <dep> right after a sub-query as closing it.
            problem = self._close_q(at)
            return problem if problem is not None or name == "</q>" else self._open(name)
        if self.state == "dep":
            return self._close_dep(at) if name == "</dep>" else _invalid(f"{tag} inside <dep>")
        if name in ("<q>", "<dep>"):
            return self._open(name)
        if name in ("</q>", "</dep>"):
            return _invalid(f"{tag} closes no element")
        return _invalid(f"{tag!r} is not a <q> or <dep> tag")

    def _unfinished(self, tag: str, at: int) -> PrefixCheck | None:
        """A `<` not closed by `>`: the end of the reply, or (in a sub-query) text."""
        if self.state == "q":
            return None
        expected = {"between": ("<q>", "<dep>"), "dep": ("</dep>", "<\\dep>")}
        fits = any(t.startswith(tag.lower()) for t in expected.get(self.state, ("<dep>",)))
        if fits and self.end == len(self.text):
            self.content_end = at
            return None
        if self.state == "after":
            return _complete(self.dep_end)
        return _invalid(f"{tag!r} is not a <q> or <dep> tag")

    def _open(self, name: str) -> PrefixCheck | None:
        if name == "<dep>" and not self.questions:
            return _invalid("<dep> before any <q>")
        if name == "<q>" and len(self.questions) == self.max_sub_queries:
            return _invalid(f"more than {self.max_sub_queries} sub-queries")
        self.state, self.start = name[1:-1], self.end
        return None

    def _close_q(self, at: int) -> PrefixCheck | None:
        number, body = len(self.questions) + 1, _normal(self.text[self.start : at])
        if not body:
            return _invalid(f"sub-query {number} is empty")
        if body in self.questions:
            return _invalid(
                f"sub-query {number} repeats sub-query {self.questions.index(body) + 1}"
            )
        self.questions.append(body)
        self.state = "between"
        return None

    def _close_dep(self, at: int) -> PrefixCheck | None:
        verdict = self._dependencies(at, final=True)
        if verdict is None:
            self.state, self.dep_end = "after", self.end
        return verdict

    def _text(self, piece: str) -> PrefixCheck | None:
        if self.state in ("between", "after"):
            if not piece.strip() and len(piece) <= GAP_CHARS:
                return None
            if self.state == "after":
                return _complete(self.dep_end)
            if piece.strip():
                return _invalid(f"text outside the tags: {piece.strip()[:40]!r}")
            return _invalid(f"{len(piece)} blank characters between tags")
        if self.state == "q":
            body = self.text[self.start : self.end]
            if len(body.strip()) > self.max_chars or len(body) > self.max_chars + GAP_CHARS:
                number = len(self.questions) + 1
                return _invalid(
                    f"sub-query {number} is over {self.max_chars} characters long: "
                    "the decomposer ran on inside it"
                )
        return None  # a <dep>'s items are read when it closes, or at the end of the reply

    def _dependencies(self, end: int, final: bool) -> PrefixCheck | None:
        """Read the open <dep>'s items up to `end`: all of them if it closes there, else all
        but the last, which may still grow."""
        count = len(self.questions)
        items, offset = [], self.start
        for raw in _ITEM_SEP.split(self.text[self.start : end]):
            items.append((offset, raw))
            offset += len(raw) + 1
        *done, (_, last) = items
        for offset, raw in items if final else done:
            item = " ".join(raw.split()).strip("\"'`.").lower()
            if not item:
                continue
            problem = _dependency_problem(item, count)
            if problem is not None:
                return _invalid(problem)
            key = item.replace(" ", "")
            if key in self.items:
                return _complete(offset)  # a repeat: the list has said all it will
            self.items.append(key)
        bound = DEP_ITEM_CHARS * max(count, 1)
        if not final and len(last) > bound:
            return _invalid(f"a dependency item ran past {bound} characters")
        return None


def _dependency_problem(item: str, count: int) -> str | None:
    """Why a dependency item cannot parse (as `parse_decomposition` reads it), or None."""
    if item in _NO_DEPS:
        return None
    nodes = []
    for part in _ARROW.split(item):
        numbers = re.findall(r"\d+", part)
        if len(numbers) != 1:
            return f"cannot read the dependency {item!r}"
        nodes.append(int(numbers[0]))
    outside = [n for n in nodes if not 1 <= n <= count]
    if outside:
        return f"dependency {item!r} names sub-query {outside[0]}, but only {count} exist"
    if any(a == b for a, b in itertools.pairwise(nodes)):
        return f"dependency {item!r} makes a sub-query depend on itself"
    return None


def _check_list(text: str, start: int, max_sub_queries: int, max_chars: int) -> PrefixCheck:
    """Check a numbered list from its first numbered line at `start`."""
    seen: list[str] = []
    awaiting_deps = False
    offset = start
    lines = text[start:].split("\n")
    for index, line in enumerate(lines):
        finished = index < len(lines) - 1
        end = offset + len(line)
        if len(line) > max_chars:
            return _invalid(f"a line of the list ran past {max_chars} characters")
        if seen and _NEXT_QUESTION.match(line):
            return _complete(offset)
        graph = _DEP_GRAPH.search(line)
        if graph or awaiting_deps:
            rest = line[graph.end() :] if graph else line
            if finished and rest.strip(" \t\"'"):
                return _complete(end)
            awaiting_deps = True
        elif finished and (numbered := _NUMBERED.match(line)):
            problem = _list_item(numbered, seen, max_sub_queries)
            if problem is not None:
                return _invalid(problem)
        offset = end + 1
    return OPEN


def _list_item(numbered: re.Match[str], seen: list[str], max_sub_queries: int) -> str | None:
    """Add a numbered line to `seen`, or say why the list cannot parse."""
    number, item = int(numbered.group(1)), _normal(numbered.group(2) or "")
    if number != len(seen) + 1:
        return f"item {number} follows item {len(seen)}: the list must count 1, 2, 3"
    if not item:
        return f"sub-query {number} is empty"
    if item in seen:
        return f"sub-query {number} repeats sub-query {seen.index(item) + 1}"
    if number > max_sub_queries:
        return f"more than {max_sub_queries} sub-queries"
    seen.append(item)
    return None


__all__ = ["DEP_ITEM_CHARS", "GAP_CHARS", "OPEN", "PrefixCheck", "check_prefix"]
