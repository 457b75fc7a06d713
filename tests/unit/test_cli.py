import json

import pytest

from compllm_graph.cli import _run_streaming, build_parser, format_report, report_json
from tests.unit.test_graph import build


def run(echo=False):
    timings = {"load": 0.5}
    out = _run_streaming(build(), {"query": "three things?"}, timings, echo=echo)
    timings["total"] = 1.0
    return out, timings


def test_ask_report_shows_dag_routes_sub_answers_answer_and_times():
    out, timings = run()
    text = format_report(out, timings)
    assert "Sub-queries (3; longest chain of dependent ones: 1):" in text
    assert "[2] biology      0.90   (biology 0.90)" in text
    assert "[3] mathematics " in text and " s: mathematics answer to: math three" in text
    assert f"Answer: {out['answer']}" in text
    assert set(timings) == {"load", "decompose", "route", "execute", "aggregate", "total"}


def test_ask_report_says_why_the_answer_fell_back():
    out, timings = run()
    out["fallback_reason"] = "the aggregator left out the answer of sub-query 2"
    text = format_report(out, timings)
    answer_line = text.index("Answer:")
    assert text.index("(fallback: the aggregator left out the answer of sub-query 2)") > answer_line


def test_ask_json_has_the_documented_keys_and_is_serialisable():
    out, timings = run()
    data = json.loads(json.dumps(report_json(out, timings)))
    assert set(data) == {
        "query",
        "sub_queries",
        "routes",
        "sub_answers",
        "answer",
        "fallback_reason",
        "timings",
    }
    assert data["sub_queries"][0] == {"id": 1, "text": "chem one", "parents": []}


def test_stream_flag_echoes_each_event(capsys):
    run(echo=True)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "  · decomposed into 3 sub-queries"
    assert any(line.startswith("  · route [1] -> chemistry (0.90)") for line in lines)
    assert sum("start [" in line for line in lines) == 3
    assert lines[-1].startswith("  · answer: First part: chemistry answer to")


def test_report_and_echo_say_when_a_route_came_from_the_ancestors(capsys):
    graph = build("<q>math: 5 hours at 60 mph</q><q>How far?</q><dep>1->2</dep>")
    timings = {"load": 0.5}
    out = _run_streaming(graph, {"query": "q"}, timings, echo=True)
    timings["total"] = 1.0
    echoed = capsys.readouterr().out
    assert "route [1] -> mathematics (0.90)\n" in echoed
    assert "route [2] -> mathematics (0.90, on its ancestors)" in echoed
    routes = [
        line for line in format_report(out, timings).splitlines() if "mathematics 0.90" in line
    ]
    assert [line.endswith("routed on its ancestors too") for line in routes] == [False, True]


def test_ask_help_explains_every_argument(capsys):
    with pytest.raises(SystemExit):
        build_parser("ask").parse_args(["ask", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for phrase in (
        "the question (default: the demo one)",
        "eager starts each sub-query when its own parents finish",
        "most tokens generated for a request; here for the answers of experts, base and aggregator",
        "inference engine",
        "llama.cpp CPU threads",
    ):
        assert phrase in text


def test_library_progress_bars_are_quiet_unless_verbose(monkeypatch):
    transformers = pytest.importorskip("transformers", reason="needs the [local] extra")
    from compllm_graph._progress import quiet_library_bars

    bars = transformers.utils.logging
    try:
        bars.enable_progress_bar()
        monkeypatch.setenv("COMPLLM_VERBOSE", "1")
        quiet_library_bars()
        assert bars.is_progress_bar_enabled()
        monkeypatch.delenv("COMPLLM_VERBOSE")
        quiet_library_bars()
        assert not bars.is_progress_bar_enabled()
    finally:
        bars.enable_progress_bar()


def test_verbose_flag_sets_the_variable_libraries_read(monkeypatch):
    pytest.importorskip("torch", reason="`compllm models` needs the [local] extra")
    monkeypatch.delenv("COMPLLM_VERBOSE", raising=False)
    from compllm_graph.cli import main

    assert main(["--verbose", "models", "list", "--json"]) == 0
    import os

    assert os.environ.get("COMPLLM_VERBOSE") == "1"
    monkeypatch.delenv("COMPLLM_VERBOSE")


def test_library_stderr_is_hidden_unless_verbose(monkeypatch, capsys):
    import sys

    from compllm_graph._progress import quiet_stderr

    monkeypatch.delenv("COMPLLM_VERBOSE", raising=False)
    with quiet_stderr():
        print("a library's bar", file=sys.stderr)
    monkeypatch.setenv("COMPLLM_VERBOSE", "1")
    with quiet_stderr():
        print("shown when verbose", file=sys.stderr)
    err = capsys.readouterr().err
    assert "a library's bar" not in err and "shown when verbose" in err
