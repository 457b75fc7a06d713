"""Engines side by side: our llama.cpp engine, llama-cpp-python's high-level `Llama`, transformers.

For each model, in one run and interleaved round by round: tok/s at batch 1 (without and with an
adapter), and the aggregate tok/s of 4 concurrent requests with no adapter, on one adapter, and
on 4 different adapters (random LoRAs, r=8 on q/v). Each engine runs in a fresh process per
round: in one process, one engine's idle OpenMP threads slowed the next one (SmolLM2 on
llama.cpp, 4 adapters: 22.6 tok/s after transformers had run, 65 tok/s alone). The reference
`Llama` cannot switch adapters or batch callers, so it gets the batch-1 row only. Then load
times and peak RSS (each engine in a fresh process), the copy bandwidth and each model's
bandwidth ceiling (GGUF bytes per token), and `compllm ask` seconds on the demo question. It
prints the issue's ratios and ends with one JSON line.

The reference `Llama` gets the same model parameters as ours: llama.cpp's extra (AMX repack)
buffers are off, since they crash `llama_decode` on this VM (see `models/llama_engine.py`).

Usage: `python -m benchmarks.engines [--models ALIAS ...] [--tokens 64] [--rounds 2]
[--no-transformers-1.5b]`.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.messages import HumanMessage
from peft import LoraConfig
from safetensors.numpy import save_file

from compllm_graph.models import fetch, is_cached, load_model
from compllm_graph.models.download import gguf_path
from compllm_graph.models.llama_engine import default_threads
from compllm_graph.models.llama_model import LlamaCppModel

MODELS = ("smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct")
PROMPTS = [
    "Explain why the sky is blue.",
    "Describe how a bicycle works.",
    "What does a cell's nucleus do?",
    "Why do we have seasons on Earth?",
]
DEMO = "Which organelle makes most of a cell's ATP, and what is the chemical formula of glucose?"


def random_lora(model: LlamaCppModel, folder: Path, seed: int) -> Path:
    """A random r=8 LoRA on q and v shaped from the GGUF's own metadata (no transformers)."""
    engine, arch = model.engine, model.engine.metadata("general.architecture")
    layers = int(engine.metadata(f"{arch}.block_count") or 0)
    width = int(engine.metadata(f"{arch}.embedding_length") or 0)
    heads = int(engine.metadata(f"{arch}.attention.head_count") or 1)
    kv_heads = int(engine.metadata(f"{arch}.attention.head_count_kv") or heads)
    head = width // heads
    rng = np.random.default_rng(seed)
    tensors = {}
    for layer in range(layers):
        for module, out in (("q_proj", heads * head), ("v_proj", kv_heads * head)):
            key = f"base_model.model.model.layers.{layer}.self_attn.{module}"
            tensors[f"{key}.lora_A.weight"] = (rng.standard_normal((8, width)) / width**0.5).astype(
                np.float32
            )
            tensors[f"{key}.lora_B.weight"] = (rng.standard_normal((out, 8)) * 0.02).astype(
                np.float32
            )
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]).save_pretrained(str(folder))
    return folder


def concurrent(calls: list[Callable[[], int]]) -> float:
    """Aggregate tok/s of running `calls` (each returns its generated tokens) at once."""
    counts = [0] * len(calls)

    def run(i: int) -> None:
        counts[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - started)


def ours(model: Any, adapter: str | None, prompt: str, tokens: int) -> Callable[[], int]:
    chat = model.chat_model(adapter=adapter, max_new_tokens=tokens)

    def call() -> int:
        reply = chat.invoke([HumanMessage(prompt)])
        return int(reply.usage_metadata["output_tokens"])

    return call


def reference_llama(path: Path, threads: int) -> Any:
    """llama-cpp-python's `Llama` with the same model parameters as our engine."""
    import llama_cpp
    import llama_cpp.llama_cpp as low

    defaults = low.llama_model_default_params

    def no_extra_buffers() -> Any:
        params = defaults()
        params.use_extra_bufts = False
        return params

    low.llama_model_default_params = no_extra_buffers
    try:
        return llama_cpp.Llama(
            str(path), n_ctx=2048, n_threads=threads, n_threads_batch=threads, verbose=False
        )
    finally:
        low.llama_model_default_params = defaults


