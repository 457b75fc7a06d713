"""ExpertStore under faults and bad input: links, damaged adapter weights, crash leftovers.

Each test is a regression test: the store must never touch files outside its folder nor
delete what it did not write, must refuse a damaged adapter when it is added, and must tidy a
killed writer's leftovers when it is opened.
"""

from __future__ import annotations

import fcntl
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

pytest.importorskip("faiss", reason="needs the [router] extra")

import numpy as np
from safetensors.numpy import save_file

from compllm_graph.cli import main
from compllm_graph.expert_store import CorruptStoreError, ExpertStore, StoreError

CHEMISTRY = ["What is the molar mass of sodium chloride?", "Balance the combustion of methane."]
HISTORY = ["Who was the first emperor of Rome?", "When did the Berlin wall fall?"]
LAYER = "base_model.model.model.layers.0.self_attn"


@pytest.fixture
def store(tmp_path: Path) -> ExpertStore:
    created = ExpertStore.create(tmp_path / "store", "hashing:64")
    created.add_expert("chemistry", CHEMISTRY)
    created.add_expert("history", HISTORY)
    return created


def lora(folder: Path, tensors: dict[str, np.ndarray] | None = None) -> Path:
    """A peft-style LoRA folder adapting q_proj (tiny random matrices)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {"peft_type": "LORA", "r": 2, "target_modules": ["q_proj"], "base_model": "tiny"}
    (folder / "adapter_config.json").write_text(json.dumps(config))
    if tensors is None:
        tensors = {
            f"{LAYER}.q_proj.lora_A.weight": np.ones((2, 4), np.float32),
            f"{LAYER}.q_proj.lora_B.weight": np.ones((4, 2), np.float32),
        }
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    return folder


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# -- links inside the store ---------------------------------------------------------------------


@pytest.mark.parametrize("folder", ["index", "experts"])
def test_a_linked_store_folder_is_refused_and_its_targets_files_survive_add(
    store: ExpertStore, tmp_path: Path, folder: str
) -> None:
    outside = tmp_path / "elsewhere" / folder
    shutil.move(store.path / folder, outside)
    (outside / "user-notes.txt").write_text("mine")
    (outside / "photos").mkdir()
    (outside / "photos" / "cat.jpg").write_bytes(b"\xff\xd8")
    (store.path / folder).symlink_to(outside)
    before = files_under(outside)
    with pytest.raises(CorruptStoreError, match=rf"{folder} is a symbolic link .*copy"):
        ExpertStore.open(store.path)
    with pytest.raises(CorruptStoreError, match="is a symbolic link"):
        store.add_expert("physics", ["What is the speed of light?"])
    assert files_under(outside) == before


@pytest.mark.parametrize(
    "relative",
    [
        "store.json",
        "index/2.faiss",
        "experts/chemistry",
        "experts/chemistry/centroids.npy",
        "experts/dropped-in",  # a link the user put there, to a folder of their own
    ],
)
def test_a_link_among_the_stores_files_is_refused_on_open_and_write(
    store: ExpertStore, tmp_path: Path, relative: str
) -> None:
    path = store.path / relative
    outside = tmp_path / "elsewhere" / path.name
    outside.parent.mkdir()
    if path.exists():
        shutil.move(path, outside)
    else:
        outside.mkdir()
        (outside / "data.txt").write_text("mine")
    path.symlink_to(outside)
    before = files_under(outside.parent)
    with pytest.raises(CorruptStoreError, match=rf"{path.name} is a symbolic link"):
        ExpertStore.open(store.path)
    with pytest.raises(CorruptStoreError, match="is a symbolic link"):
        store.remove_expert("history")
    assert files_under(outside.parent) == before


def test_a_linked_store_folder_itself_is_fine(store: ExpertStore, tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to(store.path)
    reopened = ExpertStore.open(tmp_path / "link")
    reopened.add_expert("physics", ["What is the speed of light?"])
    assert [e.name for e in reopened.experts()] == ["chemistry", "history", "physics"]


# -- links inside an adapter folder ---------------------------------------------------------------


@pytest.mark.parametrize("linked", ["adapter_model.safetensors", "secrets.json"])
def test_a_symlink_among_the_adapter_files_is_refused(
    store: ExpertStore, tmp_path: Path, linked: str
) -> None:
    adapter = lora(tmp_path / "lora")
    outside = tmp_path / "outside" / linked
    outside.parent.mkdir()
    if (adapter / linked).exists():
        shutil.move(adapter / linked, outside)
    else:
        outside.write_text('{"token": "not for the store"}')
    (adapter / linked).symlink_to(outside)
    with pytest.raises(StoreError, match=rf"lora/{linked} is a symbolic link .*copy of the real"):
        store.add_expert("chemlora", CHEMISTRY, adapter=adapter)
    assert "chemlora" not in {e.name for e in ExpertStore.open(store.path).experts()}
    assert not any(b"not for the store" in data for data in files_under(store.path).values())


def test_a_valid_lora_is_copied_without_its_other_files(store: ExpertStore, tmp_path: Path) -> None:
    adapter = lora(tmp_path / "lora")
    (adapter / "training_args.bin").write_bytes(b"pickle")
    (adapter / "checkpoints").symlink_to(tmp_path)  # not copied, so not refused
    expert = store.add_expert("chemlora", CHEMISTRY, adapter=adapter)
    assert expert.adapter is not None
    assert files_under(expert.adapter) == {
        name: (adapter / name).read_bytes()
        for name in ("adapter_config.json", "adapter_model.safetensors")
    }


# -- damaged adapter weights --------------------------------------------------------------------


def _truncate(by: int) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        path.write_bytes(path.read_bytes()[:-by])

    return damage


def _header(header: object, data: bytes = b"") -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        raw = json.dumps(header).encode()
        path.write_bytes(len(raw).to_bytes(8, "little") + raw + data)

    return damage


def _tensors(**names: str) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        save_file({f"{LAYER}.{n}": np.ones((2, 2), np.float32) for n in names.values()}, str(path))

    return damage


_OVERLAPPING = {
    "a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]},
    "b": {"dtype": "U8", "shape": [2], "data_offsets": [1, 3]},
}


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        pytest.param(
            lambda p: p.write_bytes(b"this is not safetensors at all"),
            "not a safetensors file",
            id="garbage",
        ),
        pytest.param(lambda p: p.write_bytes(b""), "truncated or no header", id="empty"),
        pytest.param(
            lambda p: p.write_bytes(p.read_bytes()[:20]),
            "truncated or no header",
            id="truncated-header",
        ),
        pytest.param(
            lambda p: p.write_bytes((10).to_bytes(8, "little") + b"not json!!"),
            "not JSON",
            id="header-not-json",
        ),
        pytest.param(_header([1, 2]), "not a JSON object", id="header-not-object"),
        pytest.param(_truncate(4), "truncated or padded", id="truncated-data"),
        pytest.param(
            _header({"x": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 4]}}),
            "does not match its dtype and shape",
            id="size-mismatch",
        ),
        pytest.param(
            _header({"x": {"dtype": "F32", "shape": [1]}}, b"1234"),
            "malformed header entry",
            id="no-offsets",
        ),
        pytest.param(
            _header({"x": {"dtype": "F99", "shape": [1], "data_offsets": [0, 4]}}),
            "malformed header entry",
            id="unknown-dtype",
        ),
        pytest.param(_header(_OVERLAPPING, b"123"), "overlap or leave gaps", id="overlap"),
        pytest.param(_tensors(a="embed_tokens.weight"), "no LoRA weights", id="not-lora"),
        pytest.param(
            _tensors(a="q_proj.lora_A.weight"),
            "q_proj has lora_A or lora_B but not both",
            id="unpaired",
        ),
        pytest.param(
            _tensors(a="k_proj.lora_A.weight", b="k_proj.lora_B.weight"),
            "k_proj is not among the target_modules",
            id="untargeted-module",
        ),
    ],
)
def test_damaged_adapter_weights_are_refused_when_added(
    store: ExpertStore, tmp_path: Path, damage: Callable[[Path], None], message: str
) -> None:
    adapter = lora(tmp_path / "lora")
    damage(adapter / "adapter_model.safetensors")
    with pytest.raises(StoreError, match=message) as raised:
        store.add_expert("chemlora", CHEMISTRY, adapter=adapter)
    assert "adapter_model.safetensors" in str(raised.value)
    assert "chemlora" not in {e.name for e in ExpertStore.open(store.path).experts()}


def test_experts_add_with_garbage_weights_exits_1_with_a_one_line_error(
    store: ExpertStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    adapter = lora(tmp_path / "lora")
    (adapter / "adapter_model.safetensors").write_bytes(b"\x00garbage" * 100)
    data = tmp_path / "chem.txt"
    data.write_text("\n".join(CHEMISTRY))
    argv = ["experts", "add", "chemlora", "--data", str(data), "--adapter", str(adapter)]
    code = main([*argv, "--store", str(store.path)])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert "adapter_model.safetensors" in err and "Traceback" not in err


# -- crash leftovers and other people's files -----------------------------------------------------


def _leave_killed_writer_files(root: Path) -> list[Path]:
    tmp = root / "experts" / ".tmp-physics-k2j4x9_q"
    (tmp / "adapter").mkdir(parents=True)
    (tmp / "adapter" / "adapter_model.safetensors").write_bytes(bytes(1 << 20))
    temporary_index = root / "index" / ".3.faiss.ab12cd34"
    temporary_index.write_bytes(b"half")
    orphan = root / "index" / "7.faiss"
    orphan.write_bytes(b"orphan")
    return [tmp, temporary_index, orphan]


def test_a_killed_writers_leftovers_are_removed_on_open(store: ExpertStore) -> None:
    left = _leave_killed_writer_files(store.path)
    reopened = ExpertStore.open(store.path)
    assert [e.name for e in reopened.experts()] == ["chemistry", "history"]
    assert not any(path.exists() for path in left)


def test_leftovers_stay_while_another_process_uses_the_store(store: ExpertStore) -> None:
    left = _leave_killed_writer_files(store.path)
    with open(store.path / "store.lock", "a+") as other:  # another reader, mid-read
        fcntl.flock(other, fcntl.LOCK_SH)
        ExpertStore.open(store.path)
        assert all(path.exists() for path in left)
        fcntl.flock(other, fcntl.LOCK_UN)
    ExpertStore.open(store.path)
    assert not any(path.exists() for path in left)


def test_files_the_store_did_not_write_are_never_deleted(store: ExpertStore) -> None:
    mine = {
        "experts/notes.txt": "notes",
        "experts/Drafts/plan.txt": "a plan",
        "experts/draft/texts.txt": "a folder named like an expert, without expert.json",
        "experts/.tmp-backup/old.txt": "not a name the store makes",
        "index/README.md": "about the index",
        "index/backup/1.faiss": "a copy",
    }
    for relative, text in mine.items():
        (store.path / relative).parent.mkdir(parents=True, exist_ok=True)
        (store.path / relative).write_text(text)
    store.add_expert("physics", ["What is the speed of light?"])
    store.remove_expert("history")
    ExpertStore.open(store.path)
    assert {r: (store.path / r).read_text() for r in mine} == mine


def test_add_does_not_replace_a_folder_of_someone_elses_in_the_way(store: ExpertStore) -> None:
    folder = store.path / "experts" / "physics"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match=r"experts/physics is in the way .*move it out"):
        store.add_expert("physics", ["What is the speed of light?"])
    assert (folder / "notes.txt").read_text() == "mine"


def test_removed_and_crashed_expert_folders_are_still_removed(store: ExpertStore) -> None:
    leftover = store.path / "experts" / "physics"  # renamed in, then killed before the commit
    shutil.copytree(store.path / "experts" / "chemistry", leftover)
    store.remove_expert("history")
    assert sorted(p.name for p in (store.path / "experts").iterdir()) == ["chemistry"]
