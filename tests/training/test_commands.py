"""Command-line checks that need no model: argument parsing and clear errors."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest

from compllm_graph.cli import main
from compllm_graph.datasets.splits import decomposition_split
from compllm_graph.decomposer import BASE_MODEL, adapter_for
from compllm_graph.decomposer.loading import (
    DECOMPOSER_MAX_NEW_TOKENS,
    DECOMPOSER_TOKENS_PER_PROMPT_TOKEN,
)
from compllm_graph.evaluation.decomposition_commands import _adapter_dir, _budget, _read_examples
from compllm_graph.models import CATALOGUE, SMALL_MODEL
from compllm_graph.training.expert_data import OPEN_FORM
from compllm_graph.training.train_commands import _check_store_for, parse_mix
from tests.conftest import smollm2_decomposer


def test_parse_mix() -> None:
    assert parse_mix("musique=0.5, break=0.5") == {"musique": 0.5, "break": 0.5}
    assert parse_mix("musique=1,conjunction=0.2") == {"musique": 1.0, "conjunction": 0.2}
    for bad in ("musique", "hotpot=1", "musique=-1", "musique=0"):
        with pytest.raises(ValueError):
            parse_mix(bad)


def test_adapter_choice() -> None:
    def choose(adapter: str | None, few_shot: bool, model: str = SMALL_MODEL) -> Path | None:
        return _adapter_dir(argparse.Namespace(adapter=adapter, few_shot=few_shot, model=model))

    assert choose(None, False) == adapter_for(SMALL_MODEL) == smollm2_decomposer()
    assert choose(None, False, BASE_MODEL) == adapter_for(BASE_MODEL) != smollm2_decomposer()
    assert choose("shipped", True) == smollm2_decomposer()
    assert choose(None, True) is None
    assert choose("none", False) is None
    assert choose("/x/y", True) == Path("/x/y")
    with pytest.raises(ValueError, match="no decomposer ships for 'other-model'"):
        choose(None, False, model="other-model")


def test_eval_rejects_a_bad_file_before_loading_a_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps([{"foo": 1}]))
    assert main(["eval", "decomposition", str(odd)]) == 2
    assert "expected MuSiQue" in capsys.readouterr().err
    assert main(["eval", "decomposition", str(tmp_path / "missing.csv")]) == 2


def test_eval_reads_an_answer_benchmark_with_its_parts_as_gold(tmp_path: Path) -> None:
    parts: list[dict[str, object]] = [
        {"question": "What is 2+3?", "answer": "5", "choices": None, "domain": "mathematics"},
        {
            "question": "Which element has the atomic number #1? Options: (A) B; (B) C.",
            "answer": "B",
            "choices": ["B", "C"],
            "domain": "chemistry",
        },
    ]
    record = {"id": "all2-1", "question": "What is 2+3? Then: ...", "parts": parts}
    bench = tmp_path / "all2.jsonl"
    bench.write_text(json.dumps({**record, "edges": [[1, 2]]}) + "\n")
    (example,) = _read_examples(bench, "test")  # every benchmark question counts
    assert example.qid == "all2-1" and example.question == record["question"]
    assert [q.text for q in example.graph] == [p["question"] for p in parts]
    assert example.graph.edges == ((1, 2),)
    assert _budget([example]) == DECOMPOSER_MAX_NEW_TOKENS  # parts keep their options
    # with a token count, the pipeline's budget for the longest prompt, within the context
    assert _budget([example], lambda q: 100) == DECOMPOSER_MAX_NEW_TOKENS
    long = DECOMPOSER_MAX_NEW_TOKENS  # a prompt as long as the base budget asks for more
    grown = math.ceil(DECOMPOSER_TOKENS_PER_PROMPT_TOKEN * long)
    assert grown > DECOMPOSER_MAX_NEW_TOKENS
    assert _budget([example], lambda q: long) == grown
    assert _budget([example], lambda q: long, context=long + 600) == 600
    assert _budget([example], lambda q: long, context=long + 10) == DECOMPOSER_MAX_NEW_TOKENS


def test_eval_reports_an_empty_split(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one = tmp_path / "one.json"
    one.write_text(json.dumps([{"qid": "x", "question": "q?", "decomposition": ["a", "b #1"]}]))
    other = next(s for s in ("train", "validation", "test") if s != decomposition_split("x"))
    assert main(["eval", "decomposition", str(one), "--split", other]) == 2
    assert "no examples" in capsys.readouterr().err


def test_train_decomposer_rejects_a_bad_mix(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "decomposer", "--out", "/tmp/unused", "--mix", "hotpot=1"]) == 2
    assert "bad --mix" in capsys.readouterr().err


def test_train_expert_rejects_a_missing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "expert", "x", "--data", str(tmp_path / "none.txt")]) == 2
    assert "error" in capsys.readouterr().err


def test_train_expert_checks_the_store_before_loading_a_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from compllm_graph.expert_store import ExpertStore

    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded before the store was checked")

    monkeypatch.setattr("compllm_graph.training.train_commands.load_model", no_model)
    data = tmp_path / "domain.txt"
    data.write_text("Some domain text.\n")

    def run(name: str, store: Path) -> str:
        argv = ["train", "expert", name, "--data", str(data), "--store", str(store)]
        assert main(argv) == 2
        return capsys.readouterr().err

    existing = ExpertStore.create(tmp_path / "store", "hashing:16")
    existing.add_expert("chemistry", ["gases"])
    assert "already exists" in run("chemistry", existing.path)
    assert "compllm experts remove chemistry" in run("chemistry", existing.path)
    assert "invalid expert name" in run("Bad Name", tmp_path / "new")
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("not a store")
    assert "neither an expert store nor an empty folder" in run("biology", other)
    empty = tmp_path / "empty"
    empty.mkdir()
    for fine in (empty, tmp_path / "absent", existing.path):
        _check_store_for(fine, "biology")  # an empty folder or none gets a new store


def test_train_decomposer_checks_the_init_adapter_before_loading_a_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def run(*extra: str) -> str:
        assert main(["train", "decomposer", "--out", str(tmp_path / "out"), *extra]) == 2
        return capsys.readouterr().err

    assert "no decomposer ships for 'other-model'" in run(
        "--base", "other-model", "--init-adapter", "shipped"
    )
    assert "--lora-r 16 --lora-alpha 32" in run("--init-adapter", "shipped", "--lora-r", "8")
    # Left out, the LoRA shape follows the adapter: the run gets as far as looking for data.
    assert "no data folder" in run("--init-adapter", "shipped", "--data-dir", str(tmp_path / "no"))
    smollm2 = str(smollm2_decomposer())
    other = next(alias for alias in CATALOGUE if alias != SMALL_MODEL)
    assert f"pass --base {SMALL_MODEL}" in run("--base", other, "--init-adapter", smollm2)
    assert "adapter_config.json is unreadable" in run("--init-adapter", str(tmp_path))
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": "16"}))
    assert "has r='16': not a LoRA" in run("--init-adapter", str(tmp_path))


def test_eval_rejects_a_beam_width_below_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one = tmp_path / "one.json"
    one.write_text(json.dumps([{"qid": "x", "question": "q?", "decomposition": ["a", "b #1"]}]))
    assert main(["eval", "decomposition", str(one), "--split", "all", "--beams", "0"]) == 2
    assert "--beams must be >= 1" in capsys.readouterr().err


def test_expert_data_can_leave_out_the_open_form_pairs(data_dir: Path, tmp_path: Path) -> None:
    def written(*extra: str) -> list[dict[str, str]]:
        out = tmp_path / "math.jsonl"
        assert main(["train", "expert-data", "mathematics", "--out", str(out), *extra]) == 0
        return [json.loads(line) for line in out.read_text().splitlines()]

    every = written("--limit", "40")
    worked = written("--limit", "40", "--no-open-form")
    assert len(worked) == 40 and len(every) > 40
    assert worked == [r for r in every if not r["id"].endswith(OPEN_FORM)]


def test_eval_decomposition_scores_one_question_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from compllm_graph.datasets.decompositions import load_examples

    rows = tmp_path / "break.csv"
    rows.write_text(
        "question_id,question_text,decomposition,operators,split\n"
        'CWQ_dev_1,Who founded X?,return X ;return founder of #1,"[]",dev\n'
        'DROP_dev_2,How many goals?,return goals ;return number of #1,"[]",dev\n'
    )
    assert [e.source for e in load_examples(rows)] == ["cwq", "drop"]
    argv = ["eval", "decomposition", str(rows), "--split", "all", "--source", "hotpot"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "no 'hotpot' questions in the all split" in err and "its question sets: cwq, drop" in err