def reference_call(llm: Any, prompt_ids: list[int], tokens: int) -> Callable[[], int]:
    def call() -> int:
        llm.reset()
        out = llm.create_completion(prompt_ids, max_tokens=tokens, temperature=0.0)
        return int(out["usage"]["completion_tokens"])

    return call


def tok_per_s(call: Callable[[], int]) -> float:
    started = time.perf_counter()
    count = call()
    return count / (time.perf_counter() - started)


def measures(engine: str, alias: str, adapters: list[Path], args: argparse.Namespace) -> dict:
    """This process's measures for one engine: what `--worker` prints."""
    if engine == "reference":
        path = gguf_path(alias)
        llm = reference_llama(path, args.threads or default_threads())
        native = load_model(alias, engine="llama.cpp")  # only for the same prompt tokens
        ids = native.encode_chat([HumanMessage(PROMPTS[0])])
        return {"batch 1": tok_per_s(reference_call(llm, ids, args.tokens))}
    model: Any = (
        load_model(alias, engine="llama.cpp", n_threads=args.threads)
        if engine == "llama.cpp"
        else load_model(alias, engine="transformers")
    )
    for i, folder in enumerate(adapters):
        model.add_adapter(f"a{i}", folder)
    tokens = args.tokens
    ours(model, None, PROMPTS[0], 4)()  # warm-up: contexts and caches
    return {
        "batch 1": tok_per_s(ours(model, None, PROMPTS[0], tokens)),
        "batch 1, one adapter": tok_per_s(ours(model, "a0", PROMPTS[0], tokens)),
        "4 concurrent, no adapter": concurrent([ours(model, None, p, tokens) for p in PROMPTS]),
        "4 concurrent, one adapter": concurrent([ours(model, "a0", p, tokens) for p in PROMPTS]),
        "4 concurrent, 4 adapters": concurrent(
            [ours(model, f"a{i}", p, tokens) for i, p in enumerate(PROMPTS)]
        ),
    }


