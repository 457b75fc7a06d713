"""`LocalChatModel`: a LangChain chat model served by an in-process model's batcher.

This replaces `langchain_huggingface.ChatHuggingFace` for local models: over a local
`HuggingFacePipeline` it cannot be awaited (`ainvoke` raises NotImplementedError) and it
sends one prompt per `generate` call, so concurrent graph nodes never share a forward pass.
Here every call goes through the model's micro-batcher, and concurrent calls - from threads or
from any event loop - share one mixed-adapter `generate`.
"""

from __future__ import annotations

import asyncio
import math
import queue
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import Future
from typing import Any, Protocol, runtime_checkable

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict, Field, model_validator

from compllm_graph.adapter_folder import AdapterError
from compllm_graph.models.requests import Completion, GenerationSettings, LookupConfig, Request

_SETTINGS = (
    "max_new_tokens",
    "do_sample",
    "temperature",
    "top_p",
    "top_k",
    "seed",
    "logits_processor",
    "num_beams",
    "grammar",
    "lookup",
)
_DONE = object()  # end-of-stream marker
_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}


def chat_turns(messages: Sequence[BaseMessage]) -> list[dict[str, str]]:
    """Messages as the `{"role", "content"}` turns chat templates take."""
    return [{"role": _ROLES.get(m.type, m.type), "content": m.text} for m in messages]


def transcript(turns: list[dict[str, str]]) -> str:
    """A plain `role: text` prompt for models without a chat template."""
    return "".join(f"{t['role']}: {t['content']}\n" for t in turns) + "assistant:"


class Submitter(Protocol):
    """Runs generation requests: `Batcher` for the transformers engine."""

    def submit(self, request: Request) -> Future[Completion]:
        """Queue `request`; its future holds the completion."""
        ...


@runtime_checkable
class ChatBackend(Protocol):
    """What a chat model needs from a loaded model (`TransformersModel` or `LlamaCppModel`)."""

    @property
    def name(self) -> str:
        """The model's alias or path."""
        ...

    @property
    def batcher(self) -> Submitter:
        """Where requests go."""
        ...

    def encode_chat(self, messages: Sequence[BaseMessage]) -> list[int]:
        """Token ids of `messages` through the model's chat template."""
        ...


def grown_budget(
    max_new_tokens: int, prompt_tokens: int, tokens_per_prompt_token: float, context: int | None
) -> int:
    """`max_new_tokens`, or more for a long prompt (`tokens_per_prompt_token` tokens a prompt
    token), never past `context` (the model's length, where known)."""
    scaled = math.ceil(tokens_per_prompt_token * prompt_tokens)
    if scaled <= max_new_tokens:
        return max_new_tokens
    if context is not None:
        scaled = min(scaled, context - prompt_tokens)
    return max(max_new_tokens, scaled)


