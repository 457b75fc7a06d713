"""The program expert against the base model's chain of thought, alone, on held-out word problems.

Each problem (test-split items of GSM8K or ASDiv, which train nothing: the program data comes from
GSM8K's train file) is answered twice, side by side in one run and interleaved so the machine's
noise hits both alike: by the base model with `BASE_SYSTEM_PROMPT` (a short worked answer ending
"The answer is ...") and by `create_program_expert` on the same model, falling back to that worked
answer when no program ran in two tries. It prints both accuracies with 95 % bootstrap intervals,
the paired difference, seconds and generated characters a problem, and how often the program expert
fell back.

Two scores: `strict` reads the last number of the reply's stated answer (what a child's `#k`
or a reader takes); `lenient` is the answer benchmark's own rule (`part_right`: any number in
the reply that equals the gold one), which favours long replies with many numbers.

With `--adapter FOLDER` a third system answers beside them: the program expert whose programs are
written through a LoRA adapter trained on programs (`compllm train expert-data mathematics
--programs`, then `compllm train expert` with the program expert's prompt as system prompt), and
the paired differences against the zero-shot program expert and the worked answer are printed.

Usage: `python -m benchmarks.program_expert [--source gsm8k|asdiv] [--problems 50]
[--model ALIAS] [--adapter FOLDER] [--threads N] [--out FILE.jsonl]`.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain_core.messages import HumanMessage
from langchain_core.runnables import Runnable

from compllm_graph.data_dir import default_data_dir
from compllm_graph.datasets.items import Item, asdiv_items, gsm8k_items
from compllm_graph.defaults import BASE_SYSTEM_PROMPT
from compllm_graph.evaluation.scoring import part_right
from compllm_graph.evaluation.stats import bootstrap_interval, paired_difference
from compllm_graph.expert_store.serving import with_system_prompt
from compllm_graph.models import load_model
from compllm_graph.nodes.execute import stated_answer
from compllm_graph.program_expert import create_program_expert
from compllm_graph.types import message_text

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
SYSTEMS = ("chain-of-thought", "program")
TRAINED = "program-adapter"
SOURCES = {"gsm8k": gsm8k_items, "asdiv": asdiv_items}


def held_out_problems(data_dir: Path, source: str, count: int, seed: int = 0) -> list[Item]:
    """`count` test-split problems of `source`, drawn with `seed`."""
    tested = [item for item in SOURCES[source](data_dir) if item.in_split == "test"]
    return random.Random(f"program-expert-{seed}").sample(tested, min(count, len(tested)))


def strictly_right(reply: str, gold: str) -> bool:
    """The last number of the reply's stated answer equals `gold`."""
    numbers = _NUMBER.findall(stated_answer(reply))
    if not numbers:
        return False
    try:
        return abs(float(numbers[-1].replace(",", "")) - float(gold.replace(",", ""))) < 1e-6
    except ValueError:
        return False


def answer(system: Runnable, item: Item) -> dict[str, Any]:
    """One system's reply to one problem, timed and scored both ways."""
    start = time.perf_counter()
    reply = system.invoke([HumanMessage(item.question)])
    seconds = time.perf_counter() - start
    text = message_text(reply)
    meta = getattr(reply, "response_metadata", {}).get("program_expert", {})
    part = {"question": item.question, "answer": item.answer, "choices": None}
    return {
        "strict": strictly_right(text, item.answer),
        "lenient": part_right(text, part),
        "seconds": round(seconds, 2),
        "characters": len(text),
        "fell_back": isinstance(meta, dict) and meta.get("answered_by") == "fallback",
        "reply": text,
    }


def summary(records: Sequence[dict[str, Any]]) -> None:
    """Print accuracy, interval, seconds and fallbacks per system, then the paired differences."""
    names = [name for name in (*SYSTEMS, TRAINED) if name in records[0]]
    by_system = {name: [r[name] for r in records] for name in names}
    print(f"{len(records)} held-out problems")
    for name, rows in by_system.items():
        for score in ("strict", "lenient"):
            values = [row[score] for row in rows]
            low, high = bootstrap_interval(values)
            print(
                f"  {name:16s} {score:7s} {100 * sum(values) / len(values):5.1f}% "
                f"[{100 * low:.1f}%, {100 * high:.1f}%]"
            )
        seconds = sum(row["seconds"] for row in rows) / len(rows)
        characters = sum(row["characters"] for row in rows) / len(rows)
        fell_back = sum(row["fell_back"] for row in rows)
        print(f"  {name:16s} {seconds:.1f} s and {characters:.0f} characters a problem", end="")
        print(f", {fell_back} fell back" if name != "chain-of-thought" else "")
    pairs = [("program", "chain-of-thought")]
    if TRAINED in by_system:
        pairs += [(TRAINED, "program"), (TRAINED, "chain-of-thought")]
    for score in ("strict", "lenient"):
        for a, b in pairs:
            diff = paired_difference(
                [row[score] for row in by_system[a]], [row[score] for row in by_system[b]]
            )
            low, high = diff["ci95"]
            call = "called" if diff["significant"] else "no call"
            print(
                f"  {a} - {b} ({score}): {100 * diff['difference']:+.1f} points "
                f"[{100 * low:+.1f}, {100 * high:+.1f}] ({call})"
            )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", choices=sorted(SOURCES), default="gsm8k")
    parser.add_argument("--problems", type=int, default=50)
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cot-tokens", type=int, default=480)
    parser.add_argument("--program-tokens", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--adapter", type=Path, help="also run the program expert through this LoRA adapter"
    )
    parser.add_argument("--out", type=Path, help="write each problem's replies as JSON lines")
    args = parser.parse_args(argv)
    problems = held_out_problems(default_data_dir(), args.source, args.problems, args.seed)
    model = load_model(args.model, n_threads=args.threads)
    cot = with_system_prompt(model.chat_model(max_new_tokens=args.cot_tokens), BASE_SYSTEM_PROMPT)
    program = create_program_expert(model.chat_model(max_new_tokens=args.program_tokens), cot)
    systems = {"chain-of-thought": cot, "program": program}
    if args.adapter:
        model.add_adapter("programs", args.adapter)
        writer = model.chat_model(adapter="programs", max_new_tokens=args.program_tokens)
        systems[TRAINED] = create_program_expert(writer, cot)
    names = list(systems)
    records = []
    for number, item in enumerate(problems, 1):
        # Rotate which system goes first, so none always meets a warmer cache.
        shift = number % len(names)
        order = names[shift:] + names[:shift]
        record: dict[str, Any] = {"id": item.id}
        record.update({name: answer(systems[name], item) for name in order})
        records.append(record)
        marks = " ".join(f"{name} {record[name]['strict']}" for name in names)
        print(f"[{number}/{len(problems)}] {marks}", flush=True)
    if args.out:
        args.out.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    summary(records)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