def worker_run(engine: str, alias: str, adapters: list[Path], args: argparse.Namespace) -> dict:
    """`measures` in a fresh process, so no engine's idle threads slow another's (they did)."""
    command = [
        sys.executable,
        "-m",
        "benchmarks.engines",
        "--worker",
        engine,
        alias,
        "--tokens",
        str(args.tokens),
        *(["--threads", str(args.threads)] if args.threads else []),
        "--adapters",
        *map(str, adapters),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def bench_model(alias: str, args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    path = gguf_path(alias) if is_cached(alias) else fetch(alias)
    shaper = load_model(alias, engine="llama.cpp")
    adapters = [random_lora(shaper, scratch / alias / f"a{i}", seed=i) for i in range(4)]
    shaper.close()
    engines = ["llama.cpp", "reference"]
    if alias != MODELS[2] or args.transformers_large:
        engines.append("transformers")
    rows: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for engine in engines:
            for label, value in worker_run(engine, alias, adapters, args).items():
                name = f"{'Llama (reference)' if engine == 'reference' else engine} {label}"
                rows.setdefault(name, []).append(value)
                print(f"  {alias} {name}: {value:.1f} tok/s", file=sys.stderr, flush=True)
    return {
        "model": alias,
        "gguf_bytes": path.stat().st_size,
        "tok_s": {k: round(statistics.median(v), 2) for k, v in rows.items()},
    }


LOAD_PROBE = """
import json, sys, time
from langchain_core.messages import HumanMessage
from compllm_graph.models import load_model
started = time.perf_counter()
model = load_model(sys.argv[1], engine=sys.argv[2])
loaded = time.perf_counter() - started
model.chat_model(max_new_tokens=8).invoke([HumanMessage("Hi")])
status = open("/proc/self/status").read().split("VmHWM:")[1]  # resets on exec, unlike ru_maxrss
print(json.dumps({"load_s": loaded, "peak_rss_mib": int(status.split()[0]) / 1024}))
"""


def load_and_memory(alias: str, engine: str) -> dict[str, float]:
    """Load time (twice: the first may convert or read from disk) and peak RSS, fresh processes."""
    runs = []
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-c", LOAD_PROBE, alias, engine],
            capture_output=True,
            text=True,
            check=True,
        )
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return {
        "first_load_s": round(runs[0]["load_s"], 2),
        "warm_load_s": round(runs[1]["load_s"], 2),
        "peak_rss_mib": round(max(r["peak_rss_mib"] for r in runs)),
    }


def copy_bandwidth() -> float:
    """GB/s of a large numpy copy (read + write counted once each, as a decode streams weights)."""
    source = np.ones(64 * 1024 * 1024, dtype=np.float32)  # 256 MiB
    target = np.empty_like(source)
    best = 0.0
    for _ in range(5):
        started = time.perf_counter()
        np.copyto(target, source)
        best = max(best, 2 * source.nbytes / (time.perf_counter() - started) / 1e9)
    return best


def ask_seconds(engine: str) -> float:
    """`compllm ask` on the demo question: total seconds minus the model load."""
    done = subprocess.run(
        [sys.executable, "-m", "compllm_graph.cli", "ask", DEMO, "--json", "--engine", engine],
        capture_output=True,
        text=True,
        check=True,
    )
    timings = json.loads(done.stdout.strip().splitlines()[-1])["timings"]
    return round(timings["total"] - timings["load"], 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--no-transformers-1.5b",
        dest="transformers_large",
        action="store_false",
        help="skip the transformers engine on Qwen 1.5B (8.9 GB, about 2 tok/s)",
    )
    parser.add_argument("--worker", nargs=2, metavar=("ENGINE", "ALIAS"), help=argparse.SUPPRESS)
    parser.add_argument("--adapters", nargs="*", type=Path, default=[], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        engine, alias = args.worker
        print(json.dumps(measures(engine, alias, args.adapters, args)))
        return
    bandwidth = copy_bandwidth()
    results = []
    scratch = Path(tempfile.mkdtemp(prefix="engines-"))
    for alias in args.models:
        row = bench_model(alias, args, scratch)
        row["load"] = {e: load_and_memory(alias, e) for e in ("llama.cpp", "transformers")}
        row["ceiling_tok_s"] = round(bandwidth * 1e9 / row["gguf_bytes"], 1)
        results.append(row)
        report(row)
    asks = {e: ask_seconds(e) for e in ("llama.cpp", "transformers")}
    print(f"compllm ask, demo question (seconds after load): {asks}")
    print(
        json.dumps(
            {
                "copy_bandwidth_gb_s": round(bandwidth, 1),
                "models": results,
                "ask_s": asks,
                "peak_rss_this_process_mib": round(
                    resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                ),
            }
        )
    )


def report(row: dict[str, Any]) -> None:
    tok = row["tok_s"]
    one = tok["llama.cpp batch 1"]
    one_adapter = tok["llama.cpp batch 1, one adapter"]
    print(f"\n{row['model']} (GGUF {row['gguf_bytes'] / 1e6:.0f} MB)")
    for label, value in tok.items():
        print(f"  {label:<40} {value:7.1f} tok/s")
    ratios = {
        "llama.cpp / Llama reference, batch 1 (target >= 0.9)": one
        / tok["Llama (reference) batch 1"],
        "4 on one adapter / batch 1 on it (target >= 1.5)": tok[
            "llama.cpp 4 concurrent, one adapter"
        ]
        / one_adapter,
        "4 on 4 adapters / batch 1 on one (target >= 1.0)": tok[
            "llama.cpp 4 concurrent, 4 adapters"
        ]
        / one_adapter,
        "batch 1 / bandwidth ceiling": one / row["ceiling_tok_s"],
    }
    if "transformers batch 1" in tok:
        ratios["llama.cpp / transformers, batch 1 (target >= 5 on Qwen 0.5B)"] = (
            one / tok["transformers batch 1"]
        )
    for label, value in ratios.items():
        print(f"  {label:<62} {value:5.2f}")
    for engine, load in row["load"].items():
        print(f"  {engine}: {load}")


if __name__ == "__main__":
    main()
