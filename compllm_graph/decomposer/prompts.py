"""The prompts the graph sends a decomposer: few-shot for an untrained model, and the adapters' own.

There are three decomposer prompts in all; two live here because the graph uses them:

- `DECOMPOSER_PROMPT`: few-shot instructions in the tag format the graph parses
  (`<q>…</q>`, `<dep>i->j</dep>`), the system message for a model with no decomposer adapter.
- `DECOMPOSER_SYSTEM_PROMPT`: the short system message the SFT adapters were trained with (and
  that their `training.json` records); sent unchanged with a shipped or trained adapter.

The third, `compllm_graph.decomposer.generation.FEW_SHOT_PROMPT`, is in the paper's
numbered-list format ("Dependency Graph: ..."); only the decomposer evaluation uses it, as the
few-shot baseline (`compllm eval decomposition --few-shot` and the "few-shot" rows of its table).
The graph never sends it: its replies are not in the tag format.
"""

from __future__ import annotations

DECOMPOSER_PROMPT = """\
Break the user's question into the simple sub-questions needed to answer it. Write each \
sub-question inside <q></q> tags, in the order they must be answered. Where a sub-question needs \
the answer of an earlier one, write #k for that answer (k counts from 1). Then list the \
dependencies as <dep>i->j</dep> (sub-question j needs the answer of i), or <dep></dep> if there \
are none. A question that is already simple stays one sub-question.

Question: Who is the spouse of the director of Titanic?
<q>Who directed Titanic?</q><q>Who is the spouse of #1?</q><dep>1->2</dep>

Question: Which is heavier, a mole of carbon or a mole of iron, and what is the boiling point of \
water in Kelvin?
<q>What is the mass of a mole of carbon?</q><q>What is the mass of a mole of iron?</q>\
<q>Which is heavier: #1 or #2?</q><q>What is the boiling point of water in Kelvin?</q>\
<dep>1->3, 2->3</dep>"""
"""Few-shot instructions in the tag format `parse_decomposition` reads, for a model with no
decomposer adapter (the graph's default `decomposer_prompt`)."""

DECOMPOSER_SYSTEM_PROMPT = (
    "Decompose the question into sub-questions <q>...</q>; #k is the answer of sub-question k. "
    "Then list dependencies <dep>i->j</dep>."
)
"""The system message the adapters were trained with; send it unchanged."""

__all__ = ["DECOMPOSER_PROMPT", "DECOMPOSER_SYSTEM_PROMPT"]
