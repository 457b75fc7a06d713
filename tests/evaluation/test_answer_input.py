"""`compllm eval answers` checks its whole input before answering anything.

A line that would stop a run hours in (a question that is not text, an unsortable domain, an
outputs line without an answer) is refused up front, with every bad line listed, exit 2, and no
model loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from compllm_graph.cli import main
from compllm_graph.evaluation.answers import BenchmarkError, answered, read_benchmark

PART = {"question": "What is 6 times 7?", "answer": "42", "choices": None, "domain": "maths"}
GOOD = {"id": "q0", "question": "What is 6 times 7?", "parts": [PART], "edges": []}


def record(number: int, **changes: Any) -> dict[str, Any]:
    return {**GOOD, "id": f"q{number}", **changes}


def write(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading a model fails the test: a bad input must stop the command before it."""

    def load(args: Any) -> Any:
        raise AssertionError("a model was loaded for a bad input file")

    monkeypatch.setattr("compllm_graph.evaluation.systems.build_answerer", load)


# Each of these was accepted, and broke the run only when it got there (or with a traceback).
BAD_LAST_LINES = {
    "question not text": record(9, question=7),
    "blank question": record(9, question="  "),
    "id not a string": record(9, id=3),
    "domain null": record(9, parts=[{**PART, "domain": None}]),
    "part question not text": record(9, parts=[{**PART, "question": ["a"]}]),
    "answer null": record(9, parts=[{**PART, "answer": None}]),
    "choices not a list": record(9, parts=[{**PART, "choices": 5}]),
    "edges not a list": record(9, edges=5),
    "edge of booleans": record(9, parts=[PART, PART], edges=[[True, 2]]),
}


@pytest.mark.parametrize("bad", BAD_LAST_LINES.values(), ids=BAD_LAST_LINES)
def test_a_bad_last_line_exits_2_before_any_model_is_loaded(
    tmp_path: Path, no_model: None, bad: dict[str, Any], capsys: pytest.CaptureFixture
) -> None:
    path = write(tmp_path / "b.jsonl", [record(0), record(1), record(2), bad])
    assert main(["eval", "answers", str(path)]) == 2
    assert f"{path}:4: " in capsys.readouterr().err


def test_every_bad_line_is_listed_in_one_error(tmp_path: Path) -> None:
    rows: list[Any] = [record(0), record(1, question=7), record(2), "not a record", record(0)]
    path = write(tmp_path / "b.jsonl", rows)
    path.write_text(path.read_text() + "{not json\n")
    with pytest.raises(BenchmarkError) as refused:
        read_benchmark(path)
    message = str(refused.value)
    assert message.startswith(f"4 bad lines in the benchmark {path}:")
    for line, problem in [(2, "'question'"), (4, "exactly"), (5, "first on line 1"), (6, "JSON")]:
        assert f"{path}:{line}: " in message and problem in message
    assert f"{path}:1:" not in message and f"{path}:3:" not in message


def test_a_long_list_of_bad_lines_is_cut_with_a_count(tmp_path: Path) -> None:
    path = write(tmp_path / "b.jsonl", [record(i, question=i) for i in range(25)])
    with pytest.raises(BenchmarkError, match=r"25 bad lines") as refused:
        read_benchmark(path)
    assert str(refused.value).endswith("... and 5 more")


def test_an_outputs_line_without_an_answer_exits_2_before_any_model_is_loaded(
    tmp_path: Path, no_model: None, capsys: pytest.CaptureFixture
) -> None:
    benchmark = write(tmp_path / "b.jsonl", [record(0), record(1)])
    outputs = write(tmp_path / "out.jsonl", [{"id": "q0", "answer": "42"}, {"id": "q1"}])
    assert main(["eval", "answers", str(benchmark), "--outputs", str(outputs)]) == 2
    assert f"{outputs}:2: not an outputs line" in capsys.readouterr().err


def test_outputs_lines_need_an_id_an_answer_and_numeric_seconds(tmp_path: Path) -> None:
    rows = [{"id": "q0", "answer": "x", "seconds": "slow"}, {"answer": "y"}, {"id": "q2"}]
    with pytest.raises(BenchmarkError, match="3 bad lines") as refused:
        answered(write(tmp_path / "out.jsonl", rows))
    assert "'seconds' must be a number" in str(refused.value)
    good = [{"id": "q0", "answer": "x", "seconds": 1.5}, {"id": 7, "answer": "y"}]
    assert set(answered(write(tmp_path / "good.jsonl", good))) == {"q0", "7"}


def test_the_command_exits_2_with_the_line_numbers(tmp_path: Path) -> None:
    path = write(tmp_path / "b.jsonl", [record(0), record(1, question=None), record(2, edges=1)])
    command = [sys.executable, "-m", "compllm_graph.cli", "eval", "answers", str(path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    assert "2 bad lines" in done.stderr and f"{path}:2: " in done.stderr
    assert f"{path}:3: 'edges' must be a list" in done.stderr
    assert "Traceback" not in done.stderr
