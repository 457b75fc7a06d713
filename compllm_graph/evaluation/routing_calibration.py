"""Gain calibration: every expert and the base model on the calibration split, for routing by
measured gain (`compllm experts calibrate`).

The questions come from `datasets.calibration` (sources that train nothing and that no benchmark
holds); replies are scored by the benchmarks' rules (`scoring.part_right`); the base model is
asked as the graph asks it (with the graph's system message: `defaults.BASE_SYSTEM_PROMPT` for
the default graph), the experts as the store builds them (`ExpertStore.chat_models`), so a gain
is what routing a part to the expert instead of the base model changes.
`expert_store.calibration` keeps the tallies and the rule the router reads.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from compllm_graph.datasets.calibration import CALIBRATION_SOURCES, calibration_split
from compllm_graph.datasets.items import Item, as_text
from compllm_graph.evaluation.scoring import part_right
from compllm_graph.expert_store.calibration import Calibration, GainRule, Question, measure
from compllm_graph.expert_store.records import StoreError, needs_runnable
from compllm_graph.expert_store.serving import expert_chat_models, with_system_prompt
from compllm_graph.types import BASE

if TYPE_CHECKING:
    from langchain_core.runnables import Runnable

    from compllm_graph.expert_store.store import ExpertStore
    from compllm_graph.models import InferenceModel

DEFAULT_ITEMS = 30
"""Calibration questions per domain by default (the split holds 15 for chemistry)."""


def calibration_questions(
    data_dir: Path, per_domain: int | None = DEFAULT_ITEMS, seed: int = 0
) -> dict[str, list[Question]]:
    """Domain -> up to `per_domain` calibration questions (`datasets.calibration`), as a
    model reads them (options lettered), with what `part_right` scores."""
    return {
        domain: [question_of(item) for item in items]
        for domain, items in calibration_split(data_dir, per_domain, seed).items()
    }


def question_of(item: Item) -> Question:
    """`item` as a calibration question."""
    gold = {"answer": item.answer, "choices": list(item.choices) if item.choices else None}
    return Question(as_text(item), gold)


def owners_of(
    store: ExpertStore, domains: Collection[str], given: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Expert -> the domain it serves: every expert named after a calibration domain serves
    it, then `given` (expert -> domain) adds or overrides.

    Raises:
        StoreError: `given` names an expert the store does not have or an unknown domain.
    """
    names = {e.name for e in store.experts()}
    owners = {name: name for name in names if name in domains}
    for expert, domain in (given or {}).items():
        if expert not in names:
            raise StoreError(f"no expert {expert!r} in {store.path}; experts: {sorted(names)}")
        if domain not in domains:
            raise StoreError(f"no calibration domain {domain!r}; domains: {sorted(domains)}")
        owners[expert] = domain
    return owners


def calibrate_store(
    store: ExpertStore,
    model: InferenceModel,
    questions: Mapping[str, list[Question]],
    *,
    max_new_tokens: int,
    base_prompt: str | None,
    owners: Mapping[str, str] | None = None,
    rule: GainRule | None = None,
    items: str = "",
    runnables: Mapping[str, Runnable] | None = None,
    chat_models: Mapping[str, Runnable] | None = None,
    progress: Callable[[str], None] | None = None,
) -> Calibration:
    """Measure every expert the store can build and the base model on `questions`.

    `program` and `runnable` experts are measured only when their Runnable is in `runnables`;
    the others are left uncalibrated (they keep routing by similarity). `chat_models` measures
    experts exactly as a graph is given them instead (the default graph's mathematics expert
    answering by program, `defaults.program_mathematics`), so that a gain is what the graph's
    routing changes.

    Args:
        store: The store whose experts are measured (nothing is written to it here).
        model: The loaded base model.
        questions: Domain -> its calibration questions (`calibration_questions`).
        max_new_tokens: Tokens per answer: the budget the graph will give a part.
        base_prompt: The base model's system message, as the graph gives it
            (`defaults.BASE_SYSTEM_PROMPT` for the default graph; None for none).
        owners: Expert -> the domain it serves (None: `owners_of` with none given).
        rule: The gain rule to store with the measurements.
        items: Where the questions came from, in words.
        runnables: Runnables of bound experts, as for `ExpertStore.chat_models`.
        chat_models: Expert -> the Runnable that answers for it, ready as a graph takes it
            (its system prompt in place: nothing is added); the store's other experts are
            built as without it.
        progress: Called with a line as each candidate finishes a domain.

    Raises:
        StoreError: no expert to measure, `chat_models` names an expert the store does not
            have, or an owner left out of the measurement.
    """
    given, ready = runnables or {}, dict(chat_models or {})
    unknown = sorted(set(ready) - {e.name for e in store.experts()})
    if unknown:
        raise StoreError(f"chat_models names experts {unknown} that {store.path} does not have")
    experts = [
        e
        for e in store.experts()
        if e.name not in ready and (not needs_runnable(e) or e.name in given)
    ]
    if not experts and not ready:
        raise StoreError(f"no expert in {store.path} can be calibrated here")
    built = expert_chat_models(experts, model, runnables=given, max_new_tokens=max_new_tokens)
    chats = {**built, **ready}
    answerers: dict[str, Runnable] = {
        BASE: with_system_prompt(model.chat_model(max_new_tokens=max_new_tokens), base_prompt),
        **chats,
    }
    owned = dict(owners_of(store, questions) if owners is None else owners)
    left_out = sorted(set(owned) - set(chats))
    if left_out:
        raise StoreError(f"owners {left_out} are not measured (give their Runnables)")
    return measure(
        answerers,
        questions,
        part_right,
        model=model.name,
        owners=owned,
        rule=rule,
        items=items,
        progress=progress,
    )


def describe_items(per_domain: int | None, seed: int) -> str:
    """The calibration questions' provenance, for `Calibration.items`."""
    cap = "all" if per_domain is None else f"up to {per_domain}"
    return f"calibration split (datasets.calibration), {cap} per domain, seed {seed}"


__all__ = [
    "CALIBRATION_SOURCES",
    "DEFAULT_ITEMS",
    "calibrate_store",
    "calibration_questions",
    "describe_items",
    "owners_of",
    "question_of",
]
