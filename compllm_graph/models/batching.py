"""Micro-batching: one worker thread owns the model and coalesces concurrent requests.

Callers (threads, or coroutines on any event loop) put a `Request` on a thread-safe queue
and wait on its `concurrent.futures.Future`. The worker takes the first request, waits at most
`max_wait_ms` for more (up to `max_batch_size`), groups compatible ones and runs each group
as one left-padded `generate` call; with peft adapters loaded the group may mix adapters
(`adapter_names=[...]`, `"__base__"` for the base model).

Per-request `max_new_tokens`, stop strings and end-of-sequence are applied by one
`_RowStopper` for every call, batched or not, so a request's output does not depend on
what it was batched with. Beam-search requests (`num_beams > 1`) run in groups of equal
settings and return every beam as a scored candidate.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from typing import Any

from compllm_graph._extras import requires
from compllm_graph.models.requests import (
    Completion,
    Request,
    emit,
    first_stop,
    safe_prefix,
)

with requires("local"):
    import torch
    from transformers import (
        GenerationConfig,
        LogitsProcessorList,
        StoppingCriteria,
        StoppingCriteriaList,
    )

_PEFT_BASE = "__base__"  # peft's name for "no adapter" inside a mixed batch
_IDLE_EXIT_S = 10.0  # the worker thread exits when idle this long and restarts on demand
_END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>")


class _RowStopper(StoppingCriteria):
    """Tracks each row's text and tells `generate` which rows are finished.

    A row finishes on an end-of-sequence token, on a stop string, or at its own
    `max_new_tokens`; later tokens of that row (padding) are ignored.
    """

    def __init__(
        self, tokenizer: Any, requests: Sequence[Request], prompt_len: int, eos_ids: set[int]
    ) -> None:
        self.tokenizer = tokenizer
        self.requests = requests
        self.prompt_len = prompt_len
        self.eos_ids = eos_ids
        self.done = [False] * len(requests)
        self.tokens: list[list[int]] = [[] for _ in requests]
        self.texts = [""] * len(requests)
        self.reasons = ["length"] * len(requests)
        self.emitted = [0] * len(requests)

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        for row, request in enumerate(self.requests):
            if not self.done[row]:
                self._advance(row, request, int(input_ids[row, -1]))
        return torch.tensor(self.done, dtype=torch.bool, device=input_ids.device)

    def _advance(self, row: int, request: Request, token: int) -> None:
        tokens = self.tokens[row]
        tokens.append(token)
        if request.abandoned.is_set():
            self._finish(row, request, "abandoned")
            return
        if token in self.eos_ids:
            self._finish(row, request, "stop")
            return
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        cut = first_stop(text, request.stop)
        if cut >= 0:
            self.texts[row] = text[:cut]
            self._finish(row, request, "stop")
            return
        self.texts[row] = text
        if len(tokens) >= request.settings.max_new_tokens:
            self._finish(row, request, "length")
        else:
            self._emit(row, request, safe_prefix(text, request.stop))

    def _finish(self, row: int, request: Request, reason: str) -> None:
        self.done[row] = True
        self.reasons[row] = reason
        self._emit(row, request, len(self.texts[row]))

    def _emit(self, row: int, request: Request, upto: int) -> None:
        """Send newly visible text to a streaming caller."""
        self.emitted[row] = emit(request, self.texts[row], self.emitted[row], upto)


class Batcher:
    """Owns the model on one worker thread and runs coalesced requests.

    Args:
        model_getter: returns the current model (a transformers causal LM, or the peft
            `PeftModel` wrapping it once adapters are loaded).
        tokenizer: its tokenizer (used for padding ids and decoding).
        lock: held while generating; hold it to change the model (e.g. load an adapter).
        max_batch_size: most requests per `generate` call.
        max_wait_ms: after the first request arrives, how long to wait for company.
    """

    def __init__(
        self,
        model_getter: Callable[[], Any],
        tokenizer: Any,
        lock: threading.RLock,
        *,
        max_batch_size: int = 8,
        max_wait_ms: float = 5.0,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        self._model_getter = model_getter
        self._tokenizer = tokenizer
        self._lock = lock
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self._queue: queue.Queue[Request] = queue.Queue()
        self._state = threading.Lock()
        self._thread: threading.Thread | None = None
        self.pad_id, self.eos_ids = _special_ids(tokenizer, model_getter())

    def submit(self, request: Request) -> Future[Completion]:
        """Queue `request` and return its future (thread-safe, never blocks on generation)."""
        with self._state:
            self._queue.put(request)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._work, name="compllm-batcher", daemon=True
                )
                self._thread.start()
        return request.future

    def _work(self) -> None:
        try:
            self._serve()
        finally:
            # Whatever ended this thread, let the next submit start a fresh one.
            with self._state:
                if self._thread is threading.current_thread():
                    self._thread = None

    def _serve(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=_IDLE_EXIT_S)
            except queue.Empty:
                with self._state:
                    if self._queue.empty():
                        self._thread = None
                        return
                continue
            for group in self._groups(self._collect(first)):
                self._run(group)

    def _collect(self, first: Request) -> list[Request]:
        """The first request plus whatever arrives within the wait window (already queued
        requests, e.g. those that came in during the previous `generate`, join at once)."""
        batch = [first]
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch_size:
            try:
                batch.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
        # Drop requests whose caller gave up (e.g. a cancelled coroutine).
        return [r for r in batch if r.future.set_running_or_notify_cancel()]

    @staticmethod
    def _groups(batch: list[Request]) -> list[list[Request]]:
        groups: dict[Hashable, list[Request]] = {}
        for request in batch:
            groups.setdefault(request.settings.group_key(), []).append(request)
        return list(groups.values())

    def _run(self, group: list[Request]) -> None:
        try:
            completions = self.generate(group)
        except Exception as exc:  # every waiter must hear about the failure
            for request in group:
                request.future.set_exception(exc)
            return
        for request, completion in zip(group, completions, strict=True):
            request.future.set_result(completion)

    def generate(self, group: Sequence[Request]) -> list[Completion]:
        """Run one left-padded `generate` call for compatible requests, holding the model lock.

        The worker calls this for each group; tests and benchmarks call it directly to get a
        batch of exactly `group`.
        """
        if group[0].settings.num_beams > 1:
            return self._beam_search(group)
        input_ids, attention = self._left_padded(group)
        width = input_ids.shape[1]
        stopper = _RowStopper(self._tokenizer, group, width, self.eos_ids)
        settings = group[0].settings
        config = GenerationConfig(
            max_new_tokens=max(r.settings.max_new_tokens for r in group),
            do_sample=settings.do_sample,
            temperature=settings.temperature if settings.do_sample else None,
            top_p=settings.top_p if settings.do_sample else None,
            top_k=settings.top_k if settings.do_sample else None,
            pad_token_id=self.pad_id,
            eos_token_id=sorted(self.eos_ids),
        )
        with self._lock, torch.inference_mode(), torch.random.fork_rng(devices=[]):
            if settings.seed is not None:
                torch.manual_seed(settings.seed)
            model = self._model_getter()
            model.generate(
                input_ids=input_ids,
                attention_mask=attention,
                generation_config=config,
                stopping_criteria=StoppingCriteriaList([stopper]),
                **self._extra(model, group, width),
            )
        return [
            Completion(
                text=stopper.texts[row],
                token_ids=stopper.tokens[row],
                prompt_tokens=len(request.prompt_ids),
                finish_reason=stopper.reasons[row],
                batch_size=len(group),
            )
            for row, request in enumerate(group)
        ]

    def _left_padded(self, group: Sequence[Request]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(r.prompt_ids) for r in group)
        input_ids = torch.full((len(group), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(group), width), dtype=torch.long)
        for row, request in enumerate(group):
            input_ids[row, width - len(request.prompt_ids) :] = torch.tensor(request.prompt_ids)
            attention[row, width - len(request.prompt_ids) :] = 1
        return input_ids, attention

    @staticmethod
    def _extra(
        model: Any, group: Sequence[Request], width: int, rows_per_request: int = 1
    ) -> dict[str, Any]:
        """Per-row adapters and the group's logits processor, as `generate` keywords."""
        extra: dict[str, Any] = {}
        if hasattr(model, "peft_config"):
            names = [r.adapter or _PEFT_BASE for r in group]
            extra["adapter_names"] = [n for n in names for _ in range(rows_per_request)]
        factory = group[0].settings.logits_processor
        if factory is not None:
            extra["logits_processor"] = LogitsProcessorList([factory(width)])
        return extra

    def _beam_search(self, group: Sequence[Request]) -> list[Completion]:
        """Beam search for a group of equal settings; every beam comes back as a candidate."""
        settings = group[0].settings
        beams = settings.num_beams
        input_ids, attention = self._left_padded(group)
        width = input_ids.shape[1]
        config = GenerationConfig(
            max_new_tokens=settings.max_new_tokens,
            do_sample=False,
            num_beams=beams,
            num_return_sequences=beams,
            return_dict_in_generate=True,
            output_scores=True,
            pad_token_id=self.pad_id,
            eos_token_id=sorted(self.eos_ids),
        )
        with self._lock, torch.inference_mode():
            model = self._model_getter()
            # Beam search runs every prompt as `beams` rows; peft would repeat the adapter
            # names only for a `num_beams` keyword, which transformers no longer wants beside
            # a config.
            out = model.generate(
                input_ids=input_ids,
                attention_mask=attention,
                generation_config=config,
                **self._extra(model, group, width, rows_per_request=beams),
            )
        rows = out.sequences[:, width:].tolist()
        scores = out.sequences_scores.tolist()
        completions = []
        for index, request in enumerate(group):
            beams_of = range(index * beams, (index + 1) * beams)
            finished = [self._finished_beam(rows[b], request) for b in beams_of]
            tokens, text, reason = finished[0]
            completions.append(
                Completion(
                    text=text,
                    token_ids=tokens,
                    prompt_tokens=len(request.prompt_ids),
                    finish_reason=reason,
                    batch_size=len(group),
                    candidates=tuple((f[1], scores[b]) for f, b in zip(finished, beams_of)),
                )
            )
            if request.on_text is not None and text:
                try:
                    request.on_text(text)
                except Exception:  # a vanished listener must not fail its batch-mates
                    request.on_text = None
        return completions

    def _finished_beam(self, row: list[int], request: Request) -> tuple[list[int], str, str]:
        """A beam's tokens up to its end of sequence, its text cut at the first stop string,
        and why it ended."""
        end = next((i for i, t in enumerate(row) if t in self.eos_ids), None)
        tokens = row if end is None else row[: end + 1]
        text = self._tokenizer.decode(tokens, skip_special_tokens=True)
        cut = first_stop(text, request.stop)
        if cut >= 0:
            return tokens, text[:cut], "stop"
        return tokens, text, "length" if end is None else "stop"


def _special_ids(tokenizer: Any, model: Any) -> tuple[int, set[int]]:
    """Padding id and the ids that end an assistant turn.

    GGUF-derived configs sometimes name only `<|endoftext|>` as end of sequence while the chat
    template closes turns with another token (Qwen's `<|im_end|>`), so known end-of-turn
    tokens present in the vocabulary count too.
    """
    eos: Any = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    candidates = [*(eos if isinstance(eos, list) else [eos]), tokenizer.eos_token_id]
    vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
    candidates += [vocab[token] for token in _END_OF_TURN if token in vocab]
    eos_ids = {int(e) for e in candidates if e is not None}
    if not eos_ids:
        raise ValueError("the tokenizer defines no end-of-sequence token")
    pad = tokenizer.pad_token_id
    return (int(pad) if pad is not None else min(eos_ids)), eos_ids
