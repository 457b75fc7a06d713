"""Expert kinds: stored and read back (old stores read as `adapter`), checked early, bound to
their Runnables when the experts are built, and shown by `compllm experts list`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, get_args

import pytest

pytest.importorskip("faiss", reason="needs the [router] extra")

import numpy as np
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import Runnable
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph

from compllm_graph import create_compllm_graph
from compllm_graph.cli import main
from compllm_graph.expert_store import (
    CorruptStoreError,
    ExpertKind,
    ExpertKindError,
    ExpertRouter,
    ExpertStore,
    StoreError,
    serving,
)
from compllm_graph.expert_store.embedders import HashingEmbedder
from compllm_graph.expert_store.records import Expert
from tests.fakes import FakeChat, decomposer

CHEMISTRY = ["What is the molar mass of water?", "Balance the combustion of methane."]
ARITHMETIC = ["What is 12 times 7?", "What is 144 divided by 12?", "Add 17 and 25."]
CODE = ["Write a Python function that reverses a list.", "Fix this SQL query."]
FACTS = ["Who wrote Hamlet?", "When did the Berlin wall fall?"]
SERVER = "http://10.0.0.9:8000/v1"
CODER = "qwen2.5-coder-1.5b-instruct"


class CountingEmbedder(HashingEmbedder):
    """Hashing embeddings that count the texts embedded (to see errors come before)."""

    def __init__(self) -> None:
        super().__init__(128)
        self.embedded = 0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.embedded += len(texts)
        return super().embed(texts)


class FakeLocalModel:
    """Just enough of an `InferenceModel` for `ExpertStore.chat_models`."""

    def __init__(self, name: str = "smollm2-135m-instruct") -> None:
        self.name = name
        self.adapters: dict[str, Path] = {}

    def add_adapter(self, name: str, path: Path) -> None:
        self.adapters[name] = path

    def chat_model(self, adapter: str | None = None, **generation: Any) -> FakeChat:
        who = f"{self.name}/{adapter or 'base'}"
        return FakeChat(label=who, reply=lambda _: f"{who} says {generation}")


def answer_graph(text: str) -> CompiledStateGraph:
    """A messages-state graph that answers `text` and records what it was sent."""
    sent: list[list[BaseMessage]] = []

    def answer(state: MessagesState) -> dict:
        sent.append(list(state["messages"]))
        return {"messages": [AIMessage(text)]}

    builder = StateGraph(MessagesState)
    builder.add_node("answer", answer)
    builder.add_edge(START, "answer")
    builder.add_edge("answer", END)
    graph = builder.compile(name="answerer")
    graph.sent = sent  # type: ignore[attr-defined]
    return graph


@pytest.fixture
def store(tmp_path: Path) -> ExpertStore:
    """One expert of each kind."""
    made = ExpertStore.create(tmp_path / "store", "hashing:128", threshold=0.1)
    made.add_expert("chemistry", CHEMISTRY, system_prompt="Be a chemist.")
    made.add_expert("coder", CODE, kind="model", model=CODER, description="code")
    made.add_expert("facts", FACTS, kind="remote", url=SERVER, model="big-model")
    made.add_expert("calc", ARITHMETIC, kind="runnable", system_prompt="Use the calculator.")
    made.add_expert("prog", ARITHMETIC[:1], kind="program")
    return made


def test_every_kind_round_trips(store: ExpertStore) -> None:
    reopened = ExpertStore.open(store.path)
    kinds = {e.name: (e.kind, e.url, e.model) for e in reopened.experts()}
    assert kinds == {
        "calc": ("runnable", None, None),
        "chemistry": ("adapter", None, None),
        "coder": ("model", None, CODER),
        "facts": ("remote", SERVER, "big-model"),
        "prog": ("program", None, None),
    }
    assert {kind for kind, _, _ in kinds.values()} == set(get_args(ExpertKind))
    record = json.loads((store.path / "experts" / "facts" / "expert.json").read_text())
    assert record["kind"] == "remote" and record["url"] == SERVER
    assert reopened.expert("calc").system_prompt == "Use the calculator."


def test_an_expert_json_without_a_kind_reads_as_an_adapter(store: ExpertStore) -> None:
    # what every store held before kinds existed
    path = store.path / "experts" / "chemistry" / "expert.json"
    record = json.loads(path.read_text())
    for key in ("kind", "url", "model"):
        del record[key]
    path.write_text(json.dumps(record))
    chemistry = ExpertStore.open(store.path).expert("chemistry")
    assert (chemistry.kind, chemistry.url, chemistry.model) == ("adapter", None, None)
    assert chemistry.system_prompt == "Be a chemist."


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kind": "agent"}, "kind must be one of"),
        ({"kind": "remote", "url": None}, "needs url="),
        ({"kind": "remote", "url": "ftp://x"}, "needs url="),
        ({"kind": "model", "model": "", "url": None}, "needs model= set to a catalogue alias"),
        ({"kind": "runnable"}, "a 'runnable' expert takes no model=, url="),
    ],
)
def test_a_damaged_kind_on_disk_is_a_corrupt_store(
    store: ExpertStore, change: dict, message: str
) -> None:
    path = store.path / "experts" / "facts" / "expert.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    with pytest.raises(CorruptStoreError, match=f"expert 'facts' in .*{message}"):
        ExpertStore.open(store.path)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"kind": "agent"}, r"kind must be one of \('adapter', 'remote', 'model', 'program'"),
        ({"kind": "remote", "model": "m"}, "a 'remote' expert needs url= set to"),
        ({"kind": "remote", "url": "gpu-box:8000"}, "needs url= set to an OpenAI-compatible"),
        ({"kind": "remote", "url": SERVER}, "needs model= set to the name the server serves"),
        ({"kind": "model"}, "needs model= set to a catalogue alias"),
        ({"kind": "model", "model": "gpt-9"}, "must be a catalogue alias .* got 'gpt-9'"),
        ({"kind": "runnable", "model": CODER}, "a 'runnable' expert takes no model="),
        ({"kind": "runnable", "base_model": "x"}, "takes no base_model= .*it takes none of them"),
        ({"kind": "program", "base_model": "x"}, "takes no base_model= .*it takes model="),
        ({"kind": "program", "model": "gpt-9"}, "must be a catalogue alias .* got 'gpt-9'"),
        ({"url": SERVER}, "an 'adapter' expert takes no url= .*adapter=, base_model="),
        ({"kind": "model", "model": CODER, "url": SERVER}, "takes no url= .*it takes model="),
    ],
)
def test_a_bad_kind_or_its_arguments_fail_before_any_embedding(
    tmp_path: Path, arguments: dict[str, Any], message: str
) -> None:
    embedder = CountingEmbedder()
    store = ExpertStore.create(tmp_path / "store", embedder)
    with pytest.raises(ExpertKindError, match=message) as raised:
        store.add_expert("x", ARITHMETIC, **arguments)
    assert isinstance(raised.value, ValueError) and isinstance(raised.value, StoreError)
    assert embedder.embedded == 0 and store.experts() == []


def test_an_adapter_is_refused_for_another_kind(tmp_path: Path) -> None:
    store = ExpertStore.create(tmp_path / "store", "hashing:64")
    with pytest.raises(ExpertKindError, match="a 'remote' expert takes no adapter="):
        store.add_expert("x", ARITHMETIC, kind="remote", url=SERVER, model="m", adapter=tmp_path)


def test_chat_models_binds_each_kind(store: ExpertStore, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("langchain_openai", reason="needs the [remote] extra")
    from compllm_graph.models.remote import RemoteChatModel

    loads: list[str] = []

    def load(alias: str) -> FakeLocalModel:
        loads.append(alias)
        return FakeLocalModel(alias)

    monkeypatch.setattr(serving, "load_catalogue_model", load)
    agent = answer_graph("The agent's answer.")
    program = FakeChat(label="program", reply=lambda _: "The program's answer.")
    local = FakeLocalModel()
    models = store.chat_models(
        local,  # type: ignore[arg-type]
        runnables={"calc": agent, "prog": program},
        max_new_tokens=9,
        num_beams=2,
    )
    assert set(models) == {e.name for e in store.experts()}
    ask = [HumanMessage("q")]
    assert models["chemistry"].invoke(ask).text.startswith("smollm2-135m-instruct/base says")
    assert (
        models["coder"].invoke(ask).text
        == f"{CODER}/base says {{'max_new_tokens': 9, 'num_beams': 2}}"
    )
    assert loads == [CODER]
    assert models["prog"].invoke(ask).text == "The program's answer."
    # the agent is wrapped (messages in, its last message out) and gets its system prompt
    reply = models["calc"].invoke(ask)
    assert isinstance(reply, AIMessage) and reply.text == "The agent's answer."
    (sent,) = agent.sent  # type: ignore[attr-defined]
    assert isinstance(sent[0], SystemMessage) and sent[0].text == "Use the calculator."
    remote = models["facts"]
    assert isinstance(remote, RemoteChatModel)
    assert (remote.openai_api_base, remote.model_name, remote.max_tokens) == (
        SERVER,
        "big-model",
        9,
    )


def test_a_model_expert_of_the_loaded_alias_reuses_the_loaded_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_load(alias: str) -> None:
        raise AssertionError(f"{alias} was loaded again")

    monkeypatch.setattr(serving, "load_catalogue_model", no_load)
    store = ExpertStore.create(tmp_path / "store", "hashing:64")
    store.add_expert("one", CODE, kind="model", model=CODER)
    store.add_expert("two", FACTS, kind="model", model=CODER)
    models = store.chat_models(FakeLocalModel(CODER))  # type: ignore[arg-type]
    assert models["one"].invoke("q").text == models["two"].invoke("q").text


def test_runnable_experts_without_their_runnable_are_all_named(store: ExpertStore) -> None:
    with pytest.raises(ExpertKindError) as raised:
        store.chat_models(FakeLocalModel())  # type: ignore[arg-type]
    message = str(raised.value)
    assert "'calc' (runnable), 'prog' (program)" in message
    assert "runnables={'calc': ..., 'prog': ...}" in message
    assert isinstance(raised.value, ValueError)


def test_runnables_must_be_experts_of_the_store_and_runnables(store: ExpertStore) -> None:
    local: Any = FakeLocalModel()
    agent = answer_graph("a")
    with pytest.raises(ExpertKindError, match=r"names \['calculator'\], which are not experts"):
        store.chat_models(local, runnables={"calc": agent, "prog": agent, "calculator": agent})
    with pytest.raises(ExpertKindError, match=r"runnables\['prog'\] must be a LangChain Runnable"):
        store.chat_models(local, runnables={"calc": agent, "prog": "my_program"})  # type: ignore[dict-item]


def test_a_runnable_given_for_another_kind_replaces_it(tmp_path: Path) -> None:
    store = ExpertStore.create(tmp_path / "store", "hashing:64")
    store.add_expert("chemistry", CHEMISTRY, system_prompt="Be a chemist.")
    mine = FakeChat(label="mine")
    local = FakeLocalModel()
    (model,) = store.chat_models(local, runnables={"chemistry": mine}).values()  # type: ignore[arg-type]
    assert model.invoke("q").text == "mine answer to: q" and mine.calls == ["q"]


def test_a_graph_routes_to_a_runnable_expert_of_the_store(tmp_path: Path) -> None:
    store = ExpertStore.create(tmp_path / "store", "hashing:512", threshold=0.2)
    store.add_expert("chemistry", CHEMISTRY)
    store.add_expert("calc", ARITHMETIC, kind="runnable")
    agent = answer_graph("The answer is 84.")
    graph = create_compllm_graph(
        decomposer=decomposer("<q>What is 12 times 7?</q><q>What is the molar mass of water?</q>"),
        experts=store.chat_models(FakeLocalModel(), runnables={"calc": agent}),  # type: ignore[arg-type]
        router=ExpertRouter(store),
        base=FakeChat(label="base"),
    )
    out = graph.compile().invoke({"query": "two questions"})
    answers = [(a["expert"], a["answer"]) for a in out["sub_answers"]]
    assert answers[0] == ("calc", "The answer is 84.")
    assert answers[1][0] == "chemistry"


def test_remote_deployments_bind_kinds_too(store: ExpertStore) -> None:
    pytest.importorskip("langchain_openai", reason="needs the [remote] extra")
    agent: Runnable = answer_graph("a")
    runnables: dict[str, Runnable] = {"calc": agent, "prog": agent}
    experts = [e for e in store.experts() if e.name != "coder"]
    models = serving.remote_expert_chat_models(
        experts, "http://10.0.0.1:8000/v1", base_model="smollm2", runnables=runnables
    )
    assert models["facts"].openai_api_base == SERVER  # type: ignore[attr-defined]
    assert models["calc"].invoke("q").text == "a"
    with pytest.raises(ExpertKindError, match=r"runs the local model 'qwen2\.5-coder-1\.5b"):
        serving.remote_expert_chat_models(
            store.experts(), "http://10.0.0.1:8000/v1", base_model="smollm2", runnables=runnables
        )


class WritingModel(FakeLocalModel):
    """A catalogue model whose long-reply chat model writes `program` and whose others answer
    in words; every request is recorded with its token budget."""

    def __init__(self, name: str, program: str) -> None:
        super().__init__(name)
        self.program = program
        self.requests: list[tuple[int, list[BaseMessage]]] = []

    def chat_model(self, adapter: str | None = None, **generation: Any) -> FakeChat:
        tokens = int(generation["max_new_tokens"])

        def reply(messages: list[BaseMessage]) -> str:
            self.requests.append((tokens, list(messages)))
            return f"```python\n{self.program}\n```" if tokens >= 160 else "About 40."

        return FakeChat(label=self.name, reply=reply)


@pytest.mark.parametrize(
    ("program", "answer"), [("print(6 * 7)", "The answer is 42."), ("import os", "About 40.")]
)
def test_a_program_expert_on_a_model_is_built_by_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, program: str, answer: str
) -> None:
    loaded: list[WritingModel] = []

    def load(alias: str) -> WritingModel:
        loaded.append(WritingModel(alias, program))
        return loaded[-1]

    monkeypatch.setattr(serving, "load_catalogue_model", load)
    store = ExpertStore.create(tmp_path / "store", "hashing:64")
    store.add_expert("big", FACTS, kind="model", model=CODER)
    store.add_expert("calc", ARITHMETIC, kind="program", model=CODER, system_prompt="Be brief.")
    assert ExpertStore.open(store.path).expert("calc").model == CODER
    models = store.chat_models(FakeLocalModel(), max_new_tokens=48)  # type: ignore[arg-type]
    reply = models["calc"].invoke([HumanMessage("What is 6 times 7?")])
    assert reply.text.endswith(answer)
    (model,) = loaded  # one load, shared with the `model` expert of the same alias
    writes = [messages for tokens, messages in model.requests if tokens == 160]
    falls = [messages for tokens, messages in model.requests if tokens == 48]
    # the writer has the program prompt and not the expert's; the fallback has the expert's
    assert writes and all("Be brief." not in m[0].text for m in writes)
    assert "short Python program" in writes[0][0].text
    if answer == "About 40.":  # refused twice (os is not allowed), then the model answers
        assert len(writes) == 2 and "(refused): line 1: import of 'os'" in writes[1][-1].text
        ((system, question),) = falls
        assert (system.text, question.text) == ("Be brief.", "What is 6 times 7?")
        assert reply.response_metadata["program_expert"]["answered_by"] == "fallback"
    else:
        assert len(writes) == 1 and not falls
    with pytest.raises(ExpertKindError, match=r"runs the local model 'qwen2\.5-coder-1\.5b"):
        serving.remote_expert_chat_models(
            [store.expert("calc")], "http://10.0.0.1:8000/v1", base_model="smollm2"
        )


def test_an_old_style_expert_record_is_an_adapter() -> None:
    expert = Expert("x", "", None, None, None, None, (1,))  # positional, as before kinds
    assert (expert.kind, expert.url, expert.model) == ("adapter", None, None)


# -- compllm experts add / list ------------------------------------------------------------------


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    code = main([*argv, "--json"])
    return code, json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_experts_list_shows_each_kind_and_what_it_points_at(
    store: ExpertStore, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run_json(capsys, "experts", "list", "--store", str(store.path))
    assert code == 0
    assert {e["name"]: (e["kind"], e["url"], e["model"]) for e in out["experts"]} == {
        "calc": ("runnable", None, None),
        "chemistry": ("adapter", None, None),
        "coder": ("model", None, CODER),
        "facts": ("remote", SERVER, "big-model"),
        "prog": ("program", None, None),
    }
    assert main(["experts", "list", "--store", str(store.path)]) == 0
    text = capsys.readouterr().out
    rows = {line.split()[0]: line for line in text.splitlines()[1:] if "thr " in line}
    assert "adapter (none: base model)" in rows["chemistry"]
    assert f"model {CODER}" in rows["coder"]
    assert f"remote big-model at {SERVER}" in rows["facts"]
    assert "runnable (bound in code)" in rows["calc"]
    assert "program (bound in code)" in rows["prog"]
    assert "note: calc, prog: answered by a Runnable of your code" in text
    assert "runnables={name: runnable, ...}" in text
    store.add_expert("writer", ARITHMETIC, kind="program", model=CODER)
    assert main(["experts", "list", "--store", str(store.path)]) == 0
    text = capsys.readouterr().out
    assert f"program on {CODER}" in text
    assert "note: calc, prog: answered by a Runnable of your code" in text


def test_experts_add_takes_a_kind(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = ExpertStore.create(tmp_path / "store", "hashing:64")
    data = tmp_path / "facts.txt"
    data.write_text("\n".join(FACTS))
    where = ["--store", str(store.path), "--data", str(data)]
    code, out = run_json(
        capsys,
        "experts",
        "add",
        "facts",
        *where,
        "--kind",
        "remote",
        "--url",
        SERVER,
        "--model",
        "big",
    )
    assert code == 0 and (out["expert"]["kind"], out["expert"]["url"]) == ("remote", SERVER)
    code, out = run_json(capsys, "experts", "add", "calc", *where, "--kind", "runnable")
    assert code == 0 and out["expert"]["kind"] == "runnable"
    assert ExpertStore.open(store.path).expert("calc").kind == "runnable"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--kind", "remote", "--model", "big"], "a 'remote' expert needs url="),
        (["--kind", "model", "--model", "gpt-9"], "must be a catalogue alias"),
        (["--kind", "runnable", "--url", SERVER], "a 'runnable' expert takes no url="),
    ],
)
def test_experts_add_with_a_bad_kind_exits_1_with_the_fix(
    tmp_path: Path, extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ExpertStore.create(tmp_path / "store", "hashing:64")
    data = tmp_path / "facts.txt"
    data.write_text("\n".join(FACTS))
    argv = ["experts", "add", "x", "--store", str(store.path), "--data", str(data), *extra]
    code, out = run_json(capsys, *argv)
    assert code == 1 and message in out["error"]
    assert ExpertStore.open(store.path).experts() == []


def test_experts_add_offers_exactly_the_kinds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["experts", "add", "x", "--data", "d.txt", "--kind", "agent"])
    assert exited.value.code == 2
    assert "invalid choice: 'agent'" in capsys.readouterr().err
