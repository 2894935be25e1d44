"""Training settings, kept apart from the training code so the CLI can show defaults without importing torch."""

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 16  # enough for the bundled digits within the main command's time (docs/results/main-command-*.md)
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 5e-5
    random_subnets: int = 2
    label_smoothing: float = 0.1
    shift: int = 2  # random translation, in pixels of the stored images
    seed: int = 0
    val_fraction: float = 0.2
    limit: int = 0  # train on the first N training images only (0: all); for quick runs

    def to_dict(self) -> dict:
        return asdict(self)
