"""Every shipped recipe (configs/experiment/<family>/<name>.yaml) composes to exactly the config
kept for it in tests/recipes/, resolves in at most two levels of defaults, and trains for two
iterations on a tiny tree in the official layout of its own dataset; the staged Yu & Koltun
schedule chains its three stages, as does CamVid's staged recipe; each CamVid module twin differs
from its recipe by the module."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from omegaconf import OmegaConf

from conftest import CONFIGS, REPO
from segdil.cli import group_choices
from segdil.engine.checkpoint import load_checkpoint
from segdil.engine.trainer import Trainer
from trees import camvid_mask, make_camvid, make_cityscapes, make_sbd, make_voc

EXPERIMENTS = group_choices(CONFIGS, "experiment")  # e.g. camvid/fast; not the shared camvid/_base
RECIPES = Path(__file__).parent / "recipes"  # <family>/<name>.yaml: the composed job config of each
SNAPSHOTS = sorted(path.relative_to(RECIPES).with_suffix("").as_posix() for path in RECIPES.rglob("*.yaml"))
# Shrinks any recipe to seconds: a width-8 backbone (no ImageNet weights exist at that width) on
# 16x16 crops, batch 2, two iterations, data loaded in the test's own process.
TINY = [
    "model.backbone.width=8",
    "model.backbone.weights=null",
    "aug.crop_size=[16,16]",
    "data.batch_size=2",
    "data.val_batch_size=2",
    "data.num_workers=0",
    "trainer.max_iters=2",
    "trainer.val_every=2",
    "trainer.val_panels=1",
    "trainer.progress=false",
]


def voc_tree(root: Path) -> Path:
    """VOC 2012 and SBD as downloaded, then scripts/prepare_voc_sbd.py: serves voc and voc_aug."""
    make_voc(root / "voc", {"train": ["t1", "t2"], "val": ["v1", "v2"]}, {"t1": 3, "t2": 7, "v1": 9, "v2": 15}, unlabelled=("s1", "s2"))
    make_sbd(root / "sbd", {"train": ["s1", "t2"], "val": ["s2"]}, {"s1": 12, "t2": 7, "s2": 20})
    spec = importlib.util.spec_from_file_location("prepare_voc_sbd", REPO / "scripts" / "prepare_voc_sbd.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.prepare(root / "voc", root / "sbd")
    return root / "voc"


def cityscapes_tree(root: Path) -> Path:
    """leftImg8bit / gtFine with label ids of 0..33 (train ids and ignore after mapping)."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        names = [f"aachen_00000{k}_000019" for k in range(4)]
        make_cityscapes(root, split, {name: rng.integers(0, 34, (24, 32), dtype=np.uint8) for name in names}, {})
    return root


def camvid_tree(root: Path) -> Path:
    for split in ("train", "val"):
        make_camvid(root, split, {f"{split}{k}": camvid_mask(k) for k in range(4)})
    return root


# The dataset class an experiment trains on -> the builder of a tiny tree in its layout.
TREES = {"PascalVOC": voc_tree, "Cityscapes": cityscapes_tree, "CamVid": camvid_tree}


@pytest.fixture(scope="module")
def trees(tmp_path_factory) -> dict[str, Path]:
    return {name: build(tmp_path_factory.mktemp(name)) for name, build in TREES.items()}


def tiny(compose, experiment: str, trees: dict[str, Path], *overrides: str):
    """The experiment's config on the tree of its own dataset, shrunk by TINY."""
    dataset = compose("train", [f"experiment={experiment}"]).dataset._target_.rsplit(".", 1)[-1]
    return compose("train", [f"experiment={experiment}", f"dataset.root={trees[dataset]}", *TINY, *overrides])


# A CamVid recipe -> its module twin (the context module on the class scores).
TWINS = [("camvid/fast", "camvid/fast_context"), ("camvid/hour", "camvid/hour_context")]


def test_every_recipe_has_its_snapshot() -> None:
    assert SNAPSHOTS == EXPERIMENTS


@pytest.mark.parametrize("experiment", SNAPSHOTS)
def test_recipe_composes_to_its_snapshot(experiment: str, compose, monkeypatch) -> None:
    """Exactly the config kept in tests/recipes (written from the recipe's name before the move to
    folders). A deliberate change rewrites the file: python train.py experiment=NAME --cfg job
    --resolve, with SEGDIL_DATA unset, and its diff shows what the change did to the recipe."""
    monkeypatch.delenv("SEGDIL_DATA", raising=False)  # dataset.root defaults to ${oc.env:SEGDIL_DATA,data}/...
    composed = OmegaConf.to_container(compose("train", [f"experiment={experiment}"]), resolve=True)
    kept = yaml.safe_load((RECIPES / f"{experiment}.yaml").read_text())
    assert composed.keys() == kept.keys()
    for key in kept:
        assert composed[key] == kept[key], key


