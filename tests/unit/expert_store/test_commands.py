"""`compllm experts ...`: every subcommand, text and --json output, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("faiss", reason="needs the [router] extra")

from compllm_graph.cli import main
from compllm_graph.expert_store import ExpertStore


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    code = main([*argv, "--json"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    return code, json.loads(last)


@pytest.fixture
def data(tmp_path: Path) -> dict[str, Path]:
    chem = tmp_path / "chem.txt"
    chem.write_text("What is the pH of pure water?\nBalance the combustion of methane.\n\n")
    maths = tmp_path / "maths.jsonl"
    maths.write_text('{"question": "What is 12 times 12?"}\n{"text": "Solve x + 3 = 5."}\n')
    law = tmp_path / "law.csv"
    law.write_text("question,answer\nWhat is a tort?,1\nWho drafts a contract?,2\n")
    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text(
        '{"text": "What is the pH of lemon juice?", "expert": "chemistry"}\n'
        '{"text": "Who painted the Mona Lisa?", "expert": null}\n'
    )
    return {"chem": chem, "maths": maths, "law": law, "labelled": labelled}


def test_create_add_list_route_fit_remove(
    tmp_path: Path, data: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    store = str(tmp_path / "store")
    code, out = run_json(
        capsys,
        "experts",
        "create",
        "--store",
        store,
        "--embedder",
        "hashing:256",
        "--center",
        "--threshold",
        "0.5",
    )
    assert code == 0 and out == {
        "store": store,
        "embedder": "hashing:256",
        "center": True,
        "threshold": 0.5,
        "vote": None,
    }
    code, out = run_json(
        capsys,
        "experts",
        "add",
        "chemistry",
        "--store",
        store,
        "--data",
        str(data["chem"]),
        "--description",
        "chem",
        "--system-prompt",
        "Chem!",
    )
    assert code == 0 and out["expert"]["texts"] == 2 and out["expert"]["system_prompt"] == "Chem!"
    assert (
        main(
            [
                "experts",
                "add",
                "mathematics",
                "--store",
                store,
                "--data",
                str(data["maths"]),
                "--centroids",
                "2",
            ]
        )
        == 0
    )
    assert main(["experts", "add", "law", "--store", store, "--data", str(data["law"])]) == 0
    capsys.readouterr()

    code, out = run_json(capsys, "experts", "list", "--store", store)
    assert [e["name"] for e in out["experts"]] == ["chemistry", "law", "mathematics"]
    assert out["experts"][2]["centroids"] == 2 and out["default_threshold"] == 0.5

    assert main(["experts", "list", "--store", store]) == 0
    listing = capsys.readouterr().out
    assert "mathematics" in listing
    assert "no expert here has a trained adapter" in listing  # said plainly, not in a docstring

    code, out = run_json(
        capsys,
        "experts",
        "route",
        "--store",
        store,
        "What is 12 times 12?",
        "--file",
        str(data["chem"]),
    )
    assert code == 0 and len(out["routes"]) == 3
    assert out["routes"][0]["expert"] == "mathematics"
    assert out["routes"][0]["candidates"][0][0] == "mathematics"
    assert main(["experts", "route", "--store", store, "Balance the combustion of methane."]) == 0
    assert capsys.readouterr().out.startswith("chemistry")

    code, out = run_json(
        capsys, "experts", "fit-thresholds", "--store", store, "--data", str(data["labelled"])
    )
    assert (
        code == 0 and out["saved"] and set(out["thresholds"]) == {"chemistry", "law", "mathematics"}
    )
    assert out["error_after"] <= out["error_before"]
    assert ExpertStore.open(store).threshold("chemistry") == out["thresholds"]["chemistry"]

    code, out = run_json(capsys, "experts", "remove", "law", "--store", store)
    assert code == 0 and out["removed"] == "law"
    assert [e.name for e in ExpertStore.open(store).experts()] == ["chemistry", "mathematics"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["experts", "add", "Bad Name", "--data", "{chem}"], "invalid expert name"),
        (["experts", "add", "x", "--data", "{missing}"], "cannot read"),
        (["experts", "add", "x", "--data", "{labelled}.yaml"], "unknown data file type"),
        (["experts", "remove", "nobody"], "no expert 'nobody'"),
        (["experts", "route"], "give texts to route"),
        (
            ["experts", "add", "x", "--data", "{chem}", "--adapter", "{tmp}"],
            "has no adapter_model.safetensors",
        ),
    ],
)
def test_errors_exit_1_with_a_message(
    tmp_path: Path,
    data: dict[str, Path],
    argv: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store = tmp_path / "store"
    ExpertStore.create(store, "hashing:64").add_expert("chemistry", ["a text"])
    (tmp_path / "labelled.jsonl.yaml").write_text("")
    paths = {
        **{k: str(v) for k, v in data.items()},
        "missing": str(tmp_path / "no.txt"),
        "tmp": str(tmp_path),
    }
    argv = [a.format(**paths) for a in argv]
    code, out = run_json(capsys, *argv, "--store", str(store))
    assert code == 1 and message in out["error"]


def test_missing_store_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_json(capsys, "experts", "list", "--store", str(tmp_path / "none"))
    assert code == 1 and "no expert store" in out["error"]


def test_build_demo_and_default_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COMPLLM_HOME", str(tmp_path / "home"))
    code, out = run_json(capsys, "experts", "build-demo", "--embedder", "hashing:512")
    assert code == 0
    assert out["experts"] == ["biology", "chemistry", "mathematics", "medicine"]
    assert out["store"] == str(tmp_path / "home" / "expert_store")
    assert any(value != 0.7 for value in out["thresholds"].values())  # calibrated
    code, out = run_json(
        capsys, "experts", "route", "How many apples are left if Tom eats 3 of his 10 apples?"
    )
    assert out["routes"][0]["candidates"][0][0] == "mathematics"
    code, out = run_json(capsys, "experts", "list")
    assert all(e["texts"] == 240 and e["system_prompt"] for e in out["experts"])


def test_build_demo_carries_the_packs_calibration_unless_similarity_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from compllm_graph.expert_store.demo import shipped_calibration
    from compllm_graph.models import DEFAULT_MODEL

    if shipped_calibration(DEFAULT_MODEL) is None:
        pytest.skip("the default model's pack (with its calibration) is not installed")
    monkeypatch.setenv("COMPLLM_HOME", str(tmp_path / "home"))  # the 1.5B candidate: not fetched
    args = ("experts", "build-demo", "--embedder", "hashing:64", "--no-calibrate")
    code, out = run_json(capsys, *args)
    assert code == 0 and out["calibrated"] and out["left_out"] == ["big", "big-program"]
    code, out = run_json(capsys, *args, "--similarity-only", "--force")
    assert code == 0 and not out["calibrated"] and out["left_out"] == []
    assert main([*args, "--force"]) == 0
    listing, fetch = capsys.readouterr().out.strip().splitlines()
    assert listing.endswith("; routed by measured gain")
    assert fetch == (
        "left out: big, big-program (`compllm models fetch qwen2.5-coder-1.5b-instruct` adds them)"
    )


def test_add_warns_when_the_experts_own_texts_fall_below_its_threshold(
    tmp_path: Path, data: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    store = str(tmp_path / "store")
    ExpertStore.create(store, "hashing:256", threshold=0.99)
    code, out = run_json(
        capsys, "experts", "add", "chem", "--store", store, "--data", str(data["chem"])
    )
    assert code == 0 and "would go to the base model" in out["warning"]
    assert "fit-thresholds" in out["warning"]
    code, out = run_json(
        capsys,
        "experts",
        "add",
        "maths",
        "--store",
        store,
        "--data",
        str(data["maths"]),
        "--threshold",
        "-1",
    )
    assert code == 0 and out["warning"] is None


def test_create_a_voting_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = str(tmp_path / "store")
    code, out = run_json(
        capsys, "experts", "create", "--store", store, "--embedder", "hashing:32", "--vote", "20"
    )
    assert code == 0 and out["vote"] == 20
    assert ExpertStore.open(store).vote == 20
