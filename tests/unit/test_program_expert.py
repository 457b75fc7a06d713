"""The program expert: asks for a program, runs it in the sandbox, retries once with the error,
then hands the question to its fallback and says so."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from compllm_graph import Scheduler, create_compllm_graph
from compllm_graph.nodes.execute import short_answer, stated_answer
from compllm_graph.program_expert import (
    PROGRAM_PROMPT,
    ProgramExpert,
    ProgramExpertError,
    create_program_expert,
    extract_program,
    program_reply,
)
from compllm_graph.sandbox import SandboxLimits
from tests.fakes import FakeChat, decomposer, keyword_router

LIMITS = SandboxLimits(cpu_seconds=1, wall_seconds=4.0)
GOOD = "```python\nhalf = 48 / 2\nprint(half)\n```"
COT = "Half of 48 is 24. The answer is 24."


def coder(*replies: str) -> tuple[FakeChat, list[list[BaseMessage]]]:
    """A chat model that writes `replies` in turn (the last one again after that), and the
    prompts it was sent."""
    prompts: list[list[BaseMessage]] = []

    def reply(messages: list[BaseMessage]) -> str:
        prompts.append(list(messages))
        return replies[min(len(prompts), len(replies)) - 1]

    return FakeChat(label="coder", reply=reply), prompts


def expert(
    *replies: str, limits: SandboxLimits = LIMITS
) -> tuple[ProgramExpert, list[list[BaseMessage]], FakeChat]:
    model, prompts = coder(*replies)
    fallback = FakeChat(label="cot", reply=lambda _: COT)
    return create_program_expert(model, fallback, limits=limits), prompts, fallback


async def ask(
    program_expert: ProgramExpert, how: str, question: str = "What is 48/2?"
) -> AIMessage:
    if how == "ainvoke":
        return await program_expert.ainvoke([HumanMessage(question)])
    return await asyncio.to_thread(program_expert.invoke, [HumanMessage(question)])


def report(reply: AIMessage) -> dict:
    return reply.response_metadata["program_expert"]


@pytest.mark.parametrize("how", ["invoke", "ainvoke"])
async def test_a_good_program_is_run_and_its_number_is_the_answer(how: str) -> None:
    program_expert, prompts, fallback = expert(GOOD)
    reply = await ask(program_expert, how)
    program = "half = 48 / 2\nprint(half)"
    assert reply.content == program_reply(program, "24")
    assert reply.content.endswith("\nThe answer is 24.")
    assert report(reply) == {
        "answered_by": "program",
        "attempts": 1,
        "program": program,
        "stdout": "24.0\n",
        "answer": "24",
        "failures": [],
    }
    assert fallback.calls == []
    system, question = prompts[0]
    assert isinstance(system, SystemMessage) and system.content == PROGRAM_PROMPT
    assert question.content == "What is 48/2?"


def test_the_reply_layout_states_the_printed_number_for_the_graph() -> None:
    # A child's #k and the aggregate check read the last line, not the program's numbers.
    reply = program_reply("apples = 48\nprint(apples / 2)", "24")
    assert (short_answer(reply), stated_answer(reply)) == ("24", "24")


async def test_a_failed_program_is_sent_back_once_with_its_error() -> None:
    program_expert, prompts, fallback = expert("```python\nprint(48 / 0)\n```", GOOD)
    reply = await ask(program_expert, "ainvoke")
    assert report(reply)["answered_by"] == "program"
    assert report(reply)["attempts"] == 2
    assert report(reply)["failures"] == [
        {"error": "exception", "message": "ZeroDivisionError: division by zero"}
    ]
    retry = prompts[1]
    assert [m.type for m in retry] == ["system", "human", "ai", "human"]
    assert "print(48 / 0)" in retry[2].content
    assert "ZeroDivisionError: division by zero" in retry[3].content
    assert fallback.calls == []


@pytest.mark.parametrize("how", ["invoke", "ainvoke"])
async def test_two_failures_hand_the_question_to_the_fallback(how: str) -> None:
    program_expert, prompts, fallback = expert("```python\nimport os\n```", "print(undefined)")
    reply = await ask(program_expert, how)
    assert reply.content == COT
    assert len(prompts) == 2
    assert fallback.calls == ["What is 48/2?"]  # the question itself, not the program prompt
    meta = report(reply)
    assert (meta["answered_by"], meta["attempts"]) == ("fallback", 2)
    assert [f["error"] for f in meta["failures"]] == ["refused", "exception"]
    assert "no program worked in 2 tries" in meta["reason"] and "NameError" in meta["reason"]


async def test_a_program_that_hangs_times_out_and_the_fallback_answers() -> None:
    limits = SandboxLimits(cpu_seconds=10, wall_seconds=0.3)
    program_expert, _, fallback = expert("```python\nwhile True:\n    pass\n```", limits=limits)
    reply = await ask(program_expert, "ainvoke")
    assert reply.content == COT and len(fallback.calls) == 1
    assert [f["error"] for f in report(reply)["failures"]] == ["timeout", "timeout"]


async def test_a_program_that_prints_no_number_falls_back() -> None:
    program_expert, _, _ = expert("```python\nprint('twenty-four')\n```")
    reply = await ask(program_expert, "ainvoke")
    assert reply.content == COT
    assert [f["error"] for f in report(reply)["failures"]] == ["no-number", "no-number"]


async def test_a_reply_without_a_program_is_a_failure_too() -> None:
    program_expert, prompts, _ = expert("", "I think it is twenty-four")
    reply = await ask(program_expert, "ainvoke")
    assert reply.content == COT
    failures = report(reply)["failures"]
    assert failures[0] == {"error": "syntax", "message": "the reply held no program: it was empty"}
    assert failures[1]["error"] == "syntax"  # the prose, run as code, does not parse
    assert len(prompts) == 2


async def test_the_callers_system_prompt_follows_the_program_prompt() -> None:
    program_expert, prompts, _ = expert(GOOD)
    await program_expert.ainvoke([SystemMessage("Be brief."), HumanMessage("What is 48/2?")])
    assert [m.type for m in prompts[0]] == ["system", "human"]
    assert prompts[0][0].content == f"{PROGRAM_PROMPT}\n\nBe brief."


async def test_ainvoke_leaves_the_event_loop_free_while_the_program_runs() -> None:
    program_expert, _, _ = expert("```python\nprint(sum(range(3_000_000)))\n```")
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.ensure_future(tick())
    reply = await program_expert.ainvoke("Sum 0 to 2,999,999.")
    ticker.cancel()
    assert report(reply)["answer"] == "4499998500000" and ticks >= 3


@pytest.mark.parametrize(
    ("text", "program"),
    [
        ("Here:\n```python\nprint(1)\n```\nDone.", "print(1)"),
        ("```\nprint(2)\n```", "print(2)"),
        ("```text\nnot this\n```\n```py\nprint(3)\n```", "print(3)"),
        ("```python\nprint(4)", "print(4)"),  # never closed: the model ran out of tokens
        ("print(5)\n", "print(5)"),
        ("", ""),
    ],
)
def test_extract_program(text: str, program: str) -> None:
    assert extract_program(text) == program


@pytest.mark.parametrize(
    ("arguments", "match"),
    [
        ({"model": "not a model"}, "model must be a LangChain chat model"),
        ({"fallback": None}, "fallback must be a LangChain chat model"),
        ({"limits": {"cpu_seconds": 1}}, "limits must be a SandboxLimits"),
        ({"prompt": "  "}, "prompt must be a non-empty string"),
    ],
)
def test_bad_arguments_are_refused_early(arguments: dict, match: str) -> None:
    settings = {"model": FakeChat(), "fallback": FakeChat(), **arguments}
    with pytest.raises(ProgramExpertError, match=match):
        create_program_expert(settings.pop("model"), settings.pop("fallback"), **settings)


def test_generation_arguments_are_refused() -> None:
    program_expert, _, _ = expert(GOOD)
    with pytest.raises(ProgramExpertError, match="no stop sequences"):
        program_expert.invoke("What is 48/2?", stop=["\n"])


def arithmetic_coder() -> Callable[[list[BaseMessage]], str]:
    """Writes the program for each step of the graph's two-step question."""

    def reply(messages: list[BaseMessage]) -> str:
        # a child's prompt holds its parents' questions and answers, then its own question
        question = str(messages[-1].content).rpartition("Question: ")[2]
        if "half of 48" in question:
            return "```python\nprint(48 / 2)\n```"
        if "24 plus 1" in question:  # #1 was filled in with the first step's answer
            return "```python\nprint(24 + 1)\n```"
        return "no idea"

    return reply


@pytest.mark.parametrize("scheduler", ["eager", "waves"])
async def test_the_program_expert_answers_inside_the_graph(scheduler: Scheduler) -> None:
    model = FakeChat(label="coder", reply=arithmetic_coder())
    base = FakeChat(label="base")
    graph = create_compllm_graph(
        decomposer=decomposer(
            "<q>What is half of 48 (math)?</q><q>What is #1 plus 1 (math)?</q><dep>1->2</dep>"
        ),
        experts={"arithmetic": create_program_expert(model, base, limits=LIMITS)},
        router=keyword_router({"math": "arithmetic"}),
        base=base,
        scheduler=scheduler,
    ).compile()
    out = await graph.ainvoke({"query": "Half of 48, plus 1?"})
    first, second = out["sub_answers"]
    assert (first["expert"], second["expert"]) == ("arithmetic", "arithmetic")
    assert first["answer"].endswith("The answer is 24.")
    assert second["question"] == "What is 24 plus 1 (math)?"
    assert second["answer"].endswith("The answer is 25.")
    assert out["fallback_reason"] is None
