"""What a generation request is, whichever engine runs it: settings, the request, its completion.

Both engines (transformers' micro-batcher and llama.cpp's continuous batcher) take a `Request`
and resolve its future with a `Completion`; the stop-string helpers are shared so that both cut
and stream text the same way.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from compllm_graph.models.lookup import LookupConfig

_seeded_groups = itertools.count()


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
            with different factories never share a batch. The transformers engine only.
        grammar: a GBNF grammar that constrains the output (root rule `root`). The llama.cpp
            engine only.
        num_beams: beam-search width; above 1 the request returns all its beams as candidates
            (best first), stop strings cut the finished beams, streaming sends the best beam
            in one piece at the end, and a caller that stops listening does not cut the search
            short. Beam search is greedy, so `do_sample` must be off.
        lookup: prompt-lookup decoding for a greedy request (`LookupConfig`): the same output in
            fewer decode steps where the answer copies its prompt. The llama.cpp engine only;
            sampled and beam-search requests, and the transformers engine, decode plainly.
    """

    max_new_tokens: int = field(
        default=256, metadata={"help": "most tokens generated for a request"}
    )
    do_sample: bool = field(default=False, metadata={"help": "sample instead of greedy decoding"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature (> 0)"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling mass in (0, 1]"})
    top_k: int = field(
        default=0,
        metadata={"help": "sample among the k most likely tokens (0 disables)"},
    )
    seed: int | None = field(
        default=None,
        metadata={
            "help": "makes a sampled request reproducible; seeded requests run in a batch of "
            "their own"
        },
    )
    logits_processor: Callable[[int], Any] | None = field(
        default=None,
        metadata={
            "help": "a factory (left-padded prompt width -> transformers logits processor) that "
            "constrains every row of the batch, e.g. the decomposer's tag grammar; requests "
            "with different factories never share a batch; the transformers engine only"
        },
    )
    num_beams: int = field(default=1, metadata={"help": "beam-search width (1: greedy decoding)"})
    grammar: str | None = field(
        default=None,
        metadata={
            "help": "a GBNF grammar that constrains the output (root rule `root`); the "
            "llama.cpp engine only"
        },
    )
    lookup: LookupConfig | None = field(
        default=None,
        metadata={
            "help": "prompt-lookup decoding for a greedy request: same output, fewer decode "
            "steps where the answer copies its prompt; the llama.cpp engine only"
        },
    )

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
        if self.grammar is not None and self.logits_processor is not None:
            raise ValueError("give a GBNF grammar or a logits processor, not both")

    def group_key(self) -> Hashable:
        """Requests with equal keys can share one `generate` call with identical results."""
        if self.num_beams > 1:
            # Beams compete until the longest allowed length, so the cap is part of the result.
            return ("beams", self.num_beams, self.max_new_tokens, self.logits_processor)
        if not self.do_sample:
            return ("greedy", self.logits_processor, self.grammar)
        if self.seed is not None:
            return ("seeded", next(_seeded_groups))
        return (
            "sample",
            self.temperature,
            self.top_p,
            self.top_k,
            self.logits_processor,
            self.grammar,
        )


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
        drafted_tokens: prompt-lookup draft tokens fed for verification (llama.cpp engine).
        accepted_tokens: those of them greedy decoding kept.
        reused_prompt_tokens: prompt tokens whose cache was copied from an earlier request's
            instead of being computed again (llama.cpp engine).
    """

    text: str
    token_ids: list[int]
    prompt_tokens: int
    finish_reason: str
    batch_size: int
    candidates: tuple[tuple[str, float], ...] = ()
    drafted_tokens: int = 0
    accepted_tokens: int = 0
    reused_prompt_tokens: int = 0


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


def first_stop(text: str, stops: Sequence[str]) -> int:
    """Where the earliest stop string starts in `text`, or -1."""
    return min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)


def safe_prefix(text: str, stops: Sequence[str]) -> int:
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


def emit(request: Request, text: str, emitted: int, upto: int) -> int:
    """Send `text[emitted:upto]` to a streaming caller; returns how much of `text` it has.

    A listener that raises (its loop closed, say) is dropped and its request abandoned, so it
    never fails the requests generating beside it.
    """
    if request.on_text is None or upto <= emitted:
        return emitted
    try:
        request.on_text(text[emitted:upto])
    except Exception:  # any failure of the listener is the listener's
        request.on_text = None
        request.abandoned.set()
    return upto


__all__ = [
    "Completion",
    "GenerationSettings",
    "LookupConfig",
    "Request",
    "emit",
    "first_stop",
    "safe_prefix",
]