def defaults_depth(configs: Path, experiment: str) -> int:
    """Levels of experiment configs from `experiment` down its defaults list (itself counts one);
    group choices (`override /aug: ...`) and `_self_` are not levels. Hydra resolves a default
    relative to the group, so `camvid/_base` and `/experiment/camvid/_base` name the same file."""
    defaults = yaml.safe_load((configs / "experiment" / f"{experiment}.yaml").read_text()).get("defaults", [])
    parents = [entry.removeprefix("/experiment/") for entry in defaults if isinstance(entry, str) and entry != "_self_"]
    return 1 + max((defaults_depth(configs, parent) for parent in parents), default=0)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_recipe_resolves_in_at_most_two_levels(experiment: str) -> None:
    assert defaults_depth(CONFIGS, experiment) <= 2


def test_defaults_depth_counts_each_level(tmp_path: Path) -> None:
    (tmp_path / "experiment").mkdir()
    for name, defaults in {"a": [], "b": ["/experiment/a", "_self_"], "c": ["b", {"override /aug": "seg"}]}.items():
        (tmp_path / "experiment" / f"{name}.yaml").write_text(yaml.safe_dump({"defaults": defaults}))
    assert [defaults_depth(tmp_path, name) for name in "abc"] == [1, 2, 3]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_trains_two_iterations(experiment: str, trees: dict[str, Path], tmp_path: Path, compose) -> None:
    trainer = Trainer(tiny(compose, experiment, trees), tmp_path)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    summary = trainer.fit()
    assert summary["iterations"] == 2 and summary["final"] is not None
    assert 0.0 <= summary["final"]["mIoU"] <= 1.0
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))
    assert (tmp_path / "checkpoints" / "last.pt").exists()


def test_yu_koltun_stages_chain(trees: dict[str, Path], tmp_path: Path, compose) -> None:
    """Front end; then the context module alone on it (front end frozen); then both."""
    runs = {}
    init_from: list[str] = []
    for stage in ("frontend", "context", "joint"):
        cfg = tiny(compose, f"voc/dilation8_{stage}", trees, *init_from)
        Trainer(cfg, tmp_path / stage).fit()
        runs[stage] = load_checkpoint(tmp_path / stage / "checkpoints" / "last.pt")["model"]
        init_from = [f"model.init_from={tmp_path / stage / 'checkpoints' / 'last.pt'}"]
    front_end = [key for key in runs["frontend"] if key.startswith(("backbone.", "head."))]
    assert all(torch.equal(runs["context"][key], runs["frontend"][key]) for key in front_end)
    assert any(not torch.equal(runs["joint"][key], runs["context"][key]) for key in front_end)
    context = [key for key in runs["context"] if key.startswith("context.")]
    assert context and any(not torch.equal(runs["joint"][key], runs["context"][key]) for key in context)


def test_camvid_staged_recipe_trains_the_module_on_the_fast_front_end(trees: dict[str, Path], tmp_path: Path, compose) -> None:
    """camvid/fast, then camvid/fast_staged from its last.pt: the front end arrives unchanged, the module moves."""
    Trainer(tiny(compose, "camvid/fast", trees), tmp_path / "front").fit()
    front = load_checkpoint(tmp_path / "front" / "checkpoints" / "last.pt")["model"]
    stage_two = tiny(compose, "camvid/fast_staged", trees, f"model.init_from={tmp_path / 'front' / 'checkpoints' / 'last.pt'}")
    trainer = Trainer(stage_two, tmp_path / "module")
    identity = {key: value.clone() for key, value in trainer.model.state_dict().items() if key.startswith("context.")}
    trainer.fit()
    staged = load_checkpoint(tmp_path / "module" / "checkpoints" / "last.pt")["model"]
    assert identity and front.keys() == staged.keys() - identity.keys()
    assert all(torch.equal(staged[key], front[key]) for key in front)
    assert any(not torch.equal(staged[key], identity[key]) for key in identity)


def test_camvid_staged_recipe_is_the_module_twin_with_stage_two_settings(compose) -> None:
    """camvid/fast_staged is camvid/fast_context but for what stage 2 sets: the frozen, cached front
    end, the plain module, and the module's own batch, lr and length."""
    staged = OmegaConf.to_container(compose("train", ["experiment=camvid/fast_staged"]))
    twin = OmegaConf.to_container(compose("train", ["experiment=camvid/fast_context"]))
    differences = {
        f"{group}.{key}"
        for group in staged
        if isinstance(staged[group], dict)
        for key in staged[group]
        if staged[group][key] != twin[group].get(key)
    }
    assert differences == {
        "model.freeze", "model.context", "data.batch_size", "optim.lr", "trainer.frozen_cache",
        "trainer.max_iters", "trainer.val_every", "trainer.ckpt_every", "trainer.expected_minutes",
    }
    assert staged["model"]["context"] == {**twin["model"]["context"], "residual": False}


@pytest.mark.parametrize(("recipe_name", "twin_name"), TWINS)
def test_twin_differs_from_the_recipe_only_by_the_context_module(recipe_name: str, twin_name: str, compose) -> None:
    recipe = OmegaConf.to_container(compose("train", [f"experiment={recipe_name}"]))
    twin = OmegaConf.to_container(compose("train", [f"experiment={twin_name}"]))
    assert recipe["model"].pop("context") is None and twin["model"].pop("context") is not None
    assert recipe["model"].pop("name").endswith("_fcn") and twin["model"].pop("name").endswith("_context")
    for config in (recipe, twin):  # each states the minutes measured for itself: an expectation, not a setting
        config["trainer"].pop("expected_minutes")
    assert recipe == twin
