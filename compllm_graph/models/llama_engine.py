"""The llama.cpp engine: one GGUF model in process, LoRA experts, continuous batching.

One worker thread owns the model. Each busy adapter (the base model included) has a context of
its own, all sharing the weights, so an adapter is set once per context instead of switched per
step: llama.cpp applies a LoRA adapter to a whole context, so one batch cannot mix adapters.
Every step decodes one token for each running sequence of an adapter group in a single
`llama_decode` (several sequence ids in one batch; new requests' prompts join the same batch).
Up to `parallel_contexts` busy groups step at the same time, each on its own thread with the
engine's thread count (two adapters decoding at once took 0.86x the wall time of taking turns on
a 2-core CPU, with the same tokens: `benchmarks/adapter_overlap.py`); further groups take turns
round-robin, so no adapter waits behind another's long answer. Finished sequences free their
slot (`llama_memory_seq_rm`) and new requests join between steps.

Two options, both off by default, save decode or prompt work. A greedy request with a
`LookupConfig` feeds prompt-lookup draft tokens after its last token in the same batch, keeps
the ones greedy decoding picks anyway and drops the rest from the cache (`llama_memory_seq_rm`
from the first rejected position). With `cached_prompts` above 0, each adapter context keeps the
cache of its last few prompts under spare sequence ids, and a new prompt copies the cells of its
longest common prefix with one of them (`llama_memory_seq_cp`; with the unified cache the cells
are shared, not duplicated), so a system prompt or few-shot block is computed once per adapter.
Both change how rows are batched, which can move llama.cpp's logits by rounding: see
`SMALL_BATCH_ROWS` and the `cached_prompts` argument.
"""

from __future__ import annotations

import ctypes
import os
import threading
from array import array
from collections import OrderedDict, deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compllm_graph._extras import requires
from compllm_graph._progress import verbose
from compllm_graph.errors import CompLLMError
from compllm_graph.models.lookup import LookupConfig, find_draft, token_array
from compllm_graph.models.requests import Completion, Request, emit, first_stop, safe_prefix

with requires("local"):
    import llama_cpp as ll
    import numpy as np

DEFAULT_CONTEXT = 4096
"""Tokens of KV cache per adapter context, shared by its sequences."""
DEFAULT_SEQUENCES = 8
"""Sequences one adapter context runs at once."""
MAX_CONTEXTS = 8
"""Adapter contexts alive at once; an idle one is handed to another adapter when all are used."""
DEFAULT_PARALLEL_CONTEXTS = 2
"""Busy adapter contexts that decode at the same time (measured on 2 cores: 2 pays)."""
MAX_CACHED_PROMPTS = 8
"""Most recent prompts whose cache an adapter context can keep for later prompts to share."""
MIN_REUSED_TOKENS = 4
"""Shortest common prefix worth copying from a cached prompt."""
SMALL_BATCH_ROWS = 7
"""Most rows a decode with lookup drafts may hold. On one thread, llama.cpp's CPU kernels compute
each row of a decode this small exactly as a one-token decode (measured: up to 7 rows on
Qwen2.5-Coder-0.5B's Q5_0/Q8_0 weights, 63 on SmolLM2's Q4_1; larger batches take other matmul
kernels and shift logits by up to about one unit), so drafts leave the greedy output as it is.
With more threads, flash attention splits a one-token decode differently from a multi-row one
once a sequence passes 256 cached tokens, and a nearly tied greedy choice can flip."""


class EngineError(CompLLMError, RuntimeError):
    """llama.cpp refused a model, an adapter or a batch."""


