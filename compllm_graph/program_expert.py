"""The program expert: a chat model that answers arithmetic by writing a program and running it.

It asks its chat model for a short Python program that prints the answer, takes the program out
of the reply (a fenced block, or the bare reply), and runs it in the sandbox
(`compllm_graph.sandbox`). The printed number is the answer; the reply holds the program and
then a last line "The answer is 24.", the line `nodes.execute.short_answer` reads for a child's
`#k` and the aggregate check reads as the part's stated answer. The scorers count a number
anywhere in a reply, so the program's own numbers count as a worked solution's steps do.

A program that is refused, does not parse, raises, runs out of time or memory, prints too much
or prints no number is sent back to the model once with the error; after a second failure the
question goes to the fallback (a chain-of-thought expert, such as the base model), and the
reply's `response_metadata["program_expert"]` says so and why. A model or fallback that raises
is not caught: the graph's `ExpertPolicy` retries the expert and then asks the base model.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from pydantic import ConfigDict, Field

from compllm_graph.errors import CompLLMError
from compllm_graph.sandbox import SandboxLimits, SandboxResult, arun_program, run_program
from compllm_graph.types import message_text

PROGRAM_PROMPT = """\
Answer the question with a short Python program that computes the answer and prints it as one \
number. Use plain arithmetic (the math and fractions modules are allowed); no input, files or \
network. Reply with the program only, in a ```python block.

Example question: A shop sells 48 pens in April and half as many in May. How many pens does it \
sell in April and May?
Example reply:
```python
april = 48
may = april / 2
print(april + may)
```"""
"""The system prompt that asks for a program; `create_program_expert(prompt=...)` replaces it."""

PROGRAM_MAX_NEW_TOKENS = 160
"""The fewest tokens a program gets, whatever the answers' length: both measurements gave it at
least this, and the graph's 48-token default cuts most programs off before they print."""

PROGRAM_TRIES = 2
"""Programs asked for per question: the first, and one more with the first one's error."""

RETRY_PROMPT = (
    "Running that program failed ({error}): {message}\n"
    "Write a corrected program. Reply with the program only, in a ```python block, and print "
    "the answer as one number."
)

_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_PYTHON_TAGS = ("python", "python3", "py")


class ProgramExpertError(CompLLMError, ValueError):
    """A program expert built with bad arguments."""


def extract_program(text: str) -> str:
    """The program in a model's reply: the first ```python block (a block never closed runs to
    the end, as when the model ran out of tokens), else the first fenced block of any
    language, else the whole reply; "" when the reply is empty."""
    blocks = _FENCE.findall(text)
    tagged = [body for tag, body in blocks if tag.lower() in _PYTHON_TAGS]
    chosen = tagged or [body for _, body in blocks]
    return (chosen[0] if chosen else text).strip()


def program_reply(program: str, answer: str) -> str:
    """The reply of a program that ran: the program, then "The answer is ANSWER."."""
    return f"```python\n{program}\n```\nThe answer is {answer}."


def _no_program(text: str) -> SandboxResult:
    said = f"it said {text[:200]!r}" if text else "it was empty"
    return SandboxResult(ok=False, error="syntax", message=f"the reply held no program: {said}")


def _failure(result: SandboxResult) -> dict[str, str]:
    return {"error": str(result.error), "message": result.message}


