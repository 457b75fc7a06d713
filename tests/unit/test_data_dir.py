"""Where the data folder is: the env variable, a source checkout's `shared/data`, or the home."""

from __future__ import annotations

from pathlib import Path

import pytest

from compllm_graph.data_dir import (
    DATA_DIR_VARIABLE,
    compllm_home,
    default_data_dir,
    missing_data_dir,
    source_checkout,
)


@pytest.fixture(autouse=True)
def no_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(DATA_DIR_VARIABLE, raising=False)
    monkeypatch.setenv("COMPLLM_HOME", str(tmp_path / "home"))


def installed(root: Path) -> Path:
    package = root / "lib" / "site-packages" / "compllm_graph"
    package.mkdir(parents=True)
    return package


def checkout(root: Path, project: str = "compllm-graph") -> Path:
    package = root / "main" / "compllm_graph"
    package.mkdir(parents=True)
    (package.parent / "pyproject.toml").write_text(f'[project]\nname = "{project}"\n')
    return package


def test_a_source_checkout_uses_the_shared_data_beside_it(tmp_path: Path) -> None:
    package = checkout(tmp_path)
    assert source_checkout(package) == package.parent
    assert default_data_dir(package) == tmp_path / "shared" / "data"


def test_an_installed_package_looks_in_the_compllm_home_not_site_packages(tmp_path: Path) -> None:
    package = installed(tmp_path)
    assert source_checkout(package) is None
    assert default_data_dir(package) == tmp_path / "home" / "data" == compllm_home() / "data"


def test_another_projects_pyproject_is_no_checkout(tmp_path: Path) -> None:
    package = checkout(tmp_path, project="something-else")
    assert source_checkout(package) is None
    assert default_data_dir(package) == tmp_path / "home" / "data"


def test_the_variable_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATA_DIR_VARIABLE, str(tmp_path / "mine"))
    assert default_data_dir(checkout(tmp_path)) == tmp_path / "mine"
    assert default_data_dir(installed(tmp_path)) == tmp_path / "mine"


def test_a_missing_folder_says_how_to_point_at_the_data(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert missing_data_dir(tmp_path / "nowhere")
    err = capsys.readouterr().err
    assert str(tmp_path / "nowhere") in err and "--data-dir" in err and DATA_DIR_VARIABLE in err
    assert not missing_data_dir(tmp_path)


def test_the_model_cache_and_the_data_share_the_home() -> None:
    from compllm_graph.models.download import home  # core: the cache helpers need no extra

    assert home() == compllm_home()
