"""`compllm train expert` on a tiny random-init Llama saved as a Hugging Face folder: `--base
FOLDER`, clear errors for a folder that is no model, a run killed with SIGKILL and resumed from its
last checkpoint, and two CPU processes under `accelerate launch` (the gloo backend)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from compllm_graph.cli import main
from compllm_graph.expert_store import ExpertStore
from compllm_graph.training.sft import CHECKPOINTS_DIR, last_checkpoint
from tests.training.tiny_folder import write_tiny_folder

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama and its tokenizer, as `compllm models safetensors` leaves a model."""
    return write_tiny_folder(tmp_path_factory.mktemp("base") / "tiny-llama")


def setup_run(folder: Path, records: int = 24) -> tuple[Path, Path]:
    """An addition question/answer file and an empty store (hashing embedder: no model)."""
    data = folder / "adder.jsonl"
    rows = [
        {"question": f"What is {i} plus {i}?", "answer": f"It is {2 * i}."} for i in range(records)
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    store = folder / "store"
    ExpertStore.create(store, "hashing:64")
    return data, store


def train_argv(base: Path, data: Path, store: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train", "expert", "adder", "--data", str(data), "--base", str(base),
        "--store", str(store), "--out", str(out), "--system-prompt", "You add.",
        "--lora-r", "4", "--lora-alpha", "8", "--lr", "5e-3", *extra,
    ]  # fmt: skip


def read_record(out: Path) -> dict:
    return json.loads((out / "training.json").read_text())


def test_train_expert_on_a_local_hugging_face_folder(base: Path, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    data, store = setup_run(tmp_path)
    out = tmp_path / "adapter"
    argv = train_argv(base, data, store, out, "--epochs", "2", "--batch-size", "4")
    assert main([*argv, "--save-every", "5", "--json"]) == 0
    record = read_record(out)
    assert (record["status"], record["steps"], record["total_steps"]) == ("finished", 12, 12)
    assert record["base"] == str(base) and record["objective"] == "answer"
    trainer = record["trainer"]
    assert trainer["library"] == "trl.SFTTrainer" and "trl" in trainer["versions"]
    assert (trainer["device"], trainer["precision"], trainer["processes"]) == ("cpu", "fp32", 1)
    assert len(record["loss"]["per_step"]) == 12
    assert ExpertStore.open(store).expert("adder").adapter is not None
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), str(out))
    config: Any = model.peft_config["default"]
    assert config.r == 4


def test_a_base_that_is_no_model_is_refused_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, store = setup_run(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(train_argv(empty, data, store, tmp_path / "a")) == 2
    assert "without config.json" in capsys.readouterr().err
    assert main(train_argv(tmp_path / "nowhere", data, store, tmp_path / "a")) == 2
    assert "not a known alias" in capsys.readouterr().err


def test_a_killed_run_resumes_from_its_last_checkpoint(base: Path, tmp_path: Path) -> None:
    data, store = setup_run(tmp_path)
    out = tmp_path / "adapter"
    # 24 records in batches of 4 for 8 epochs: 48 steps, a checkpoint every 4.
    argv = train_argv(base, data, store, out, "--epochs", "8", "--batch-size", "4")
    argv += ["--save-every", "4"]
    with (tmp_path / "killed.log").open("w") as log:
        child = subprocess.Popen(
            [sys.executable, "-m", "compllm_graph.cli", *argv],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
    try:
        wait_for(out / CHECKPOINTS_DIR / "checkpoint-8" / "trainer_state.json", child)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL, (tmp_path / "killed.log").read_text()[-2000:]
    checkpoint = last_checkpoint(out)
    assert checkpoint is not None and not (out / "training.json").exists()
    saved = json.loads((checkpoint / "trainer_state.json").read_text())
    before = [e["loss"] for e in saved["log_history"] if "loss" in e]
    assert 8 <= saved["global_step"] < 48 and len(before) == saved["global_step"]

    assert main([*argv, "--resume"]) == 0
    record = read_record(out)
    assert (record["status"], record["steps"]) == ("finished", 48)
    losses = record["loss"]["per_step"]
    assert len(losses) == 48 and losses[: len(before)] == [round(x, 4) for x in before]
    assert ExpertStore.open(store).expert("adder").adapter is not None


def test_two_processes_under_accelerate_launch_on_the_cpu(base: Path, tmp_path: Path) -> None:
    data, store = setup_run(tmp_path)
    out = tmp_path / "adapter"
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    assert accelerate is not None, "accelerate is part of the [train] extra"
    # `--multi_gpu` is accelerate's torchrun launcher (its `--cpu` starts several processes
    # only through MPI); with no accelerator visible the processes train on the CPU over gloo.
    launch = [
        accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(free_port()), "-m", "compllm_graph.cli",
    ]  # fmt: skip
    argv = train_argv(base, data, store, out, "--epochs", "2", "--batch-size", "4", "--json")
    done = subprocess.run(
        [*launch, *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "CUDA_VISIBLE_DEVICES": "",
            "OMP_NUM_THREADS": "1",
        },
    )
    assert done.returncode == 0, done.stderr[-3000:]
    record = read_record(out)
    trainer = record["trainer"]
    assert (trainer["processes"], trainer["backend"], trainer["device"]) == (2, "gloo", "cpu")
    # Two sequences per process per step: the same 12 steps as one process with batches of 4.
    assert (record["status"], record["steps"], record["total_steps"]) == ("finished", 12, 12)
    assert [e.name for e in ExpertStore.open(store).experts()] == ["adder"]
    assert (out / "adapter_model.safetensors").is_file()
    assert done.stdout.count('"name": "adder"') == 1  # only the main process reports


def wait_for(path: Path, child: subprocess.Popen[bytes], timeout: float = 240) -> None:
    """Poll until `path` exists; fail if the child exits or the time runs out first."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert child.poll() is None, f"the training process ended with {child.returncode}"
        assert time.monotonic() < deadline, f"no {path} after {timeout} s"
        time.sleep(0.05)


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on, for the launcher's rendezvous."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
