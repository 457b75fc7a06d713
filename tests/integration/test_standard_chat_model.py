"""langchain-tests' standard integration suite for `LocalChatModel` on the real SmolLM2, on
both engines."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_tests.integration_tests import ChatModelIntegrationTests

from tests.conftest import shared_smollm2, shared_smollm2_llama
from tests.standard_features import LocalChatFeatures

pytestmark = pytest.mark.integration


class TestLocalChatModelIntegration(LocalChatFeatures, ChatModelIntegrationTests):
    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"local": shared_smollm2(), "max_new_tokens": 16}


class TestLlamaCppChatModelIntegration(TestLocalChatModelIntegration):
    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"local": shared_smollm2_llama(), "max_new_tokens": 16}