def physical_cores() -> int:
    """Physical CPU cores (hyper-threads share a core's memory bandwidth), at least 1."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return max(1, (os.cpu_count() or 2) // 2)
    cores, physical = set(), "0"
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "physical id":
            physical = value.strip()
        elif key.strip() == "core id":
            cores.add((physical, value.strip()))
    return len(cores) or max(1, os.cpu_count() or 1)


def default_threads() -> int:
    """`$COMPLLM_THREADS` if set, else the physical cores."""
    value = os.environ.get("COMPLLM_THREADS")
    return int(value) if value else physical_cores()


def _extra_buffers() -> bool:
    """Whether to let llama.cpp repack weights (`$COMPLLM_LLAMA_REPACK=1`; off by default)."""
    return os.environ.get("COMPLLM_LLAMA_REPACK", "") == "1"


_LOG_CALLBACK: Any = None
_BACKEND_LOCK = threading.Lock()


def _init_backend() -> None:
    """Start llama.cpp once per process, keeping its logs quiet unless `COMPLLM_VERBOSE`."""
    global _LOG_CALLBACK
    with _BACKEND_LOCK:
        if _LOG_CALLBACK is not None:
            return
        loud = verbose()

        @ll.llama_log_callback
        def log(level: int, text: bytes, user_data: Any) -> None:
            if loud or level == 4:  # GGML_LOG_LEVEL_ERROR
                print(text.decode("utf-8", "replace"), end="", flush=True)

        _LOG_CALLBACK = log  # kept alive: llama.cpp holds only the pointer
        ll.llama_log_set(log, ctypes.c_void_p())
        ll.llama_backend_init()


@dataclass
class _Sequence:
    """One running request: its slot, tokens, text and sampler."""

    request: Request
    seq_id: int
    sampler: Any
    position: int = 0
    pending: list[int] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    raw: bytearray = field(default_factory=bytearray)
    text: str = ""
    emitted: int = 0
    peak_batch: int = 1
    budget: int = 0
    lookup: LookupConfig | None = None
    history: array = field(default_factory=token_array)  # prompt + tokens, for lookup
    drafted: int = 0
    accepted: int = 0
    reused: int = 0
    remember: bool = False  # keep this prompt's cache once it is computed


class _AdapterContext:
    """A llama.cpp context serving one adapter (or the base model) for several sequences.

    Sequence ids below `n_seq_max` are the running requests' slots; the `cached` ids above them
    hold recent prompts' cache cells for later prompts to copy, as many as the engine's
    `cached_prompts` (least recently used dropped first, and whenever a request needs room).
    """

    def __init__(
        self,
        engine: LlamaEngine,
        adapter: str | None,
        *,
        n_ctx: int | None = None,
        n_seq_max: int | None = None,
        cached: int | None = None,
    ) -> None:
        n_ctx = n_ctx or engine.n_ctx
        n_seq_max = n_seq_max or engine.n_seq_max
        cached = (MAX_CACHED_PROMPTS if engine.partial_cache else 0) if cached is None else cached
        params = ll.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = n_ctx
        params.n_ubatch = min(512, n_ctx)
        params.n_seq_max = n_seq_max + cached
        params.n_threads = params.n_threads_batch = engine.n_threads
        params.kv_unified = True  # sequences share the pool, so one long prompt fits
        params.no_perf = True
        self.ctx = ll.llama_init_from_model(engine.model, params)
        if not self.ctx:
            raise EngineError(f"llama.cpp could not create a context of {n_ctx} tokens")
        self.memory = ll.llama_get_memory(self.ctx)
        self.batch = ll.llama_batch_init(n_ctx, 0, 1)
        self.n_ctx = n_ctx
        self.adapter: str | None = None
        self.engine = engine
        self.running: list[_Sequence] = []
        self.free_slots = list(range(n_seq_max))
        self.cache_ids = list(range(n_seq_max, n_seq_max + cached))
        self.prompts: OrderedDict[int, tuple[int, ...]] = OrderedDict()  # cache id -> prompt
        self.use(adapter)

    def use(self, adapter: str | None) -> None:
        """Apply `adapter` (None: none) to this context; it must be idle."""
        if adapter is None:
            code = ll.llama_set_adapters_lora(self.ctx, None, 0, None)
        else:
            handles = (ll.llama_adapter_lora_p_ctypes * 1)(self.engine.adapters[adapter])
            scales = (ctypes.c_float * 1)(1.0)
            code = ll.llama_set_adapters_lora(self.ctx, handles, 1, scales)
        if code != 0:
            raise EngineError(f"llama.cpp could not apply adapter {adapter!r} (code {code})")
        ll.llama_memory_clear(self.memory, True)
        self.prompts.clear()
        self.adapter = adapter

    def used_tokens(self) -> int:
        """Cache cells promised to running sequences and held by cached prompts (cells they
        share are counted twice, so this never under-counts)."""
        return sum(s.budget for s in self.running) + sum(map(len, self.prompts.values()))

    def make_room(self, tokens: int) -> bool:
        """Drop cached prompts, oldest first, until `tokens` more cells fit; whether they do."""
        while self.prompts and self.used_tokens() + tokens > self.n_ctx:
            self.forget(next(iter(self.prompts)))
        return self.used_tokens() + tokens <= self.n_ctx

    def forget(self, cache_id: int) -> None:
        """Drop one cached prompt."""
        ll.llama_memory_seq_rm(self.memory, cache_id, -1, -1)
        del self.prompts[cache_id]

    def reuse(self, seq_id: int, prompt: Sequence[int]) -> int:
        """Copy the cache of the longest common prefix of `prompt` with a cached prompt into
        sequence `seq_id`; how many tokens were copied (the last prompt token never is: its
        logits are needed)."""
        best, source = 0, -1
        for cache_id, cached in self.prompts.items():
            shared = common_prefix(cached, prompt)
            if shared > best:
                best, source = shared, cache_id
        best = min(best, len(prompt) - 1)
        if best < MIN_REUSED_TOKENS or not self.engine.cached_prompts:
            return 0
        ll.llama_memory_seq_cp(self.memory, source, seq_id, 0, best)
        self.prompts.move_to_end(source)
        return best

    def remember(self, sequence: _Sequence) -> None:
        """Keep the cache of `sequence`'s prompt (just computed) under a spare sequence id."""
        prompt = tuple(sequence.request.prompt_ids)
        keep = min(self.engine.cached_prompts, len(self.cache_ids))
        while self.prompts and len(self.prompts) >= keep:
            self.forget(next(iter(self.prompts)))
        if not keep:
            return
        cache_id = next(i for i in self.cache_ids if i not in self.prompts)
        ll.llama_memory_seq_cp(self.memory, sequence.seq_id, cache_id, 0, len(prompt))
        self.prompts[cache_id] = prompt

    def forget_all(self) -> None:
        """Drop every cached prompt (after a failed decode their cells are not trusted)."""
        for cache_id in list(self.prompts):
            self.forget(cache_id)

    def put(self, index: int, token: int, position: int, seq_id: int, logits: bool) -> None:
        """Write one token of the next `llama_decode` into the batch."""
        self.batch.token[index] = token
        self.batch.pos[index] = position
        self.batch.n_seq_id[index] = 1
        self.batch.seq_id[index][0] = seq_id
        self.batch.logits[index] = logits

    def release(self, sequence: _Sequence) -> None:
        """Free a finished (or failed) sequence's cache cells, sampler and slot."""
        ll.llama_memory_seq_rm(self.memory, sequence.seq_id, -1, -1)
        ll.llama_sampler_free(sequence.sampler)
        self.running.remove(sequence)
        self.free_slots.append(sequence.seq_id)

    def close(self) -> None:
        ll.llama_batch_free(self.batch)
        ll.llama_free(self.ctx)


