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

import itertools
import queue
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from compllm_graph._extras import requires

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
_seeded_groups = itertools.count()
_END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>")


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding settings of one request; greedy unless `do_sample` is set.

    Attributes:
        max_new_tokens: most tokens generated for this request.
        do_sample: sample instead of greedy decoding.
        temperature: sampling temperature (> 0).
        top_p: nucleus sampling mass in (0, 1].
        top_k: sample among the k most likely tokens (0 disables).
        seed: makes a sampled request reproducible; seeded requests run in a batch of their own.
        logits_processor: a factory (left-padded prompt width -> transformers logits processor)
            that constrains every row of the batch, e.g. the decomposer's tag grammar; requests
            with different factories never share a batch.
        num_beams: beam-search width; above 1 the request returns all its beams as candidates
            (best first), stop strings cut the finished beams, streaming sends the best beam
            in one piece at the end, and a caller that stops listening does not cut the search
            short. Beam search is greedy, so `do_sample` must be off.
    """

    max_new_tokens: int = 256
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    logits_processor: Callable[[int], Any] | None = None
    num_beams: int = 1

    def __post_init__(self) -> None:
        if self.num_beams < 1:
            raise ValueError(f"num_beams must be >= 1 (1 is greedy decoding), got {self.num_beams}")
        if self.num_beams > 1 and self.do_sample:
            raise ValueError("beam search is deterministic: pass num_beams=1 with do_sample=True")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature <= 0:
            raise ValueError(
                f"temperature must be > 0 (use do_sample=False for greedy), got {self.temperature}"
            )
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")

    def group_key(self) -> Hashable:
        """Requests with equal keys can share one `generate` call with identical results."""
        if self.num_beams > 1:
            # Beams compete until the longest allowed length, so the cap is part of the result.
            return ("beams", self.num_beams, self.max_new_tokens, self.logits_processor)
        if not self.do_sample:
            return ("greedy", self.logits_processor)
        if self.seed is not None:
            return ("seeded", next(_seeded_groups))
        return ("sample", self.temperature, self.top_p, self.top_k, self.logits_processor)


@dataclass(frozen=True)
class Completion:
    """What one request produced.

    Attributes:
        text: generated text, cut before the first stop string, without special tokens.
        token_ids: generated token ids (including an end-of-sequence or stop-triggering token).
        prompt_tokens: length of the prompt in tokens.
        finish_reason: `"stop"` (end of sequence or stop string), `"length"`, or
            `"abandoned"` (the caller stopped listening).
        batch_size: how many requests shared the `generate` call.
        candidates: for beam search, every beam as (text, score), best first, the score being
            the length-normalised log-probability; the first is `text`. Empty otherwise.
    """

    text: str
    token_ids: list[int]
    prompt_tokens: int
    finish_reason: str
    batch_size: int
    candidates: tuple[tuple[str, float], ...] = ()


@dataclass
class Request:
    """One generation request handed to the worker.

    Attributes:
        prompt_ids: token ids of the already-templated prompt.
        adapter: peft adapter name, or None for the base model.
        settings: decoding settings.
        stop: strings that end generation; the text is cut before the first one.
        on_text: called from the worker thread with each new piece of visible text (streaming).
        future: resolved with a `Completion`, or the exception generation raised.
        abandoned: set by a caller that stopped listening; its row stops at the next token.
    """

    prompt_ids: list[int]
    adapter: str | None
    settings: GenerationSettings
    stop: tuple[str, ...] = ()
    on_text: Callable[[str], None] | None = None
    future: Future[Completion] = field(default_factory=Future)
    abandoned: threading.Event = field(default_factory=threading.Event)


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
        cut = _first_stop(text, request.stop)
        if cut >= 0:
            self.texts[row] = text[:cut]
            self._finish(row, request, "stop")
            return
        self.texts[row] = text
        if len(tokens) >= request.settings.max_new_tokens:
            self._finish(row, request, "length")
        else:
            self._emit(row, request, _safe_prefix(text, request.stop))

    def _finish(self, row: int, request: Request, reason: str) -> None:
        self.done[row] = True
        self.reasons[row] = reason
        self._emit(row, request, len(self.texts[row]))

    def _emit(self, row: int, request: Request, upto: int) -> None:
        """Send newly visible text to a streaming caller."""
        if request.on_text is not None and upto > self.emitted[row]:
            try:
                request.on_text(self.texts[row][self.emitted[row] : upto])
            except Exception:  # a vanished listener (e.g. closed loop) must not fail the batch
                request.on_text = None
                request.abandoned.set()
            self.emitted[row] = upto


def _first_stop(text: str, stops: Sequence[str]) -> int:
    """Where the earliest stop string starts in `text`, or -1."""
    return min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)


def _safe_prefix(text: str, stops: Sequence[str]) -> int:
    """Length of `text` that can be shown without risking a stop string or a split character.

    Holds back a trailing U+FFFD (half a multi-byte character) and any suffix that could be the
    start of a stop string completed by later tokens.
    """
    end = len(text.rstrip("\ufffd"))
    hold = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, end), 0, -1):
            if text[end - size : end] == stop[:size]:
                hold = max(hold, size)
                break
    return end - hold


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
        cut = _first_stop(text, request.stop)
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
