"""One answer cell in-process and through `compllm serve`: same answers under greedy decoding?

Starts `compllm serve` (a subprocess, llama.cpp engine) on the model with its expert pack's
decomposer and experts as adapters, then answers the first N questions of a benchmark file with
each system twice through the CLI: in-process and with `--endpoint`. Prints, per system, both
accuracies and seconds per question, how many final answers, decompositions, routes and
sub-answers are the same, and the first question that differs.

    python -m benchmarks.endpoint_eval [--file benchmarks/answers/data/p2.jsonl] [--limit 10]
        [--systems monolith compllm] [--threads 1] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from compllm_graph.decomposer import adapter_for
from compllm_graph.evaluation.answers import answered
from compllm_graph.expert_store.demo import shipped_experts
from compllm_graph.models import SMALL_MODEL

REPO = Path(__file__).resolve().parents[1]
FIELDS = ("answer", "edges", "routes", "sub_answers")


def start_server(model: str, threads: int, log: Path) -> tuple[subprocess.Popen[str], str]:
    """`compllm serve` with the pack's decomposer and experts; returns it and its URL."""
    adapters = dict(shipped_experts(model))
    decomposer = adapter_for(model)
    if decomposer is not None:
        adapters["decomposer"] = decomposer
    command = [sys.executable, "-m", "compllm_graph.serve", "--model", model, "--port", "0"]
    command += ["--max-new-tokens", "1024", "--threads", str(threads)]
    for name, folder in adapters.items():
        command += ["--adapter", f"{name}={folder}"]
    process = subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.PIPE, stderr=log.open("w"), text=True
    )
    assert process.stdout is not None
    for line in process.stdout:  # printed once it accepts requests
        if line.startswith("compllm serve:"):
            return process, line.rsplit(" at ", 1)[1].strip()
    raise RuntimeError(f"compllm serve did not start; see {log}")


def answer(args: argparse.Namespace, system: str, outputs: Path, *extra: str) -> dict[str, Any]:
    """One `compllm eval answers` run; its JSON summary."""
    command = [sys.executable, "-m", "compllm_graph.cli", "eval", "answers", str(args.file)]
    command += ["--system", system, "--limit", str(args.limit), "--json"]
    command += ["--outputs", str(outputs), "--model", args.model, *extra]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def compare(local: Path, remote: Path) -> dict[str, Any]:
    """How many lines agree, field by field, and the first id whose answer differs."""
    mine, theirs = answered(local), answered(remote)
    same = {
        field: sum(mine[k].get(field) == theirs[k].get(field) for k in mine) for field in FIELDS
    }
    differs = [k for k in mine if any(mine[k].get(f) != theirs[k].get(f) for f in FIELDS)]
    return {"n": len(mine), "same": same, "first_difference": differs[0] if differs else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--file", type=Path, default=REPO / "benchmarks/answers/data/p2.jsonl")
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--systems", nargs="+", default=["monolith", "compllm"])
    parser.add_argument("--model", default=SMALL_MODEL)
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads, both sides")
    parser.add_argument("--out", type=Path, default=None, help="keep the outputs here")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="endpoint-eval-"))
    out.mkdir(parents=True, exist_ok=True)
    server, url = start_server(args.model, args.threads, out / "serve.log")
    try:
        print(
            "| system | n | in-process accuracy | endpoint accuracy | s/question in-process "
            "| s/question endpoint | same answers | same routes | same sub-answers |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for system in args.systems:
            local, remote = out / f"{system}.local.jsonl", out / f"{system}.endpoint.jsonl"
            here = answer(args, system, local, "--threads", str(args.threads))
            there = answer(args, system, remote, "--endpoint", url)
            diff = compare(local, remote)
            same = diff["same"]
            print(
                f"| {system} | {diff['n']} | {here['accuracy']:.0%} | {there['accuracy']:.0%} "
                f"| {here['seconds_per_question']:.1f} | {there['seconds_per_question']:.1f} "
                f"| {same['answer']}/{diff['n']} | {same['routes']}/{diff['n']} "
                f"| {same['sub_answers']}/{diff['n']} |"
            )
            if diff["first_difference"]:
                print(f"  first difference: {diff['first_difference']} (outputs in {out})")
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"outputs: {out}")


if __name__ == "__main__":
    main()
