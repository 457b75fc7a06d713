"""Seconds and tokens per stage of one Comp-LLM run, collected from LangChain callbacks.

Pass a fresh `StageTimer` in the run's config (`graph.invoke(inputs, {"callbacks": [timer]})`)
and read `timer.stages()` afterwards. No node is changed for it: LangGraph tags every run inside
a node with the node's name (`metadata["langgraph_node"]`), so each model call and each node's
own run is credited to its stage. The stages are the graph's nodes (`decompose`, `route`,
`execute`, `aggregate`) and, inside `execute`, each sub-query's task (`sub_query_N`, as the
schedulers name them). A model called outside any graph (a monolith answering the whole
question) is credited to the timer's `outside` stage.

Per stage it keeps the wall time from the first run's start to the last run's end, the time
spent in model calls, and the prompt and generated tokens the models reported
(`AIMessage.usage_metadata`, which the local and OpenAI-compatible chat models fill). A
sub-query's wall time includes waiting for a device slot; its model seconds do not. The eager
scheduler calls a dependent sub-query's task before its parents answer, so that stage's clock
starts at the task's `READY_EVENT` (its parents answered), not at the task's start. LangChain's
own `UsageMetadataCallbackHandler` sums usage per model name only, not per node, hence this one.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, LLMResult

from compllm_graph.scheduling import READY_EVENT

GRAPH_STAGES = ("decompose", "route", "execute", "aggregate")
"""The nodes of `create_compllm_graph`, in the order they run."""
SUB_QUERY = re.compile(r"sub_query_(\d+)")
"""A sub-query's task inside `execute` (see `scheduling`)."""


def is_stage(node: str) -> bool:
    """Whether `node` (a `langgraph_node`) is a stage: a graph node or a sub-query's task.

    The schedulers' own runs inside `execute` (the eager entrypoint, the waves graph's `leaves`)
    are not stages: their time is `execute`'s.
    """
    return node in GRAPH_STAGES or SUB_QUERY.fullmatch(node) is not None


@dataclass
class StageFigures:
    """What one stage of one run cost.

    Attributes:
        seconds: Wall time from the stage's first run starting to its last run ending.
        model_seconds: Time in model calls (summed: overlapping calls count each).
        prompt_tokens: Prompt tokens of its model calls.
        generated_tokens: Generated tokens of its model calls.
        calls: Model calls made.
        calls_without_usage: Calls whose model reported no token usage (their tokens count 0).
        failed_calls: Calls that raised.
    """

    seconds: float = 0.0
    model_seconds: float = 0.0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    calls: int = 0
    calls_without_usage: int = 0
    failed_calls: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def usage_of(response: LLMResult) -> tuple[int, int] | None:
    """(prompt, generated) tokens of a model call, or None when the model reported none.

    Reads the first generation's `usage_metadata` (chat models; a beam search reports its usage
    on the best beam), else the provider's `llm_output["token_usage"]`.
    """
    first = response.generations[0][0] if response.generations and response.generations[0] else None
    message = first.message if isinstance(first, ChatGeneration) else None
    if isinstance(message, AIMessage) and message.usage_metadata:
        usage = message.usage_metadata
        return int(usage["input_tokens"]), int(usage["output_tokens"])
    token_usage = (response.llm_output or {}).get("token_usage")
    if isinstance(token_usage, Mapping) and "prompt_tokens" in token_usage:
        return int(token_usage["prompt_tokens"]), int(token_usage.get("completion_tokens", 0))
    return None


class StageTimer(BaseCallbackHandler):
    """A callback handler that times and counts each stage of one run (see the module's doc).

    Use a fresh timer per run: runs of the same stage are merged into one span.

    Args:
        outside: The stage credited with model calls made outside any graph node.
        clock: Seconds on a monotonic clock (a fake one in tests).
    """

    run_inline = True  # an async run calls it on the event loop at once, not on an executor

    def __init__(self, outside: str = "model", clock: Callable[[], float] = time.perf_counter):
        super().__init__()
        self.outside = outside
        self._clock = clock
        self._lock = threading.Lock()  # a sync graph calls back from several threads
        self._spans: dict[str, list[float]] = {}
        self._open_chains: dict[UUID, str] = {}
        self._open_calls: dict[UUID, tuple[str, float]] = {}
        self._figures: dict[str, StageFigures] = {}
        self._ready: dict[str, float] = {}

    def _stage_of(self, metadata: Mapping[str, Any] | None) -> str:
        node = (metadata or {}).get("langgraph_node")
        return node if isinstance(node, str) else self.outside

    def _touch(self, stage: str, now: float) -> None:
        span = self._spans.setdefault(stage, [now, now])
        span[0], span[1] = min(span[0], now), max(span[1], now)
        self._figures.setdefault(stage, StageFigures())

    def on_chain_start(
        self,
        serialized: dict[str, Any],
        inputs: dict[str, Any],
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        node = (metadata or {}).get("langgraph_node")
        if isinstance(node, str) and is_stage(node):
            with self._lock:
                self._open_chains[run_id] = node
                self._touch(node, self._clock())

    def on_custom_event(self, name: str, data: Any, *, run_id: UUID, **kwargs: Any) -> None:
        if name != READY_EVENT:
            return
        with self._lock:
            stage = self._open_chains.get(run_id)
            if stage is not None:
                self._ready[stage] = self._clock()

    def _end_chain(self, run_id: UUID) -> None:
        with self._lock:
            stage = self._open_chains.pop(run_id, None)
            if stage is not None:
                self._touch(stage, self._clock())

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end_chain(run_id)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end_chain(run_id)

    def _start_call(self, run_id: UUID, metadata: dict[str, Any] | None) -> None:
        stage = self._stage_of(metadata)
        with self._lock:
            now = self._clock()
            self._open_calls[run_id] = (stage, now)
            self._touch(stage, now)

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[Any]],
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._start_call(run_id, metadata)

    def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._start_call(run_id, metadata)

    def _end_call(self, run_id: UUID, response: LLMResult | None) -> None:
        with self._lock:
            now = self._clock()
            opened = self._open_calls.pop(run_id, None)
            if opened is None:
                return
            stage, started = opened
            self._touch(stage, now)
            figures = self._figures[stage]
            figures.calls += 1
            figures.model_seconds += now - started
            usage = None if response is None else usage_of(response)
            if response is None:
                figures.failed_calls += 1
            elif usage is None:
                figures.calls_without_usage += 1
            else:
                figures.prompt_tokens += usage[0]
                figures.generated_tokens += usage[1]

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        self._end_call(run_id, response)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end_call(run_id, None)

    def stages(self) -> dict[str, StageFigures]:
        """Each stage's figures so far, in the order the stages started."""
        with self._lock:
            order = sorted(self._spans, key=lambda stage: self._spans[stage][0])
            return {
                stage: StageFigures(
                    **{
                        **asdict(self._figures[stage]),
                        "seconds": self._spans[stage][1]
                        - max(self._spans[stage][0], self._ready.get(stage, 0.0)),
                    }
                )
                for stage in order
            }


__all__ = ["GRAPH_STAGES", "SUB_QUERY", "StageFigures", "StageTimer", "is_stage", "usage_of"]
