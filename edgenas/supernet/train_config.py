"""Training settings, kept apart from the training code so the CLI can show defaults without importing torch."""

from dataclasses import asdict, dataclass

#: `--epochs auto`: train `TrainConfig.epochs`, then on in rounds while the supernet cannot rank its networks, for at
#: most this many minutes in all
AUTO = "auto"
AUTO_MINUTES = 30.0
#: a network scoring under this share of the way from chance to 100% is "near chance": a supernet whose largest network
#: is there cannot rank its networks (`near_chance`; the search's `Searcher.on_noise` says so too)
NEAR_CHANCE_SHARE = 0.25
#: the settings that say how long to train, not what: more of them resumes the same run
HOW_LONG = ("epochs", "auto_minutes")


def near_chance(accuracy: float, classes: int) -> bool:
    chance = 1 / classes
    return accuracy < chance + (1 - chance) * NEAR_CHANCE_SHARE


@dataclass(frozen=True)
class TrainConfig:
    #: enough for the bundled digits within the main command's time (docs/results/main-command-*.md); "auto" (`AUTO`):
    #: this many, then more in rounds while the supernet cannot rank its networks (`auto_minutes`)
    epochs: int = 16
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 5e-5
    random_subnets: int = 2
    label_smoothing: float = 0.1
    shift: int = 2  # random translation, in pixels of the stored images
    seed: int = 0
    val_fraction: float = 0.2
    limit: int = 0  # train on the first N training images only (0: all); for quick runs
    #: train on past `epochs` while the supernet cannot rank (its largest network near chance and still improving), for
    #: at most this many minutes in all; None: exactly `epochs`
    auto_minutes: float | None = None

    def __post_init__(self):
        if self.epochs == AUTO:  # `--epochs auto`: the default epochs, then on as long as it helps
            object.__setattr__(self, "epochs", TrainConfig.epochs)
            object.__setattr__(self, "auto_minutes", self.auto_minutes or AUTO_MINUTES)

    def to_dict(self) -> dict:
        return asdict(self)
