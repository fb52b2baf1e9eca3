"""The entry points' own checks: group options named on the command line must exist."""

from __future__ import annotations

from pathlib import Path

import pytest

from segdil.cli import check_group_choices, group_choices


@pytest.fixture
def configs(tmp_path: Path) -> Path:
    for group, names in {"model": ["a", "b"], "dataset": ["camvid"]}.items():
        (tmp_path / group).mkdir()
        for name in names:
            (tmp_path / group / f"{name}.yaml").write_text("{}\n")
    return tmp_path


def test_options_in_folders_count_and_shared_parts_do_not(configs: Path) -> None:
    (configs / "experiment" / "camvid").mkdir(parents=True)
    for name in ("camvid/_base", "camvid/fast", "plain"):
        (configs / "experiment" / f"{name}.yaml").write_text("{}\n")
    assert group_choices(configs, "experiment") == ["camvid/fast", "plain"]
    check_group_choices(["experiment=camvid/fast"], configs)
    with pytest.raises(SystemExit):
        check_group_choices(["experiment=camvid/_base"], configs)


def test_known_options_values_and_other_overrides_pass(configs: Path) -> None:
    check_group_choices(["model=a", "+dataset=camvid", "model.width=8", "model=a,b", "experiment=x", "~model", "model=null"], configs)
    assert group_choices(configs, "model") == ["a", "b"]


@pytest.mark.parametrize("argument", ["model=c", "model=a,c", "++model=c"])
def test_an_unknown_option_exits_2_with_the_choices(configs: Path, argument: str, caplog) -> None:
    with pytest.raises(SystemExit) as stop:
        check_group_choices([argument], configs)
    assert stop.value.code == 2
    assert caplog.records[-1].getMessage() == "error: model=c: no such option of model; the choices are a, b"
