"""Smoke tests: every script in examples/ runs (on the test model) and prints its result.

Each runs in a subprocess, as a user would run it, with short answers to stay fast.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from compllm_graph.models import SMALL_MODEL
from tests.conftest import require_smollm2

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TOKENS = ["--max-new-tokens", "12", "--model", SMALL_MODEL]


def run_example(name: str, *args: str) -> str:
    require_smollm2()
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *TOKENS, *args],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=EXAMPLES.parent,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_graph_as_node() -> None:
    out = run_example("graph_as_node.py")
    assert out.count("Comp-LLM: ") == 2
    assert "(conversation now has 2 messages)" in out
    assert "(conversation now has 4 messages)" in out  # the second turn kept the first
    assert "History: ['human', 'ai', 'human', 'ai']" in out


def test_chain_with_agent(tmp_path: Path) -> None:
    notes = tmp_path / "notes.jsonl"
    out = run_example("chain_with_agent.py", "--notes", str(notes))
    assert f"Tool: saved to {notes}" in out
    note = json.loads(notes.read_text())
    assert f"Comp-LLM: {note['answer']}" in out
    assert f"Reviewer: {note['review']}" in out
    assert note["answer"] and note["review"]


def test_mixed_experts() -> None:
    out = run_example("mixed_experts.py")
    assert "chemistry   -> remote 'smollm2-135m-instruct' at http://127.0.0.1:" in out
    assert "mathematics -> local LoRA adapter 'mathematics'" in out
    assert "\nAnswer: " in out
    assert "chemistry (remote) says: " in out


def test_agent_expert() -> None:
    out = run_example("agent_expert.py")
    assert "mathematics  kind runnable" in out
    assert "chemistry    kind adapter" in out
    # the agent, bound to its store entry, answers through its calculator tool
    assert "mathematics (agent) says: The calculator says 69. The answer is 69." in out
    assert "\nAnswer: " in out


def test_stream_events() -> None:
    out = run_example("stream_events.py", "What is 2 plus 2?")
    lines = out.splitlines()
    assert lines[0] == "Question: What is 2 plus 2?"
    assert "decomposed into" in lines[1]
    assert any(" -> " in line and "(score " in line for line in lines)
    assert any("answered in" in line for line in lines)
    final = next(i for i, line in enumerate(lines) if "final answer: " in line)
    assert all(line.startswith("           ") for line in lines[final + 1 :]), out


def test_supervisor_team() -> None:
    out = run_example("supervisor_team.py")
    worker = re.search(r"^compllm: (.*?)\nreviewer: ", out, re.M | re.S)
    assert worker and worker.group(1).strip(), out
    # the supervisor's final message carries the Comp-LLM worker's answer
    assert f"Supervisor: compllm: {worker.group(1)}\nreviewer: " in out


def test_as_a_tool() -> None:
    out = run_example("as_a_tool.py")
    assert "Tool call: ask_compllm({'question': 'What gas do plants absorb" in out
    result = re.search(r"^Comp-LLM: (.*?) \(routes: ", out, re.M | re.S)
    assert result and result.group(1).strip(), out
    assert f"Agent: The experts say: {result.group(1)}" in out
