"""Multi-LoRA micro-batching benchmark on SmolLM2-135M-Instruct (CPU).

Four concurrent requests, each to a different random LoRA adapter, 64 new tokens each, served
three ways side by side in one run (interleaved rounds, median reported):

* coalesced - four threads call their chat models at once; the batcher merges them into one
  mixed-adapter ``generate`` (the product path);
* one at a time - the same four requests, sequentially;
* adapter groups - one ``generate`` per adapter (what a server that switches the active adapter
  between batches does; with one request per adapter, groups of one).

Then peak memory (max RSS of a fresh subprocess) of one base carrying four adapters vs four
separate model copies with one adapter each.

Usage: ``python -m benchmarks.batching [--rounds 3] [--max-new-tokens 64]``. The last line is JSON.
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

from langchain_core.messages import HumanMessage

from compllm_graph.models import SMALL_MODEL, TransformersModel, load_model
from compllm_graph.models.requests import GenerationSettings, Request
from tests.random_lora import save_random_lora

PROMPTS = (
    "Write a short story about a lighthouse keeper.",
    "Explain how photosynthesis works.",
    "Describe the history of the bicycle.",
    "Give advice for learning to play the piano.",
)
ADAPTERS = tuple(f"expert-{i}" for i in range(len(PROMPTS)))


def add_adapters(local: TransformersModel, folder: Path, names: tuple[str, ...]) -> None:
    for seed, name in enumerate(names):
        # Small B: the adapters change the text without derailing it into early EOS.
        local.add_adapter(name, save_random_lora(local.model, folder / name, seed=seed, std=0.02))


def coalesced(local: TransformersModel, max_new: int) -> int:
    """Four threads call four chat models at once; returns generated tokens."""
    tokens: list[int] = []
    sizes: list[int] = []
    start = threading.Barrier(len(PROMPTS))

    def call(prompt: str, adapter: str) -> None:
        chat = local.chat_model(adapter, max_new_tokens=max_new)
        start.wait()
        reply = chat.invoke(prompt)
        tokens.append(reply.response_metadata["token_usage"]["completion_tokens"])
        sizes.append(reply.response_metadata["batch_size"])

    threads = [threading.Thread(target=call, args=pa) for pa in zip(PROMPTS, ADAPTERS, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if sorted(sizes) != [len(PROMPTS)] * len(PROMPTS):
        print(f"  warning: requests were split into batches of sizes {sorted(sizes)}")
    return sum(tokens)


def one_at_a_time(local: TransformersModel, max_new: int) -> int:
    return sum(
        local.chat_model(adapter, max_new_tokens=max_new)
        .invoke(prompt)
        .response_metadata["token_usage"]["completion_tokens"]
        for prompt, adapter in zip(PROMPTS, ADAPTERS, strict=True)
    )


def adapter_groups(local: TransformersModel, max_new: int) -> int:
    """One ``generate`` per adapter with all of that adapter's requests."""
    groups: dict[str, list[str]] = {}
    for prompt, adapter in zip(PROMPTS, ADAPTERS, strict=True):
        groups.setdefault(adapter, []).append(prompt)
    total = 0
    for adapter, prompts in groups.items():
        requests = [
            Request(
                prompt_ids=local.encode_chat([HumanMessage(p)]),
                adapter=adapter,
                settings=GenerationSettings(max_new_tokens=max_new),
            )
            for p in prompts
        ]
        total += sum(len(c.token_ids) for c in local.batcher.generate(requests))
    return total


def throughput(rounds: int, max_new: int) -> dict[str, dict[str, float]]:
    """Median tokens per wall-clock second and per process CPU second of each mode.

    On a shared machine the wall-clock rate swings with other people's load; tokens per CPU
    second (all threads of this process) is the steadier measure of the work each mode needs.
    """
    local = load_model(
        SMALL_MODEL, engine="transformers", max_batch_size=len(PROMPTS), max_wait_ms=50
    )
    with tempfile.TemporaryDirectory() as tmp:
        add_adapters(local, Path(tmp), ADAPTERS)
    modes: dict[str, Callable[[TransformersModel, int], int]] = {
        "coalesced": coalesced,
        "one_at_a_time": one_at_a_time,
        "adapter_groups": adapter_groups,
    }
    local.chat_model(ADAPTERS[0], max_new_tokens=4).invoke("warm up")
    wall: dict[str, list[float]] = {name: [] for name in modes}
    cpu: dict[str, list[float]] = {name: [] for name in modes}
    for round_ in range(rounds):
        for name, run in modes.items():
            began, cpu_began = time.perf_counter(), time.process_time()
            tokens = run(local, max_new)
            seconds = time.perf_counter() - began
            cpu_seconds = time.process_time() - cpu_began
            wall[name].append(tokens / seconds)
            cpu[name].append(tokens / cpu_seconds)
            print(
                f"round {round_ + 1} {name:<14} {tokens:4d} tokens {seconds:6.1f} s wall "
                f"{tokens / seconds:6.1f} tok/s, {cpu_seconds:6.1f} s CPU "
                f"{tokens / cpu_seconds:6.1f} tok/CPU-s",
                flush=True,
            )
    return {
        "tok_per_s": {name: statistics.median(v) for name, v in wall.items()},
        "tok_per_cpu_s": {name: statistics.median(v) for name, v in cpu.items()},
    }


def memory_child(layout: str) -> None:
    """Load the layout, generate once per adapter, print peak RSS in MiB (subprocess mode)."""
    with tempfile.TemporaryDirectory() as tmp:
        if layout == "shared":
            local = load_model(SMALL_MODEL, engine="transformers")
            add_adapters(local, Path(tmp), ADAPTERS)
            models = [(local, name) for name in ADAPTERS]
        else:
            models = []
            for name in ADAPTERS:
                copy = load_model(SMALL_MODEL, engine="transformers")
                add_adapters(copy, Path(tmp) / name, (name,))
                models.append((copy, name))
        for local, name in models:
            local.chat_model(name, max_new_tokens=8).invoke(PROMPTS[0])
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def peak_rss_mib(layout: str) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", layout],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--memory-child", choices=("shared", "copies"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child)
        return 0
    rates = throughput(args.rounds, args.max_new_tokens)
    shared, copies = peak_rss_mib("shared"), peak_rss_mib("copies")
    print(
        f"\n4 requests x {args.max_new_tokens} new tokens, 4 LoRA adapters, "
        f"median of {args.rounds} rounds"
    )
    labels = {
        "coalesced": "coalesced mixed-adapter batch",
        "one_at_a_time": "one request at a time",
        "adapter_groups": "one adapter group at a time",
    }
    for mode, label in labels.items():
        print(
            f"  {label:<30} {rates['tok_per_s'][mode]:6.1f} tok/s "
            f"{rates['tok_per_cpu_s'][mode]:6.1f} tok/CPU-s"
        )
    speedups = {
        f"{unit}_vs_{base}": values["coalesced"] / values[base]
        for unit, values in rates.items()
        for base in ("one_at_a_time", "adapter_groups")
    }
    for key, value in speedups.items():
        print(f"  speed-up {key}: {value:.2f}x")
    print(
        f"peak RSS: 1 base + 4 adapters {shared:.0f} MiB vs 4 model copies {copies:.0f} MiB "
        f"({copies / shared:.1f}x)"
    )
    summary = {
        **rates,
        "speedup": speedups,
        "peak_rss_mib": {"shared_base_4_adapters": shared, "four_copies": copies},
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
