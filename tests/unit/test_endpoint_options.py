"""`compllm eval answers --endpoint`'s options, and `RemoteModel`, on fakes (no real model).

Contradicting options are refused with exit 2 before anything is loaded or contacted;
`RemoteModel` turns local generation settings into OpenAI requests and checks what a server
serves; a request that fails for good is counted on its endpoint, one closed early is not.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel

from compllm_graph.cli import main

RECORD = {
    "id": "q0",
    "question": "What is 6 times 7?",
    "parts": [{"question": "What is 6 times 7?", "answer": "42", "choices": None, "domain": "m"}],
    "edges": [],
}
REMOTE = importlib.util.find_spec("langchain_openai") is not None
needs_remote = pytest.mark.skipif(not REMOTE, reason="needs the [remote] extra")


@pytest.fixture
def bench_file(tmp_path: Path) -> Path:
    path = tmp_path / "p2.jsonl"
    path.write_text(json.dumps(RECORD) + "\n")
    return path


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--retries", "1"], "--retries applies only with --endpoint URL"),
        (
            ["--endpoint-concurrency", "2", "--endpoint-grammar", "vllm"],
            "--endpoint-concurrency, --endpoint-grammar apply only with --endpoint URL",
        ),
        (["--served-decomposer", "dec"], "--served-decomposer applies only with --endpoint"),
        (
            ["--endpoint", "http://127.0.0.1:9/v1", "--engine", "transformers", "--threads", "2"],
            "--engine, --threads set the in-process engine; with --endpoint the server runs",
        ),
        (
            ["--endpoint", "http://127.0.0.1:9/v1", "--max-batch-size", "1"],
            "--max-batch-size sets the in-process engine; with --endpoint the server runs",
        ),
        (
            ["--endpoint", "http://127.0.0.1:9/v1", "--api-key-env", "COMPLLM_TEST_UNSET_KEY"],
            "--api-key-env COMPLLM_TEST_UNSET_KEY: that variable is not set",
        ),
    ],
)
def test_contradicting_options_exit_2_before_anything_runs(
    bench_file: Path,
    flags: list[str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    monkeypatch.delenv("COMPLLM_TEST_UNSET_KEY", raising=False)
    outputs = bench_file.with_name("out.jsonl")
    assert main(["eval", "answers", str(bench_file), "--outputs", str(outputs), *flags]) == 2
    assert message in capsys.readouterr().err
    assert not outputs.exists()


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--endpoint-concurrency", "0", "must be at least 1"),
        ("--retries", "-1", "must be at least 0"),
        ("--endpoint-timeout", "0", "must be positive"),
        ("--endpoint-grammar", "llama", "invalid choice"),
        ("--max-batch-size", "0", "must be at least 1"),
    ],
)
def test_out_of_range_endpoint_numbers_are_refused_by_the_parser(
    bench_file: Path, flag: str, value: str, message: str, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit):
        main(["eval", "answers", str(bench_file), "--endpoint", "http://h/v1", flag, value])
    assert message in capsys.readouterr().err


@needs_remote
def test_a_url_that_is_not_http_is_refused(bench_file: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["eval", "answers", str(bench_file), "--endpoint", "ftp://host/v1"]) == 2
    assert "base_url must be an http(s) URL" in capsys.readouterr().err


@needs_remote
def test_local_settings_become_openai_request_fields() -> None:
    from compllm_graph.models.remote import RemoteModel

    url = "http://127.0.0.1:9/v1"  # never contacted: `served` is given
    vllm = RemoteModel(url, "base", served=["base", "x"], grammar="vllm", max_retries=0)
    chat = vllm.chat_model(max_new_tokens=7, grammar='root ::= "a"', stop=["\n"], seed=3)
    assert (chat.model_name, chat.max_tokens, chat.temperature) == ("base", 7, 0.0)
    assert chat.extra_body == {"structured_outputs": {"grammar": 'root ::= "a"'}}
    assert chat.stop == ["\n"] and chat.seed == 3 and chat.max_retries == 0
    plain = RemoteModel(url, "base", served=["base"])
    assert plain.chat_model(grammar='root ::= "a"').extra_body is None  # compllm serve
    assert plain.chat_model(do_sample=True, temperature=0.7).temperature == 0.7
    assert plain.chat_model(temperature=0.7).temperature == 0.0  # greedy, as locally
    assert plain.chat_model(lookup=object()).model_name == "base"  # changes no output: dropped
    with pytest.raises(ValueError, match=r"\['logits_processor', 'num_beams'\] cannot be sent"):
        plain.chat_model(logits_processor=object(), num_beams=2)
    with pytest.raises(ValueError, match="grammar must be one of"):
        RemoteModel(url, "base", served=["base"], grammar="gbnf")  # type: ignore[arg-type]


@needs_remote
def test_adapters_are_checked_against_what_the_server_serves(tmp_path: Path) -> None:
    from compllm_graph.adapter_folder import AdapterError
    from compllm_graph.models.remote import EndpointError, RemoteModel

    url = "http://127.0.0.1:9/v1"
    folder = tmp_path / "decomposer-v2"
    served = ["base", "chemistry", "decomposer"]
    model = RemoteModel(url, "base", served=served, adapter_names={folder: "decomposer"})
    model.add_adapter("chemistry", tmp_path / "chemistry")
    model.add_adapter("decomposer_0123456789", folder)  # the name a custom folder gets
    assert model.adapters == ("chemistry", "decomposer_0123456789")
    assert model.chat_model(adapter="decomposer_0123456789").model_name == "decomposer"
    assert model.chat_model(adapter="chemistry").model_name == "chemistry"
    with pytest.raises(AdapterError, match=r"--lora-modules biology=.*--adapter biology="):
        model.add_adapter("biology", tmp_path / "biology")
    with pytest.raises(AdapterError, match="unknown adapter 'biology'"):
        model.chat_model(adapter="biology")
    with pytest.raises(EndpointError, match=r"does not serve 'other'; it serves \['base'"):
        RemoteModel(url, "other", served=served)


@needs_remote
def test_failures_are_counted_and_a_stream_closed_early_is_not() -> None:
    pytest.importorskip("starlette", reason="needs the [serve] extra")
    from compllm_graph.models.remote import RemoteModel, served_models
    from compllm_graph.serve import create_app, serve_in_thread

    app = create_app({"base": FakeListChatModel(responses=["a long streamed reply"] * 4)})
    with serve_in_thread(app) as url:
        assert [m["id"] for m in served_models(url)] == ["base"]
        model = RemoteModel(url, "base", max_retries=0)
        assert model.served == ("base",)
        chat = model.chat_model(max_new_tokens=16)
        for _ in chat.stream("hello"):
            break  # the reader stops reading: not a failure of the server
        assert chat.invoke("hello").content == "a long streamed reply"
        assert model.limit.failures == 0 and model.limit.last_failure is None
        with pytest.raises(Exception, match="temperature"):
            chat.invoke("hello", temperature=5)  # the server answers 400
        assert model.limit.failures == 1 and "400" in str(model.limit.last_failure)
