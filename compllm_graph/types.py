"""Types every stage shares: where a sub-query goes, the base model's name, reply text, schedulers.

This module sits below the nodes, the scheduler and the expert store, which all use it.
"""

from __future__ import annotations

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
        fallback_reason: Set by execution when the expert failed and base answered instead.
        on_ancestors: True when the sub-query's own text went to the base model and this route
            came from its ancestors' texts followed by its own (see `nodes.route`).
    """

    expert: str | None
    score: float = 0.0
    candidates: list[tuple[str, float]] = field(default_factory=list)
    fallback_reason: str | None = None
    on_ancestors: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain data for graph state and JSON."""
        return {
            "expert": self.expert,
            "score": self.score,
            "candidates": [[name, score] for name, score in self.candidates],
            "fallback_reason": self.fallback_reason,
            "on_ancestors": self.on_ancestors,
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
        )


Router = Callable[[list[str]], Sequence[Route]]
"""An `ExpertRouter`, or any callable mapping sub-query texts to one `Route` each."""


def message_text(message: object) -> str:
    """The text of a chat model's reply (string content, or the text parts of a list)."""
    content = getattr(message, "content", message)
    if isinstance(content, list):
        content = "".join(p if isinstance(p, str) else str(p.get("text", "")) for p in content)
    return str(content).strip()


QUOTE_CHARS = 300
"""Most characters of model output quoted in a `fallback_reason`."""


def quote(text: str, limit: int = QUOTE_CHARS) -> str:
    """`repr(text)`, shortened to about `limit` characters with the length said."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}… ({len(text):,} characters in all)"


__all__ = ["BASE", "Route", "Router", "Scheduler", "display_name", "message_text", "quote"]
