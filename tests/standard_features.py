"""What `LocalChatModel` supports, for langchain-tests' standard suites (unit and integration)."""

from __future__ import annotations

from langchain_core.language_models import BaseChatModel

from compllm_graph.models import LocalChatModel


class LocalChatFeatures:
    """Mixed in before a langchain-tests suite class, whose properties these override."""

    @property
    def chat_model_class(self) -> type[BaseChatModel]:
        return LocalChatModel

    @property
    def has_tool_calling(self) -> bool:
        return False

    @property
    def has_structured_output(self) -> bool:
        return False

    @property
    def supports_model_override(self) -> bool:
        return False  # one loaded model; experts are adapters, chosen by `adapter=`

    @property
    def returns_usage_metadata(self) -> bool:
        return True
