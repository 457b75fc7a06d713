"""The whole `compllm` parser, and the `compllm train` flags that take their help from the config
fields. Building the train group imports the training stack (torch, peft), so these checks live
here rather than in tests/unit (where `tests/unit/test_config_help.py` checks the other flags)."""

from __future__ import annotations

import pytest

from compllm_graph._help import field_help
from compllm_graph.cli import build_parser
from compllm_graph.training.settings import LoraSettings, TrainSettings
from tests.unit.test_config_help import _flag

# (command, flag) -> the config field the flag sets.
TRAIN_FLAGS: dict[tuple[str, str], tuple[type, str]] = {
    ("train expert", "--epochs"): (TrainSettings, "epochs"),
    ("train expert", "--lr"): (TrainSettings, "learning_rate"),
    ("train decomposer", "--seed"): (TrainSettings, "seed"),
    ("train decomposer", "--lora-r"): (LoraSettings, "r"),
    ("train expert", "--lora-top-layers"): (LoraSettings, "top_layers"),
}


@pytest.mark.parametrize(("command", "flag"), list(TRAIN_FLAGS), ids=" ".join)
def test_train_flags_take_their_help_from_the_config_field(command: str, flag: str) -> None:
    config, name = TRAIN_FLAGS[(command, flag)]
    action = _flag(command, flag)
    assert action.help is not None and action.help.startswith(field_help(config, name)), (
        f"compllm {command} {flag}: {action.help!r}"
    )


def test_parser_knows_ask_and_its_options() -> None:
    # Every group's parser, built in full.
    args = build_parser().parse_args(["ask", "why?", "--json", "--scheduler", "waves"])
    assert (args.question, args.json, args.scheduler) == ("why?", True, "waves")