class LocalChatModel(BaseChatModel):
    """Chat model over a shared in-process model (either engine), greedy unless `do_sample=True`.

    With `num_beams > 1` it decodes by beam search and `generate`/`agenerate` return every
    beam as a generation, best first, its score in `generation_info["score"]` (`invoke`
    returns the best), so a caller can rerank them.

    Runtime keyword arguments to `invoke`/`stream` (e.g. `max_new_tokens=16`) override the
    fields for that call; `stop` strings are added to the field's.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    local: ChatBackend = Field(exclude=True, repr=False)
    adapter: str | None = None
    max_new_tokens: int = 256
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop: list[str] | None = None
    logits_processor: Callable[[int], Any] | None = Field(default=None, exclude=True, repr=False)
    """Constrains decoding: see `GenerationSettings.logits_processor`."""
    num_beams: int = 1
    grammar: str | None = Field(default=None, repr=False)
    """Constrains decoding on the llama.cpp engine: see `GenerationSettings.grammar`."""
    lookup: LookupConfig | None = Field(default=None, repr=False)
    """Prompt-lookup decoding for greedy calls on the llama.cpp engine: see
    `GenerationSettings.lookup`."""
    tokens_per_prompt_token: float = 0.0
    """Let a reply run to this many tokens per prompt token where that is more than
    `max_new_tokens` (0: never), within the model's context: a decomposer copies the question
    into its sub-queries, so its budget has to grow with the question."""

    @model_validator(mode="before")
    @classmethod
    def _standard_max_tokens(cls, values: Any) -> Any:
        """Accept LangChain's standard `max_tokens` as `max_new_tokens`."""
        if isinstance(values, dict) and "max_tokens" in values:
            values = dict(values)
            limit = values.pop("max_tokens")
            if limit is not None:
                values.setdefault("max_new_tokens", limit)
        return values

    @property
    def _llm_type(self) -> str:
        return "compllm-local"

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        """Tracing parameters in LangSmith's standard names."""
        return LangSmithParams(
            ls_provider="compllm",
            ls_model_name=str(kwargs.get("model", self.local.name)),
            ls_model_type="chat",
            ls_temperature=kwargs.get("temperature", self.temperature),
            ls_max_tokens=kwargs.get("max_new_tokens", self.max_new_tokens),
            ls_stop=stop or self.stop,
        )

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model": self.local.name,
            "adapter": self.adapter,
            **{key: getattr(self, key) for key in _SETTINGS},
        }

    def _request(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        overrides: dict[str, Any],
        on_text: Any = None,
    ) -> Request:
        unknown = set(overrides) - set(_SETTINGS)
        if unknown:
            raise TypeError(f"unsupported generation arguments: {sorted(unknown)}")
        values = {k: overrides.get(k, getattr(self, k)) for k in _SETTINGS}
        prompt_ids = self.local.encode_chat(messages)
        values["max_new_tokens"] = self._budget(values["max_new_tokens"], len(prompt_ids))
        settings = GenerationSettings(**values)
        stops = tuple(s for s in (*(self.stop or ()), *(stop or ())) if s)
        return Request(
            prompt_ids=prompt_ids,
            adapter=self.adapter,
            settings=settings,
            stop=stops,
            on_text=on_text,
        )

    def _budget(self, max_new_tokens: int, prompt_tokens: int) -> int:
        context = getattr(self.local, "context_length", None)
        return grown_budget(
            max_new_tokens,
            prompt_tokens,
            self.tokens_per_prompt_token,
            context if isinstance(context, int) else None,
        )

    def _metadata(self, completion: Completion) -> dict[str, Any]:
        return {
            "model_name": self.local.name,
            "adapter": self.adapter,
            "finish_reason": completion.finish_reason,
            "batch_size": completion.batch_size,
            "token_usage": {
                "prompt_tokens": completion.prompt_tokens,
                "completion_tokens": len(completion.token_ids),
                "total_tokens": completion.prompt_tokens + len(completion.token_ids),
            },
        }

    @staticmethod
    def _usage(completion: Completion) -> UsageMetadata:
        generated = len(completion.token_ids)
        return {
            "input_tokens": completion.prompt_tokens,
            "output_tokens": generated,
            "total_tokens": completion.prompt_tokens + generated,
        }

    def _result(self, completion: Completion) -> ChatResult:
        message = AIMessage(
            content=completion.text,
            response_metadata=self._metadata(completion),
            usage_metadata=self._usage(completion),
        )
        generation = ChatGeneration(
            message=message, generation_info={"finish_reason": completion.finish_reason}
        )
        if not completion.candidates:
            return ChatResult(generations=[generation])
        # The best beam keeps the usage figures; the others carry only their text and score.
        generation.generation_info = {
            **(generation.generation_info or {}),
            "score": completion.candidates[0][1],
        }
        others = [
            ChatGeneration(message=AIMessage(content=text), generation_info={"score": score})
            for text, score in completion.candidates[1:]
        ]
        return ChatResult(generations=[generation, *others])

    def _final_chunk(self, completion: Completion) -> ChatGenerationChunk:
        chunk = AIMessageChunk(
            content="",
            response_metadata=self._metadata(completion),
            usage_metadata=self._usage(completion),
        )
        return ChatGenerationChunk(
            message=chunk, generation_info={"finish_reason": completion.finish_reason}
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        request = self._request(messages, stop, kwargs)
        return self._result(self.local.batcher.submit(request).result())

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        request = self._request(messages, stop, kwargs)
        # wrap_future resolves on *this* loop via call_soon_threadsafe; cancelling the await
        # drops a queued request, and `abandoned` stops one that is already generating.
        try:
            completion = await asyncio.wrap_future(self.local.batcher.submit(request))
        except asyncio.CancelledError:
            request.abandoned.set()
            raise
        return self._result(completion)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        pieces: queue.SimpleQueue[Any] = queue.SimpleQueue()
        request = self._request(messages, stop, kwargs, on_text=pieces.put)
        future = self.local.batcher.submit(request)
        future.add_done_callback(lambda _: pieces.put(_DONE))
        try:
            while (piece := pieces.get()) is not _DONE:
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
                if run_manager is not None:
                    run_manager.on_llm_new_token(piece, chunk=chunk)
                yield chunk
        finally:
            request.abandoned.set()  # no-op once finished; stops the row if the reader left
        yield self._final_chunk(future.result())

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[Any] = asyncio.Queue()

        def deliver(item: Any) -> None:  # runs on the worker thread
            loop.call_soon_threadsafe(pieces.put_nowait, item)

        request = self._request(messages, stop, kwargs, on_text=deliver)
        future = self.local.batcher.submit(request)
        future.add_done_callback(lambda _: deliver(_DONE))
        try:
            while (piece := await pieces.get()) is not _DONE:
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
                if run_manager is not None:
                    await run_manager.on_llm_new_token(piece, chunk=chunk)
                yield chunk
        finally:
            request.abandoned.set()  # no-op once finished; stops the row if the reader left
        yield self._final_chunk(await asyncio.wrap_future(future))


def chat_model_for(
    backend: ChatBackend, loaded: Sequence[str], adapter: str | None, **generation: Any
) -> LocalChatModel:
    """A chat model over `backend`, through `adapter` (None: the base model).

    Raises:
        AdapterError: `adapter` is not among the `loaded` ones.
    """
    if adapter is not None and adapter not in loaded:
        raise AdapterError(
            f"unknown adapter {adapter!r} for {backend.name}; loaded: {sorted(loaded) or 'none'}"
        )
    return LocalChatModel(local=backend, adapter=adapter, **generation)


__all__ = [
    "ChatBackend",
    "LocalChatModel",
    "chat_model_for",
    "chat_turns",
    "grown_budget",
    "transcript",
]
