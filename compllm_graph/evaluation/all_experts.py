"""`all-experts`: every sub-query asked of every expert, their replies combined into one.

The paper's Table 7 sets its router against sending each sub-query to all the experts. Here the
pipeline routes every sub-query to one combined expert, `AllExperts`, which asks every expert
of the store at once and returns one reply, by this rule (`combine`):

1. Each reply is read for the answer it commits to: its closing "The answer is X", else its
   short answer (`nodes.execute.stated_answer`), normalised by the scorer's rules
   (`scoring.answer_key`): an option letter when the sub-query lists its options (an option's
   text counts as its letter), else a yes/no/maybe label, else a number.
2. Majority: when one normalised answer is given by more experts than any other, the combined
   reply is the reply, whole, of the first of those experts (in the store's order). A reply
   that normalises to nothing ("I do not know") has no vote.
3. Otherwise (a tie, or no reply that normalises), a judge decides: the base model reads the
   sub-query and every expert's reply and is asked for the one answer it judges right
   (`JUDGE_PROMPT`); its reply is the combined reply (`judged`). This makes
   the row commit to one answer per sub-query, as the paper's aggregation does; without it the
   labelled replies reached the final answer whole when no aggregator call is made (independent
   parts under aggregation `auto`), and the lenient numeric scorer counted any number among
   them. Without a judge, or when the judge raises or replies nothing (recorded as
   `judge_error`), the combined reply is every reply labelled with its expert's name
   ("chemistry: ..."), one paragraph each (`labelled`).

An expert that raises or replies with no text has no vote and is recorded as failed; when every
expert fails, the combined expert raises `AllExpertsFailed`, and the execute node retries it and
then falls back to the base model, as for any expert. Every call is logged (`AllExperts.asked`),
so `all_experts_answerer` records each expert's own reply in its sub-answer's outputs line
(`expert_answers`, `expert_errors` when one failed, `combined`: the rule that gave the reply,
and `judge_error` when the judge failed), where attribution reads them.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, convert_to_messages
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import Runnable, RunnableConfig

from compllm_graph._sync import run_sync
from compllm_graph.errors import CompLLMError
from compllm_graph.evaluation.answers import ALL_EXPERTS, Answer, Answerer, graph_reply
from compllm_graph.evaluation.scoring import answer_key
from compllm_graph.nodes.execute import CONTEXT_TEMPLATE, stated_answer
from compllm_graph.types import empty_reply, message_text

Rule = Literal["majority", "judged", "labelled"]
"""How a combined reply was made: one normalised answer led, the judge chose, or every reply is
labelled."""

JUDGE_PROMPT = (
    "Several experts were asked the question below; their replies disagree, or none commits "
    "to an answer.\n\n{prompt}\n\nTheir replies:\n\n{replies}\n\n"
    'Which answer is right? Reason briefly, then end with "The answer is X", where X is that '
    "answer itself (an option's letter, a number, yes or no), not who gave it."
)
"""What the judge is asked on a tie: the sub-query as the experts got it (with its parents'
answers, if any) and every reply, one bullet each. The replies are not named: a small judge
asked about named replies answered with a name ("The answer is biology")."""

_QUESTION_HEAD = CONTEXT_TEMPLATE.split("{context}")[1].split("{question}")[0]
"""What comes before a sub-query's own question when its parents' answers precede it."""
# The options as `datasets.items.lettered` lists them: "Options: (A) Neon; (B) Oxygen."
_OPTIONS_HEAD = "Options:"
_OPTION = re.compile(r"\(([A-J])\)\s*(.+?)(?=;\s*\([A-J]\)|\.?\s*$)", re.DOTALL)


class AllExpertsFailed(CompLLMError, RuntimeError):
    """Every expert failed on one sub-query, so there is nothing to combine."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        reasons = "; ".join(f"{name}: {why}" for name, why in errors.items())
        super().__init__(f"every expert failed ({reasons})")