def common_prefix(first: Sequence[int], second: Sequence[int]) -> int:
    """How many leading tokens `first` and `second` share."""
    for index, (a, b) in enumerate(zip(first, second)):
        if a != b:
            return index
    return min(len(first), len(second))


class LlamaEngine:
    """A GGUF model run by llama.cpp, with LoRA adapters and a continuous-batching worker.

    Args:
        path: The model's GGUF file.
        n_threads: CPU threads for decoding; None: `default_threads()`.
        n_ctx: KV-cache tokens per adapter context, shared by its sequences; a request's prompt
            plus its `max_new_tokens` must fit.
        n_seq_max: Sequences one context decodes together.
        max_contexts: Adapter contexts kept at once.
        cached_prompts: Recent prompts whose cache each adapter context keeps (at most
            `MAX_CACHED_PROMPTS`; settable later as the attribute), so that later prompts
            sharing their beginning (a system prompt, a few-shot block) copy it instead of
            computing it again. 0, the default, turns prompt reuse off: a reused prompt is
            computed in other batches than a whole one, and llama.cpp's logits depend on that,
            so an answer can change where two tokens are nearly tied (see the "Local models and
            engines" page). Models whose cache cannot be copied in part (recurrent, hybrid,
            sliding-window attention) never reuse prompts and decode lookup requests plainly.
        parallel_contexts: Busy adapter contexts that decode at the same time, each on its own
            thread with `n_threads` threads (so a request's tokens do not depend on it); 1 makes
            them take turns. Settable later as the attribute.

    Raises:
        EngineError: llama.cpp cannot load the file.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        n_threads: int | None = None,
        n_ctx: int = DEFAULT_CONTEXT,
        n_seq_max: int = DEFAULT_SEQUENCES,
        max_contexts: int = MAX_CONTEXTS,
        cached_prompts: int = 0,
        parallel_contexts: int = DEFAULT_PARALLEL_CONTEXTS,
    ) -> None:
        _init_backend()
        self.n_threads = n_threads or default_threads()
        if min(self.n_threads, n_seq_max, max_contexts, parallel_contexts) < 1 or n_ctx < 16:
            raise ValueError(
                "n_threads, n_seq_max, max_contexts and parallel_contexts must be >= 1, n_ctx >= 16"
            )
        self.parallel_contexts = parallel_contexts
        self._steppers: ThreadPoolExecutor | None = None
        params = ll.llama_model_default_params()
        params.n_gpu_layers = 0
        # The extra buffer types repack weights for AMX, which crashes in llama_decode on VMs
        # that do not grant AMX state (seen here: Firecracker on Sapphire Rapids).
        params.use_extra_bufts = _extra_buffers()
        self.model = ll.llama_model_load_from_file(str(path).encode(), params)
        if not self.model:
            raise EngineError(f"llama.cpp could not load {path}")
        self.vocab = ll.llama_model_get_vocab(self.model)
        self.n_vocab = int(ll.llama_vocab_n_tokens(self.vocab))
        self.n_ctx = min(n_ctx, ll.llama_model_n_ctx_train(self.model))
        self.n_seq_max = n_seq_max
        self.max_contexts = max_contexts
        self.partial_cache = not (
            ll.llama_model_is_recurrent(self.model)
            or ll.llama_model_is_hybrid(self.model)
            or ll.llama_model_n_swa(self.model) > 0
        )
        """Whether the cache can drop or copy a range of a sequence (lookup, prompt reuse)."""
        self._cached_prompts = 0
        self.cached_prompts = cached_prompts
        self.adapters: dict[str, Any] = {}
        self._contexts: list[_AdapterContext] = []
        self._waiting: deque[Request] = deque()
        self._turn = 0
        self._cond = threading.Condition()
        self._worker: threading.Thread | None = None
        self._closed = False

    @property
    def cached_prompts(self) -> int:
        """Recent prompts each adapter context keeps for reuse (0: none)."""
        return self._cached_prompts

    @cached_prompts.setter
    def cached_prompts(self, count: int) -> None:
        if not 0 <= count <= MAX_CACHED_PROMPTS:
            raise ValueError(f"cached_prompts must be in 0..{MAX_CACHED_PROMPTS}, got {count}")
        self._cached_prompts = count if self.partial_cache else 0

    # -- model facts --------------------------------------------------------------------------

    def metadata(self, key: str) -> str | None:
        """A GGUF metadata value as text (None when absent)."""
        size = 1 << 16
        buffer = ctypes.create_string_buffer(size)
        length = ll.llama_model_meta_val_str(self.model, key.encode(), buffer, size)
        if length < 0:
            return None
        if length >= size:
            buffer = ctypes.create_string_buffer(length + 1)
            ll.llama_model_meta_val_str(self.model, key.encode(), buffer, length + 1)
        return buffer.value.decode("utf-8", "replace")

    def tokenize(self, text: str, *, add_special: bool = False) -> list[int]:
        """Token ids of `text`; special tokens written in it (`<|im_start|>`) are parsed."""
        data = text.encode("utf-8")
        capacity = len(data) + 8
        while True:
            tokens = (ll.llama_token * capacity)()
            count = ll.llama_tokenize(
                self.vocab, data, len(data), tokens, capacity, add_special, True
            )
            if count >= 0:
                return list(tokens[:count])
            capacity = -count

    def piece(self, token: int, *, special: bool = False) -> bytes:
        """The bytes of one token; control tokens are empty unless `special`."""
        buffer = ctypes.create_string_buffer(64)
        length = ll.llama_token_to_piece(self.vocab, token, buffer, 64, 0, special)
        if length < 0:
            buffer = ctypes.create_string_buffer(-length)
            length = ll.llama_token_to_piece(self.vocab, token, buffer, -length, 0, special)
        return buffer.raw[:length]

    def detokenize(self, tokens: Sequence[int]) -> str:
        """The text of `tokens`, control tokens left out."""
        return b"".join(self.piece(t) for t in tokens).decode("utf-8", "replace")

    @property
    def bos(self) -> int:
        """The beginning-of-sequence token."""
        return int(ll.llama_vocab_bos(self.vocab))

    @property
    def eos(self) -> int:
        """The end-of-sequence token."""
        return int(ll.llama_vocab_eos(self.vocab))

    def is_end(self, token: int) -> bool:
        """Whether `token` ends generation (end of sequence or of turn)."""
        return bool(ll.llama_vocab_is_eog(self.vocab, token))

    # -- adapters -----------------------------------------------------------------------------

    def load_adapter(self, name: str, gguf_path: str | Path) -> None:
        """Load a GGUF LoRA once under `name`; contexts apply it when they serve it.

        Raises:
            EngineError: llama.cpp refused the file (wrong architecture or shapes).
        """
        handle = ll.llama_adapter_lora_init(self.model, str(gguf_path).encode())
        if not handle:
            raise EngineError(f"llama.cpp refused the LoRA adapter {gguf_path} for {name!r}")
        with self._cond:
            self.adapters[name] = handle

    def prompt_logits(self, tokens: Sequence[int], adapter: str | None = None) -> Any:
        """The next-token logits after `tokens` (a numpy array), on a context of its own.

        For checks and benchmarks (e.g. an adapter's effect against peft's); generation goes
        through `submit`.
        """
        context = _AdapterContext(self, adapter, n_ctx=max(16, len(tokens)), n_seq_max=1, cached=0)
        try:
            for index, token in enumerate(tokens):
                context.put(index, token, index, 0, index == len(tokens) - 1)
            context.batch.n_tokens = len(tokens)
            if ll.llama_decode(context.ctx, context.batch) != 0:
                raise EngineError("llama_decode failed on the prompt")
            logits = ll.llama_get_logits_ith(context.ctx, len(tokens) - 1)
            vocab_size = ll.llama_vocab_n_tokens(self.vocab)
            return np.ctypeslib.as_array(logits, shape=(vocab_size,)).copy()
        finally:
            context.close()

    # -- requests -----------------------------------------------------------------------------

    def submit(self, request: Request) -> Future[Completion]:
        """Queue `request` and return its future (thread-safe; never blocks on generation).

        The future fails with `ValueError` for what this engine cannot do: beam search,
        transformers logits processors, an unknown adapter, a prompt that does not fit.
        """
        problem = self._refusal(request)
        if problem:
            request.future.set_exception(ValueError(problem))
            return request.future
        with self._cond:
            if self._closed:
                request.future.set_exception(EngineError("the engine is closed"))
                return request.future
            self._waiting.append(request)
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._run, name="llama-engine", daemon=True)
                self._worker.start()
            self._cond.notify()
        return request.future

    def _refusal(self, request: Request) -> str | None:
        settings = request.settings
        if settings.num_beams > 1:
            return (
                "beam search runs on the transformers engine: "
                "load_model(..., engine='transformers')"
            )
        if settings.logits_processor is not None:
            return (
                "the llama.cpp engine takes a GBNF `grammar`, not a transformers logits_processor"
            )
        if request.adapter is not None and request.adapter not in self.adapters:
            return f"adapter {request.adapter!r} is not loaded; loaded: {sorted(self.adapters)}"
        needed = len(request.prompt_ids) + settings.max_new_tokens
        if not request.prompt_ids:
            return "the prompt is empty"
        if needed > self.n_ctx:
            return (
                f"the prompt ({len(request.prompt_ids)} tokens) plus max_new_tokens "
                f"({settings.max_new_tokens}) exceeds the context of {self.n_ctx} tokens"
            )
        return None

    def close(self) -> None:
        """Stop the worker (running requests finish as abandoned) and free llama.cpp's memory."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._worker is not None:
            self._worker.join()
        if self._steppers is not None:
            self._steppers.shutdown()
        for context in self._contexts:
            context.close()
        self._contexts.clear()
        for handle in self.adapters.values():
            ll.llama_adapter_lora_free(handle)
        self.adapters.clear()
        ll.llama_model_free(self.model)

    # -- the worker ---------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and not self._waiting and not self._busy():
                    self._cond.wait()
                if self._closed:
                    self._abandon_all()
                    return
                self._admit()
            chosen = self._next_contexts()
            others = [self._stepper().submit(self._safe_step, c) for c in chosen[1:]]
            if chosen:
                self._safe_step(chosen[0])
            for future in others:
                future.result()

    def _safe_step(self, context: _AdapterContext) -> None:
        try:
            self._step(context)
        except Exception as exc:  # a failed decode must fail its requests, not the worker
            self._fail(context, exc)

    def _stepper(self) -> ThreadPoolExecutor:
        """The threads that step other contexts beside the worker's own (made on first use)."""
        if self._steppers is None:
            self._steppers = ThreadPoolExecutor(
                max(1, self.max_contexts - 1), thread_name_prefix="llama-step"
            )
        return self._steppers

    def _busy(self) -> bool:
        return any(c.running for c in self._contexts)

    def _admit(self) -> None:
        """Give waiting requests a slot in their adapter's context, in arrival order."""
        still: deque[Request] = deque()
        while self._waiting:
            request = self._waiting.popleft()
            if request.abandoned.is_set():
                request.future.set_result(_completion(request, "abandoned"))
                continue
            context = self._context_for(request.adapter)
            budget = len(request.prompt_ids) + request.settings.max_new_tokens
            if context is None or not context.free_slots or not context.make_room(budget):
                still.append(request)
                continue
            try:
                sampler = _sampler(self, request)
            except EngineError as exc:
                request.future.set_exception(exc)
                continue
            context.running.append(self._start(context, request, sampler, budget))
        self._waiting = still

    def _start(
        self, context: _AdapterContext, request: Request, sampler: Any, budget: int
    ) -> _Sequence:
        """A new running sequence, its prompt's shared beginning copied from a cached prompt."""
        prompt = request.prompt_ids
        seq_id = context.free_slots.pop(0)
        reused = context.reuse(seq_id, prompt)
        settings = request.settings
        lookup = settings.lookup if self.partial_cache and not settings.do_sample else None
        return _Sequence(
            request=request,
            seq_id=seq_id,
            sampler=sampler,
            position=reused,
            pending=list(prompt[reused:]),
            budget=budget,
            lookup=lookup,
            history=token_array(prompt) if lookup else token_array(),
            reused=reused,
            remember=bool(self.cached_prompts) and reused < len(prompt) - 1,
        )

    def _context_for(self, adapter: str | None) -> _AdapterContext | None:
        for context in self._contexts:
            if context.adapter == adapter:
                return context
        if len(self._contexts) < self.max_contexts:
            context = _AdapterContext(self, adapter)
            self._contexts.append(context)
            return context
        idle = next((c for c in self._contexts if not c.running), None)
        if idle is not None:
            idle.use(adapter)
        return idle

    def _next_contexts(self) -> list[_AdapterContext]:
        """The next `parallel_contexts` contexts with running sequences, round-robin."""
        busy = [c for c in self._contexts if c.running]
        if not busy:
            return []
        count = min(self.parallel_contexts, len(busy))
        start = (self._turn + 1) % len(busy)
        self._turn = (start + count - 1) % len(busy)
        return [busy[(start + i) % len(busy)] for i in range(count)]

    def _step(self, context: _AdapterContext) -> None:
        """One `llama_decode` for every running sequence of `context`, then its new tokens: one
        each, or more where a lookup draft was right."""
        for sequence in list(context.running):
            if sequence.request.abandoned.is_set():
                self._finish(context, sequence, "abandoned")
        if not context.running:
            return
        drafts = _drafts(context.running)
        rows: list[tuple[_Sequence, int, list[int]]] = []  # sequence, first logits row, draft
        count = 0
        for sequence, draft in zip(context.running, drafts, strict=True):
            feed = sequence.pending or [*sequence.tokens[-1:], *draft]
            first = count + len(feed) - 1 - len(draft)
            for offset, token in enumerate(feed):
                context.put(
                    count, token, sequence.position + offset, sequence.seq_id, count >= first
                )
                count += 1
            sequence.position += len(feed)
            rows.append((sequence, first, draft))
        context.batch.n_tokens = count
        code = ll.llama_decode(context.ctx, context.batch)
        if code != 0:
            raise EngineError(f"llama_decode failed with code {code}")
        for sequence, row, draft in rows:
            sequence.peak_batch = max(sequence.peak_batch, len(rows))
            if sequence.pending and sequence.remember:
                context.remember(sequence)
            sequence.pending = []
            self._verify(context, sequence, row, draft)

    def _verify(
        self, context: _AdapterContext, sequence: _Sequence, row: int, draft: list[int]
    ) -> None:
        """Take the sampler's token at each row while the draft agrees with it, then drop the
        cache cells of the draft tokens it rejected."""
        accepted = 0
        sequence.drafted += len(draft)
        for offset in range(len(draft) + 1):
            token = self._pick(context, sequence, row + offset)
            agreed = offset < len(draft) and token == draft[offset]
            accepted += agreed
            sequence.accepted += agreed
            if self._advance(context, sequence, token):
                return  # finished: its whole sequence is already freed
            if not agreed:
                break
        rejected = len(draft) - accepted
        if rejected:
            sequence.position -= rejected
            if not ll.llama_memory_seq_rm(context.memory, sequence.seq_id, sequence.position, -1):
                raise EngineError("llama.cpp could not drop rejected draft tokens from the cache")

    def _pick(self, context: _AdapterContext, sequence: _Sequence, row: int) -> int:
        """The next token from the logits of batch row `row`, through the request's sampler.

        Greedy requests take the argmax when their grammar (if any) allows it, as llama.cpp's
        own sampling does first: the token the whole chain would pick (the first of the highest
        logits), without masking the whole vocabulary for every token.
        """
        if sequence.request.settings.do_sample:
            return int(ll.llama_sampler_sample(sequence.sampler, context.ctx, row))
        logits = ll.llama_get_logits_ith(context.ctx, row)
        token = int(np.ctypeslib.as_array(logits, shape=(self.n_vocab,)).argmax())
        grammar = sequence.request.settings.grammar
        if grammar is None or _allows(ll.llama_sampler_chain_get(sequence.sampler, 0), token):
            ll.llama_sampler_accept(sequence.sampler, token)
            return token
        return int(ll.llama_sampler_sample(sequence.sampler, context.ctx, row))

    def _advance(self, context: _AdapterContext, sequence: _Sequence, token: int) -> bool:
        """Append one generated token; whether the sequence finished with it."""
        request = sequence.request
        sequence.tokens.append(token)
        if sequence.lookup is not None:
            sequence.history.append(token)
        if self.is_end(token):
            self._finish(context, sequence, "stop")
            return True
        sequence.raw += self.piece(token)
        text = sequence.raw.decode("utf-8", "replace")
        cut = first_stop(text, request.stop)
        if cut >= 0:
            sequence.text = text[:cut]
            self._finish(context, sequence, "stop")
            return True
        sequence.text = text
        if len(sequence.tokens) >= request.settings.max_new_tokens:
            self._finish(context, sequence, "length")
            return True
        _emit(sequence, safe_prefix(text, request.stop))
        return False

    def _finish(self, context: _AdapterContext, sequence: _Sequence, reason: str) -> None:
        _emit(sequence, len(sequence.text))
        context.release(sequence)
        request = sequence.request
        if not request.future.done():
            request.future.set_result(_completion(request, reason, sequence))

    def _fail(self, context: _AdapterContext, error: Exception) -> None:
        context.forget_all()
        for sequence in list(context.running):
            context.release(sequence)
            if not sequence.request.future.done():
                sequence.request.future.set_exception(error)

    def _abandon_all(self) -> None:
        for context in self._contexts:
            for sequence in list(context.running):
                self._finish(context, sequence, "abandoned")
        while self._waiting:
            request = self._waiting.popleft()
            request.future.set_result(_completion(request, "abandoned"))


