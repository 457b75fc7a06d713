"""Aggregate: the parts' answers become the answer, through a reducer model where it is needed.

With `mode="auto"` (`AggregateMode`) a decomposition whose parts do not depend on each other (no
`<dep>`, no `#k`) is answered by the parts' answers joined (`joined_parts`: each part's answer
after its ordinal, "First part: ...", in the decomposition's order) and no reducer call is made;
the reducer runs where parts depend on each other. With `mode="always"` it runs whenever there
is something to combine: two or more answered parts, or one that is not the query itself. The
state's `aggregation` says which happened (`state.Aggregation`). The parts are named by position,
not by their text: a sub-query often copies its part whole, options and numbers included, and an
answer that repeats every option names none of them (`restates_query`).

The reducer reads every part's answer, not only the leaves': in a question of dependent parts the
earlier answers are part of what was asked (the GSM8K step, the element whose property a later
part looks up), and a leaf's answer alone does not restate them.

With `check=True` (the option `check_aggregate` of `create_compllm_graph`, on in
`build_default_graph` for the small local models) the reducer's reply must keep every part's
stated answer (`stated_answer`: the option's letter and text, the number, the entity), matched on
word boundaries with numbers compared as numbers; a reply that restates the question instead of
answering it, or leaves out a part's answer, gives way to the parts' answers joined, and
`fallback_reason` says why. The check is off by default: a capable reducer's paraphrase ("Eight,
and the capital is Paris.") is a right answer the check cannot always read. Whenever the reducer
replied, its own text stays in the state's `aggregator_reply`. A reducer that raises or replies
with no answer text is replaced by the parts' answers joined, with the reason recorded; a part
that could not be answered is named in the answer and in `fallback_reason`.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Literal, get_args

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import Runnable, RunnableLambda
from langgraph.config import get_stream_writer

from compllm_graph.nodes.execute import stated_answer
from compllm_graph.state import Aggregation, CompLLMState, SubAnswer, unanswered
from compllm_graph.types import empty_reply, message_text

# Asking to repeat the facts keeps a small reducer from answering only the first part: on six
# questions SmolLM2-135M answered 4 right with this wording, 1.5 with "answer the original
# question using the answers to its sub-questions".
AGGREGATE_PROMPT = """\
Here are answers to the parts of a question.
{answers}

Now answer the whole question in one or two sentences, repeating the facts above: {query}"""


AggregateMode = Literal["auto", "always"]
"""When the reducer runs: "auto" only where parts depend on each other (independent parts are
joined, `joined_parts`, with no call); "always" whenever there is something to combine."""


def _parts(state: CompLLMState) -> list[SubAnswer]:
    return sorted(state["sub_answers"], key=lambda a: a["sub_query"])


def independent(state: CompLLMState) -> bool:
    """Whether no part of the query graph needs another's answer (no edges)."""
    graph = state.get("query_graph") or {}
    return not any(sq["parents"] for sq in graph.get("sub_queries", []))


def aggregate_prompt(
    state: CompLLMState, parts: list[SubAnswer], mode: AggregateMode = "always"
) -> list[BaseMessage] | None:
    """The reducer's prompt, or None when no reducer call is made: no part was answered, the
    single sub-query is the query itself, or (`mode="auto"`) no part depends on another."""
    if mode == "auto" and independent(state):
        return None
    answered = [a for a in parts if not unanswered(a)]
    single = len(parts) == 1 and parts[0]["question"] == state["query"]
    if not answered or single:
        return None
    answers = "\n".join(f"Sub-question: {a['question']}\nAnswer: {a['answer']}" for a in answered)
    return [HumanMessage(AGGREGATE_PROMPT.format(answers=answers, query=state["query"]))]


ORDINALS = (
    "First",
    "Second",
    "Third",
    "Fourth",
    "Fifth",
    "Sixth",
    "Seventh",
    "Eighth",
    "Ninth",
    "Tenth",
    "Eleventh",
    "Twelfth",
)
"""Words that name the parts of a joined answer, as many as `DEFAULT_MAX_SUB_QUERIES`. Words, not
digits: "Part 2: ..." would state the number 2, which a numeric question may ask for; no
benchmark option is a bare ordinal, while "One", "Two" and "Three" are options."""


