"""Stored experts on multi-LoRA servers: the client mapping and the `vllm serve` flags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("faiss", reason="needs the [router] extra")
pytest.importorskip("langchain_openai", reason="needs the [remote] extra")

import numpy as np
from safetensors.numpy import save_file

from compllm_graph.cli import main
from compllm_graph.expert_store import ExpertStore
from compllm_graph.expert_store.records import Expert, StoreError
from compllm_graph.expert_store.serving import remote_expert_chat_models, vllm_lora_args
from compllm_graph.models.remote import RemoteChatModel


def lora(folder: Path, rank: int) -> Path:
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": rank}))
    tensors = {f"base_model.model.q_proj.lora_{side}.weight": np.zeros((2, 2)) for side in "AB"}
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    return folder


def expert(name: str, adapter: Path | None, prompt: str | None = None) -> Expert:
    return Expert(name, "", "smollm2-135m-instruct", adapter, prompt, None, (1,))


def served(chat: object) -> RemoteChatModel:
    """The chat model at the end of a `with_system_prompt` chain (or the model itself)."""
    model = getattr(chat, "last", chat)
    assert isinstance(model, RemoteChatModel)
    return model


def test_each_expert_is_the_lora_of_its_name_on_its_server(tmp_path: Path) -> None:
    experts = [
        expert("chemistry", lora(tmp_path / "c", 16), "You are a chemist."),
        expert("biology", lora(tmp_path / "b", 8)),
        expert("general", None),  # no adapter: the server's base model
    ]
    where = {
        "chemistry": "http://10.0.0.1:8000/v1",
        "biology": "http://10.0.0.2:8000/v1",
        "general": "http://10.0.0.2:8000/v1",
    }
    models = remote_expert_chat_models(experts, where, base_model="smollm2", max_tokens=8)
    assert {n: served(m).model_name for n, m in models.items()} == {
        "chemistry": "chemistry",
        "biology": "biology",
        "general": "smollm2",
    }
    assert served(models["chemistry"]).openai_api_base == where["chemistry"]
    # one limit per server, shared by every expert on it
    assert served(models["biology"]).endpoint_limit is served(models["general"]).endpoint_limit
    assert (
        served(models["chemistry"]).endpoint_limit is not served(models["biology"]).endpoint_limit
    )
    prepend = models["chemistry"].first  # type: ignore[attr-defined]
    assert prepend.invoke("Q?")[0].content == "You are a chemist."
    with pytest.raises(ValueError, match="no endpoint for expert 'biology'"):
        remote_expert_chat_models(experts, {"chemistry": where["chemistry"]}, base_model="smollm2")


def test_vllm_flags_load_every_adapter_at_a_rank_vllm_accepts(tmp_path: Path) -> None:
    experts = [
        expert("chemistry", lora(tmp_path / "c", 12)),
        expert("biology", lora(tmp_path / "b", 4)),
        expert("general", None),
    ]
    assert vllm_lora_args(experts) == [
        "--enable-lora",
        "--max-loras",
        "2",
        "--max-lora-rank",
        "16",
        "--lora-modules",
        f"chemistry={(tmp_path / 'c').resolve()}",
        f"biology={(tmp_path / 'b').resolve()}",
    ]
    with pytest.raises(StoreError, match="nothing to serve"):
        vllm_lora_args([expert("general", None)])


def test_vllm_args_command_splits_experts_across_servers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ExpertStore.create(tmp_path / "store", "hashing:64")
    store.add_expert("chemistry", ["What is an acid?"], adapter=lora(tmp_path / "c", 8))
    store.add_expert("biology", ["What is a cell?"], adapter=lora(tmp_path / "b", 8))
    assert main(["experts", "vllm-args", "--store", str(store.path), "--only", "biology"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("--enable-lora --max-loras 1 --max-lora-rank 8 --lora-modules biology=")
    assert "chemistry" not in line
    assert main(["experts", "vllm-args", "--store", str(store.path), "--only", "law"]) == 1
    assert "no expert named ['law']" in capsys.readouterr().err
