"""Every flag that more than one verb takes, defined once: one name, one meaning, one help text and one default.

A verb takes a shared flag with `options("target", "space", ...)`; tests/test_cli_flags.py checks every verb against
this registry, and tools/flag_table.py writes the README's flag table from it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import click

from edgenas.compile.build import LAYOUTS, CompileConfig
from edgenas.compress.prune_config import CompressConfig, DistillConfig
from edgenas.compress.quantize import QuantizeConfig
from edgenas.measure.backends import AUTO_BACKEND, BACKENDS
from edgenas.pipeline.config import BuildConfig
from edgenas.search.evolution_config import STRATEGIES, EvolutionConfig
from edgenas.search.search_config import SearchConfig
from edgenas.supernet.train_config import AUTO as AUTO_EPOCHS, AUTO_MINUTES, TrainConfig
from edgenas.tables.key import PRECISIONS, TABLE_PRECISIONS
from edgenas.tables.deployment import AUTO

#: the extra --backend choice of the verbs that measure tables: every backend this machine can measure
ALL_BACKENDS = "all"


@dataclass(frozen=True)
class SharedOption:
    """One shared flag: click's declarations (long name first) and its settings."""

    decls: tuple[str, ...]
    settings: dict
    #: spellings still accepted but left out of --help (old names, so old scripts run)
    old: tuple[str, ...] = ()
    #: why verbs may give this flag their own default (the help text stays the same); empty: they may not
    varying_default: str = ""

    @property
    def flag(self) -> str:
        return self.decls[0]

    @property
    def help(self) -> str:
        return self.settings["help"]

    @property
    def default(self):
        return self.settings.get("default")


