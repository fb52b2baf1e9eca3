"""scripts/reproduce.py end to end on the tiny trees in the official layouts (tests/trees.py):
the data check, every stage chained through model.init_from, the score, the paper line."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from conftest import CONFIGS, REPO
from segdil.engine.checkpoint import load_checkpoint
from test_experiments import TINY, voc_tree

pytestmark = pytest.mark.e2e
ENV = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "OMP_NUM_THREADS": "1"}


def reproduce(*overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "scripts/reproduce.py", *overrides], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def voc(tmp_path_factory) -> Path:
    return voc_tree(tmp_path_factory.mktemp("voc"))


def test_the_two_stages_of_yu_koltun_in_one_command(voc: Path, tmp_path: Path) -> None:
    result = reproduce("experiment=voc/dilation8_context", f"dataset.root={voc}", *TINY, f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    frontend, context = tmp_path / "voc_dilation8_frontend", tmp_path / "voc_dilation8_context"
    # Stage 2 started from stage 1's last.pt and kept its front end frozen.
    first, second = (load_checkpoint(run / "checkpoints/last.pt") for run in (frontend, context))
    assert f"init_from: {frontend / 'checkpoints/last.pt'}" in second["config"]
    front_end = [key for key in first["model"] if key.startswith(("backbone.", "head."))]
    assert front_end and all(torch.equal(first["model"][key], second["model"][key]) for key in front_end)
    # The score is eval.py's on the last stage's val split, and the line sets it beside 71.3.
    scored = json.loads((context / "eval/metrics.json").read_text())
    assert scored["split"] == "val" and scored["num_images"] == 2
    line = next(line for line in result.stdout.splitlines() if line.startswith("paper "))
    paper, here, difference = (float(v) for v in re.match(r"paper ([\d.]+) / here ([\d.]+) / difference ([-+\d.]+) ", line).groups())
    assert paper == 71.3 and here == pytest.approx(100 * scored["mIoU"], abs=0.005)
    assert difference == pytest.approx(here - paper, abs=0.01)
    summary = json.loads((tmp_path / "reproduce.json").read_text())
    assert [row["stage"] for row in summary["stages"]] == ["voc/dilation8_frontend", "voc/dilation8_context"]
    assert summary["machine"]["cpu_class"]


def test_a_missing_tree_stops_before_training_with_one_line(tmp_path: Path) -> None:
    result = reproduce("experiment=voc/dilation8_frontend", f"dataset.root={tmp_path / 'nowhere'}", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2
    errors = [line for line in (result.stdout + result.stderr).splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and f"dataset.root={tmp_path / 'nowhere'}: no such folder; expected" in errors[0]
    assert "ImageSets/Segmentation/train_aug.txt" in errors[0]
    assert not list((tmp_path / "run").glob("voc_*"))  # no stage started


def test_a_recipe_without_a_paper_number_is_refused(tmp_path: Path) -> None:
    result = reproduce("experiment=camvid/fast", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 2 and "experiment=camvid/fast: expected a paper recipe" in result.stdout + result.stderr


def test_several_processes_are_refused(tmp_path: Path) -> None:
    """Stages are read back and scored as soon as rank 0 wrote them: one process only."""
    result = subprocess.run([sys.executable, "scripts/reproduce.py", "experiment=voc/dilation8_frontend", f"hydra.run.dir={tmp_path}"],
                            cwd=REPO, env={**ENV, "RANK": "0", "WORLD_SIZE": "2"}, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "error: reproduce.py runs in one process" in result.stdout + result.stderr


def test_the_score_takes_the_papers_evaluation_settings() -> None:
    """DeepLabv3's 77.21 is TF DeepLab's evaluation on 513x513 padded images: eval.pad_to."""
    spec = importlib.util.spec_from_file_location("reproduce", REPO / "scripts" / "reproduce.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        stage = compose("train", ["experiment=voc/deeplabv3_r101"])
        cfg = script.eval_config(stage, stage.paper, Path("last.pt"), batch_size=1)
    assert list(cfg.eval.pad_to) == [513, 513] and cfg.eval.mode == "whole"
    assert cfg.dataset.split == "val" and cfg.dataset.train_split == "train_aug" and cfg.aug == stage.aug
    assert (cfg.checkpoint, cfg.batch_size) == ("last.pt", 1)
