"""langchain-tests' standard integration suite for `LocalChatModel` on the real SmolLM2, on
both engines."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_tests.integration_tests import ChatModelIntegrationTests

from compllm_graph.models import LocalChatModel
from tests.conftest import shared_smollm2, shared_smollm2_llama

pytestmark = pytest.mark.integration


class TestLocalChatModelIntegration(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[BaseChatModel]:
        return LocalChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"local": shared_smollm2(), "max_new_tokens": 16}

    @property
    def has_tool_calling(self) -> bool:
        return False

    @property
    def has_structured_output(self) -> bool:
        return False

    @property
    def supports_model_override(self) -> bool:
        return False

    @property
    def returns_usage_metadata(self) -> bool:
        return True


class TestLlamaCppChatModelIntegration(TestLocalChatModelIntegration):
    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"local": shared_smollm2_llama(), "max_new_tokens": 16}
