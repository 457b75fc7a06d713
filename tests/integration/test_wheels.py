"""Wheels built by pip in a subprocess: the core wheel holds code only (under 1 MB, no adapter
weights: they ship as expert packs), and a pack laid out as docs/packs.md says is discovered."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LIMIT_BYTES = 1_000_000


def pip_wheel(project: Path, dist: Path) -> Path:
    """Build `project` into a wheel in `dist` with pip, offline and without build isolation."""
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    build += ["--no-index", "-q", "-w", str(dist), str(project)]
    subprocess.run(build, check=True, capture_output=True, env={**os.environ, "PIP_NO_INPUT": "1"})
    (wheel,) = dist.glob("*.whl")
    return wheel


def test_the_core_wheel_is_code_only_and_under_1_mb(tmp_path: Path) -> None:
    pytest.importorskip("setuptools", minversion="77", reason="builds offline with the backend")
    # Built from a copy, offline, so that the checkout gets no build/ or egg-info from it.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    skipped = shutil.ignore_patterns("__pycache__", "*.pyc", ".gguf", "*.gguf", "*.egg-info")
    shutil.copytree(REPO / "compllm_graph", source / "compllm_graph", ignore=skipped)
    wheel = pip_wheel(source, tmp_path / "dist")
    assert wheel.name.startswith("compllm_graph-")
    names = zipfile.ZipFile(wheel).namelist()
    assert wheel.stat().st_size < LIMIT_BYTES, f"{wheel.name}: {wheel.stat().st_size} bytes"
    assert not [n for n in names if n.endswith((".safetensors", ".gguf", ".bin"))]
    assert all(n.startswith(("compllm_graph/", "compllm_graph-")) for n in names), names
    # The routing data stays: it is the router's, for every base model.
    assert "compllm_graph/expert_store/demo_data/calibration.jsonl" in names


def test_a_pack_built_from_a_folder_and_a_pyproject_is_discovered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The layout docs/packs.md gives, built into a wheel by setuptools and unpacked as pip
    installs it: found through its entry point, its adapters used by the demo store."""
    pytest.importorskip("faiss", reason="the demo store needs the [router] extra")
    from compllm_graph.decomposer import adapter_for
    from compllm_graph.expert_store.demo import build_demo_store, shipped_experts
    from compllm_graph.packs import ENTRY_POINT_GROUP, installed_packs, pack_for
    from tests.unit.expert_store.test_packs import MODEL, PUBLIC_ID, pack_folder

    monkeypatch.setenv("COMPLLM_HOME", str(tmp_path / "home"))
    project = tmp_path / "my-pack"
    pack_folder(project / "my_tiny_pack")
    (project / "pyproject.toml").write_text(
        "[build-system]\n"
        'requires = ["setuptools>=77"]\n'
        'build-backend = "setuptools.build_meta"\n\n'
        "[project]\n"
        'name = "my-tiny-pack"\n'
        'version = "1.2.0"\n\n'
        f'[project.entry-points."{ENTRY_POINT_GROUP}"]\n'
        f'"{MODEL}" = "my_tiny_pack"\n\n'
        "[tool.setuptools]\n"
        "include-package-data = false\n"
        'packages = ["my_tiny_pack"]\n\n'
        "[tool.setuptools.package-data]\n"
        'my_tiny_pack = ["**/*.json", "**/*.safetensors"]\n'
    )
    wheel = pip_wheel(project, tmp_path / "dist")
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    try:
        pack = pack_for(MODEL)
        assert pack is not None and (pack.name, pack.version) == ("my-tiny-pack", "1.2.0")
        assert pack.folder == (tmp_path / "site" / "my_tiny_pack").resolve()
        assert pack in installed_packs() and pack_for(PUBLIC_ID) == pack
        assert shipped_experts(MODEL) == {"biology": pack.folder / "experts" / "biology"}
        assert adapter_for(MODEL) == pack.decomposer() == pack.folder / "decomposer"
        store = build_demo_store(tmp_path / "store", base=MODEL, embedder="hashing:64")
        experts = {e.name: e for e in store.experts()}
        assert experts["biology"].adapter is not None and experts["biology"].base_model == MODEL
        assert all(e.adapter is None for n, e in experts.items() if n != "biology")
    finally:
        sys.modules.pop("my_tiny_pack", None)
