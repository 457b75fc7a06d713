"""Expert packs: the repository's packs, discovery through the entry point group, sha256 checks,
and what the demo store says when a model's pack is missing (a pack built into a wheel by pip:
`tests/integration/test_wheels.py`)."""

from __future__ import annotations

import json
import os
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("faiss", reason="needs the [router] extra")

from compllm_graph import packs
from compllm_graph.cli import main
from compllm_graph.decomposer import adapter_for, default_decomposer
from compllm_graph.expert_store import demo
from compllm_graph.expert_store.calibration import Calibration, DomainResult, ExpertResult
from compllm_graph.expert_store.demo import (
    DEMO_EXPERTS,
    build_demo_store,
    demo_store,
    shipped_calibration,
    shipped_experts,
)
from compllm_graph.models import CATALOGUE, DEFAULT_MODEL
from compllm_graph.packs import (
    ENTRY_POINT_GROUP,
    SHIPPED_PACKS,
    PackError,
    PackNotInstalledError,
    pack_for,
    read_pack,
    write_manifest,
)

REPO = Path(__file__).resolve().parents[3]
MODEL, PUBLIC_ID = "tiny-test-model", "example-org/Tiny-Test-Model"


def tiny_adapter(folder: Path, record: dict[str, object]) -> Path:
    """A LoRA adapter folder of two tiny tensors, as `compllm train` writes one."""
    folder.mkdir(parents=True)
    shapes = {
        "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": [2, 4],
        "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": [4, 2],
    }
    header, offset = {}, 0
    for name, shape in shapes.items():
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + 32]}
        offset += 32
    raw = json.dumps(header).encode()
    weights = len(raw).to_bytes(8, "little") + raw + bytes(offset)
    (folder / "adapter_model.safetensors").write_bytes(weights)
    config = {"peft_type": "LORA", "base_model_name_or_path": PUBLIC_ID, "r": 2}
    config["target_modules"] = ["q_proj"]
    (folder / "adapter_config.json").write_text(json.dumps(config))
    (folder / "training.json").write_text(json.dumps({"base": MODEL, **record}))
    return folder


def pack_folder(folder: Path) -> Path:
    """A pack's package folder: a biology expert and a decomposer for `MODEL`, and a manifest."""
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text('"""A test pack."""\n')
    tiny_adapter(folder / "experts" / "biology", {"system_prompt": DEMO_EXPERTS["biology"][1]})
    tiny_adapter(folder / "decomposer", {"system_prompt": "Split the question."})
    write_manifest(folder, model=MODEL, base_model=PUBLIC_ID)
    return folder