@dataclass(frozen=True)
class Combination:
    """The combined reply to one sub-query, and what each expert said.

    Attributes:
        text: The reply the pipeline gets.
        rule: `majority`, `judged` or `labelled` (see the module docstring).
        answers: Each expert's own reply, in the store's order; failed experts are left out.
        keys: Each reply's normalised answer (`scoring.answer_key`); None where none was read.
        errors: Why each failed expert gave no reply.
        judge_error: Why the judge gave no reply, on a tie it was asked to break.
    """

    text: str
    rule: Rule
    answers: dict[str, str]
    keys: dict[str, str | None]
    errors: dict[str, str] = field(default_factory=dict)
    judge_error: str | None = None

    def metadata(self) -> dict[str, Any]:
        """The fields this adds to its sub-answer's outputs line."""
        fields: dict[str, Any] = {"combined": self.rule, "expert_answers": dict(self.answers)}
        if self.errors:
            fields["expert_errors"] = dict(self.errors)
        if self.judge_error:
            fields["judge_error"] = self.judge_error
        return fields

    @property
    def tied(self) -> bool:
        """Whether no answer led: the replies are labelled, for a judge to break the tie."""
        return self.rule == "labelled"

    def judged(self, reply: str) -> Combination:
        """This tie, broken by the judge's `reply`."""
        return replace(self, text=reply, rule="judged")

    def unjudged(self, why: str) -> Combination:
        """This tie, left labelled because the judge failed (`why`)."""
        return replace(self, judge_error=why)


def combine(
    answers: Mapping[str, str], question: str, errors: Mapping[str, str] | None = None
) -> Combination:
    """The experts' replies to `question` as one reply, by the module docstring's rule.

    Args:
        answers: Each expert's reply, by name, in the order a tie lists them.
        question: The sub-query they answered; its listed options, if any, turn an option's
            text into its letter.
        errors: Why the experts left out of `answers` failed, to record.

    Raises:
        ValueError: `answers` is empty.
    """
    if not answers:
        raise ValueError("nothing to combine: no expert replied")
    choices = options_in(question)
    keys = {name: answer_key(stated_answer(text), choices) for name, text in answers.items()}
    ranked = Counter(key for key in keys.values() if key is not None).most_common(2)
    failed = dict(errors or {})
    if ranked and (len(ranked) == 1 or ranked[0][1] > ranked[1][1]):
        first = next(name for name, key in keys.items() if key == ranked[0][0])
        return Combination(answers[first], "majority", dict(answers), keys, failed)
    labelled = "\n\n".join(f"{name}: {reply}" for name, reply in answers.items())
    return Combination(labelled, "labelled", dict(answers), keys, failed)


def options_in(question: str) -> list[str] | None:
    """The options `question` lists last as "Options: (A) ...; (B) ...", or None."""
    _, head, listing = question.rpartition(_OPTIONS_HEAD)
    found = _OPTION.findall(listing.strip()) if head else []
    if not found or [letter for letter, _ in found] != list("ABCDEFGHIJ"[: len(found)]):
        return None
    return [text.strip() for _, text in found]


def own_question(prompt: str) -> str:
    """A sub-query's own question: its prompt after the parents' answers, if it has them."""
    _, head, question = prompt.rpartition(_QUESTION_HEAD)
    return question if head else prompt


@dataclass(frozen=True)
class Asked:
    """One call of the combined expert: its prompt and what it replied."""

    prompt: str
    combination: Combination

    def answers(self, question: str) -> bool:
        """Whether this call asked `question` (a sub-answer's question)."""
        return self.prompt == question or self.prompt.endswith(_QUESTION_HEAD + question)