def _drafts(running: Sequence[_Sequence]) -> list[list[int]]:
    """Each running sequence's prompt-lookup draft for the next decode (empty for a sequence
    without `LookupConfig` or still reading its prompt).

    Drafts fill the batch only up to `SMALL_BATCH_ROWS` rows, where llama.cpp computes each row
    as a one-token step does, so the greedy output stays the same; a batch already that large
    (prompts being read, many sequences) gets no drafts.
    """
    room = SMALL_BATCH_ROWS - sum(len(s.pending) or 1 for s in running)
    drafts: list[list[int]] = []
    for sequence in running:
        config = sequence.lookup
        if config is None or sequence.pending or room < 1:
            drafts.append([])
            continue
        # never past max_new_tokens, counting the token the model adds after the draft
        left = sequence.request.settings.max_new_tokens - len(sequence.tokens) - 1
        limit = min(config.draft_tokens, left, room)
        draft = find_draft(sequence.history, limit, ngram=config.ngram, min_ngram=config.min_ngram)
        room -= len(draft)
        drafts.append(draft)
    return drafts


def _sampler(engine: LlamaEngine, request: Request) -> Any:
    """The request's sampler chain: its grammar first, then greedy or seeded sampling."""
    settings = request.settings
    chain = ll.llama_sampler_chain_init(ll.llama_sampler_chain_default_params())
    if settings.grammar is not None:
        grammar = ll.llama_sampler_init_grammar(
            engine.vocab, settings.grammar.encode("utf-8"), b"root"
        )
        if not grammar:
            ll.llama_sampler_free(chain)
            raise EngineError("llama.cpp could not parse the request's GBNF grammar")
        ll.llama_sampler_chain_add(chain, grammar)
    if not settings.do_sample:
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_greedy())
        return chain
    if settings.top_k:
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_top_k(settings.top_k))
    if settings.top_p < 1.0:
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_top_p(settings.top_p, 1))
    ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_temp(settings.temperature))
    seed = settings.seed if settings.seed is not None else int.from_bytes(os.urandom(4), "little")
    ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_dist(seed))
    return chain


