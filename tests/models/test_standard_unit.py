"""langchain-tests' standard unit suite for both chat models (no network, no real model)."""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest

pytest.importorskip("langchain_tests", reason="needs langchain-tests (the [dev] extra)")
pytest.importorskip("torch", reason="needs the [local] extra")
pytest.importorskip("langchain_openai", reason="needs the [remote] extra")

from langchain_core.language_models import BaseChatModel
from langchain_tests.unit_tests import ChatModelUnitTests

from compllm_graph.models import TransformersModel
from compllm_graph.models.remote import RemoteChatModel, endpoint_limit
from tests.standard_features import LocalChatFeatures

from .conftest import CharTokenizer, tiny_llama


@cache
def tiny_model() -> TransformersModel:
    return TransformersModel(tiny_llama(), CharTokenizer(), name="tiny", max_wait_ms=2.0)


class TestLocalChatModelStandard(LocalChatFeatures, ChatModelUnitTests):
    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"local": tiny_model(), "max_new_tokens": 8}


URL = "http://127.0.0.1:9/v1"  # never contacted: unit tests only build and bind


class TestRemoteChatModelStandard(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[BaseChatModel]:
        return RemoteChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {
            "model": "chemistry",
            "base_url": URL,
            "api_key": "EMPTY",
            "endpoint_limit": endpoint_limit(URL, 2),
        }