class _OldSpellings(click.Option):
    """An option that still takes its old spellings, without showing them in --help or in its error messages."""

    def __init__(self, *args, old=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.old = tuple(old)

    def _current(self) -> list[str]:
        return [o for o in self.opts if o not in self.old]

    def get_help_record(self, ctx):
        opts, self.opts = self.opts, self._current()
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = opts

    def get_error_hint(self, ctx) -> str:
        return " / ".join(f"'{o}'" for o in self._current())


class _Epochs(click.ParamType):
    """A number of epochs (at least 1), or `auto`."""
    name = "epochs"

    def convert(self, value, param, ctx):
        if value == AUTO_EPOCHS:
            return AUTO_EPOCHS
        return click.IntRange(min=1).convert(value, param, ctx)


def _opt(*decls, old=(), varying_default="", **settings) -> SharedOption:
    return SharedOption(tuple(decls), settings, tuple(old), varying_default)


_SHARED = [
    # what to measure, and where
    _opt("--target", "-t", "target", default="host", show_default=True, help="Target name, or path to a target .toml."),
    _opt("--space", default="digits", show_default=True, help="Search space name, or path to a space .json."),
    _opt("--tables", type=click.Path(path_type=Path), default=None,
         help="Latency table directory [default: latency_tables/ of the checkout, or $EDGENAS_TABLES]."),
    _opt("--backend", "-b", type=click.Choice(BACKENDS), default=BACKENDS[0], show_default=True,
         varying_default=f"`build` measures which runtime ships fastest on the target ({AUTO_BACKEND}); the other verbs "
                         f"name a table",
         help="The runtime that ships, whose latency and accuracy count: tvm, the compiled library; ort, ONNX Runtime; "
              f"openvino, OpenVINO (the optional extra) (`profile` and `validate` also take {ALL_BACKENDS}: every one "
              f"this machine can measure; `build` also takes {AUTO_BACKEND}: every one that runs the target, "
              f"measured, and the fastest ships)."),
    _opt("--precision", type=click.Choice(TABLE_PRECISIONS), default=PRECISIONS[0], show_default=True,
         varying_default="`build` measures which precision pays on the target (auto); the other verbs name a table",
         help="The precision of the table: what is measured, and what a build ships (int8: quantized as `quantize` does; "
              "fp16, NVIDIA GPU targets' tables only: float16 weights and activations; "
              f"`build` takes int8, fp32 or {AUTO}: int8 where it runs faster than fp32 on the target, measured)."),
    _opt("--layout", type=click.Choice(LAYOUTS), default=CompileConfig.layout, show_default=True,
         help="TVM's convolution layout, as `compile` uses it (NHWC lets int8 dot-product instructions apply)."),
    _opt("--tuning-db", type=click.Path(path_type=Path), default=None,
         help="TVM tuning database that compile applies [default: ~/.cache/edgenas/tuning/TARGET-HASH, "
              "or $EDGENAS_TUNING_DB/...]."),
    _opt("--threads", type=click.IntRange(min=1), default=None, help="Threads on the device [default: the target's]."),
    _opt("--repeat", type=click.IntRange(min=1), default=None,
         help="Timed samples per measurement (fewer: faster, noisier) [default: 60 for ort, 30 for tvm]."),
    _opt("--rpc-tracker", default=None, metavar="HOST:PORT", help="Measure on a board through this TVM RPC tracker."),
    _opt("--rpc-key", default=None, metavar="KEY", help="The board's key at the tracker."),
    # data, training and search
    _opt("--data", "-d", default=BuildConfig.data, show_default=True,
         help="'digits' (bundled), 'fashion' (Fashion-MNIST, tools/install-data.sh), a directory of class folders, or an .npz with x and y."),
    _opt("--epochs", type=_Epochs(), default=TrainConfig.epochs, show_default=True,
         help=f"Supernet training epochs; {AUTO_EPOCHS}: {TrainConfig.epochs}, then more in rounds while the supernet cannot "
              f"rank its networks (its largest network near chance and still improving), for at most {AUTO_MINUTES:g} "
              f"minutes of training."),
    _opt("--limit", type=click.IntRange(min=0), default=0, help="Train on the first N training images only."),
    _opt("--seed", type=int, default=TrainConfig.seed, show_default=True, help="Random seed."),
    _opt("--supernet", "run_dir", type=click.Path(path_type=Path), required=True, help="Run directory of `edgenas train`."),
    _opt("--budget-ms", type=float, required=True, help="Latency budget on the target, in milliseconds."),
    _opt("--subnets", type=click.IntRange(min=10), default=SearchConfig.subnets, show_default=True,
         help="Sub-networks evaluated to train the accuracy predictor (cached in the supernet's run directory)."),
    _opt("--strategy", type=click.Choice(STRATEGIES), default=EvolutionConfig.strategy, show_default=True,
         help="How the search picks its network: evolution, or a baseline to compare with (random: as many random "
              "networks as the evolution scores; uniform: the largest network with one kernel, expansion and depth "
              "throughout that fits)."),
    _opt("--generations", type=click.IntRange(min=1), default=EvolutionConfig.generations, show_default=True,
         help="Generations of the evolutionary search."),
    _opt("--population", type=click.IntRange(min=2), default=EvolutionConfig.population, show_default=True,
         help="Networks in each generation of the evolutionary search."),
    _opt("--margin-pct", type=float, default=None,
         help="The table's error band: measured, the search looks up to budget x (1 + margin) and measures its "
              "way down the front to the network that fits; with --no-measure, it searches up to budget / (1 + margin). "
              "[default: the table's 95th-percentile overrun on held-out networks, from `edgenas validate`]"),
    # prune, quantize, compile
    _opt("--prune-ratio", "prune_ratio", type=float, default=CompressConfig.prune_ratio, show_default=True, old=("--ratio",),
         help="Prune to this fraction of the network's predicted latency. `build`: below 1, it also searches up to "
              "budget / ratio and prunes that network down to the budget, and ships it only if it is more accurate "
              "than the network searched at the budget, both fine-tuned alike and measured side by side; 1 prunes "
              "only a network that measured over the budget, to fit it."),
    _opt("--finetune-epochs", type=click.IntRange(min=0), default=DistillConfig.epochs, show_default=True,
         help="Epochs of distillation from the supernet's largest network (`build`: of the searched network, "
              "before pruning; `prune`: after)."),
    _opt("--calibration", type=click.IntRange(min=1), default=QuantizeConfig.calibration, show_default=True,
         help="Training images that calibrate int8's activation ranges."),
    _opt("--max-drop", type=click.FloatRange(min=0), default=QuantizeConfig.max_drop, show_default=True,
         help="Accuracy points int8 may lose, measured with the runtime that ships, before the remedies are tried."),
    _opt("--eval-threads", type=click.IntRange(min=1), default=1, show_default=True,
         help="Threads on this machine for the accuracy checks and prune's distillation (more pay off on a quiet "
              "machine only)."),
    _opt("--tune-trials", type=click.IntRange(min=0), default=CompileConfig.trials, show_default=True,
         help="MetaSchedule trials for the tasks the tuning database lacks; 0: apply the database only "
              "(or, with --tune-minutes, as many as fit)."),
    _opt("--tune-minutes", type=click.FloatRange(min=0, min_open=True), default=None,
         help="Tune for at most this long (with --tune-trials: whichever ends first)."),
    # output
    _opt("--out", "-o", "out", type=click.Path(path_type=Path), required=True,
         varying_default="`build` has a run directory of its own and `search` one inside the supernet's; "
                         "the other verbs need it",
         help="Output directory."),
    _opt("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout."),
]

SHARED: dict[str, SharedOption] = {o.flag.removeprefix("--"): o for o in _SHARED}

#: the groups of flags verbs take together
MEASURE = ("threads", "repeat", "rpc-tracker", "rpc-key")
TABLE = ("precision", "layout", "tuning-db")
TARGET = ("target", "space", "tables", *MEASURE, "json", *TABLE)
TUNE = ("tune-trials", "tune-minutes")


def shared_options() -> dict[str, SharedOption]:
    """The registry, by flag name without its dashes."""
    return dict(SHARED)


def option(name: str, **override):
    """The click option for a shared flag; only a flag with a varying default may change its default (and whether it
    is required), --backend may add `all` to its choices (with all_backends=True) and --precision `auto` (with
    auto_precision=True), --backend `auto` (with auto_backend=True)."""
    spec = SHARED[name]
    settings = dict(spec.settings)
    if override.pop("all_backends", False):
        if name != "backend":
            raise TypeError("only --backend takes all_backends")
        settings["type"] = click.Choice([*BACKENDS, ALL_BACKENDS])
    if override.pop("auto_backend", False):
        if name != "backend":
            raise TypeError("only --backend takes auto_backend")
        settings["type"] = click.Choice([*BACKENDS, AUTO_BACKEND])
    if override.pop("auto_precision", False):
        if name != "precision":
            raise TypeError("only --precision takes auto_precision")
        settings["type"] = click.Choice([*PRECISIONS, AUTO])
    if override and (not spec.varying_default or set(override) - {"default", "required", "show_default"}):
        raise TypeError(f"--{name} is shared: its settings are edgenas.cli_options' ({', '.join(override)} given)")
    settings.update(override)
    if "default" in override and "required" not in override:
        settings["required"] = False
    return click.option(*spec.decls, *spec.old, cls=_OldSpellings, old=spec.old, **settings)


def options(*names: str):
    """A decorator adding these shared flags, in this order in --help."""
    def decorate(fn):
        return functools.reduce(lambda f, name: option(name)(f), reversed(names), fn)

    return decorate


def add_to_parser(parser, *names: str, **defaults) -> None:
    """These shared flags on a tool's argparse parser (tools/ are scripts, not verbs): the verbs' names, types, help and
    defaults, unless the tool gives its own default (`defaults`, by the flag's Python name). A flag the verbs require
    stays required unless a default is given."""
    import argparse

    for name in names:
        spec = SHARED[name]
        s = dict(spec.settings)
        flags = [d for d in spec.decls if d.startswith("-")]
        dest = next((d for d in spec.decls if not d.startswith("-")), flags[0].lstrip("-").replace("-", "_"))
        kw = {"dest": dest, "help": s["help"].replace("%", "%%")}
        if s.get("is_flag"):
            parser.add_argument(*flags, action="store_true", **kw)
            continue
        kind = s.get("type")
        if isinstance(kind, click.Choice):
            kw["choices"] = list(kind.choices)
        elif isinstance(kind, click.ParamType):
            kw["type"] = _argparse_type(kind, argparse.ArgumentTypeError)
        elif kind is not None:
            kw["type"] = kind
        if dest in defaults:
            kw["default"] = defaults.pop(dest)
        elif s.get("required"):
            kw["required"] = True
        else:
            kw["default"] = s.get("default")
        if "metavar" in s:
            kw["metavar"] = s["metavar"]
        parser.add_argument(*flags, **kw)
    if defaults:
        raise TypeError(f"defaults for flags not added: {', '.join(defaults)}")


def _argparse_type(kind: click.ParamType, error):
    """click's type as an argparse one: the same conversion and the same complaint."""
    def convert(text: str):
        try:
            return kind.convert(text, None, None)
        except click.BadParameter as e:
            raise error(e.format_message()) from None

    convert.__name__ = kind.name
    return convert


def _default_text(param: click.Option) -> str:
    if param.required:
        return "required"
    if param.is_flag:
        return "off"
    if isinstance(param.show_default, str):
        return param.show_default
    return "" if param.default is None else f"`{param.default}`"


def flag_table(group: click.Group) -> str:
    """The README's table of shared flags, read from the verbs themselves: which verbs take each, its default, its help."""
    rows = ["| Flag | Verbs | Default | Meaning |", "| --- | --- | --- | --- |"]
    for name, spec in SHARED.items():
        defaults: dict[str, list[str]] = {}
        for verb, cmd in group.commands.items():
            for p in cmd.params:
                if isinstance(p, click.Option) and spec.flag in p.opts:
                    defaults.setdefault(_default_text(p), []).append(verb)
        verbs = sorted(v for vs in defaults.values() for v in vs)
        default = (next(iter(defaults)) if len(defaults) == 1
                   else "; ".join(f"{d or 'none'} ({', '.join(sorted(vs))})" for d, vs in defaults.items()))
        flag, meaning = ", ".join(f"`{d}`" for d in spec.decls if d.startswith("-")), spec.help.replace("|", r"\|")
        rows.append(f"| {flag} | {' '.join(verbs)} | {default} | {meaning} |")
    return "\n".join(rows) + "\n"
