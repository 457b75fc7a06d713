"""Reading expert data files and labelled routing data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("faiss", reason="needs the [router] extra")

from compllm_graph.expert_store.data import DataFileError, read_labelled, read_texts


def test_reads_txt_jsonl_and_csv(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text(" one \n\ntwo\n")
    (tmp_path / "b.jsonl").write_text('{"text": "one"}\n\n{"question": "two", "x": 1}\n')
    (tmp_path / "c.csv").write_text('question,choice0\n"one, with comma",x\ntwo,y\n')
    assert read_texts(tmp_path / "a.txt") == ["one", "two"]
    assert read_texts(tmp_path / "b.jsonl") == ["one", "two"]
    assert read_texts(tmp_path / "c.csv") == ["one, with comma", "two"]


def test_reads_labelled_with_base_labels(tmp_path: Path) -> None:
    (tmp_path / "l.jsonl").write_text(
        '{"text": "a", "expert": "chemistry"}\n{"text": "b", "expert": null}\n'
        '{"text": "c", "expert": "base"}\n'
    )
    (tmp_path / "l.csv").write_text("question,expert\nd,mathematics\ne,\n")
    assert read_labelled(tmp_path / "l.jsonl") == [("a", "chemistry"), ("b", None), ("c", None)]
    assert read_labelled(tmp_path / "l.csv") == [("d", "mathematics"), ("e", None)]


@pytest.mark.parametrize(
    ("name", "content", "reader", "message"),
    [
        ("x.jsonl", '{"text": "a"}\nnot json\n', read_texts, "x.jsonl:2: not JSON"),
        ("x.jsonl", '{"body": "a"}\n', read_texts, "no 'text' or 'question'"),
        ("x.csv", "answer\n1\n", read_texts, "no 'text' or 'question'"),
        ("x.md", "a\n", read_texts, "unknown data file type"),
        ("x.jsonl", '{"text": "a"}\n', read_labelled, "no 'expert' field"),
        ("x.txt", "a\n", read_labelled, "must be .jsonl or .csv"),
    ],
)
def test_bad_files_are_clear_errors(tmp_path: Path, name, content, reader, message) -> None:
    (tmp_path / name).write_text(content)
    with pytest.raises(DataFileError, match=message):
        reader(tmp_path / name)
    with pytest.raises(DataFileError, match="cannot read"):
        reader(tmp_path / "missing.jsonl")


def test_a_line_separator_inside_a_json_string_is_not_a_record_break(tmp_path: Path) -> None:
    from compllm_graph.expert_store.data import read_pairs

    path = tmp_path / "qa.jsonl"
    rows = [
        {"question": "Q\u2028one?", "answer": "A\x85one."},
        {"question": "Q2?", "answer": "A2."},
    ]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    assert read_pairs(path) == [("Q\u2028one?", "A\x85one."), ("Q2?", "A2.")]
    assert read_texts(path) == ["Q\u2028one?", "Q2?"]