def installed(site: Path, module: str, dist: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`site` on sys.path, holding the pack `module` and a dist-info naming it in the group."""
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{MODEL} = {module}\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, module, raising=False)
    return site / module


@pytest.fixture
def tiny_pack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A pack for `MODEL` installed on sys.path (a dist-info with the entry point), with
    `$COMPLLM_HOME` in `tmp_path`."""
    monkeypatch.setenv("COMPLLM_HOME", str(tmp_path / "home"))
    site = installed(tmp_path / "site", "tiny_test_pack", "tiny-test-pack", monkeypatch)
    folder = pack_folder(site)
    yield folder
    sys.modules.pop("tiny_test_pack", None)


def repo_packs() -> list[packs.Pack]:
    return [read_pack(m.parent) for m in sorted(REPO.glob("packs/*/*/manifest.json"))]


def test_the_repository_has_a_pack_for_each_model_with_trained_adapters() -> None:
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11's TOML reader")
    found = repo_packs()
    assert {p.model: p.folder.parent.name for p in found} == SHIPPED_PACKS
    for pack in found:
        project = tomllib.loads((pack.folder.parent / "pyproject.toml").read_text())
        assert project["project"]["name"] == SHIPPED_PACKS[pack.model]
        points = project["project"]["entry-points"][ENTRY_POINT_GROUP]
        assert points == {pack.model: pack.folder.name}
        assert pack.base_model == CATALOGUE[pack.model].public_id
        assert set(DEMO_EXPERTS) <= set(pack.experts()) and pack.decomposer() is not None
        pack.verify()  # every file listed, each with its sha256, and nothing else


def test_the_default_pack_is_installed_and_verified() -> None:
    pack = pack_for(DEFAULT_MODEL)
    if pack is None:
        pytest.skip(f"{packs.missing_pack_message(DEFAULT_MODEL)} (`make test` installs it)")
    assert pack.name == SHIPPED_PACKS[DEFAULT_MODEL] and pack.version
    assert pack_for("Qwen/Qwen2.5-Coder-0.5B-Instruct") == pack  # the public id names it too
    assert shipped_experts(DEFAULT_MODEL) == pack.experts()
    assert adapter_for(DEFAULT_MODEL) == pack.decomposer()


def test_a_changed_missing_or_unlisted_file_is_refused_naming_it(tiny_pack: Path) -> None:
    pack = pack_for(MODEL)
    assert pack is not None
    record = tiny_pack / "experts" / "biology" / "training.json"
    text = record.read_text()
    record.write_text(text.replace("biology", "BIOLOGY"))  # same size, other bytes
    with pytest.raises(PackError, match=rf"{record} has sha256 \w+, the manifest says"):
        pack_for(MODEL)
    with pytest.raises(PackError, match="reinstall tiny-test-pack"):
        pack.verify()
    record.write_text(text + " ")
    with pytest.raises(PackError, match=rf"{record} has {len(text) + 1} bytes, the manifest"):
        pack.verify()
    record.write_text(text)
    pack.verify()
    weights = tiny_pack / "decomposer" / "adapter_model.safetensors"
    weights.rename(tiny_pack / "decomposer" / "moved")
    with pytest.raises(PackError, match=rf"{weights} is missing"):
        pack.verify()
    (tiny_pack / "decomposer" / "moved").rename(weights)
    pack.verify()
    stray = tiny_pack / "experts" / "chemistry" / "adapter_config.json"
    stray.parent.mkdir()
    stray.write_text("{}")
    with pytest.raises(PackError, match=rf"{stray} is not listed in .*pack-manifest"):
        pack.verify()
    write_manifest(tiny_pack)  # model and public id kept from the manifest written before
    assert read_pack(tiny_pack).base_model == PUBLIC_ID
    read_pack(tiny_pack).verify()


def test_a_verified_file_is_not_hashed_again_until_it_changes(
    tiny_pack: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pack = read_pack(tiny_pack)
    an_hour_ago = time.time_ns() - 3600 * 10**9
    for relative in pack.files:  # a file changed in the last 2 s is hashed every time
        os.utime(tiny_pack / relative, ns=(an_hour_ago, an_hour_ago))
    pack.verify()

    def no_hashing(path: Path) -> str:
        raise AssertionError(f"{path} hashed again")

    monkeypatch.setattr(packs, "sha256_file", no_hashing)
    pack.verify()  # remembered in this process
    monkeypatch.setattr(packs, "_VERIFIED", {})
    pack.verify()  # remembered in $COMPLLM_HOME/packs/, for the next process
    assert list((Path(os.environ["COMPLLM_HOME"]) / "packs").glob("tiny_test_pack-*.verified.json"))
    record = tiny_pack / "experts" / "biology" / "training.json"
    os.utime(record, ns=(an_hour_ago, an_hour_ago + 10**9))
    with pytest.raises(AssertionError, match=r"training\.json hashed again"):
        pack.verify()


def test_the_demo_store_says_which_pack_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COMPLLM_HOME", str(tmp_path))
    monkeypatch.setattr(packs, "installed_packs", lambda: [])
    message = (
        "no expert pack for qwen2.5-coder-0.5b-instruct is installed: "
        "pip install -e packs/compllm-pack-qwen2.5-coder-0.5b"
    )
    with pytest.raises(PackNotInstalledError, match=re.escape(message)):
        demo_store()
    with pytest.raises(PackNotInstalledError, match=r"pip install -e packs/compllm-pack-smollm2"):
        build_demo_store(tmp_path / "s", base="smollm2-135m-instruct", embedder="hashing:8")
    assert adapter_for(DEFAULT_MODEL) is None and shipped_experts(DEFAULT_MODEL) == {}
    # A model this repository has no pack for gets prompt-only experts, as before packs.
    other = build_demo_store(tmp_path / "o", base="no-such-model", embedder="hashing:8")
    assert all(e.adapter is None for e in other.experts())


def test_the_decomposer_falls_back_to_the_prompt_naming_the_pack(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("torch", reason="the decomposer's grammar needs the [local] extra")
    monkeypatch.setattr(packs, "installed_packs", lambda: [])

    class Model:
        name = DEFAULT_MODEL

        def chat_model(self, adapter: str | None = None, **generation: object) -> str:
            return f"chat through {adapter}"

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        chat, prompt = default_decomposer(Model())  # type: ignore[arg-type]
    assert chat == "chat through None" and prompt is not None and "<q>" in prompt
    assert "pip install -e packs/compllm-pack-qwen2.5-coder-0.5b" in str(caught[0].message)


def test_compllm_experts_packs_and_pack_manifest(
    tiny_pack: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["experts", "packs", "--json"]) == 0
    listed = {p["name"]: p for p in json.loads(capsys.readouterr().out)["packs"]}
    mine = listed["tiny-test-pack"]
    assert (mine["model"], mine["base_model"], mine["version"]) == (MODEL, PUBLIC_ID, "0.1")
    assert mine["verified"] and mine["experts"] == ["biology"] and mine["decomposer"]
    (tiny_pack / "decomposer" / "training.json").write_text("{}")
    assert main(["experts", "packs"]) == 0
    assert "tiny-test-pack 0.1  model tiny-test-model" in capsys.readouterr().out
    assert main(["experts", "packs", "--json"]) == 0
    mine = {p["name"]: p for p in json.loads(capsys.readouterr().out)["packs"]}["tiny-test-pack"]
    assert not mine["verified"] and "decomposer/training.json has 2 bytes" in mine["problem"]
    assert main(["experts", "pack-manifest", str(tiny_pack), "--json"]) == 0
    written = json.loads(capsys.readouterr().out)
    assert (written["model"], written["base_model"], written["files"]) == (MODEL, PUBLIC_ID, 6)
    read_pack(tiny_pack).verify()


CANDIDATE_MODEL = "qwen2.5-coder-1.5b-instruct"


def calibration_data() -> dict[str, Any]:
    """A pack's calibration for `MODEL`: on biology only the candidate `big` beats the base, on
    mathematics the domain's own expert does."""
    return {
        "candidates": {
            "big": {
                "model": CANDIDATE_MODEL,
                "description": "a bigger model",
                "system_prompt": "Answer.",
                "texts": ["A question in any domain."],
            }
        },
        "calibration": Calibration(
            model=MODEL,
            domains={
                "biology": DomainResult(
                    30, 10, {"biology": ExpertResult(9, 2, 3), "big": ExpertResult(15, 7, 2)}
                ),
                "mathematics": DomainResult(
                    30, 10, {"mathematics": ExpertResult(14, 6, 2), "big": ExpertResult(12, 4, 2)}
                ),
            },
            owners={"biology": "biology", "mathematics": "mathematics"},
            seconds_per_call={"base": 1.0, "big": 4.0, "biology": 1.0, "mathematics": 4.5},
        ).to_dict(),
    }


def ship_calibration(folder: Path, data: dict[str, Any]) -> None:
    (folder / packs.CALIBRATION).write_text(json.dumps(data))
    write_manifest(folder, model=MODEL, base_model=PUBLIC_ID)
    packs._discover.cache_clear()  # the installed packs were read before the manifest changed


def names(store: Any) -> set[str]:
    return {expert.name for expert in store.experts()}


def test_a_pack_calibration_and_its_fetched_candidate_join_the_demo_store(
    tiny_pack: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ship_calibration(tiny_pack, calibration_data())
    monkeypatch.setattr(demo.ShippedCalibration, "fetched", lambda self: ["big"])
    store = build_demo_store(tmp_path / "store", base=MODEL, embedder="hashing:64")
    big = next(e for e in store.experts() if e.name == "big")
    assert (big.kind, big.model, big.gain_only) == ("model", CANDIDATE_MODEL, True)
    assert big.system_prompt == "Answer." and big.adapter is None
    shipped = shipped_calibration(MODEL)
    assert shipped is not None and store.calibration == shipped.calibration
    assert store.calibration.choose("biology", ["biology"]).expert == "big"
    assert store.calibration.choose("mathematics", ["mathematics"]).expert == "mathematics"
    plain = build_demo_store(
        tmp_path / "plain", base=MODEL, embedder="hashing:64", calibrated=False
    )
    assert plain.calibration is None and names(plain) == set(DEMO_EXPERTS)


def with_writer() -> dict[str, Any]:
    """`calibration_data()` with a second candidate on the same model, writing programs,
    measured ahead of every other expert on both domains."""
    data = calibration_data()
    writer = {**data["candidates"]["big"], "kind": "program", "description": "programs"}
    data["candidates"]["writer"] = writer
    for domain in data["calibration"]["domains"].values():
        domain["experts"]["writer"] = {"right": 18, "only_expert": 9, "only_base": 1}
    data["calibration"]["seconds_per_call"]["writer"] = 5.0
    return data


def test_a_program_candidate_joins_as_a_program_expert_on_its_model(
    tiny_pack: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ship_calibration(tiny_pack, with_writer())
    monkeypatch.setattr(demo.ShippedCalibration, "fetched", lambda self: ["big", "writer"])
    store = build_demo_store(tmp_path / "store", base=MODEL, embedder="hashing:64")
    made = {e.name: (e.kind, e.model, e.gain_only) for e in store.experts()}
    assert made["writer"] == ("program", CANDIDATE_MODEL, True)
    assert made["big"] == ("model", CANDIDATE_MODEL, True)
    # measured ahead of the domain's own expert (and of `big`), it takes the domain
    assert store.calibration is not None
    assert store.calibration.choose("mathematics", ["mathematics"]).expert == "writer"


def test_candidates_of_one_unfetched_model_are_named_in_one_warning(
    tiny_pack: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ship_calibration(tiny_pack, with_writer())
    monkeypatch.setattr(demo, "DEMO_EMBEDDER", "hashing:64")
    monkeypatch.setattr(demo.ShippedCalibration, "fetched", lambda self: [])
    with pytest.warns(UserWarning) as caught:
        store = demo_store(MODEL)
    (warning,) = [w for w in caught if "left out" in str(w.message)]
    assert f"experts 'big' and 'writer' ({CANDIDATE_MODEL}) are left out" in str(warning.message)
    assert f"`compllm models fetch {CANDIDATE_MODEL}` adds them" in str(warning.message)
    assert names(store) == set(DEMO_EXPERTS)


def test_a_candidate_not_fetched_is_left_out_with_a_warning_until_it_is(
    tiny_pack: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ship_calibration(tiny_pack, calibration_data())
    monkeypatch.setattr(demo, "DEMO_EMBEDDER", "hashing:64")
    fetched: list[str] = []
    monkeypatch.setattr(demo.ShippedCalibration, "fetched", lambda self: list(fetched))
    with pytest.warns(UserWarning, match=f"`compllm models fetch {CANDIDATE_MODEL}` adds it"):
        store = demo_store(MODEL)
    calibration = store.calibration
    assert names(store) == set(DEMO_EXPERTS) and calibration is not None
    assert "big" not in calibration.seconds_per_call
    assert all("big" not in d.experts for d in calibration.domains.values())
    assert calibration.choose("biology", ["biology"]).expert is None  # the base model answers
    assert calibration.choose("mathematics", ["mathematics"]).expert == "mathematics"
    fetched.append("big")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = demo_store(MODEL)  # rebuilt with the candidate, and no warning
        assert names(again) == {*DEMO_EXPERTS, "big"}
        built = (again.path / "store.json").stat().st_ino
        assert (demo_store(MODEL).path / "store.json").stat().st_ino == built  # opened as is
    fetched.clear()
    with pytest.warns(UserWarning, match="is left out"):
        assert "big" not in names(demo_store(MODEL))  # its model was removed: rebuilt without


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("candidates"), "is not a calibration this version reads"),
        (lambda d: d["candidates"]["big"].update(texts=[]), "at least one text"),
        (lambda d: d["candidates"]["big"].update(model="no-such-model"), "catalogue alias"),
        (lambda d: d["candidates"]["big"].update(kind="runnable"), "kind is one of"),
        (lambda d: d["calibration"].update(model="other-model"), "measured on other-model"),
        (lambda d: d["calibration"]["domains"]["biology"].update(base_right=99), "outside"),
        (lambda d: d["calibration"]["domains"].pop("mathematics"), "unmeasured domains"),
    ],
    ids=[
        "no candidates",
        "no texts",
        "unknown model",
        "unbuildable kind",
        "another model",
        "bad counts",
        "unmeasured owner",
    ],
)
def test_a_malformed_pack_calibration_is_refused_naming_the_file(
    tiny_pack: Path, change: Callable[[dict[str, Any]], object], message: str
) -> None:
    data = calibration_data()
    change(data)
    ship_calibration(tiny_pack, data)
    with pytest.raises(PackError, match=re.escape(message)) as raised:
        shipped_calibration(MODEL)
    assert str(tiny_pack / packs.CALIBRATION) in str(raised.value)


def test_compllm_experts_packs_says_whether_a_pack_is_calibrated(
    tiny_pack: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["experts", "packs", "--json"]) == 0
    listed = {p["name"]: p for p in json.loads(capsys.readouterr().out)["packs"]}
    assert listed["tiny-test-pack"]["calibration"] is False
    ship_calibration(tiny_pack, calibration_data())
    assert main(["experts", "packs"]) == 0
    assert "decomposer: yes; calibration: yes (candidates: big)" in capsys.readouterr().out