def part_name(position: int) -> str:
    """How a joined answer names the part at 1-based `position` ("First part", ..., "Part 13")."""
    return f"{ORDINALS[position - 1]} part" if position <= len(ORDINALS) else f"Part {position}"


def joined_parts(parts: list[SubAnswer]) -> str:
    """The answered parts in order, one line each after its name ("First part: ..."); a lone
    answered part is the answer as it stands.

    The answer without a reducer call: for independent parts under `mode="auto"`, for a single
    part, and where the reducer failed or (`check=True`) dropped a part.
    """
    named = [(i, a["answer"]) for i, a in enumerate(parts, start=1) if not unanswered(a)]
    if len(named) == 1:
        return named[0][1]
    return "\n".join(f"{part_name(i)}: {answer}" for i, answer in named)


RESTATED_SPAN = 60
"""Width of the question's windows (one every `RESTATED_SPAN // 2` characters) that a reducer's
answer may not copy unless a part's answer has them too: an option's text is fine, the
question's stem or its list of options is not. Any copied stretch of 90 characters or more
covers a whole window."""


def _words(text: str) -> str:
    return " ".join(text.lower().split())


_TOKEN = re.compile(r"\d[\d,]*(?:\.\d+)?|\w+")
_UNITS = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_NUMBER_WORDS = {w: i for i, w in enumerate(_UNITS)} | {w: 20 + 10 * i for i, w in enumerate(_TENS)}


def _number(token: str) -> str | None:
    """`token` as a canonical number ("8.50" -> "8.5", "1,000" -> "1000", "eight" -> "8")."""
    if token in _NUMBER_WORDS:
        return str(_NUMBER_WORDS[token])
    if not token[0].isdigit():
        return None
    try:
        return format(Decimal(token.replace(",", "")).normalize(), "f")
    except InvalidOperation:  # "3rd", "c6h12o6": a word that starts with a digit
        return None


def tokens(text: str) -> list[str]:
    """Lower-case words and canonical numbers of `text`, punctuation left out.

    "twenty-one" is the number 21, as "21" is.
    """
    out: list[str] = []
    previous = ""
    for token in _TOKEN.findall(text.lower()):
        if previous in _TENS and token in _UNITS[1:10]:
            out[-1] = str(_NUMBER_WORDS[previous] + _NUMBER_WORDS[token])
        else:
            out.append(number if (number := _number(token)) is not None else token)
        previous = token
    return out


def mentions(text: str, answer: str) -> bool:
    """Whether `text` states `answer`: its words in order, on word boundaries, numbers as numbers.

    "8" is in "Eight, and Paris." and "It is 8.0", not in "18"; "Paris" is not in "Parisian".
    """
    wanted, said = tokens(answer), tokens(text)
    if not wanted:
        return True
    width = len(wanted)
    return any(said[i : i + width] == wanted for i in range(len(said) - width + 1))


