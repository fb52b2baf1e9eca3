"""`--help` of the entry points: one line saying what the script does, then only its groups."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import CONFIGS, REPO
from segdil.cli import group_choices


def help_text(script: str) -> str:
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    result = subprocess.run([sys.executable, str(REPO / script), "--help"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def listed_groups(text: str) -> dict[str, list[str]]:
    """The `group: a, b, c` lines of the config groups section."""
    section = text.split("== Config groups: group=option ==\n")[1].split("\n\n")[0]
    return {key.strip(): value.strip().split(", ") for key, value in (line.split(":", 1) for line in section.splitlines())}


def options(group: str) -> list[str]:
    return group_choices(CONFIGS, group)


@pytest.mark.parametrize(
    ("script", "groups"),
    [
        ("train.py", {"model", "dataset", "aug", "optim", "schedule", "loss", "trainer", "experiment", "debug"}),
        ("eval.py", {"dataset", "aug", "inference@eval"}),
    ],
)
def test_help_says_what_the_script_does_and_lists_only_its_groups(script: str, groups: set[str]) -> None:
    text = help_text(script)
    first = text.splitlines()[0]
    assert first.startswith(f"{script}: ") and first.endswith("run directory.")
    listed = listed_groups(text)
    assert set(listed) == groups
    for key, choices in listed.items():
        assert choices == options(key.split("@")[0]), key  # read from configs/, never stale
    assert "\ndataset:\n" in text.split("== Config: override any key with key=value ==")[1]  # then the config
