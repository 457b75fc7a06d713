"""Config dataclasses document every field in `help` metadata (as peft's do); CLI flags reuse it."""

from __future__ import annotations

import argparse
import ast
import dataclasses
from pathlib import Path

import pytest

# The package checks for the [train] extra without importing torch.
pytest.importorskip(
    "compllm_graph.training", reason="needs the [train] extra", exc_type=ImportError
)

from compllm_graph._help import field_help
from compllm_graph.cli import build_parser
from compllm_graph.expert_store.records import RetrievalSettings
from compllm_graph.models.lookup import LookupConfig
from compllm_graph.models.requests import GenerationSettings
from compllm_graph.nodes.execute import ExpertPolicy
from compllm_graph.sandbox import SandboxLimits
from compllm_graph.scheduling import DeviceLimits
from compllm_graph.training.settings import LoraSettings, TrainSettings

PACKAGE = Path(__file__).resolve().parents[2] / "compllm_graph"

CONFIGS: list[type] = [
    DeviceLimits,
    ExpertPolicy,
    GenerationSettings,
    LookupConfig,
    LoraSettings,
    RetrievalSettings,
    SandboxLimits,
    TrainSettings,
]
"""The public config dataclasses."""

CONFIG_SUFFIXES = ("Config", "Limits", "Options", "Policy", "Settings")
# Evaluation and the data layer have no config dataclasses.
NOT_YET = ("evaluation", "datasets")

# (command, flag) -> the config field the flag sets.
FLAGS: dict[tuple[str, str], tuple[type, str]] = {
    ("ask", "--max-new-tokens"): (GenerationSettings, "max_new_tokens"),
    ("ask", "--decomposer-beams"): (GenerationSettings, "num_beams"),
    ("serve", "--max-new-tokens"): (GenerationSettings, "max_new_tokens"),
    ("experts retrieval", "--k"): (RetrievalSettings, "k"),
    ("experts retrieval", "--floor"): (RetrievalSettings, "floor"),
    # `compllm train`'s flags: tests/training/test_train_flags.py (the group loads torch).
}


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.__name__)
def test_every_field_of_a_config_has_help(config: type) -> None:
    missing = [f.name for f in dataclasses.fields(config) if not f.metadata.get("help")]
    assert not missing, f"{config.__name__} fields without help metadata: {missing}"
    for f in dataclasses.fields(config):
        assert field_help(config, f.name) == f.metadata["help"]


def test_every_public_config_dataclass_is_checked() -> None:
    found = set()
    for path in PACKAGE.rglob("*.py"):
        if path.relative_to(PACKAGE).parts[0] in NOT_YET:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.ClassDef)
                and not node.name.startswith("_")
                and node.name.endswith(CONFIG_SUFFIXES)
                and any("dataclass" in ast.unparse(d) for d in node.decorator_list)
            ):
                found.add(node.name)
    assert found == {c.__name__ for c in CONFIGS}, "add new config dataclasses to CONFIGS"


def _flag(command: str, flag: str) -> argparse.Action:
    words = command.split()
    parser = build_parser(words[0])
    for word in words:  # "train expert": the train group, then its expert command
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = commands.choices[word]
    return next(a for a in parser._actions if flag in a.option_strings)


@pytest.mark.parametrize(("command", "flag"), list(FLAGS), ids=" ".join)
def test_cli_flags_take_their_help_from_the_config_field(command: str, flag: str) -> None:
    config, name = FLAGS[(command, flag)]
    action = _flag(command, flag)
    assert action.help is not None and action.help.startswith(field_help(config, name)), (
        f"compllm {command} {flag}: {action.help!r}"
    )


def test_field_help_names_what_is_wrong() -> None:
    with pytest.raises(KeyError, match="has no field 'timeot'"):
        field_help(ExpertPolicy, "timeot")
    with pytest.raises(TypeError, match="not a dataclass"):
        field_help(int, "real")
    assert field_help(ExpertPolicy(), "retries") == field_help(ExpertPolicy, "retries")
