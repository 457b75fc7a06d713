"""The routing method the CLI and the demo store default to (centred, one centroid), the
one-centroid case of centring, and the router that asks a model for the domain."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("faiss", reason="needs the [router] extra")

from langchain_core.messages import BaseMessage

from compllm_graph.cli import main
from compllm_graph.expert_store import ExpertRouter, ExpertStore
from compllm_graph.expert_store.demo import DEMO_CENTER, build_demo_store
from compllm_graph.expert_store.llm_router import DomainNamingRouter
from tests.fakes import FakeChat

DOMAINS = ["biology", "chemistry", "mathematics", "medicine"]


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    code = main([*argv, "--json"])
    return code, json.loads(capsys.readouterr().out.splitlines()[-1])


def test_create_centres_unless_told_not_to(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run_json(
        capsys, "experts", "create", "--store", str(tmp_path / "a"), "--embedder", "hashing:32"
    )
    assert code == 0 and out["center"] is True and out["vote"] is None
    code, out = run_json(
        capsys,
        "experts",
        "create",
        "--store",
        str(tmp_path / "b"),
        "--embedder",
        "hashing:32",
        "--no-center",
    )
    assert code == 0 and out["center"] is False


def test_the_demo_store_is_centred(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMPLLM_HOME", str(tmp_path / "home"))
    store = build_demo_store(tmp_path / "demo", embedder="hashing:256", calibrate=False)
    assert DEMO_CENTER and store.center
    assert [e.name for e in store.experts()] == DOMAINS


def test_a_centred_store_of_one_centroid_still_matches(tmp_path: Path) -> None:
    store = ExpertStore.create(tmp_path / "s", "hashing:64", center=True, threshold=0.3)
    store.add_expert("chemistry", ["acid base salt", "acid salt water"])
    (route,) = ExpertRouter(store).route(["acid base salt water"])
    assert route.expert == "chemistry" and route.score > 0.5
    store.add_expert("history", ["king war empire", "empire war treaty"])
    _, _, center = ExpertStore.open(store.path).load_index()
    assert center is not None and float(abs(center).sum()) > 0  # two centroids: a real mean


def replying(text: str) -> FakeChat:
    def reply(_: list[BaseMessage]) -> str:
        return text

    return FakeChat(reply=reply)


@pytest.mark.parametrize(
    ("reply", "expert"),
    [
        ("Chemistry.", "chemistry"),
        ("mathematics", "mathematics"),
        ("This is a medical question: medicine", "medicine"),
        ("Math", "mathematics"),
        ("none", None),
        ("I cannot tell.", None),
        ("Biology, or perhaps chemistry", "biology"),
    ],
)
def test_the_domain_naming_router_takes_the_first_name_said(reply: str, expert: str | None) -> None:
    router = DomainNamingRouter(replying(reply), DOMAINS)
    (route,) = router(["What is an enzyme?"])
    assert route.expert == expert
    assert route.reason is not None and route.fallback_reason is None


def test_the_domain_naming_router_asks_once_per_text_with_every_domain() -> None:
    chat = replying("biology")
    router = DomainNamingRouter(chat, DOMAINS, descriptions={"biology": "cells"})
    assert len(router(["a?", "b?", "c?"])) == 3 and len(chat.calls) == 3
    assert "biology (cells), chemistry, mathematics, medicine, none?" in chat.calls[0]
    assert router([]) == []


def test_names_with_a_shared_prefix_must_be_said_whole() -> None:
    router = DomainNamingRouter(replying("medical"), ["medicine", "medieval"])
    assert router(["q"])[0].expert is None
    assert DomainNamingRouter(replying("medieval"), ["medicine", "medieval"])(["q"])[0].expert == (
        "medieval"
    )


def test_the_domain_naming_router_refuses_no_experts_or_one_called_none() -> None:
    with pytest.raises(ValueError):
        DomainNamingRouter(replying("x"), [])
    with pytest.raises(ValueError, match="none"):
        DomainNamingRouter(replying("x"), ["none", "chemistry"])
