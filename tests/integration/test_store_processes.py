"""ExpertStore writers in two processes at once: the store's file lock keeps every write."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("faiss", reason="needs the [router] extra")

from compllm_graph.expert_store import ExpertStore


def test_two_processes_adding_experts_at_once_lose_nothing(tmp_path: Path) -> None:
    root = tmp_path / "shared"
    store = ExpertStore.create(root, "hashing:64")
    script = textwrap.dedent(
        """
        import sys
        from compllm_graph.expert_store import ExpertStore
        store = ExpertStore.open(sys.argv[1])
        for i in range(12):
            store.add_expert(f"{sys.argv[2]}-{i}", [f"text {i} from {sys.argv[2]}", "more text"])
        """
    )
    workers = [
        subprocess.Popen([sys.executable, "-c", script, str(root), who])
        for who in ("alpha", "beta")
    ]
    assert [w.wait(timeout=120) for w in workers] == [0, 0]
    store.reload()
    expected = sorted(f"{who}-{i}" for who in ("alpha", "beta") for i in range(12))
    assert [e.name for e in store.experts()] == expected
    _, rows, _ = store.load_index()
    assert rows == expected