class AllExperts(Runnable[LanguageModelInput, BaseMessage]):
    """A chat model that asks every expert at once and replies with their combined answer.

    The experts are asked concurrently (`ainvoke`, which the execute node uses; `invoke` runs
    it to completion), each with its own system prompt and adapter as the store serves it;
    `combine` makes the reply. Every call is appended to `asked`.

    Args:
        experts: The experts' chat models by name (`ExpertStore.chat_models`).
        judge: The chat model that breaks a tie (`JUDGE_PROMPT`); None leaves ties labelled.

    Raises:
        ValueError: no expert.
    """

    def __init__(self, experts: Mapping[str, Runnable], judge: Runnable | None = None) -> None:
        if not experts:
            raise ValueError(f"{ALL_EXPERTS} needs at least one expert; the store has none")
        self.experts = dict(experts)
        self.judge = judge
        self.asked: list[Asked] = []
        self.name = ALL_EXPERTS

    def invoke(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> BaseMessage:
        """The combined reply (see `ainvoke`)."""
        return run_sync(self.ainvoke(input, config, **kwargs))

    async def ainvoke(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> BaseMessage:
        """Ask every expert `input` at once and combine their replies.

        Raises:
            AllExpertsFailed: every expert raised or replied with no text.
        """
        messages = _as_messages(input)
        names = list(self.experts)
        results = await asyncio.gather(
            *(self.experts[name].ainvoke(messages, config, **kwargs) for name in names),
            return_exceptions=True,
        )
        answers: dict[str, str] = {}
        errors: dict[str, str] = {}
        for name, result in zip(names, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):  # a cancellation or an interrupt
                    raise result
                errors[name] = f"{type(result).__name__}: {result}"
            elif text := message_text(result):
                answers[name] = text
            else:
                errors[name] = empty_reply(result)
        if not answers:
            raise AllExpertsFailed(errors)
        prompt = message_text(messages[-1]) if messages else ""
        combination = combine(answers, own_question(prompt), errors)
        if combination.tied and self.judge is not None:
            combination = await _judged(self.judge, prompt, combination, config, **kwargs)
        self.asked.append(Asked(prompt, combination))
        return AIMessage(combination.text)


async def _judged(
    judge: Runnable, prompt: str, tie: Combination, config: RunnableConfig | None, **kwargs: Any
) -> Combination:
    """`tie` broken by `judge`; left labelled, with the reason, if the judge fails."""
    replies = "\n\n".join(f"- {reply}" for reply in tie.answers.values())
    asking = JUDGE_PROMPT.format(prompt=prompt, replies=replies)
    try:
        reply = await judge.ainvoke([HumanMessage(asking)], config, **kwargs)
    except Exception as err:  # the labelled replies still answer; the log says why
        return tie.unjudged(f"{type(err).__name__}: {err}")
    text = message_text(reply)
    return tie.judged(text) if text else tie.unjudged(empty_reply(reply))


def _as_messages(request: LanguageModelInput) -> list[BaseMessage]:
    if isinstance(request, str):
        return [HumanMessage(request)]
    if isinstance(request, PromptValue):
        return request.to_messages()
    return convert_to_messages(request)


def all_experts_answerer(
    graph_for: Callable[[AllExperts], Runnable],
    experts: Mapping[str, Runnable],
    judge: Runnable | None = None,
) -> Answerer:
    """`all-experts`: the pipeline with `AllExperts` as its one expert.

    Args:
        graph_for: The compiled pipeline that routes every sub-query to the given combined
            expert (named `ALL_EXPERTS`).
        experts: The store's experts' chat models.
        judge: The chat model that breaks ties (`AllExperts`); None leaves them labelled.

    Each record gets a combined expert of its own, whose log then holds that record's calls
    only (several records may be in flight), and each of its sub-answers that the combined
    expert gave gets the `Combination.metadata` of its call.

    Raises:
        ValueError: no expert.
    """
    if not experts:
        raise ValueError(f"{ALL_EXPERTS} needs at least one expert; the store has none")

    def answer(record: Mapping[str, Any]) -> Answer:
        combined = AllExperts(experts, judge)
        reply = graph_reply(graph_for(combined), record)
        reply["sub_answers"] = [_with_experts(s, combined.asked) for s in reply["sub_answers"]]
        return reply

    return answer


def _with_experts(sub: dict[str, Any], asked: Sequence[Asked]) -> dict[str, Any]:
    if sub["expert"] != ALL_EXPERTS:  # the combined expert failed and the base model answered
        return sub
    calls = [call for call in asked if call.answers(sub["question"])]
    return {**sub, **calls[-1].combination.metadata()} if calls else sub


__all__ = [
    "JUDGE_PROMPT",
    "AllExperts",
    "AllExpertsFailed",
    "Asked",
    "Combination",
    "all_experts_answerer",
    "combine",
    "options_in",
    "own_question",
]
