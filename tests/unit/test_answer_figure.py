"""benchmarks/answer_figure.py and its wiring into the answer tables, on fake points only."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

# answer_tables reads the expert store (its attribution and single-domain tables).
pytest.importorskip("faiss", reason="benchmarks/answer_tables.py needs the [router] extra")

import benchmarks.answer_tables as answer_tables
from benchmarks.answer_figure import Point, kind_of, panels

SVG = "{http://www.w3.org/2000/svg}"


def point(benchmark: str, label: str, system: str, seconds: float, n: int = 100) -> Point:
    return Point(
        benchmark=benchmark,
        label=label,
        model=label.split()[-1],
        system=system,
        accuracy=10.0,
        low=6.0,
        high=14.5,
        seconds=seconds,
        n=n,
    )


POINTS = [
    point("P-2", "monolith SmolLM2-135M", "monolith", 1.7),
    point("P-2", "Comp-LLM SmolLM2-135M", "compllm", 11.2),
    point("P-2", "random-router SmolLM2-135M", "random-router", 12.0),
    point("All-3", "monolith Qwen2.5-Coder-1.5B", "monolith", 25.1),
    point("All-3", "FT 0.5B (all-domains adapter)", "ft", 6.0),
    point("P-3", "not run yet Qwen2.5-Coder-0.5B", "compllm", 0.0, n=0),
]
"""Two panels' worth of points (P-2 and All-3) and a cell with no answers, alone on P-3."""


def texts(svg: Path) -> list[str]:
    """Every text element's text (the SVG keeps text as text)."""
    return [t.text or "" for t in ET.parse(svg).iter(f"{SVG}text")]


def draw(points: list[Point], path: Path, tier: str = "standard") -> Path:
    from benchmarks.answer_figure import answers_figure, save_svg

    return save_svg(answers_figure(points, tier), path)


def test_panels_follow_the_file_order_and_skip_files_with_no_answers() -> None:
    assert panels(POINTS) == ["P-2", "All-3"]
    assert panels([*POINTS, point("All-2", "x m", "monolith", 3.0)]) == ["P-2", "All-2", "All-3"]
    assert panels([point("sample-x", "a m", "ft", 1.0), *POINTS]) == ["P-2", "All-3", "sample-x"]


def test_monoliths_pipeline_and_variants_get_their_own_marker() -> None:
    assert [kind_of(s) for s in ("monolith", "ft", "compllm", "oracle-router")] == [
        "monolith",
        "monolith",
        "compllm",
        "variant",
    ]


