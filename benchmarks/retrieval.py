"""Whether retrieval wins: each demo expert with and without its nearest training items in its
prompt, on its domain's held-out single-domain questions, paired.

Per domain of the demo store (`compllm experts build-demo`, built fresh in `--out`):

1. The retrieval set is the items the expert trained on (`training.expert_data.expert_examples`:
   train split, 800 items, seed 0, without the open-form copies), checked with
   `evaluation.retrieval.check_training_items`, and stored with `ExpertStore.set_retrieval`.
2. `k` is chosen from `--ks` on a dev slice of the calibration split (`datasets.calibration`:
   sources nothing trains on and no benchmark holds): the `k` with the most right answers (the
   smaller on a tie).
3. The expert answers the first `--test` questions of `benchmarks/answers/data/single-DOMAIN.jsonl`
   (test-split items, checked here, less any that shares a passage with a retrieval item:
   `evaluation.leakage`) without retrieval and with the chosen `k`, in alternating order, as the
   graph asks an expert (its system prompt, `--max-new-tokens` answer tokens). Replies are scored
   by the benchmarks' rules; the difference is paired, with its 95 % bootstrap interval
   (`evaluation.stats.paired_difference`).

It first prints how similar each domain's test questions are to their nearest item, and other
domains' questions to it, which the floor is set from (`--floor`; `--similarities-only` stops
there, before any model loads). `--copies-only` reads a finished run's `test.jsonl` and counts
how often a multiple-choice reply names the letter of the nearest item's answer.

Usage: `python -m benchmarks.retrieval [--domains chemistry,biology,...] [--test 40] [--dev 12]
[--ks 1,2,4] [--floor F] [--threads 1] [--out DIR] [--store DIR]`. Writes `summary.json`,
`dev.jsonl` and `test.jsonl` (every reply) into `--out`; the store is built in `--store`.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.messages import HumanMessage

from compllm_graph.data_dir import default_data_dir
from compllm_graph.datasets.calibration import calibration_items
from compllm_graph.datasets.items import as_text, unlettered
from compllm_graph.evaluation.leakage import MIN_SHARE, shared_share, word_runs
from compllm_graph.evaluation.retrieval import TrainingPool, check_training_items, training_pool
from compllm_graph.evaluation.scoring import score_question
from compllm_graph.evaluation.stats import bootstrap_interval, paired_difference
from compllm_graph.expert_store.demo import DEMO_EXPERTS, build_demo_store
from compllm_graph.expert_store.records import RetrievalSettings
from compllm_graph.expert_store.retrieval import RetrievalItem, Retriever, question_text
from compllm_graph.expert_store.serving import expert_chat_models
from compllm_graph.expert_store.store import ExpertStore
from compllm_graph.training.expert_data import expert_examples
from compllm_graph.types import message_text

DATA = Path(__file__).resolve().parent / "answers" / "data"
_LETTER = re.compile(r"answer is \(([A-J])\)")
TRAINING_ITEMS = 800
"""Items per expert in its training data (`compllm train expert-data --limit`, the default the
demo experts were trained with; chemistry's train split holds 502)."""


def training_items(data_dir: Path, domain: str) -> list[RetrievalItem]:
    """The items the demo expert of `domain` trained on, as retrieval items."""
    records = expert_examples(data_dir, domain, TRAINING_ITEMS, seed=0, open_forms=False)
    return [RetrievalItem(r["id"], r["question"], r["answer"]) for r in records]


def test_questions(
    domain: str, count: int, pool: TrainingPool, items: Sequence[RetrievalItem]
) -> tuple[list[dict[str, Any]], int]:
    """The first `count` questions of `single-DOMAIN.jsonl` that share no passage with an item,
    and how many were left out for sharing one.

    Raises:
        ValueError: a question is not a test-split item's.
    """
    runs = frozenset(run for item in items for run in word_runs(item.question))
    records = [json.loads(line) for line in (DATA / f"single-{domain}.jsonl").open()]
    kept, shared = [], 0
    for record in records:
        (part,) = record["parts"]
        if unlettered(part["question"]) not in pool.test_questions:
            raise ValueError(f"{record['id']} is not a test-split item's question")
        if shared_share(part["question"], runs) >= MIN_SHARE:
            shared += 1
            continue
        kept.append(record)
        if len(kept) == count:
            break
    return kept, shared


def dev_questions(data_dir: Path, domain: str, count: int) -> list[dict[str, Any]]:
    """`count` calibration-split questions of `domain`, as one-part benchmark records."""
    return [
        {
            "id": item.id,
            "question": as_text(item),
            "parts": [
                {
                    "question": as_text(item),
                    "answer": item.answer,
                    "choices": list(item.choices) if item.choices else None,
                }
            ],
        }
        for item in calibration_items(data_dir, domain, count, seed=0)
    ]


def similarities(
    store: ExpertStore, questions: Mapping[str, Sequence[dict[str, Any]]]
) -> dict[str, Any]:
    """Per expert, quantiles of the top-1 similarity of its own domain's questions and of the
    other domains' questions to its retrieval set."""
    out = {}
    for domain in questions:
        retriever = store.retriever(domain)
        top: dict[str, list[float]] = {"own": [], "other": []}
        for other, records in questions.items():
            for record in records:
                found = retriever.nearest(record["question"], 1, -1.0)
                top["own" if other == domain else "other"].append(found[0].score)
        out[domain] = {
            side: [round(float(q), 3) for q in np.quantile(values, [0.1, 0.25, 0.5, 0.75, 0.9])]
            for side, values in top.items()
            if values
        }
    return out


def answerer(
    store: ExpertStore, model: Any, domain: str, settings: RetrievalSettings, tokens: int
) -> Any:
    """The expert of `domain` as the store builds it, with these retrieval settings."""
    expert = store.expert(domain)
    assert expert.retrieval is not None
    changed = replace(expert, retrieval=replace(expert.retrieval, settings=settings))
    chats = expert_chat_models(
        [changed], model, embedder=lambda: store.embedder, max_new_tokens=tokens
    )
    return chats[domain]


def ask(chat: Any, record: dict[str, Any], retriever: Retriever | None) -> dict[str, Any]:
    """One reply, timed and scored, with the ids of the items its prompt showed."""
    shown = (
        [f.item.id for f in retriever.nearest(question_text(HumanMessage(record["question"])))]
        if retriever is not None
        else []
    )
    start = time.perf_counter()
    reply = message_text(chat.invoke([HumanMessage(record["question"])]))
    return {
        "right": score_question(reply, record["parts"]).right,
        "seconds": round(time.perf_counter() - start, 2),
        "shown": shown,
        "reply": reply,
    }


def choose_k(
    store: ExpertStore,
    model: Any,
    domain: str,
    records: Sequence[dict[str, Any]],
    args: Any,
    log: Any,
) -> tuple[int, dict[int, int]]:
    """The `k` of `args.ks` with the most right dev answers (the smaller on a tie)."""
    right = {}
    for k in args.ks:
        settings = RetrievalSettings(k=k, floor=args.floor)
        chat = answerer(store, model, domain, settings, args.max_new_tokens)
        retriever = store.retriever(domain, settings)
        answers = [ask(chat, record, retriever) for record in records]
        for record, answer in zip(records, answers):
            log.write(json.dumps({"domain": domain, "k": k, "id": record["id"], **answer}) + "\n")
        log.flush()
        right[k] = sum(a["right"] for a in answers)
        print(f"  dev {domain} k={k}: {right[k]}/{len(records)}", flush=True)
    best = max(args.ks, key=lambda k: (right[k], -k))
    return best, right


def compare(
    store: ExpertStore,
    model: Any,
    domain: str,
    k: int,
    records: Sequence[dict[str, Any]],
    args: Any,
    log: Any,
) -> dict[str, Any]:
    """Without retrieval against with `k` on the test questions, alternating which goes first."""
    on = RetrievalSettings(k=k, floor=args.floor)
    systems = {
        "off": (answerer(store, model, domain, RetrievalSettings(k=0), args.max_new_tokens), None),
        "on": (
            answerer(store, model, domain, on, args.max_new_tokens),
            store.retriever(domain, on),
        ),
    }
    scores: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    for number, record in enumerate(records):
        for name in ("off", "on") if number % 2 == 0 else ("on", "off"):
            chat, retriever = systems[name]
            answer = ask(chat, record, retriever)
            scores[name].append(answer)
            log.write(
                json.dumps({"domain": domain, "system": name, "k": k, "id": record["id"], **answer})
                + "\n"
            )
        log.flush()
    return row(domain, k, scores)


def row(domain: str, k: int, scores: Mapping[str, Sequence[dict[str, Any]]]) -> dict[str, Any]:
    """One domain's result: accuracies with intervals, the paired difference, seconds, shown."""
    off = [a["right"] for a in scores["off"]]
    on = [a["right"] for a in scores["on"]]
    n = len(off)
    return {
        "domain": domain,
        "k": k,
        "n": n,
        "off": round(sum(off) / n, 4),
        "off_ci95": bootstrap_interval(off),
        "on": round(sum(on) / n, 4),
        "on_ci95": bootstrap_interval(on),
        "difference": paired_difference(on, off),
        "seconds_off": round(sum(a["seconds"] for a in scores["off"]) / n, 2),
        "seconds_on": round(sum(a["seconds"] for a in scores["on"]) / n, 2),
        "mean_shown": round(sum(len(a["shown"]) for a in scores["on"]) / n, 2),
        "none_shown": sum(not a["shown"] for a in scores["on"]),
    }


def table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows as a Markdown table (`*`: the interval of the difference leaves out 0)."""
    lines = [
        "| domain | n | k | without | with | with − without | shown a question "
        "| s/call without, with |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        diff = r["difference"]
        low, high = diff["ci95"]
        mark = " \\*" if diff["significant"] else ""
        lines.append(
            f"| {r['domain']} | {r['n']} | {r['k']} | {_cell(r['off'], r['off_ci95'])} | "
            f"{_cell(r['on'], r['on_ci95'])} | {100 * diff['difference']:+.1f} "
            f"[{100 * low:+.1f}, {100 * high:+.1f}]{mark} | {r['mean_shown']:.2f} "
            f"({r['none_shown']} none) | {r['seconds_off']:.2f}, {r['seconds_on']:.2f} |"
        )
    return "\n".join(lines)


def letter_copies(data_dir: Path, log: Path) -> dict[str, dict[str, int]]:
    """Per domain, of the multiple-choice questions whose prompt showed an item and whose two
    replies both name a letter: how often each reply names the letter of the nearest item's
    answer (with retrieval, and without it as the control)."""
    rows = [json.loads(line) for line in log.open()]
    answers = {
        item.id: item.answer
        for domain in sorted({r["domain"] for r in rows})
        for item in training_items(data_dir, domain)
    }
    pairs: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        pairs.setdefault((r["domain"], r["id"]), {})[r["system"]] = r
    out: dict[str, dict[str, int]] = {}
    for (domain, _), pair in pairs.items():
        counts = out.setdefault(domain, {"questions": 0, "with": 0, "without": 0})
        nearest = _LETTER.search(answers[pair["on"]["shown"][0]]) if pair["on"]["shown"] else None
        on, off = _LETTER.search(pair["on"]["reply"]), _LETTER.search(pair["off"]["reply"])
        if nearest and on and off:
            counts["questions"] += 1
            counts["with"] += on.group(1) == nearest.group(1)
            counts["without"] += off.group(1) == nearest.group(1)
    return out


def _cell(value: float, interval: Sequence[float]) -> str:
    return f"{100 * value:.1f} % [{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--engine", default="llama.cpp")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--domains", default=",".join(DEMO_EXPERTS))
    parser.add_argument("--test", type=int, default=40, help="test questions per domain")
    parser.add_argument("--dev", type=int, default=12, help="dev questions per domain")
    parser.add_argument("--ks", default="1,2,4", help="the k values the dev slice chooses from")
    parser.add_argument("--floor", type=float, default=RetrievalSettings().floor)
    parser.add_argument("--max-new-tokens", type=int, default=160)
    parser.add_argument("--similarities-only", action="store_true")
    parser.add_argument(
        "--copies-only",
        action="store_true",
        help="read --out's test.jsonl and print how often a reply names the nearest item's letter",
    )
    parser.add_argument("--out", type=Path, default=Path("/tmp/retrieval-benchmark"))
    parser.add_argument(
        "--store", type=Path, default=Path("/tmp/retrieval-benchmark-store"), help="built afresh"
    )
    args = parser.parse_args(argv)
    args.ks = sorted({int(k) for k in args.ks.split(",")})
    domains = [d.strip() for d in args.domains.split(",") if d.strip()]
    data_dir = default_data_dir()
    if args.copies_only:
        print(json.dumps(letter_copies(data_dir, args.out / "test.jsonl")))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    store = build_demo_store(args.store, base=args.model, calibrate=False, force=True)
    pool = training_pool(data_dir)
    tests, dev, left_out = {}, {}, {}
    for domain in domains:
        items = training_items(data_dir, domain)
        check_training_items(items, pool)  # no evaluation item can enter
        store.set_retrieval(domain, items, RetrievalSettings(k=max(args.ks), floor=args.floor))
        tests[domain], left_out[domain] = test_questions(domain, args.test, pool, items)
        dev[domain] = dev_questions(data_dir, domain, args.dev)
        print(
            f"{domain}: {len(items)} items, {len(tests[domain])} test questions "
            f"({left_out[domain]} left out: a shared passage), {len(dev[domain])} dev",
            flush=True,
        )
    similar = similarities(store, tests)
    print(json.dumps({"top1_similarity_quantiles_10_25_50_75_90": similar}, indent=1))
    if args.similarities_only:
        return 0

    from compllm_graph.models import load_model  # the [local] extra

    model = load_model(args.model, engine=args.engine, n_threads=args.threads)
    rows, chosen = [], {}
    with (args.out / "dev.jsonl").open("w") as dev_log, (args.out / "test.jsonl").open("w") as log:
        for domain in domains:
            k, dev_right = choose_k(store, model, domain, dev[domain], args, dev_log)
            chosen[domain] = {"k": k, "dev_right": dev_right, "dev_n": len(dev[domain])}
            rows.append(compare(store, model, domain, k, tests[domain], args, log))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    summary = {
        "model": args.model,
        "engine": args.engine,
        "threads": args.threads,
        "floor": args.floor,
        "ks": args.ks,
        "max_new_tokens": args.max_new_tokens,
        "left_out_shared_passage": left_out,
        "similarity_quantiles": similar,
        "chosen": chosen,
        "rows": rows,
        "minutes": round((time.perf_counter() - started) / 60, 1),
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(table(rows))
    print(f"{summary['minutes']} minutes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
