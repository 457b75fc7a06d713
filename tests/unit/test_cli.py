import json
from typing import Any, get_args

import pytest

from compllm_graph.cli import (
    DEFAULT_QUESTION,
    JOINED_NOTE,
    _run_streaming,
    build_parser,
    format_report,
    main,
    report_json,
)
from compllm_graph.graph import create_compllm_graph
from compllm_graph.nodes.aggregate import AggregateMode
from tests.fakes import FakeChat, decomposer
from tests.unit.test_graph import ROUTER, build, experts


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
        "split_rule",
        "aggregation",
        "timings",
    }
    assert data["sub_queries"][0] == {"id": 1, "text": "chem one", "parents": []}
    assert data["split_rule"] is None and data["aggregation"] == "joined"


def _notes(text: str) -> list[str]:
    """The notes under the answer (a joined answer has a line per part before them)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Answer:"))
    end = next(i for i, line in enumerate(lines) if line.startswith("Total:"))
    return [line for line in lines[start + 1 : end] if line.startswith("  (")]


def test_ask_says_when_the_and_split_rule_split_the_question_and_the_parts_were_joined():
    timings = {"load": 0.5}
    graph = build(f"<q>{DEFAULT_QUESTION}</q>")  # the decomposer leaves the question whole
    out = _run_streaming(graph, {"query": DEFAULT_QUESTION}, timings, echo=False)
    timings["total"] = 1.0
    split = "split into 2 independent questions at 'and' (the decomposer wrote one sub-query)"
    assert _notes(format_report(out, timings)) == [
        f"  (decomposition rules: {split})",
        f"  ({JOINED_NOTE})",
    ]
    data = report_json(out, timings)
    assert data["split_rule"] == split and data["aggregation"] == "joined"


@pytest.mark.parametrize(
    ("decomposition", "options", "aggregation"),
    [
        ("<q>chem one</q><q>bio two</q>", {"aggregate": "always"}, "reducer"),
        ("<q>chem one</q><q>bio two</q>", {"aggregator": FakeChat(label="reducer")}, "reducer"),
        ("<q>three things?</q>", {}, "joined"),  # one part, the question itself: nothing joined
    ],
)
def test_ask_prints_no_note_where_the_reducer_ran_or_nothing_was_joined(
    decomposition: str, options: dict[str, Any], aggregation: str
):
    timings = {"load": 0.5}
    graph = build(decomposition, **options)
    out = _run_streaming(graph, {"query": "three things?"}, timings, echo=False)
    timings["total"] = 1.0
    assert out["aggregation"] == aggregation
    assert _notes(format_report(out, timings)) == []


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
        "auto joins the answers of independent parts without a reducer call",
        "turn off the and-split rule",
        "the mathematics expert answers by a program",
    ):
        assert phrase in text


def test_ask_aggregate_choices_are_the_graphs_modes():
    args = build_parser("ask").parse_args(["ask"])
    # None: build_default_graph decides (on for a model measured for it, with the demo store)
    assert (args.aggregate, args.no_split_questions, args.program_expert) == (None, False, None)
    for mode in get_args(AggregateMode):
        assert build_parser("ask").parse_args(["ask", "--aggregate", mode]).aggregate == mode


@pytest.fixture
def built(monkeypatch) -> list[dict[str, Any]]:
    """The options `ask` builds the default graph with; the model and the graph are fakes."""
    pytest.importorskip("torch", reason="`compllm ask` needs the [local] extra")
    pytest.importorskip("faiss", reason="`compllm ask` needs the [router] extra")
    calls: list[dict[str, Any]] = []

    def build_default_graph(local_model, store, **options):
        calls.append(options)
        return create_compllm_graph(
            decomposer=decomposer("<q>chem one</q><q>bio two</q>"),
            experts=experts(),
            router=ROUTER,
            base=FakeChat(label="base"),
            aggregate=options["aggregate"],
        )

    monkeypatch.setattr("compllm_graph.models.load_model", lambda name, **kwargs: object())
    monkeypatch.setattr("compllm_graph.defaults.build_default_graph", build_default_graph)
    return calls


@pytest.mark.parametrize(
    ("flags", "options", "aggregation"),
    [
        (
            (),
            {
                "aggregate": None,
                "split_questions": True,
                "split_chains": True,
                "carry_premise": True,
                "program_expert": None,
            },
            "joined",
        ),
        (
            ("--no-program-expert", "--no-split-chains", "--no-carry-premise"),
            {"program_expert": False, "split_chains": False, "carry_premise": False},
            "joined",
        ),
        (
            ("--aggregate", "always", "--no-split-questions", "--program-expert"),
            {"aggregate": "always", "split_questions": False, "program_expert": True},
            "reducer",
        ),
    ],
)
def test_ask_passes_its_pipeline_flags_to_the_default_graph(
    built: list[dict[str, Any]],
    capsys: pytest.CaptureFixture,
    flags: tuple[str, ...],
    options: dict[str, Any],
    aggregation: str,
):
    assert main(["ask", "chem one and bio two?", *flags, "--json"]) == 0
    (called,) = built
    assert {key: called[key] for key in options} == options
    report = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert report["aggregation"] == aggregation


def test_ask_refuses_a_program_expert_it_cannot_build(monkeypatch, capsys):
    pytest.importorskip("torch", reason="`compllm ask` needs the [local] extra")
    pytest.importorskip("faiss", reason="`compllm ask` needs the [router] extra")
    from compllm_graph.program_expert import ProgramExpertError

    def build_default_graph(local_model, store, **options):
        raise ProgramExpertError("the store at S has none")

    monkeypatch.setattr("compllm_graph.models.load_model", lambda name, **kwargs: object())
    monkeypatch.setattr("compllm_graph.defaults.build_default_graph", build_default_graph)
    assert main(["ask", "q?", "--program-expert", "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.err == "error: the store at S has none\n"
    assert json.loads(captured.out) == {"error": "the store at S has none"}


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


def test_a_warning_is_one_line_on_the_command_line_and_the_source_line_with_verbose() -> None:
    import subprocess
    import sys
    import textwrap

    # A fresh interpreter: pytest records warnings instead of showing them.
    script = textwrap.dedent(
        """
        import sys, warnings
        import compllm_graph.cli as cli

        def warns(args):
            warnings.warn("left out; `compllm models fetch X` adds it", stacklevel=1)
            return 0

        cli.run_ask = warns
        formatter = warnings.formatwarning
        code = cli.main(sys.argv[1:])
        assert warnings.formatwarning is formatter, "put back after the command"
        sys.exit(code)
        """
    )
    for flags, expected in (
        ([], "warning: left out; `compllm models fetch X` adds it\n"),
        (["--verbose"], "UserWarning: left out;"),
    ):
        done = subprocess.run(
            [sys.executable, "-W", "always", "-c", script, *flags, "ask", "q"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert (done.stderr == expected) if not flags else (expected in done.stderr)


def test_ask_report_says_why_a_calibrated_store_moved_a_part() -> None:
    out, timings = run()
    why = "biology -10.0% against the base model; big +6.7%, at 4.01 s a call"
    out["routes"][1] = {**out["routes"][1], "expert": "big", "reason": why}
    lines = format_report(out, timings).splitlines()
    moved = next(i for i, line in enumerate(lines) if line.startswith("  [2] big "))
    assert lines[moved + 1] == f"      why: {why}"
    assert sum("why:" in line for line in lines) == 1  # not for the routes with no reason