def test_the_svg_has_a_panel_a_file_and_every_label(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    svg = draw(POINTS, tmp_path / "figures" / "answers-standard.svg")
    written = svg.read_text()
    assert written.count('id="axes_') == 2  # P-2 and All-3: P-3 has no answered point
    shown = texts(svg)
    for p in POINTS[:-1]:
        assert p.label in shown
    assert "not run yet Qwen2.5-Coder-0.5B" not in written
    assert {"P-2", "All-3"} <= set(shown) and "P-3" not in shown
    assert "Question accuracy against seconds per question (standard tier)" in shown
    # 1.7 s to 25.1 s is more than ten times: the axis says it is logarithmic.
    assert "seconds per question (log scale)" in shown


def test_the_svg_is_the_same_bytes_every_time(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    first = draw(POINTS, tmp_path / "first.svg").read_bytes()
    assert draw(POINTS, tmp_path / "second.svg").read_bytes() == first
    assert b"<dc:date>" not in first
    easy = draw(POINTS, tmp_path / "easy.svg", tier="easy").read_text()
    assert "(easy tier)" in easy


def test_a_narrow_spread_keeps_a_linear_axis_and_one_panel_fills_the_figure(
    tmp_path: Path,
) -> None:
    pytest.importorskip("matplotlib")
    svg = draw(POINTS[:2], tmp_path / "one.svg")
    assert svg.read_text().count('id="axes_') == 1
    assert "seconds per question" in texts(svg)


def test_nothing_to_draw_is_an_error() -> None:
    pytest.importorskip("matplotlib")
    from benchmarks.answer_figure import answers_figure

    with pytest.raises(ValueError, match="no point has an answer"):
        answers_figure(POINTS[-1:], "standard")


SUMMARY = {
    "accuracy": 0.055,
    "accuracy_ci95": [0.025, 0.09],
    "n": 200,
    "seconds_per_question": 24.7,
}


def test_the_points_are_the_tables_summaries(monkeypatch: pytest.MonkeyPatch) -> None:
    answered = {
        (answer_tables.QWEN05, "compllm", "p2"),
        (answer_tables.SMOL, "random-router", "all2"),
    }

    def summary(cell: answer_tables.Cell) -> dict[str, Any] | None:
        return SUMMARY if (cell.model, cell.system, cell.file) in answered else None

    monkeypatch.setattr(answer_tables, "cell_summary", summary)
    points = answer_tables.figure_points()
    assert [(p.benchmark, p.label, p.system) for p in points] == [
        ("P-2", "Comp-LLM Qwen2.5-Coder-0.5B", "compllm"),
        ("All-2", "random-router SmolLM2-135M", "random-router"),
    ]
    first = points[0]
    assert (first.accuracy, first.low, first.high) == pytest.approx((5.5, 2.5, 9.0))
    assert (first.seconds, first.n, first.model) == (24.7, 200, "Qwen2.5-Coder-0.5B")
    labels = [label for label, *_ in answer_tables.figure_systems()]
    assert len(labels) == len(set(labels))  # a system the two tables share is drawn once
    assert labels[: len(answer_tables.COLUMNS)] == [c[0] for c in answer_tables.COLUMNS]


@pytest.fixture
def tables_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`main(["--tables-only"])` writing into `tmp_path`, with fake tables and points."""
    for name in ("PREFIX", "TABLES"):
        monkeypatch.setattr(answer_tables, name, getattr(answer_tables, name))  # restored after
    monkeypatch.setattr(answer_tables, "ROOT", tmp_path / "answers")
    monkeypatch.setattr(answer_tables, "FIGURES", tmp_path / "docs" / "results" / "figures")
    monkeypatch.setattr(answer_tables, "_ensure_data", lambda tier: None)
    monkeypatch.setattr(answer_tables, "tables", lambda: "## Table 5\n\n| a |\n")
    monkeypatch.setattr(answer_tables, "figure_points", lambda: POINTS)
    (tmp_path / "answers").mkdir()
    return tmp_path


def test_the_tables_show_the_figure_they_were_written_with(
    tables_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    assert answer_tables.main(["--tables-only"]) == 0
    figure = tables_run / "docs" / "results" / "figures" / "answers-standard.svg"
    assert "Comp-LLM SmolLM2-135M" in texts(figure)
    written = (tables_run / "answers" / "tables.md").read_text()
    assert written == (
        "![Question accuracy against seconds per question, one point a cell]"
        "(../docs/results/figures/answers-standard.svg)\n\n"
        "<!-- --8<-- [start:tables] -->\n## Table 5\n\n| a |\n<!-- --8<-- [end:tables] -->\n"
    )
    assert f"figure written to {figure}" in capsys.readouterr().out


def test_without_matplotlib_the_tables_are_written_and_the_figure_named(
    tables_run: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # None in sys.modules makes `import matplotlib` (and its submodules) fail as if absent.
    for name in [m for m in sys.modules if m.split(".")[0] == "matplotlib"] + ["matplotlib"]:
        monkeypatch.setitem(sys.modules, name, None)
    assert answer_tables.main(["--tables-only", "--tier", "easy"]) == 0
    written = (tables_run / "answers" / "tables-easy.md").read_text()
    assert "## Table 5\n\n| a |\n" in written
    assert written.startswith(f"No figure: {answer_tables.FIGURE_NEEDS}.\n")
    assert not (tables_run / "docs").exists()
    out = capsys.readouterr().out.splitlines()
    assert f"no figure: {answer_tables.FIGURE_NEEDS}" in out
    assert "pip install 'compllm-graph[eval]'" in answer_tables.FIGURE_NEEDS


def test_with_no_answers_the_tables_say_there_is_no_figure_yet(
    tables_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(answer_tables, "figure_points", lambda: [])
    assert answer_tables.main(["--tables-only"]) == 0
    written = (tables_run / "answers" / "tables.md").read_text()
    assert written.startswith("No figure: no cell has answers yet.\n")
