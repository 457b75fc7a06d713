"""Types every stage shares: where a sub-query goes, the base model's name, reply text, schedulers.

This module sits below the nodes, the scheduler and the expert store, which all use it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

BASE = "base"
"""The base model's public name: in `DeviceLimits.placement`, `expert_policy` keys and printed
routes. Inside the graph (`Route.expert`, `SubAnswer["expert"]`) the base model is `None`;
`display_name` converts."""

Scheduler = Literal["eager", "waves"]
"""How the execute node runs the query graph (see `compllm_graph.scheduling`)."""


def display_name(expert: str | None) -> str:
    """The public name of who answers: the expert's name, or `BASE` for `None`."""
    return BASE if expert is None else expert


@dataclass(frozen=True)
class Route:
    """Where one sub-query goes.

    Attributes:
        expert: The chosen expert's name, or None for the base model (no expert scored above its
            threshold).
        score: Cosine similarity of the sub-query to the chosen expert's nearest centroid.
        candidates: The best experts with their scores, best first.
        fallback_reason: Why the base model answers instead of an expert: set by the route
            node when the router raised, and by execution when the expert failed.
        on_ancestors: True when the sub-query's own text went to the base model and this route
            came from its ancestors' texts followed by its own (see `nodes.route`).
        reason: Why a router that weighs measured gains (an `ExpertRouter` over a calibrated
            store) chose this route: the gain behind the expert, or why the base model answers
            though an expert was similar enough. A choice, not a failure (that is
            `fallback_reason`); None when no such rule applied.
    """

    expert: str | None
    score: float = 0.0
    candidates: list[tuple[str, float]] = field(default_factory=list)
    fallback_reason: str | None = None
    on_ancestors: bool = False
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data for graph state and JSON."""
        return {
            "expert": self.expert,
            "score": self.score,
            "candidates": [[name, score] for name, score in self.candidates],
            "fallback_reason": self.fallback_reason,
            "on_ancestors": self.on_ancestors,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Route:
        """The route `to_dict` wrote."""
        return cls(
            data["expert"],
            float(data["score"]),
            [(str(n), float(s)) for n, s in data["candidates"]],
            data.get("fallback_reason"),
            bool(data.get("on_ancestors", False)),
            data.get("reason"),
        )


Router = Callable[[list[str]], Sequence[Route]]
"""An `ExpertRouter`, or any callable mapping sub-query texts to one `Route` each."""


def clean_text(text: str) -> str:
    """`text` with each lone surrogate replaced by U+FFFD, the replacement character.

    Python carries bytes it could not decode as lone surrogates (`sys.argv` holds `"\\udcff"`
    for the byte 0xFF) and JSON may hold them (`"\\ud800"`); tokenizers and UTF-8 encoders
    reject such text (MiniLM's raises `TypeError: TextEncodeInput must be ...`). Surrogate
    pairs become the character they encode and every other character is kept, so the text
    stays answerable.
    """
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


_REASONING = re.compile(r"<think>.*?(?:</think>|\Z)", re.DOTALL | re.IGNORECASE)
_TEXT_BLOCKS = ("text", None)


def message_text(message: object) -> str:
    """The answer text of a chat model's reply: string content, or the text parts of a list.

    Reasoning is not an answer: `<think>…</think>` spans (and a `<think>` that was never
    closed, when the model ran out of tokens thinking) and content blocks other than text
    (reasoning, tool use) are left out, so a reply that holds only those has no text. Lone
    surrogates (a remote server's JSON may hold them) are replaced (`clean_text`), so the
    text can go into the next prompt.
    """
    content = getattr(message, "content", message)
    if isinstance(content, list):
        content = "".join(
            p if isinstance(p, str) else str(p.get("text", ""))
            for p in content
            if isinstance(p, str) or p.get("type") in _TEXT_BLOCKS
        )
    return clean_text(_REASONING.sub("", str(content))).strip()


def empty_reply(message: object) -> str:
    """Why a reply with no answer text (`message_text` empty) has none, for a failure message."""
    if getattr(message, "tool_calls", None):
        return "replied only with a tool call"
    if str(getattr(message, "content", message) or "").strip():
        return "replied only with reasoning, no answer"
    return "replied with no text"


QUOTE_CHARS = 300
"""Most characters of model output quoted in a `fallback_reason`."""


def quote(text: str, limit: int = QUOTE_CHARS) -> str:
    """`repr(text)`, shortened to about `limit` characters with the length said."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}… ({len(text):,} characters in all)"


__all__ = [
    "BASE",
    "Route",
    "Router",
    "Scheduler",
    "clean_text",
    "display_name",
    "empty_reply",
    "message_text",
    "quote",
]