def _allows(grammar: Any, token: int) -> bool:
    """Whether a grammar sampler, in its current state, lets `token` come next."""
    candidate = (ll.llama_token_data * 1)(ll.llama_token_data(token, 0.0, 0.0))
    candidates = ll.llama_token_data_array(candidate, 1, -1, False)
    ll.llama_sampler_apply(grammar, ctypes.byref(candidates))
    return bool(np.isfinite(candidate[0].logit))


def _emit(sequence: _Sequence, upto: int) -> None:
    """Send newly visible text to a streaming caller."""
    sequence.emitted = emit(sequence.request, sequence.text, sequence.emitted, upto)


def _completion(request: Request, reason: str, sequence: _Sequence | None = None) -> Completion:
    """What `request` produced; nothing when it never ran (`sequence` None)."""
    if sequence is None:
        return Completion("", [], len(request.prompt_ids), reason, 0)
    return Completion(
        text=sequence.text,
        token_ids=list(sequence.tokens),
        prompt_tokens=len(request.prompt_ids),
        finish_reason=reason,
        batch_size=sequence.peak_batch,
        drafted_tokens=sequence.drafted,
        accepted_tokens=sequence.accepted,
        reused_prompt_tokens=sequence.reused,
    )


__all__ = [
    "DEFAULT_CONTEXT",
    "DEFAULT_PARALLEL_CONTEXTS",
    "MAX_CACHED_PROMPTS",
    "EngineError",
    "LlamaEngine",
    "LookupConfig",
    "common_prefix",
    "default_threads",
    "physical_cores",
]
