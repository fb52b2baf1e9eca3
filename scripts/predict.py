"""Colour masks and overlays for images without labels:
`python scripts/predict.py checkpoint=PATH input=IMAGE_OR_FOLDER [eval.* overrides]`."""

import hydra
from omegaconf import DictConfig

import segdil  # noqa: F401  (sets up the environment before albumentations is imported)
from segdil.cli import run_dir, user_errors
from segdil.engine.predict import predict_images


@hydra.main(version_base="1.3", config_path="../configs", config_name="scripts/predict")
def main(cfg: DictConfig) -> None:
    with user_errors():
        predict_images(cfg, run_dir())


if __name__ == "__main__":
    main()
