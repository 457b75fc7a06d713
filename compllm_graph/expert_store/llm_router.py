"""A router that asks a chat model which domain a sub-query belongs to.

One model call per sub-query ("Which of: chemistry, biology, mathematics, medicine, none?")
instead of an embedding and a nearest-neighbour search. Measured against the embedding router
on questions no centroid has seen (`compllm eval routing-transfer --llm-router ALIAS`); it is an
option, not the default: see docs/results/2026-12-06-routing.md for what it costs and gets.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from langchain_core.messages import HumanMessage, SystemMessage

from compllm_graph.types import Route, message_text

if TYPE_CHECKING:
    from langchain_core.runnables import Runnable

NONE = "none"
"""The word a model answers for a sub-query of no expert's domain."""
SYSTEM_PROMPT = "You sort questions by their subject. Answer with one word."
PREFIX = 4
"""Letters of an expert's name that count as naming it ("math", "medical" and "chem" do)."""


class DomainNamingRouter:
    """Routes each sub-query to the expert whose name a chat model gives for it, else to base.

    The model is asked, for each text, which of the experts' names (or `none`) the question is
    about; the first name its reply mentions wins (a name counts from its first `PREFIX`
    letters, when those tell the experts apart). A reply naming none goes to the base model.
    Callable like `ExpertRouter`, so `create_compllm_graph(router=...)` takes it.

    Args:
        chat: The chat model that names the domain (greedy and a few tokens suffice).
        experts: The experts' names, which are the domains offered.
        descriptions: Expert -> a few words said after its name in the prompt (optional).

    Raises:
        ValueError: no experts, or an expert called `none`.
    """

    def __init__(
        self,
        chat: Runnable,
        experts: Sequence[str],
        descriptions: Mapping[str, str] | None = None,
    ) -> None:
        if not experts:
            raise ValueError("a DomainNamingRouter needs at least one expert")
        if NONE in experts:
            raise ValueError(f"{NONE!r} is the answer for no expert; rename that expert")
        self.chat = chat
        self.experts = list(experts)
        self.descriptions = dict(descriptions or {})
        self._patterns = _patterns(self.experts)

    def prompt(self, text: str) -> list[SystemMessage | HumanMessage]:
        """The messages that ask for `text`'s domain."""
        offered = ", ".join(
            f"{name} ({self.descriptions[name]})" if name in self.descriptions else name
            for name in self.experts
        )
        return [
            SystemMessage(SYSTEM_PROMPT),
            HumanMessage(
                f"Question: {text}\n\nWhich of: {offered}, {NONE}? Answer with one of these words."
            ),
        ]

    def named(self, reply: str) -> str | None:
        """The expert `reply` names first, or None."""
        found = [(m.start(), name) for name, p in self._patterns.items() if (m := p.search(reply))]
        return min(found)[1] if found else None

    def __call__(self, texts: list[str]) -> list[Route]:
        """Same as `route`."""
        return self.route(texts)

    def route(self, texts: Sequence[str]) -> list[Route]:
        """Route each text by one model call (batched where the chat model batches)."""
        if not texts:
            return []
        replies = self.chat.batch([self.prompt(text) for text in texts])
        routes = []
        for reply in replies:
            said = message_text(reply)
            name = self.named(said)
            routes.append(
                Route(
                    expert=name,
                    score=1.0 if name else 0.0,
                    candidates=[(name, 1.0)] if name else [],
                    reason=f"the model named {name or 'no expert'} ({said[:40]!r})",
                )
            )
        return routes


def _patterns(experts: Sequence[str]) -> dict[str, re.Pattern[str]]:
    """A pattern per expert: its first `PREFIX` letters when they tell the experts apart, else
    its whole name; at a word's start, any case."""
    stems = [name[:PREFIX] for name in experts]
    distinct = len(set(stems)) == len(stems)
    return {
        name: re.compile(rf"\b{re.escape(stem if distinct else name)}", re.IGNORECASE)
        for name, stem in zip(experts, stems)
    }


__all__ = ["NONE", "DomainNamingRouter"]