class ProgramExpert(BaseChatModel):
    """Answers by a program its `model` writes and the sandbox runs; see the module docstring.

    Build it with `create_program_expert`, which checks the arguments. It is a chat model:
    messages in, an `AIMessage` out, with `invoke` and `ainvoke` (which awaits the sandbox's
    process, so the event loop keeps running).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model: Runnable = Field(exclude=True)
    """Writes the programs (a chat model)."""
    fallback: Runnable = Field(exclude=True)
    """Answers when no program worked (a chain-of-thought chat model)."""
    limits: SandboxLimits = Field(default_factory=SandboxLimits)
    """The sandbox's limits for each program."""
    prompt: str = PROGRAM_PROMPT
    """The system prompt that asks for a program."""

    @property
    def _llm_type(self) -> str:
        return "compllm-program-expert"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"limits": repr(self.limits), "prompt": self.prompt}

    def _request(
        self, messages: Sequence[BaseMessage], failures: Sequence[tuple[str, SandboxResult]]
    ) -> list[BaseMessage]:
        """The model's prompt: the system prompt (before the caller's own, if any), the
        question, and each failed program with its error."""
        system, rest = self.prompt, list(messages)
        if rest and isinstance(rest[0], SystemMessage):
            system = f"{system}\n\n{rest[0].text}"
            rest = rest[1:]
        request: list[BaseMessage] = [SystemMessage(system), *rest]
        for text, result in failures:
            note = RETRY_PROMPT.format(error=result.error, message=result.message)
            request += [AIMessage(text), HumanMessage(note)]
        return request

    def _answered(
        self, program: str, result: SandboxResult, failures: list[tuple[str, SandboxResult]]
    ) -> ChatResult:
        answer = str(result.answer)
        metadata = {
            "answered_by": "program",
            "attempts": len(failures) + 1,
            "program": program,
            "stdout": result.stdout,
            "answer": answer,
            "failures": [_failure(r) for _, r in failures],
        }
        message = AIMessage(
            program_reply(program, answer), response_metadata={"program_expert": metadata}
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    @staticmethod
    def _fell_back(reply: Any, failures: list[tuple[str, SandboxResult]]) -> ChatResult:
        reasons = "; ".join(f"{r.error}: {r.message}" for _, r in failures)
        metadata = {
            "answered_by": "fallback",
            "attempts": len(failures),
            "failures": [_failure(r) for _, r in failures],
            "reason": f"no program worked in {len(failures)} tries ({reasons})",
        }
        if isinstance(reply, BaseMessage):
            content, extra = reply.content, dict(reply.response_metadata)
        else:  # a Runnable that returns text
            content, extra = str(reply), {}
        message = AIMessage(
            content,
            response_metadata={**extra, "program_expert": metadata},
            usage_metadata=getattr(reply, "usage_metadata", None),
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        _no_stop(stop, kwargs)
        failures: list[tuple[str, SandboxResult]] = []
        for _ in range(PROGRAM_TRIES):
            reply = self.model.invoke(self._request(messages, failures))
            text = message_text(reply)
            program = extract_program(text)
            result = run_program(program, self.limits) if program else _no_program(text)
            if result.ok:
                return self._answered(program, result, failures)
            failures.append((text, result))
        return self._fell_back(self.fallback.invoke(messages), failures)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        _no_stop(stop, kwargs)
        failures: list[tuple[str, SandboxResult]] = []
        for _ in range(PROGRAM_TRIES):
            reply = await self.model.ainvoke(self._request(messages, failures))
            text = message_text(reply)
            program = extract_program(text)
            result = await arun_program(program, self.limits) if program else _no_program(text)
            if result.ok:
                return self._answered(program, result, failures)
            failures.append((text, result))
        reply = await self.fallback.ainvoke(messages)
        return self._fell_back(reply, failures)


def _no_stop(stop: list[str] | None, kwargs: dict[str, Any]) -> None:
    """Refuse generation settings: a program expert passes none on to its models."""
    if stop or kwargs:
        raise ProgramExpertError(
            "a program expert takes no stop sequences or generation arguments "
            f"(got stop={stop!r}, {sorted(kwargs)}); set them on its model and fallback"
        )


def create_program_expert(
    model: Runnable,
    fallback: Runnable,
    *,
    limits: SandboxLimits | None = None,
    prompt: str | None = None,
) -> ProgramExpert:
    """An expert for `create_compllm_graph(experts={...})` that answers by running a program.

    Args:
        model: Chat model that writes the programs (e.g. `local_model.chat_model()`).
        fallback: Runnable that answers when no program worked in two tries, taking the same
            messages (a chain-of-thought expert, or the base model).
        limits: The sandbox's limits; None takes `SandboxLimits()` (2 s of CPU, 5 s of wall
            clock, 256 MiB, 16 KB of output).
        prompt: System prompt asking for a program; None takes `PROGRAM_PROMPT`.

    Returns:
        The expert, a LangChain chat model.

    Raises:
        ProgramExpertError: a `ValueError`: `model` or `fallback` is not a Runnable, `limits`
            is not a `SandboxLimits`, or `prompt` is not a non-empty string.

    Example:
        The demo store's mathematics expert, answering by programs and falling back to its
        own worked answers (the [local,router] extras):

        ```python
        from compllm_graph import create_compllm_graph
        from compllm_graph.decomposer import default_decomposer
        from compllm_graph.expert_store import ExpertRouter, demo_store
        from compllm_graph.models import load_model
        from compllm_graph.program_expert import create_program_expert

        model = load_model("smollm2-135m-instruct")
        base = model.chat_model(max_new_tokens=256)
        store = demo_store(model.name)
        experts = store.chat_models(model, max_new_tokens=256)
        experts["mathematics"] = create_program_expert(base, experts["mathematics"])
        decomposer, prompt = default_decomposer(model)
        graph = create_compllm_graph(
            decomposer=decomposer,
            decomposer_prompt=prompt,
            experts=experts,
            router=ExpertRouter(store),
            base=base,
        )
        ```
    """
    for name, runnable in (("model", model), ("fallback", fallback)):
        if not isinstance(runnable, Runnable):
            raise ProgramExpertError(
                f"{name} must be a LangChain chat model (a Runnable), got "
                f"{type(runnable).__name__}; e.g. load_model(ALIAS).chat_model()"
            )
    if limits is not None and not isinstance(limits, SandboxLimits):
        raise ProgramExpertError(f"limits must be a SandboxLimits, got {type(limits).__name__}")
    if prompt is not None and (not isinstance(prompt, str) or not prompt.strip()):
        raise ProgramExpertError(f"prompt must be a non-empty string, got {prompt!r}")
    return ProgramExpert(
        model=model,
        fallback=fallback,
        limits=limits or SandboxLimits(),
        prompt=prompt if prompt is not None else PROGRAM_PROMPT,
    )


__all__ = [
    "PROGRAM_MAX_NEW_TOKENS",
    "PROGRAM_PROMPT",
    "PROGRAM_TRIES",
    "ProgramExpert",
    "ProgramExpertError",
    "create_program_expert",
    "extract_program",
    "program_reply",
]
