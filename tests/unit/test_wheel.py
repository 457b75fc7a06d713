"""The core wheel holds code only: under 1 MB, no adapter weights (they ship as expert packs)."""

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


def test_the_core_wheel_is_code_only_and_under_1_mb(tmp_path: Path) -> None:
    pytest.importorskip("setuptools", minversion="77", reason="builds offline with the backend")
    # Built from a copy, offline, so that the checkout gets no build/ or egg-info from it.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    skipped = shutil.ignore_patterns("__pycache__", "*.pyc", ".gguf", "*.gguf", "*.egg-info")
    shutil.copytree(REPO / "compllm_graph", source / "compllm_graph", ignore=skipped)
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    build += ["--no-index", "-q", "-w", str(tmp_path / "dist"), str(source)]
    subprocess.run(build, check=True, capture_output=True, env={**os.environ, "PIP_NO_INPUT": "1"})
    (wheel,) = (tmp_path / "dist").glob("compllm_graph-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert wheel.stat().st_size < LIMIT_BYTES, f"{wheel.name}: {wheel.stat().st_size} bytes"
    assert not [n for n in names if n.endswith((".safetensors", ".gguf", ".bin"))]
    assert all(n.startswith(("compllm_graph/", "compllm_graph-")) for n in names), names
    # The routing data stays: it is the router's, for every base model.
    assert "compllm_graph/expert_store/demo_data/calibration.jsonl" in names
