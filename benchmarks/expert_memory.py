"""Memory of N experts on one base model against N separate models (issue: answer quality).

Each layout runs in a fresh process on the llama.cpp engine, answers one short question per
expert, and reports its peak RSS (VmHWM):

* one base carrying the shipped experts' LoRA adapters (what the graph runs);
* the base with one adapter, the footprint of one separate fine-tuned model. N separate models
  are N such footprints: a full fine-tune per domain has weights of its own, so nothing is
  shared between them.

Disk is reported the same way: one GGUF plus the adapters' safetensors against N GGUFs.

Usage: `python -m benchmarks.expert_memory [--model ALIAS]`. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import Any

from compllm_graph.expert_store.demo import DEMO_EXPERTS, shipped_experts
from compllm_graph.models import SMALL_MODEL
from compllm_graph.models.download import gguf_path

PROBE = """
import json, sys
from compllm_graph.expert_store.demo import shipped_experts
from compllm_graph.models import load_model
model = load_model(sys.argv[1], engine="llama.cpp", n_threads=1)
folders = shipped_experts(sys.argv[1])
for name in sys.argv[2:]:
    model.add_adapter(name, folders[name])
for name in sys.argv[2:]:
    model.chat_model(adapter=name, max_new_tokens=8).invoke("What is the boiling point of water?")
status = open("/proc/self/status").read().split("VmHWM:")[1]  # resets on exec, unlike ru_maxrss
print(json.dumps({"peak_rss_mib": int(status.split()[0]) / 1024}))
"""


def peak_rss_mib(model: str, experts: list[str]) -> float:
    """Peak RSS of a fresh process that loads `model` with `experts` and answers once with each."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, model, *experts], capture_output=True, text=True, check=True
    )
    return float(json.loads(done.stdout.strip().splitlines()[-1])["peak_rss_mib"])


def measure(model: str) -> dict[str, Any]:
    """RSS and disk of one base with the shipped demo experts against as many separate models."""
    folders = {n: f for n, f in shipped_experts(model).items() if n in DEMO_EXPERTS}
    if not folders:
        raise SystemExit(
            f"no installed expert pack has demo experts for {model!r}: see `compllm experts "
            "packs` and docs/packs.md"
        )
    names = sorted(folders)
    shared = peak_rss_mib(model, names)
    one = peak_rss_mib(model, names[:1])
    gguf = gguf_path(model).stat().st_size / 2**20
    adapters = sum((f / "adapter_model.safetensors").stat().st_size for f in folders.values())
    return {
        "model": model,
        "experts": names,
        "peak_rss_mib": {
            "one_base_all_experts": round(shared),
            "separate_models": round(one * len(names)),
        },
        "one_model_mib": round(one),
        "disk_mib": {
            "one_base_all_experts": round(gguf + adapters / 2**20, 1),
            "separate_models": round(gguf * len(names), 1),
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=SMALL_MODEL)
    result = measure(parser.parse_args().model)
    n, rss, disk = len(result["experts"]), result["peak_rss_mib"], result["disk_mib"]
    print(f"{result['model']}, {n} experts ({', '.join(result['experts'])}), llama.cpp engine")
    print(
        f"  peak RSS: one base + {n} adapters {rss['one_base_all_experts']} MiB; "
        f"{n} separate models {rss['separate_models']} MiB ({n} x {result['one_model_mib']}), "
        f"{rss['separate_models'] / rss['one_base_all_experts']:.1f}x"
    )
    print(
        f"  disk: one base + {n} adapters {disk['one_base_all_experts']} MiB; "
        f"{n} separate models {disk['separate_models']} MiB"
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
