"""An expert's retrieval set: the nearest of its training items in its prompt, in order, above the
floor; k=0 off; stored and read back; damage reported with the file's name; every kind whose
prompt the store builds; no evaluation item let in (the split check); the CLI."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("faiss", reason="needs the [router] extra")

import numpy as np
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from compllm_graph.cli import main
from compllm_graph.datasets.items import Item
from compllm_graph.datasets.splits import item_split
from compllm_graph.evaluation.retrieval import (
    RetrievalSplitError,
    TrainingPool,
    check_training_items,
    needs_pool,
    pool_of,
    refused_items,
)
from compllm_graph.expert_store import CorruptStoreError, ExpertKindError, ExpertStore, serving
from compllm_graph.expert_store.data import DataFileError
from compllm_graph.expert_store.records import RetrievalSettings, StoreError
from compllm_graph.expert_store.retrieval import (
    QUESTION_MARK,
    RetrievalItem,
    question_text,
    read_retrieval_file,
    with_examples,
)
from compllm_graph.nodes.execute import CONTEXT_TEMPLATE, sub_query_prompt
from tests.fakes import FakeChat

CHEMISTRY = [
    "What is the molar mass of water?",
    "Balance the combustion of methane.",
    "Which gas is released when zinc reacts with hydrochloric acid?",
]
HISTORY = ["Who was the first emperor of Rome?", "When did the Berlin wall fall?"]
ITEMS = [
    RetrievalItem(
        "chem/1", "What is the molar mass of sodium chloride?", "The answer is 58.4 g/mol."
    ),
    RetrievalItem(
        "chem/2",
        "What is the molar mass of water vapour?",
        "The answer is 18 g/mol.",
        explanation="Two hydrogens (2 x 1) and one oxygen (16) make 18.",
    ),
    RetrievalItem("chem/3", "Balance the combustion of propane.", "C3H8 + 5 O2 -> 3 CO2 + 4 H2O"),
    RetrievalItem("chem/4", "Which metal rusts in damp air?", "The answer is iron."),
]


class FakeLocalModel:
    """Just enough of an `InferenceModel` for `ExpertStore.chat_models`; its chat models record
    the messages of every call."""

    def __init__(self, name: str = "smollm2-135m-instruct") -> None:
        self.name = name
        self.adapters: dict[str, Path] = {}
        self.sent: list[list[BaseMessage]] = []

    def add_adapter(self, name: str, path: Path) -> None:
        self.adapters[name] = path

    def chat_model(self, adapter: str | None = None, **generation: Any) -> FakeChat:
        return FakeChat(label=self.name, reply=self._record)

    def _record(self, messages: list[BaseMessage]) -> str:
        self.sent.append(list(messages))
        return "The answer is 42."


@pytest.fixture
def store(tmp_path: Path) -> ExpertStore:
    created = ExpertStore.create(tmp_path / "store", "hashing:256")
    created.add_expert("chemistry", CHEMISTRY, system_prompt="Be a chemist.")
    created.add_expert("history", HISTORY)
    return created


def examples_in(messages: list[BaseMessage]) -> list[tuple[str, str]]:
    """The (question, reply) pairs between the system prompt and the last user turn."""
    middle = messages[1:-1] if isinstance(messages[0], SystemMessage) else messages[:-1]
    assert all(isinstance(m, HumanMessage) for m in middle[::2])
    assert all(isinstance(m, AIMessage) for m in middle[1::2])
    return [(str(q.content), str(a.content)) for q, a in zip(middle[::2], middle[1::2])]


def ask(store: ExpertStore, text: str, expert: str = "chemistry") -> list[BaseMessage]:
    local = FakeLocalModel()
    store.chat_models(local)[expert].invoke([HumanMessage(text)])  # type: ignore[arg-type]
    (sent,) = local.sent
    return sent


# -- the prompt -------------------------------------------------------------------------------


def test_the_nearest_items_reach_the_prompt_in_order_before_the_sub_query(
    store: ExpertStore,
) -> None:
    store.set_retrieval("chemistry", ITEMS, RetrievalSettings(k=2, floor=0.0))
    question = "What is the molar mass of water?"
    sent = ask(store, question)
    found = store.retriever("chemistry").nearest(question)
    assert [f.item.id for f in found] == ["chem/2", "chem/1"]  # water vapour, then salt
    assert found[0].score > found[1].score
    assert isinstance(sent[0], SystemMessage) and sent[0].content == "Be a chemist."
    assert isinstance(sent[-1], HumanMessage) and sent[-1].content == question
    # the nearest last, just before the sub-query; an explanation comes before its answer
    assert examples_in(sent) == [
        ("What is the molar mass of sodium chloride?", "The answer is 58.4 g/mol."),
        (
            "What is the molar mass of water vapour?",
            "Two hydrogens (2 x 1) and one oxygen (16) make 18.\nThe answer is 18 g/mol.",
        ),
    ]


def test_the_floor_keeps_unrelated_items_out(store: ExpertStore) -> None:
    store.set_retrieval("chemistry", ITEMS, RetrievalSettings(k=4, floor=0.3))
    scores = {f.item.id: f.score for f in store.retriever("chemistry").nearest("molar mass", 4, -1)}
    assert scores["chem/1"] >= 0.3 and scores["chem/4"] < 0.3
    shown = [q for q, _ in examples_in(ask(store, "What is the molar mass?"))]
    assert "Which metal rusts in damp air?" not in shown and shown
    # nothing alike: no example at all, the request as it was
    sent = ask(store, "Who painted Guernica?")
    assert [type(m) for m in sent] == [SystemMessage, HumanMessage]


def test_k_0_is_off_and_keeps_the_items(store: ExpertStore) -> None:
    store.set_retrieval("chemistry", ITEMS, RetrievalSettings(k=0, floor=0.0))
    assert [type(m) for m in ask(store, "What is the molar mass of water?")] == [
        SystemMessage,
        HumanMessage,
    ]
    retrieval = store.expert("chemistry").retrieval
    assert retrieval is not None and not retrieval.settings.on and retrieval.items == 4
    store.set_retrieval_settings("chemistry", RetrievalSettings(k=1, floor=0.0))
    assert len(examples_in(ask(store, "What is the molar mass of water?"))) == 1


def test_an_expert_without_a_set_and_another_expert_are_unchanged(store: ExpertStore) -> None:
    store.set_retrieval("chemistry", ITEMS, RetrievalSettings(k=2, floor=0.0))
    assert [type(m) for m in ask(store, "What is the molar mass of water?", "history")] == [
        HumanMessage
    ]


def test_a_dependent_sub_query_is_searched_by_its_own_question(store: ExpertStore) -> None:
    # the execute node's prompt: the parents' questions and answers, then the question
    prompt = sub_query_prompt(
        "Which metal rusts in damp air?",
        [{"sub_query": 1, "question": "Balance the combustion of propane.", "answer": "Done."}],  # type: ignore[typeddict-item]
    )
    assert CONTEXT_TEMPLATE.endswith(QUESTION_MARK + "{question}")
    assert question_text(HumanMessage(prompt)) == "Which metal rusts in damp air?"
    assert question_text(HumanMessage("Abstract: x Question: y")) == "Abstract: x Question: y"
    store.set_retrieval("chemistry", ITEMS, RetrievalSettings(k=1, floor=0.0))
    assert examples_in(ask(store, prompt)) == [
        ("Which metal rusts in damp air?", "The answer is iron.")
    ]


def test_examples_go_before_the_last_user_turn_only() -> None:
    item = RetrievalItem("a/1", "Q?", "A.")
    found = [(item, 0.9)]
    history = [SystemMessage("s"), HumanMessage("h1"), AIMessage("a1"), HumanMessage("h2")]
    out = with_examples(history, found)  # type: ignore[arg-type]
    assert [m.content for m in out] == ["s", "h1", "a1", "Q?", "A.", "h2"]
    assert with_examples([AIMessage("only")], found) == [AIMessage("only")]  # type: ignore[arg-type]


def test_the_async_path_retrieves_too(store: ExpertStore) -> None:
    store.set_retrieval("chemistry", ITEMS, RetrievalSettings(k=1, floor=0.0))
    local = FakeLocalModel()
    chat = store.chat_models(local)["chemistry"]  # type: ignore[arg-type]
    asyncio.run(chat.ainvoke([HumanMessage("What is the molar mass of water?")]))
    assert len(examples_in(local.sent[0])) == 1


# -- kinds ------------------------------------------------------------------------------------


def test_model_and_remote_experts_get_their_examples(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    coder = FakeLocalModel("qwen2.5-coder-1.5b-instruct")
    remote = FakeLocalModel("remote")
    monkeypatch.setattr(serving, "load_catalogue_model", lambda alias: coder)
    monkeypatch.setattr(serving, "_remote_chat", lambda expert, settings: remote.chat_model())
    store = ExpertStore.create(tmp_path / "store", "hashing:256")
    store.add_expert("coder", CHEMISTRY, kind="model", model="qwen2.5-coder-1.5b-instruct")
    store.add_expert("far", HISTORY, kind="remote", url="http://gpu:8000/v1", model="big")
    for name in ("coder", "far"):
        store.set_retrieval(name, ITEMS, RetrievalSettings(k=1, floor=0.0))
    models = store.chat_models(FakeLocalModel())  # type: ignore[arg-type]
    for name, local in (("coder", coder), ("far", remote)):
        models[name].invoke([HumanMessage("Balance the combustion of methane.")])
        assert examples_in(local.sent[-1]) == [
            ("Balance the combustion of propane.", "C3H8 + 5 O2 -> 3 CO2 + 4 H2O")
        ]


def test_experts_that_build_their_own_prompt_take_no_set(store: ExpertStore) -> None:
    store.add_expert("calc", ["What is 2 + 2?"], kind="program")
    with pytest.raises(ExpertKindError, match="builds its own prompt"):
        store.set_retrieval("calc", ITEMS)


# -- the store --------------------------------------------------------------------------------


def test_round_trip_replace_and_remove(store: ExpertStore) -> None:
    store.set_retrieval("chemistry", ITEMS, RetrievalSettings(k=3, floor=0.25))
    reopened = ExpertStore.open(store.path)
    retrieval = reopened.expert("chemistry").retrieval
    assert retrieval is not None
    assert (retrieval.settings, retrieval.items, retrieval.embedder, retrieval.dim) == (
        RetrievalSettings(k=3, floor=0.25),
        4,
        "hashing:256",
        256,
    )
    assert retrieval.sources == {"chem": 4}
    assert reopened.retriever("chemistry").items() == ITEMS
    folder = store.path / "experts" / "chemistry" / "retrieval"
    assert sorted(p.name for p in folder.iterdir()) == ["1.faiss", "1.jsonl"]
    # a new set replaces the old one, whose files go
    store.set_retrieval("chemistry", ITEMS[:2])
    assert sorted(p.name for p in folder.iterdir()) == ["2.faiss", "2.jsonl"]
    again = ExpertStore.open(store.path).expert("chemistry").retrieval
    assert again is not None and again.items == 2 and again.settings == RetrievalSettings()
    store.remove_retrieval("chemistry")
    assert ExpertStore.open(store.path).expert("chemistry").retrieval is None
    assert list(folder.iterdir()) == []
    with pytest.raises(StoreError, match="has no retrieval set"):
        store.set_retrieval_settings("chemistry", RetrievalSettings(k=1))


def test_a_writer_killed_before_its_commit_leaves_files_that_are_removed(
    store: ExpertStore,
) -> None:
    store.set_retrieval("chemistry", ITEMS)
    folder = store.path / "experts" / "chemistry" / "retrieval"
    (folder / "7.jsonl").write_text("{}\n")  # written, never named by expert.json
    (folder / ".7.faiss.abcd1234").write_bytes(b"half")
    (folder / "notes.txt").write_text("mine")  # not the store's: left alone
    ExpertStore.open(store.path)
    assert sorted(p.name for p in folder.iterdir()) == ["1.faiss", "1.jsonl", "notes.txt"]


def test_bad_arguments_are_refused(store: ExpertStore) -> None:
    with pytest.raises(StoreError, match="at least one item"):
        store.set_retrieval("chemistry", [])
    with pytest.raises(StoreError, match="appears twice"):
        store.set_retrieval("chemistry", [ITEMS[0], ITEMS[0]])
    with pytest.raises(StoreError, match="no expert 'physics'"):
        store.set_retrieval("physics", ITEMS)
    with pytest.raises(StoreError, match="one row per item"):
        store.set_retrieval("chemistry", ITEMS, embeddings=np.zeros((2, 256)))
    with pytest.raises(StoreError, match="the store has 256"):
        store.set_retrieval("chemistry", ITEMS, embeddings=np.ones((4, 8)))
    with pytest.raises(ValueError, match="non-empty 'answer'"):
        RetrievalItem("x/1", "Q?", " ")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"k": -1}, r"k must be in 0\.\.16"),
        ({"k": 17}, r"k must be in 0\.\.16"),
        ({"k": True}, "k must be a whole number"),
        ({"k": 1.5}, "k must be a whole number"),
        ({"floor": 1.5}, r"floor must be a cosine in \[-1, 1\]"),
        ({"floor": float("nan")}, "floor must be a cosine"),
    ],
)
def test_settings_are_checked(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(StoreError, match=message):
        RetrievalSettings(**settings)


# -- damage -----------------------------------------------------------------------------------


def test_a_missing_stored_file_is_named_on_open(store: ExpertStore) -> None:
    store.set_retrieval("chemistry", ITEMS)
    missing = store.path / "experts" / "chemistry" / "retrieval" / "1.faiss"
    missing.unlink()
    with pytest.raises(CorruptStoreError, match=f"the retrieval file {missing} is missing"):
        ExpertStore.open(store.path)


@pytest.mark.parametrize(
    ("name", "damage", "message"),
    [
        ("1.jsonl", b'{"id": "chem/1"', "the retrieval file .*1.jsonl is damaged"),
        ("1.jsonl", b'{"id": "a", "question": "q", "answer": "a"}\n', "holds 1 items"),
        ("1.faiss", b"not an index", "the retrieval index .*1.faiss is damaged"),
    ],
)
def test_a_damaged_stored_file_is_named_when_searched(
    store: ExpertStore, name: str, damage: bytes, message: str
) -> None:
    store.set_retrieval("chemistry", ITEMS)
    (store.path / "experts" / "chemistry" / "retrieval" / name).write_bytes(damage)
    chat = ExpertStore.open(store.path).chat_models(FakeLocalModel())["chemistry"]  # type: ignore[arg-type]
    with pytest.raises(CorruptStoreError, match=message):
        chat.invoke([HumanMessage("What is the molar mass of water?")])


def test_a_malformed_entry_in_expert_json_is_corrupt(store: ExpertStore) -> None:
    store.set_retrieval("chemistry", ITEMS)
    path = store.path / "experts" / "chemistry" / "expert.json"
    record = json.loads(path.read_text())
    record["retrieval"]["k"] = 99
    path.write_text(json.dumps(record))
    with pytest.raises(CorruptStoreError, match=r"expert\.json: retrieval k must be in"):
        ExpertStore.open(store.path)
    record["retrieval"]["k"], record["retrieval"]["items_file"] = 2, "../../store.json"
    path.write_text(json.dumps(record))
    with pytest.raises(CorruptStoreError, match="'retrieval' entry is malformed"):
        ExpertStore.open(store.path)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("set.jsonl", None, "cannot read the retrieval file .*set.jsonl"),
        ("set.csv", "id,question\n", r"set.csv: a retrieval file must be \.jsonl"),
        ("set.jsonl", '{"id": "a/1", "question": "Q?"', r"set.jsonl:1: not a retrieval item"),
        ("set.jsonl", '{"id": "a/1", "question": "Q?"}\n', r":1: .*non-empty 'answer'"),
        ("set.jsonl", '["a"]\n', ":1: .*must be a JSON object"),
        ("set.jsonl", "\n\n", "set.jsonl: a retrieval set needs at least one item"),
        (
            "set.jsonl",
            '{"id": "a/1", "question": "Q", "answer": "A"}\n' * 2,
            "set.jsonl: item id 'a/1' appears twice",
        ),
    ],
)
def test_a_bad_retrieval_file_is_named(
    tmp_path: Path, name: str, content: str | None, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(DataFileError, match=message):
        read_retrieval_file(path)


def test_a_retrieval_file_in_expert_data_form_is_read(tmp_path: Path) -> None:
    path = tmp_path / "biology.jsonl"
    path.write_text(
        '{"id": "mmlu/college_biology/3", "question": "Q? Options: (A) x; (B) y.", '
        '"answer": "The answer is (B) y.", "domain": "biology"}\n'
        '{"id": "gsm8k/train/5", "question": "Sum?", "answer": "4", "explanation": "2 + 2.", '
        '"source": "gsm8k-train"}\n'
    )
    first, second = read_retrieval_file(path)
    assert (first.source, first.explanation, first.reply) == ("mmlu", None, "The answer is (B) y.")
    assert (second.source, second.reply) == ("gsm8k-train", "2 + 2.\n4")


# -- no evaluation item -----------------------------------------------------------------------


def ids_in(split: str, prefix: str, count: int) -> list[str]:
    """The first `count` ids `prefix/N` that `datasets.splits` puts in `split`."""
    found = [f"{prefix}/{n}" for n in range(200) if item_split(f"{prefix}/{n}") == split]
    return found[:count]


def item(item_id: str, question: str = "", split: Any = None) -> Item:
    return Item(item_id, question or f"Question {item_id}?", "x", None, "biology", split=split)


@pytest.fixture
def pool() -> TrainingPool:
    train = ids_in("train", "mmlu/college_biology", 3)
    test = ids_in("test", "mmlu/college_biology", 2)
    items = [item(i) for i in train + test]
    items += [item("pubmedqa/11", split="test"), item("pubmedqa/12", split="train")]
    return pool_of(items)


def test_only_train_split_items_may_enter(pool: TrainingPool) -> None:
    train = ids_in("train", "mmlu/college_biology", 3)
    test = ids_in("test", "mmlu/college_biology", 2)
    ok = [RetrievalItem(i, f"Question {i}?", "x") for i in train]
    ok += [RetrievalItem(train[0] + "#open", "Open?", "x"), RetrievalItem("pubmedqa/12", "Q", "x")]
    ok += [RetrievalItem("law/1", "What is a tort?", "x")]  # not the shared data's
    check_training_items(ok, pool)
    bad = [
        RetrievalItem(test[0], "Q1", "x"),  # a test-split item, by its id's hash
        RetrievalItem(test[1] + "#open", "Q2", "x"),  # an open form of one
        RetrievalItem("pubmedqa/11", "Q3", "x"),  # the source's own test split
        RetrievalItem("mmlu-dev/anatomy/0", "Q4", "x"),  # the calibration split
        RetrievalItem("mmlu/college_biology/99999", "Q5", "x"),  # no such item
        RetrievalItem("law/2", f"Question {test[0]}?", "x"),  # a test item's question
    ]
    refused = refused_items(bad, pool)
    assert [i for i, _ in refused] == [b.id for b in bad]
    assert [why for _, why in refused][:3] == ["a test-split item"] * 3
    assert "its question is a test-split item's" in refused[-1][1]
    with pytest.raises(
        RetrievalSplitError, match=r"6 of 8 items are not training items .* and 1 more"
    ):
        check_training_items(ok[:2] + bad, pool)


def test_a_question_both_splits_ask_is_no_evaluation_question() -> None:
    # benchmark builds leave out a test item whose question a train item asks too
    (train,), (test, other) = ids_in("train", "mmlu/anatomy", 1), ids_in("test", "mmlu/anatomy", 2)
    pool = pool_of([item(train, "Same?"), item(test, "Same?"), item(other, "Other?")])
    assert pool.test_questions == {"Other?"}
    check_training_items([RetrievalItem(train, "Same? Options: (A) a; (B) b.", "x")], pool)
    refused = refused_items([RetrievalItem("law/1", "Other? Options: (A) a; (B) b.", "x")], pool)
    assert refused == [("law/1", "its question is a test-split item's")]


def test_only_the_shared_data_s_ids_need_the_data() -> None:
    assert needs_pool([RetrievalItem("mmlu/anatomy/1", "Q", "A")])
    assert not needs_pool([RetrievalItem("law/1", "Q", "A"), RetrievalItem("mine", "Q", "A")])


# -- the command line -------------------------------------------------------------------------


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    code = main([*argv, "--json"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    return code, json.loads(last)


def write_items(path: Path, items: list[RetrievalItem]) -> Path:
    path.write_text("".join(json.dumps(i.to_dict()) + "\n" for i in items))
    return path


def test_the_command_sets_changes_lists_and_removes_a_set(
    store: ExpertStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = write_items(tmp_path / "chem.jsonl", ITEMS)
    where = ["--store", str(store.path), "--data-dir", str(tmp_path / "no-data")]
    code, out = run_json(
        capsys, "experts", "retrieval", "chemistry", str(file), "--k", "3", "--floor", "0.2", *where
    )
    assert code == 0 and out["split_checked"] is False
    assert out["retrieval"] == {
        "on": True,
        "k": 3,
        "floor": 0.2,
        "items": 4,
        "sources": {"chem": 4},
        "embedder": "hashing:256",
    }
    assert main(["experts", "list", "--store", str(store.path)]) == 0
    listing = capsys.readouterr().out
    assert "retrieval: 4 training items (chem 4); the 3 nearest at cosine >= 0.20" in listing
    code, out = run_json(capsys, "experts", "list", "--store", str(store.path))
    experts = {e["name"]: e for e in out["experts"]}
    assert experts["chemistry"]["retrieval"]["k"] == 3 and experts["history"]["retrieval"] is None
    code, out = run_json(capsys, "experts", "retrieval", "chemistry", "--k", "0", *where)
    assert out["retrieval"]["on"] is False and out["retrieval"]["floor"] == 0.2
    assert main(["experts", "list", "--store", str(store.path)]) == 0
    assert "retrieval: 4 training items (chem 4); off (k 0)" in capsys.readouterr().out
    code, out = run_json(capsys, "experts", "retrieval", "chemistry", "--remove", *where)
    assert code == 0 and out["retrieval"] is None
    assert ExpertStore.open(store.path).expert("chemistry").retrieval is None


def test_the_command_refuses_evaluation_items_and_names_bad_files(
    store: ExpertStore,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import compllm_graph.evaluation.retrieval as checks

    test_id = ids_in("test", "mmlu/college_biology", 1)[0]
    monkeypatch.setattr(checks, "training_pool", lambda data_dir: pool_of([item(test_id)]))
    where = ["--store", str(store.path), "--data-dir", str(tmp_path)]
    file = write_items(tmp_path / "bio.jsonl", [RetrievalItem(test_id, "Q?", "x")])
    code, out = run_json(capsys, "experts", "retrieval", "chemistry", str(file), *where)
    assert code == 1 and f"{test_id} (a test-split item)" in out["error"]
    assert ExpertStore.open(store.path).expert("chemistry").retrieval is None
    code, out = run_json(
        capsys, "experts", "retrieval", "chemistry", str(tmp_path / "gone.jsonl"), *where
    )
    assert code == 1 and "gone.jsonl" in out["error"]
    code, out = run_json(capsys, "experts", "retrieval", "chemistry", "--k", "2", *where)
    assert code == 1 and "has no retrieval set" in out["error"]
    code, out = run_json(
        capsys, "experts", "retrieval", "chemistry", "--remove", "--k", "1", *where
    )
    assert code == 1 and "--remove takes no FILE" in out["error"]
    file = write_items(tmp_path / "ok.jsonl", ITEMS)
    code, out = run_json(
        capsys, "experts", "retrieval", "chemistry", str(file), "--k", "99", *where
    )
    assert code == 1 and "k must be in 0..16" in out["error"]
