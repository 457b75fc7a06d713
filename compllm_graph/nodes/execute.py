"""Execute: answer every sub-query with its expert, parents before children, concurrently.

A child's prompt carries its parents' questions and answers (the paper's context passing), and
`#k` in its text is replaced by sub-query k's answer. An expert that raises, exceeds its timeout
or replies with no answer text (nothing, whitespace, only a tool call or only reasoning: see
`types.message_text`) is retried; after the last failure the base model answers and the route
records why. When the base model fails too, the sub-query's answer is empty, its
`fallback_reason` says why, its children are not asked (their `#k` would be empty) and are
unanswered too, and the rest of the graph still runs. A reply longer than the policy's
`max_answer_chars` is cut there, with a note saying so, before it reaches a child or the
aggregator.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from langchain_core.messages import BaseMessage, HumanMessage
from langchain_core.runnables import Runnable, RunnableLambda
from langgraph.config import get_stream_writer
from langgraph.types import StreamWriter

from compllm_graph._calls import call_within
from compllm_graph.errors import CompLLMError
from compllm_graph.query_graph import REFERENCE, QueryGraph, SubQuery
from compllm_graph.scheduling import (
    DeviceLimits,
    RunSubQuery,
    eager_entrypoint,
    waves_graph_builder,
)
from compllm_graph.state import CompLLMState, SubAnswer, unanswered
from compllm_graph.types import (
    BASE,
    Route,
    Scheduler,
    display_name,
    empty_reply,
    message_text,
)

CONTEXT_TEMPLATE = "Answers to earlier questions:\n{context}\n\nQuestion: {question}"
SHORT_ANSWER_CHARS = 60
STATED_ANSWER_CHARS = 300
"""Longest closing "The answer is ..." kept whole by `stated_answer`: room for an option's full
text, which the scorer and a reader need, where `SHORT_ANSWER_CHARS` would cut it."""
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n")
_COPULA = re.compile(r"\s(?:is|are|was|were|equals|would be|will be)\s", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
# The trained experts end a worked answer with "The answer is X." (see training/expert_data.py).
_STATED = re.compile(r"\bthe (?:final |correct )?answer is:?\s*(.+?)\s*\.?\s*$", re.IGNORECASE)
_WH_WORD = re.compile(r"(who|whom|whose|what|which|when|where|why|how)\b", re.IGNORECASE)
# MuSiQue's hops are short clauses; a composed part is sentences, often ending in its options.
_PHRASE_WORDS = 12
_CLAUSE_BREAK = re.compile(r"[.?!:;]\s")
_ARTICLE = re.compile(r"(the|a|an)\s", re.IGNORECASE)


@dataclass(frozen=True)
class ExpertPolicy:
    """How long to wait for an expert, and how often to retry it before falling back to base.

    A timeout covers waiting for a device slot and the call. A model with a native async API is
    cancelled when its time is up; a sync-only model's thread cannot be stopped, so it keeps its
    device slot until it returns (see `compllm_graph._calls`), and the sub-query moves on.

    Args:
        timeout: Seconds per attempt, waiting for the device included; None waits forever.
        retries: Extra attempts after the first failure.
        max_answer_chars: Longer replies are cut to this many characters, with a note; None
            passes them on whole.
    """

    timeout: float | None = field(
        default=300.0,
        metadata={
            "help": "seconds per attempt, waiting for the device included; None waits forever"
        },
    )
    retries: int = field(default=1, metadata={"help": "extra attempts after the first failure"})
    max_answer_chars: int | None = field(
        default=20_000,
        metadata={
            "help": "longer replies are cut to this many characters, with a note; None passes "
            "them on whole"
        },
    )

    def __post_init__(self) -> None:
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError(f"ExpertPolicy.timeout must be positive or None, got {self.timeout}")
        if self.retries < 0:
            raise ValueError(f"ExpertPolicy.retries must be >= 0, got {self.retries}")
        if self.max_answer_chars is not None and self.max_answer_chars < 1:
            raise ValueError(
                f"ExpertPolicy.max_answer_chars must be positive or None, got "
                f"{self.max_answer_chars}"
            )


class ExpertFailure(CompLLMError, RuntimeError):
    """A model failed on every attempt."""

    def __init__(self, expert: str | None, errors: list[str]) -> None:
        who = display_name(expert)
        super().__init__(f"{who} failed {len(errors)} time(s): " + "; ".join(errors))
        self.attempts = len(errors)


def as_question(text: str) -> str:
    """A relation phrase as a question (`spouse of #1` -> `What is the spouse of #1?`).

    Decomposers trained on MuSiQue write its Wikidata hops as such phrases. A small model rambles
    on the bare phrase (SmolLM2-135M greeted "capital of France" as a tour guide) and answers the
    question ("The capital of France is Paris."). Questions and other text pass unchanged,
    and so do sentences: a multiple-choice part ends with its last option, not with "?", and
    must not become "What is the The term X refers to Options: ...?".
    """
    text = text.strip()
    if text.endswith("?") or " of " not in text or _WH_WORD.match(text):
        return text
    if len(text.split()) > _PHRASE_WORDS or _CLAUSE_BREAK.search(text):
        return text
    phrase = text.rstrip(".")
    if _ARTICLE.match(phrase):  # Break's steps carry their own article: keep it, once
        return f"What is {phrase[0].lower()}{phrase[1:]}?"
    return f"What is the {phrase}?"


def _closing_statement(answer: str) -> str | None:
    """The X of a last line "The answer is X.", if there is one."""
    lines = [line.strip() for line in answer.strip().splitlines() if line.strip()]
    stated = _STATED.search(lines[-1]) if lines else None
    return stated.group(1).strip() if stated else None


def short_answer(answer: str, limit: int = SHORT_ANSWER_CHARS) -> str:
    """The part of an answer that fills a `#k`: the number, the entity, or the main phrase.

    "The atomic number of oxygen is 8." gives "8", "The capital of France is Paris." gives
    "Paris"; a worked answer that ends "The answer is 72." gives "72"; a short answer stays
    whole, and a long one without a copula is cut at a word.
    """
    stated = _closing_statement(answer)
    if stated and len(stated) <= limit:
        return stated
    sentence = _SENTENCE_END.split(answer.strip(), maxsplit=1)[0].strip().rstrip(".!")
    tail = _COPULA.split(sentence, maxsplit=1)[-1].strip()
    if tail != sentence and len(tail) <= limit:
        return tail
    if len(sentence) <= limit // 2:
        return sentence
    numbers = _NUMBER.findall(sentence)
    if numbers:
        return numbers[-1]
    return sentence[:limit].rsplit(" ", 1)[0] if len(sentence) > limit else sentence


def stated_answer(answer: str) -> str:
    """What a part's answer commits to, whole: the closing "The answer is X" up to
    `STATED_ANSWER_CHARS` (an option's letter and full text, a number), else `short_answer`.

    The aggregate checks that the final answer holds it; a cut option text would not be an
    answer to a multiple-choice part.
    """
    stated = _closing_statement(answer)
    if stated and len(stated) <= STATED_ANSWER_CHARS:
        # "(C6H12O6)" is C6H12O6 in a reducer's sentence; "(B)" stays an option letter
        inner = stated[1:-1]
        wrapped = stated.startswith("(") and stated.endswith(")") and "(" not in inner
        return inner if wrapped and len(inner) > 3 else stated
    return short_answer(answer)


def sub_query_question(sq: SubQuery, parents: list[SubAnswer]) -> str:
    """The question for `sq` (see `as_question`) with `#k` filled in by the short form of the
    parents' answers (`short_answer`); the whole answers go in the context block."""
    answers = {a["sub_query"]: short_answer(a["answer"]) for a in parents}
    template = as_question(sq.text)
    return REFERENCE.sub(lambda m: answers.get(int(m.group(1)), m.group(0)), template)


def sub_query_prompt(question: str, parents: list[SubAnswer]) -> str:
    """`question` after its parents' own questions and answers.

    Each parent contributes only its question and answer, never its own context, so a prompt
    grows with the number of parents, not with the depth of the graph above them.
    """
    if not parents:
        return question
    context = "\n".join(f"Q: {a['question']}\nA: {a['answer']}" for a in parents)
    return CONTEXT_TEMPLATE.format(context=context, question=question)


def cut_answer(text: str, limit: int | None) -> str:
    """`text`, or its first `limit` characters followed by a note of how long it was."""
    if limit is None or len(text) <= limit:
        return text
    return f"{text[:limit]} [cut: the reply was {len(text):,} characters; the first {limit:,} kept]"


def not_asked(sq: SubQuery, failed: list[int], writer: StreamWriter) -> SubAnswer:
    """The answer of a sub-query whose parents `failed`: unanswered, and no model is asked."""
    ids = ", ".join(str(i) for i in failed)
    answer = SubAnswer(
        sub_query=sq.id,
        question=sq.text,
        answer="",
        expert=None,
        seconds=0.0,
        attempts=0,
        fallback_reason=f"not asked: sub-query {ids}, which it depends on, could not be answered",
    )
    writer({"event": "sub_query_end", **answer})
    return answer


def make_sub_query_runner(
    query_graph: QueryGraph,
    experts: Mapping[str, Runnable],
    base: Runnable,
    policies: Mapping[str, ExpertPolicy],
    device_limits: DeviceLimits | None,
    writer: StreamWriter,
) -> RunSubQuery:
    """Build the coroutine that answers one sub-query, with device limits, retry and fallback.

    `writer` is the outer graph's stream writer, so sub-query events reach a plain
    `stream_mode="custom"` without `subgraphs=True`.
    """

    async def call(
        expert: str | None, messages: list[BaseMessage], priority: int
    ) -> tuple[str, int]:
        model = base if expert is None else experts[expert]
        policy = policies.get(display_name(expert), policies.get(BASE, ExpertPolicy()))
        semaphore = device_limits.semaphore(expert) if device_limits else None
        errors: list[str] = []
        for attempt in range(1, policy.retries + 2):
            try:
                reply = await call_within(
                    model, messages, timeout=policy.timeout, semaphore=semaphore, priority=priority
                )
            except TimeoutError as exc:
                errors.append(str(exc))
                continue
            except Exception as exc:  # an expert may fail in any way: retry, then fall back
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            if text := message_text(reply):
                return cut_answer(text, policy.max_answer_chars), attempt
            errors.append(empty_reply(reply))
        raise ExpertFailure(expert, errors)

    async def run(sq: SubQuery, route: Route, parents: list[SubAnswer]) -> SubAnswer:
        if failed := [a["sub_query"] for a in parents if unanswered(a)]:
            return not_asked(sq, failed, writer)
        question = sub_query_question(sq, parents)
        messages: list[BaseMessage] = [HumanMessage(sub_query_prompt(question, parents))]
        priority = query_graph.remaining_depth[sq.id]
        writer({"event": "sub_query_start", "sub_query": sq.id, "expert": route.expert})
        started = time.perf_counter()
        expert, reason = route.expert, None
        try:
            text, attempts = await call(expert, messages, priority)
        except ExpertFailure as failure:
            expert, reason, attempts = None, str(failure), failure.attempts
            text = ""
            if route.expert is not None:
                try:
                    text, base_attempts = await call(None, messages, priority)
                    attempts += base_attempts
                except ExpertFailure as base_failure:  # keep going: the other parts still answer
                    reason = f"{reason}; then {base_failure}"
                    attempts += base_failure.attempts
        answer = SubAnswer(
            sub_query=sq.id,
            question=question,
            answer=text,
            expert=expert,
            seconds=time.perf_counter() - started,
            attempts=attempts,
            fallback_reason=reason,
        )
        writer({"event": "sub_query_end", **answer})
        return answer

    return run


def make_execute_node(
    experts: Mapping[str, Runnable],
    base: Runnable,
    policies: Mapping[str, ExpertPolicy],
    device_limits: DeviceLimits | None,
    scheduler: Scheduler,
) -> Runnable:
    """Build the node that runs the state's query graph with the chosen scheduler."""

    def prepare(state: CompLLMState) -> tuple[QueryGraph, list[Route], RunSubQuery]:
        query_graph = QueryGraph.from_dict(state["query_graph"])
        routes = [Route.from_dict(r) for r in state["routes"]]
        run = make_sub_query_runner(
            query_graph, experts, base, policies, device_limits, get_stream_writer()
        )
        return query_graph, routes, run

    def finish(query_graph: QueryGraph, routes: list[Route], answers: list[SubAnswer]) -> dict:
        return {"sub_answers": answers, "routes": _record_fallbacks(query_graph, routes, answers)}

    async def aexecute(state: CompLLMState) -> dict:
        query_graph, routes, run = prepare(state)
        inputs = {"routes": state["routes"]}
        if scheduler == "waves":
            waves = waves_graph_builder(query_graph, run).compile(name="execute_waves")
            answers = (await waves.ainvoke(inputs))["sub_answers"]
        else:
            answers = await eager_entrypoint(query_graph, run, sync=False).ainvoke(inputs)
        return finish(query_graph, routes, answers)

    def execute(state: CompLLMState) -> dict:
        # The sync path runs the inner graph with the sync API too, so a checkpointer without
        # async methods (SqliteSaver) works; each sub-query still runs on an event loop.
        query_graph, routes, run = prepare(state)
        inputs = {"routes": state["routes"]}
        if scheduler == "waves":
            waves = waves_graph_builder(query_graph, run).compile(name="execute_waves")
            answers = waves.invoke(inputs)["sub_answers"]
        else:
            answers = eager_entrypoint(query_graph, run, sync=True).invoke(inputs)
        return finish(query_graph, routes, answers)

    return RunnableLambda(execute, afunc=aexecute, name="execute")


def _record_fallbacks(
    query_graph: QueryGraph, routes: list[Route], answers: list[SubAnswer]
) -> list[dict]:
    # the route node may have recorded a reason of its own (its router failed): keep both
    reasons = {a["sub_query"]: a["fallback_reason"] for a in answers}
    return [
        replace(route, fallback_reason=_both(route.fallback_reason, reasons[sq.id])).to_dict()
        for sq, route in zip(query_graph, routes)
    ]


def _both(first: str | None, second: str | None) -> str | None:
    return "; ".join(r for r in (first, second) if r) or None
