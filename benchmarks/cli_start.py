"""How fast `compllm` starts: `--help`, `models list` and `experts list`, repeated.

Each command runs `--runs` times in a fresh interpreter; the median and the best are printed
against the 2 s target, and the last line is JSON. `experts list` needs the demo store
(`compllm experts build-demo`, which `make demo` runs on first use).

Usage: `python -m benchmarks.cli_start [--runs 5]`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

COMMANDS = (["--help"], ["models", "list"], ["experts", "list"])
TARGET_S = 2.0


def seconds(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "compllm_graph.cli", *argv], capture_output=True, check=True
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    results: dict[str, list[float]] = {}
    for _ in range(args.runs):  # interleaved, so a busy moment hits every command alike
        for argv in COMMANDS:
            results.setdefault(" ".join(argv), []).append(seconds(argv))
    summary = {
        name: {"median_s": round(statistics.median(t), 2), "best_s": round(min(t), 2)}
        for name, t in results.items()
    }
    for name, figures in summary.items():
        verdict = "ok" if figures["median_s"] < TARGET_S else f"over {TARGET_S} s"
        print(
            f"compllm {name:<14} median {figures['median_s']:.2f} s, best "
            f"{figures['best_s']:.2f} s ({verdict})"
        )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
