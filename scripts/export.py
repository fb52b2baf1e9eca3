"""TorchScript / ONNX export with an equivalence check:
`python scripts/export.py checkpoint=PATH [formats=[torchscript,onnx]]`."""

import hydra
from omegaconf import DictConfig

import segdil  # noqa: F401  (sets up the environment before albumentations is imported)
from segdil.cli import run_dir, user_errors
from segdil.engine.export import export_checkpoint


@hydra.main(version_base="1.3", config_path="../configs", config_name="scripts/export")
def main(cfg: DictConfig) -> None:
    with user_errors():
        export_checkpoint(cfg, run_dir())


if __name__ == "__main__":
    main()
