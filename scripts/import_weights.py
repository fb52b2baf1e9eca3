"""Make a segdil checkpoint from weights trained elsewhere, for eval.py, predict.py and export.py:

    python scripts/import_weights.py model=deeplabv3_resnet50 model.init_from=COCO_WITH_VOC_LABELS_V1 \
        dataset=voc out=/tmp/deeplabv3_resnet50_coco.pt
    python eval.py checkpoint=/tmp/deeplabv3_resnet50_coco.pt dataset=voc dataset.root=data/voc

Composes `configs/scripts/import_weights.yaml` (the training config plus `out`) with Hydra overrides as
train.py takes them, builds the model (`model.init_from` loads the weights: a segdil checkpoint,
a torchvision FCN / DeepLabV3 state-dict file or torchvision's weight name) and saves it with
the dataset's class names and palette. No data is read: the classes are the dataset's own.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's segdil, also when another one is installed

import segdil  # noqa: E402, F401  (sets up the environment before albumentations is imported)
from hydra.utils import get_class  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from segdil.cli import compose_or_exit, user_errors  # noqa: E402
from segdil.data.labels import voc_colormap  # noqa: E402
from segdil.engine.builders import build_model  # noqa: E402
from segdil.engine.checkpoint import save_checkpoint  # noqa: E402

log = logging.getLogger("segdil")


def import_weights(cfg: DictConfig) -> Path:
    """Build `cfg.model` from its `init_from` and write it as a checkpoint at `cfg.out`."""
    dataset = get_class(cfg.dataset._target_)
    class_names = list(dataset.class_names) or list(cfg.dataset.class_names)  # the folder dataset's come from its config
    palette = dataset.palette or voc_colormap(len(class_names))
    model = build_model(cfg.model, len(class_names))
    out = Path(cfg.out)
    state = {
        "model": model.state_dict(),
        "class_names": class_names,
        "palette": [list(colour) for colour in palette],
        "config": OmegaConf.to_yaml(cfg, resolve=True),
    }
    save_checkpoint(out, state)
    log.info("wrote %s: model %s, %d classes, weights from %s", out, cfg.model.name, len(class_names), cfg.model.init_from)
    return out


def main(overrides: list[str]) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = compose_or_exit(REPO / "configs", "scripts/import_weights", overrides)
    with user_errors():
        import_weights(cfg)


if __name__ == "__main__":
    main(sys.argv[1:])
