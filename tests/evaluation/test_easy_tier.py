"""The easy benchmark tier: built like the first (same keys, seeded, test split only, nothing that
trains anything), big enough, PubMedQA with its abstract; and the first tier left as it was."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from compllm_graph.cli import main
from compllm_graph.datasets.easy_tier import (
    READERS,
    SAMPLE_SUBJECTS,
    THREE_PART_MAX,
    Share,
    source_items,
)
from compllm_graph.datasets.items import (
    SOURCES,
    Item,
    as_text,
    asked_question,
    centroid_texts,
    domain_items,
    socratic_chains,
    unlettered,
)
from compllm_graph.datasets.splits import item_split
from compllm_graph.evaluation.benchmarks import build_benchmarks, write_benchmarks
from compllm_graph.evaluation.scoring import score_question

KEYS = ["id", "question", "parts", "edges"]
PART_KEYS = ["question", "answer", "choices", "domain"]
STANDARD_SHA256 = {
    "all2": "22b3c9fe66a5040601fead5681b2c4de88e58b8fc6f89bdada711b7b4485eb91",
    "all3": "1eaa2c891d0ed4c0cf7cd6c216a17bf89e90004afeacbe30132ef73a74003f94",
    "p2": "6918329b8f8ab9c7fc6132243ee90e9f33ebad72e8f76b585747c196b1fc2fe7",
    "p3": "b0932d53dee10574f77563a91d718b6c2ceb867d5c44a5bffb9ceb326940e36b",
    "single-biology": "7d47150073410023d0ccf6b9d54325ad63e05a1dc3759e06b58922c94953afda",
    "single-chemistry": "e3ab4660fb2d8f8d1263861cae1f18a15f2b61d03777cc40dedfd88c61e0bc74",
    "single-mathematics": "e3473d8caa00a37d81f03795c1e6ffe936a390d4f9891856a8cc0e3ebc0463a1",
    "single-medicine": "7c5cb8321eeaf0b4f4c646744b057cf4a5ad162321e1f199f9ada12e7ec1cb4c",
}
"""sha256 of each first-tier file at the defaults (300, 200, seed 0), computed with the code as
it was before the easy tier was added; the committed answers are to these files."""

Files = dict[str, list[dict[str, Any]]]


@pytest.fixture(scope="module")
def easy(data_dir: Path) -> Files:
    return build_benchmarks(data_dir, 300, 200, tier="easy")


def _every_source_item(data_dir: Path) -> list[Item]:
    items = [i for d in SOURCES for i in domain_items(data_dir, d)]
    items += [i for s in READERS if s != "medmcqa" for i in source_items(data_dir, s, Share())]
    return items  # MedMCQA's every subject is in SOURCES already


def test_the_first_tier_is_byte_identical_to_before(data_dir: Path, tmp_path: Path) -> None:
    written = write_benchmarks(data_dir, tmp_path, 300, 200)
    assert {path.stem for path in written} == set(STANDARD_SHA256)
    for path in written:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert digest == STANDARD_SHA256[path.stem], f"{path.name} changed"


def test_the_easy_tier_has_its_own_files_and_the_same_keys(easy: Files) -> None:
    composed = {"easy-p2", "easy-p3", "easy-all2", "easy-all3"}
    singles = {f"easy-single-{d}" for d in SOURCES}
    samples = {f"easy-sample-{s}" for s in READERS if s != "medmcqa"}
    samples |= {f"easy-sample-medmcqa-{s}" for s in SAMPLE_SUBJECTS}
    assert set(easy) == composed | singles | samples
    for stem, records in easy.items():
        for record in records:
            assert list(record) == KEYS, stem
            assert record["id"].startswith(f"{stem}-0-")
            assert all(list(part) == PART_KEYS for part in record["parts"]), stem
            # the parts' gold answers, put together, answer the question
            golds = "; ".join(p["answer"] for p in record["parts"])
            right = score_question(golds, record["parts"]).right
            assert right or _holds_another_option(record), record["id"]


def _holds_another_option(record: dict[str, Any]) -> bool:
    """A part whose gold option holds another option's text ("Both A and B"): written out, it
    names that option too, so only its letter scores (6 MedMCQA test items; the first tier has
    such items too)."""
    return any(
        o != p["answer"] and o.lower() in p["answer"].lower()
        for p in record["parts"]
        for o in p["choices"] or ()
    )


def test_the_composed_files_are_big_enough(easy: Files) -> None:
    sizes = {stem: len(records) for stem, records in easy.items()}
    assert sizes["easy-p2"] == sizes["easy-all2"] == 300  # the answer tables take 200
    assert sizes["easy-p3"] == sizes["easy-all3"] == THREE_PART_MAX
    assert all(sizes[f"easy-single-{d}"] >= 80 for d in SOURCES)  # chemistry: ARC-Easy only, 88
    assert all(40 <= n <= 50 for stem, n in sizes.items() if stem.startswith("easy-sample-"))
    for stem in ("easy-p2", "easy-p3"):
        parts = [len(r["parts"]) for r in easy[stem]]
        assert set(parts) == {int(stem[-1])}
    for record in easy["easy-p2"]:
        assert len({p["domain"] for p in record["parts"]}) == 2
    domains = Counter(p["domain"] for r in easy["easy-p2"] for p in r["parts"])
    assert set(domains) == set(SOURCES) and min(domains.values()) >= 80


def test_ids_are_stable_and_the_build_seeded(data_dir: Path, easy: Files) -> None:
    ids = [r["id"] for r in easy["easy-p2"]]
    assert ids == [f"easy-p2-0-{n}" for n in range(300)]
    again = build_benchmarks(data_dir, 300, 200, tier="easy")
    assert again == easy
    other = build_benchmarks(data_dir, 20, 10, seed=1, tier="easy", sample_count=5)
    assert other["easy-p2"][0]["id"] == "easy-p2-1-0"
    assert [r["question"] for r in other["easy-p2"]] != [r["question"] for r in easy["easy-p2"]][
        :20
    ]


def test_no_part_is_a_question_that_trains_anything(data_dir: Path, easy: Files) -> None:
    from compllm_graph.training.expert_data import ALL_DOMAINS, expert_examples

    items = _every_source_item(data_dir)
    trained = {i.question for i in items if i.in_split == "train"} | set(centroid_texts())
    trained |= {unlettered(r["question"]) for r in expert_examples(data_dir, ALL_DOMAINS, 10_000)}
    by_text = {as_text(i): i for i in items}
    contexts = [c.context for c in socratic_chains(data_dir) if item_split(c.id) == "test"]
    mapped = 0
    for stem, records in easy.items():
        for part in (p for r in records for p in r["parts"]):
            text = part["question"]
            assert unlettered(text) not in trained and asked_question(text) not in trained, stem
            if text in by_text:
                assert by_text[text].in_split == "test", stem
                mapped += 1
            elif "#" not in text:  # a bridge's later part is built, not read
                assert stem.startswith("easy-all"), f"{stem}: a part of no known item"
                assert any(text.startswith(c) for c in contexts), "a chain of the train split"
    assert mapped > 2000


def test_pubmedqa_parts_carry_their_abstract(data_dir: Path, easy: Files) -> None:
    rows = json.loads(
        (data_dir / "medical_and_science" / "pubmedqa" / "ori_pqal.json").read_text("utf-8")
    )
    abstracts = {
        r["QUESTION"].strip(): " ".join(c.strip() for c in r["CONTEXTS"]) for r in rows.values()
    }
    labelled = [
        p
        for records in easy.values()
        for r in records
        for p in r["parts"]
        if p["domain"] == "medicine" and p["choices"] is None
    ]
    assert len(labelled) > 100
    for part in labelled:
        question = asked_question(part["question"])
        assert part["question"] == f"Abstract: {abstracts[question]} Question: {question}"
        assert part["answer"] in ("yes", "no", "maybe")


def test_the_mix_table_decides_the_pools(data_dir: Path) -> None:
    from compllm_graph.datasets.easy_tier import tier_pools, trained_texts

    excluded = trained_texts(data_dir)
    mix = {"asdiv": Share(0.5), "arc-easy": Share(1.0), "gsm8k": Share(0.0)}
    pools = tier_pools(data_dir, mix, 0, excluded)
    assert set(pools) == {"biology", "chemistry", "mathematics"}
    sources = Counter(i.id.split("/")[0] for i in pools["mathematics"])
    full = tier_pools(data_dir, {"asdiv": Share(1.0)}, 0, excluded)["mathematics"]
    assert sources == {"asdiv": round(len(full) / 2)}
    assert tier_pools(data_dir, mix, 0, excluded) == pools  # seeded


def test_the_command_builds_a_tier(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "bench"
    argv = ["eval", "benchmarks", "--out", str(out), "--data-dir", str(data_dir), "--tier", "easy"]
    assert main([*argv, "--count", "20", "--single-count", "10", "--sample-count", "5"]) == 0
    names = {p.stem for p in out.glob("*.jsonl")}
    assert {"easy-p2", "easy-all3", "easy-single-medicine", "easy-sample-asdiv"} <= names
    assert all(name.startswith("easy-") for name in names)
    sample = (out / "easy-sample-pubmedqa-abstract.jsonl").read_text().splitlines()
    assert len(sample) == 5
    assert "easy-p2.jsonl: 20 questions" in capsys.readouterr().out
    with pytest.raises(ValueError, match="unknown benchmark tier 'hard'"):
        build_benchmarks(data_dir, 20, 10, tier="hard")  # type: ignore[arg-type]


def test_the_answer_tables_read_the_chosen_tier(monkeypatch: pytest.MonkeyPatch) -> None:
    import benchmarks.answer_tables as tables

    for name in ("PREFIX", "TABLES"):
        monkeypatch.setattr(tables, name, getattr(tables, name))  # restored after the test
    cell = tables.Cell("m", "monolith", "p2", 200)
    assert (cell.outputs.name, tables.benchmark_file("p2").name) == (
        "monolith.p2.jsonl",
        "p2.jsonl",
    )
    tables._select_tier("easy")
    assert cell.outputs.name == "monolith.easy-p2.jsonl"
    assert tables.benchmark_file("p2") == tables.DATA / "easy-p2.jsonl"
    assert tables.TABLES.name == "tables-easy.md"
    tables._select_tier("standard")
    assert tables.TABLES.name == "tables.md"


def test_every_answer_table_cell_asks_for_a_system_the_cli_runs() -> None:
    import benchmarks.answer_tables as tables
    from benchmarks import gain_store
    from compllm_graph.cli import build_parser

    parser = build_parser("eval")
    for cell in tables.CELLS.values():
        args = parser.parse_args(["eval", "answers", "f.jsonl", *cell.system_args])
        program = (tables.PROGRAM, *tables.GAIN_STORE_SYSTEMS)
        assert args.program_expert == (cell.system in program), cell.name
        assert args.no_base_prompt == (cell.system == tables.UNPROMPTED), cell.name
        if cell.system == tables.GAIN_ALONE:
            pinned: Path | None = gain_store.ALONE_STORE
        elif cell.system in tables.WRITER_TEAM_SYSTEMS:
            pinned = gain_store.WRITER_STORE
        elif cell.system in tables.GAIN_STORE_SYSTEMS:
            pinned = gain_store.STORE
        elif cell.model == gain_store.MODEL and cell.system not in tables.WHOLE_QUESTION:
            pinned = gain_store.SIMILARITY_STORE  # measured before the demo store was calibrated
        else:
            pinned = None
        assert args.store == pinned, cell.name
        if cell.system in (tables.GAIN_TEAM, tables.WRITER_TEAM):
            assert args.system == "all-experts", cell.name
        if cell.system in (tables.GAIN_RANDOM, tables.WRITER_RANDOM):
            assert args.system == "random-router", cell.name
        # only the cells answered since the premise rule run with it
        with_rule = (cell.model, cell.system, f"{tables.PREFIX}{cell.file}") in tables.PREMISE_RULE
        whole = cell.system in tables.WHOLE_QUESTION
        assert args.no_carry_premise == (not whole and not with_rule), cell.name


def test_the_single_domain_table_is_left_out_for_a_tier_with_no_expert_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import benchmarks.answer_tables as tables

    for name in ("PREFIX", "TABLES"):
        monkeypatch.setattr(tables, name, getattr(tables, name))
    monkeypatch.setattr(tables, "OUTPUTS", tmp_path)
    experts = tmp_path / "model" / "experts"
    experts.mkdir(parents=True)
    (experts / "single-biology.base.jsonl").write_text("")  # the standard tier's files only
    tables._select_tier("easy")
    lines = tables.single_domain_tables()
    assert "(no run on this tier yet: `compllm eval experts --outputs`)" in lines
    assert not any(line.startswith(("| domain", "`model/experts`")) for line in lines)


def test_the_cells_answered_with_the_premise_rule_run_with_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import benchmarks.answer_tables as tables
    from compllm_graph.cli import build_parser

    for name in ("PREFIX", "TABLES"):
        monkeypatch.setattr(tables, name, getattr(tables, name))
    tables._select_tier("easy")
    parser = build_parser("eval")
    flags = {
        (model, system, file): parser.parse_args(
            ["eval", "answers", "f.jsonl", *tables.Cell(model, system, file, 200).system_args]
        ).no_carry_premise
        for model, system, file in [
            (tables.QWEN05, tables.GAIN, "all2"),
            (tables.QWEN05, tables.GAIN_ALONE, "all2"),
            (tables.QWEN05, tables.GAIN_TEAM, "all2"),
            (tables.QWEN05, tables.GAIN_RANDOM, "all2"),
            (tables.QWEN05, tables.WRITER_TEAM, "p2"),
            (tables.QWEN05, tables.WRITER_RANDOM, "p2"),
            (tables.QWEN05, tables.GAIN, "p2"),
            (tables.QWEN05, "compllm", "all2"),
        ]
    }
    assert list(flags.values()) == [False] * 6 + [True, True], flags