def restates_query(text: str, query: str, parts: list[SubAnswer]) -> bool:
    """Whether the reducer's `text` copies a stretch of the question that no part's answer holds.

    Small reducers often echo the question, options and all, before or instead of an answer;
    every option's text then stands in the answer, so none of them is an answer any more. On
    the first 23 P-2 questions Qwen2.5-Coder-0.5B's reducer did so 10 times.
    """
    said, asked = _words(text), _words(query)
    answers = [_words(a["answer"]) for a in parts]
    for start in range(0, len(asked) - RESTATED_SPAN + 1, RESTATED_SPAN // 2):
        stretch = asked[start : start + RESTATED_SPAN]
        if stretch in said and not any(stretch in a for a in answers):
            return True
    return False


def left_out(text: str, parts: list[SubAnswer]) -> list[SubAnswer]:
    """The answered parts whose stated answer (`stated_answer`) the reducer's `text` lacks.

    Appending a left-out answer after the reducer's text is not enough: the reducer that drops
    a part often names another option for it, and an answer naming two options answers
    neither. On Qwen2.5-Coder-0.5B's 200 stored P-2 answers, appending the left-out answers
    kept 98 of 400 parts right (101 with options whole), joining the parts 105
    (`benchmarks/reaggregate.py`).
    """
    return [
        a
        for a in parts
        if not unanswered(a)
        and (stated := stated_answer(a["answer"]))
        and not mentions(text, stated)
    ]


def reduced_answer(
    state: CompLLMState, parts: list[SubAnswer], text: str
) -> tuple[str, str | None]:
    """The final answer from the reducer's `text`, and why the parts' answers replaced it."""
    if restates_query(text, state["query"], parts):
        reason = (
            "the aggregator restated the question instead of answering; the answer joins the parts"
        )
        return joined_parts(parts), reason
    if missing := left_out(text, parts):
        ids = ", ".join(str(a["sub_query"]) for a in missing)
        reason = (
            f"the aggregator left out the answer of sub-query {ids}; the answer joins the parts"
        )
        return joined_parts(parts), reason
    return text, None


def make_aggregate_node(
    aggregator: Runnable, check: bool = False, mode: AggregateMode = "always"
) -> Runnable:
    """Build the node that writes the final answer (and appends it to `messages` for chat input).

    Args:
        aggregator: The reducer's chat model.
        check: Replace a reply that restates the question or leaves out a part's answer by the
            parts' answers joined (`reduced_answer`); off, the reducer's reply is the answer.
        mode: "auto" joins independent parts with no reducer call; "always" calls the reducer
            whenever there is something to combine (`AggregateMode`).

    Raises:
        ValueError: `mode` is not one of `AggregateMode`.
    """
    if mode not in get_args(AggregateMode):
        raise ValueError(f"aggregate must be one of {get_args(AggregateMode)}, got {mode!r}")

    def finish(
        state: CompLLMState,
        parts: list[SubAnswer],
        answer: str,
        aggregation: Aggregation,
        failure: str | None = None,
        reply: str | None = None,
    ) -> dict:
        reasons = [r for r in (state.get("fallback_reason"), failure) if r]
        missing = [a for a in parts if unanswered(a)]
        if missing:
            named = "; ".join(f"[{a['sub_query']}] {a['question']}" for a in missing)
            answer = f"{answer} (Could not answer: {named}.)".strip()
            reasons += [f"sub-query {a['sub_query']}: {a['fallback_reason']}" for a in missing]
        get_stream_writer()({"event": "answer", "answer": answer, "aggregation": aggregation})
        update: dict = {
            "answer": answer,
            "fallback_reason": "; ".join(reasons) or None,
            "aggregator_reply": reply,
            "aggregation": aggregation,
        }
        messages = state.get("messages") or []
        if messages and isinstance(messages[-1], HumanMessage):
            update["messages"] = [AIMessage(answer)]
        return update

    def reduced(state: CompLLMState, parts: list[SubAnswer], reply: BaseMessage) -> dict:
        text = message_text(reply)
        if not text:
            empty = f"the aggregator {empty_reply(reply)}; the answer joins the parts"
            return finish(state, parts, joined_parts(parts), "replaced", empty, text)
        answer, why = reduced_answer(state, parts, text) if check else (text, None)
        return finish(state, parts, answer, "replaced" if why else "reducer", why, text)

    def failed(state: CompLLMState, parts: list[SubAnswer], exc: Exception) -> dict:
        reason = f"the aggregator raised {type(exc).__name__}: {exc}; the answer joins the parts"
        return finish(state, parts, joined_parts(parts), "replaced", reason)

    def aggregate(state: CompLLMState) -> dict:
        parts = _parts(state)
        prompt = aggregate_prompt(state, parts, mode)
        if prompt is None:
            return finish(state, parts, joined_parts(parts), "joined")
        try:
            reply = aggregator.invoke(prompt)
        except Exception as exc:  # the parts are answered: never lose them to the reducer
            return failed(state, parts, exc)
        return reduced(state, parts, reply)

    async def aaggregate(state: CompLLMState) -> dict:
        parts = _parts(state)
        prompt = aggregate_prompt(state, parts, mode)
        if prompt is None:
            return finish(state, parts, joined_parts(parts), "joined")
        try:
            reply = await aggregator.ainvoke(prompt)
        except Exception as exc:  # the parts are answered: never lose them to the reducer
            return failed(state, parts, exc)
        return reduced(state, parts, reply)

    return RunnableLambda(aggregate, afunc=aaggregate, name="aggregate")
