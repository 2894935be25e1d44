"""One set of flags: every shared flag has the same name, help, type and default in every verb that takes it, the README's
flag table is the CLI's, and old spellings still parse. In-process click introspection: no verb runs."""

from __future__ import annotations

import importlib.util
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import click
import pytest

from edgenas.cli import cli
from edgenas.cli_options import ALL_BACKENDS, shared_options
from edgenas.compile.build import CompileConfig
from edgenas.compress.prune_config import CompressConfig, DistillConfig
from edgenas.compress.quantize import QuantizeConfig
from edgenas.measure.backends import AUTO_BACKEND, BACKENDS
from edgenas.pipeline.config import BuildConfig, DeployConfig
from edgenas.search.evolution_config import EvolutionConfig
from edgenas.search.search_config import SearchConfig
from edgenas.supernet.train_config import TrainConfig
from edgenas.tables.key import PRECISIONS
from edgenas.tables.deployment import AUTO

ROOT = Path(__file__).resolve().parents[1]
SHARED = shared_options()
#: the verbs that may measure every backend in one run
ALL_BACKEND_VERBS = {"profile", "validate"}


def _takers() -> dict[str, dict[str, click.Option]]:
    """flag -> {verb: its option}, for every option of every verb."""
    found: dict[str, dict[str, click.Option]] = defaultdict(dict)
    for verb, cmd in cli.commands.items():
        for p in cmd.params:
            if isinstance(p, click.Option):
                for o in p.opts:
                    found[o][verb] = p
    return found


TAKERS = _takers()


def _type_key(t: click.ParamType):
    """What a type accepts: its class, choices and range."""
    return (type(t).__name__, tuple(getattr(t, "choices", ())), getattr(t, "min", None), getattr(t, "max", None),
            getattr(t, "min_open", None), getattr(t, "max_open", None), getattr(t, "path_type", None))


def test_every_flag_two_verbs_take_is_shared():
    """A flag in more than one verb is defined in edgenas.cli_options, not in each verb."""
    for flag, verbs in TAKERS.items():
        if len(verbs) > 1 and flag not in ("-h", "--help"):
            assert any(flag in s.decls + s.old for s in SHARED.values()), (flag, sorted(verbs))


def test_every_shared_flag_is_taken():
    for name, spec in SHARED.items():
        assert TAKERS[spec.flag], f"--{name} is in the registry but no verb takes it"


@pytest.mark.parametrize("name", sorted(SHARED))
def test_shared_flag_agrees_in_every_verb(name):
    """Same help, type, spellings, flag-ness and default in every verb that takes it (the default may differ only for the
    flags the registry says may, and only in the default)."""
    spec = SHARED[name]
    verbs = TAKERS[spec.flag]
    for verb, p in verbs.items():
        assert p.help == spec.help, (verb, p.help)
        assert tuple(p.opts) + tuple(p.secondary_opts) == tuple(d for d in spec.decls if d.startswith("-")) + spec.old, verb
        assert p.is_flag == bool(spec.settings.get("is_flag")), verb
        assert p.metavar == spec.settings.get("metavar"), verb
        want = click.Option(list(spec.decls), **spec.settings)
        got_type, want_type = _type_key(p.type), _type_key(want.type)
        if name == "backend" and verb in ALL_BACKEND_VERBS:
            want_type = (want_type[0], (*BACKENDS, ALL_BACKENDS), *want_type[2:])
        if name == "precision" and verb == "build":
            want_type = (want_type[0], (*PRECISIONS, AUTO), *want_type[2:])
        if name == "backend" and verb == "build":
            want_type = (want_type[0], (*BACKENDS, AUTO_BACKEND), *want_type[2:])
        assert got_type == want_type, (verb, got_type, want_type)
        if not spec.varying_default:
            assert (p.default, p.required) == (want.default, want.required), (verb, p.default, p.required)
            assert p.show_default == want.show_default, verb


def test_backend():
    """tvm everywhere a verb names a table; `build` measures which runtime ships (auto); `all` only where a run can
    measure several."""
    for verb, p in TAKERS["--backend"].items():
        assert p.default == ("auto" if verb == "build" else "tvm"), verb
        assert (ALL_BACKENDS in p.type.choices) == (verb in ALL_BACKEND_VERBS), verb
        assert (AUTO_BACKEND in p.type.choices) == (verb == "build"), verb
    assert DeployConfig.backend == AUTO_BACKEND and set(BACKENDS) == {"tvm", "ort", "openvino"}


def test_layout_is_nhwc_everywhere():
    verbs = TAKERS["--layout"]
    assert {"build", "compile", "profile", "search", "validate"} <= set(verbs)
    assert {p.default for p in verbs.values()} == {"NHWC"}


def test_threads_means_device_threads():
    """--threads is the device's; the accuracy checks have --eval-threads."""
    for verb, p in TAKERS["--threads"].items():
        assert p.default is None and "device" in p.help, verb
    assert set(TAKERS["--eval-threads"]) == {"export", "prune", "quantize"}
    assert "--threads" not in {o for v in ("export", "prune", "quantize") for p in cli.commands[v].params for o in p.opts}


def test_the_varying_defaults_are_these():
    """A flag whose default differs by verb is a decision, listed here and in the README."""
    varying = {name: {v: None if p.required else p.default for v, p in TAKERS[spec.flag].items()}
               for name, spec in SHARED.items() if spec.varying_default}
    assert varying == {
        "precision": {"build": AUTO, **dict.fromkeys(("profile", "search", "validate"), PRECISIONS[0])},
        "backend": {"build": AUTO_BACKEND, **dict.fromkeys(("compile", "profile", "quantize", "search", "validate"), BACKENDS[0])},
        "out": {"build": BuildConfig.out, "search": None, **dict.fromkeys(("train", "export", "prune", "quantize", "compile"))},
    }
    assert [v for v, p in TAKERS["--out"].items() if p.required] == ["train", "export", "prune", "quantize", "compile"]


def test_defaults_agree_with_the_settings_they_fill():
    """The CLI default of a flag is the default of the settings object it fills, in every verb."""
    default = {name: spec.default for name, spec in SHARED.items()}
    assert default["seed"] == TrainConfig.seed == EvolutionConfig.seed
    build = BuildConfig()  # composed of the stage configs: each default lives in the stage's own config
    assert default["calibration"] == QuantizeConfig.calibration == build.quantize.calibration
    assert default["max-drop"] == QuantizeConfig.max_drop == build.quantize.max_drop
    assert default["subnets"] == SearchConfig.subnets == build.search.subnets
    assert (default["generations"], default["population"]) == (EvolutionConfig.generations, EvolutionConfig.population)
    assert default["epochs"] == TrainConfig.epochs == build.train.epochs and default["limit"] == build.train.limit
    assert default["prune-ratio"] == CompressConfig.prune_ratio == build.compress.prune_ratio
    assert default["finetune-epochs"] == DistillConfig.epochs == build.compress.distill.epochs
    assert default["tune-trials"] == CompileConfig.trials == build.compile.trials
    assert DeployConfig.precision == AUTO and default["precision"] == PRECISIONS[0]
    assert DeployConfig.backend == AUTO_BACKEND and default["backend"] == BACKENDS[0]
    for name in ("target", "layout"):
        assert default[name] == getattr(DeployConfig, name), name
    for name in ("data", "space"):
        assert default[name] == getattr(BuildConfig, name), name
    # every flag of `build` lands in the config: the field FLAGS names, or the top-level field of its own name
    from edgenas.pipeline.config import FLAGS

    params = {p.name for p in cli.commands["build"].params} - {"as_json"}
    assert params - set(FLAGS) <= {f.name for f in __import__("dataclasses").fields(BuildConfig)}, params - set(FLAGS)
    defaults = BuildConfig.from_flags(**{k: v for k, v in cli.commands["build"].make_context("build", ["--budget-ms", "1"]).params.items() if k != "as_json"})
    assert defaults == replace(BuildConfig(), budget_ms=1), "the CLI's defaults and the config's differ"
    args = ["--budget-ms", "1", "--epochs", "3", "--subnets", "20", "--strategy", "random", "--prune-ratio", "0.7",
            "--calibration", "9", "--max-drop", "2", "--tune-minutes", "1"]
    flags = {k: v for k, v in cli.commands["build"].make_context("build", args).params.items() if k != "as_json"}
    cfg = BuildConfig.from_flags(**flags)
    assert (cfg.train.epochs, cfg.search.subnets, cfg.search.evolution.strategy, cfg.compress.prune_ratio) == (3, 20, "random", 0.7)
    assert (cfg.quantize.calibration, cfg.quantize.max_drop, cfg.compile.tune_minutes, cfg.budget_ms) == (9, 2, 1, 1)
    assert (cfg.deploy.target, cfg.deploy.backend, cfg.compress.distill.epochs) == ("host", AUTO_BACKEND, DistillConfig.epochs)


def test_old_ratio_spelling_still_works():
    """prune's old --ratio still parses into --prune-ratio, and --help shows only the new name."""
    for verb, args in (("prune", ["m", "--out", "o", "--ratio", "0.7"]), ("build", ["--budget-ms", "1", "--ratio", "0.7"])):
        assert cli.commands[verb].make_context(verb, args).params["prune_ratio"] == 0.7 != CompressConfig.prune_ratio
    help_text = cli.commands["prune"].get_help(click.Context(cli.commands["prune"], info_name="prune"))
    assert "--prune-ratio" in help_text and "--ratio" not in help_text


def _flag_table_tool():
    spec = importlib.util.spec_from_file_location("flag_table", ROOT / "tools" / "flag_table.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_readme_flag_table_is_the_clis():
    """tools/flag_table.py writes it; a flag changed in the CLI and not in the README fails here."""
    tool = _flag_table_tool()
    from edgenas.cli_options import flag_table

    assert tool.readme_table(tool.README.read_text()) == flag_table(cli), "run tools/flag_table.py"


def test_flag_table_tool_checks_and_rewrites(tmp_path, monkeypatch, capsys):
    """--check fails on a README whose table is stale, and the tool writes the CLI's table back."""
    tool = _flag_table_tool()
    text = tool.README.read_text()
    stale = text.replace(tool.readme_table(text), tool.readme_table(text).replace("`NHWC`", "`NCHW`"))
    assert stale != text
    readme = tmp_path / "README.md"
    readme.write_text(stale)
    monkeypatch.setattr(tool, "README", readme)
    monkeypatch.setattr("sys.argv", ["flag_table.py", "--check"])
    assert tool.main() == 1 and "differs" in capsys.readouterr().err
    monkeypatch.setattr("sys.argv", ["flag_table.py"])
    assert tool.main() == 0 and readme.read_text() == text


def test_readme_uses_no_removed_spelling():
    """The README shows the current names only."""
    text = (ROOT / "README.md").read_text()
    assert "--ratio" not in text
    for line in text.splitlines():
        if line.startswith(("edgenas export", "edgenas prune", "edgenas quantize")):
            assert "--threads" not in line, line


def test_tools_take_the_shared_flags_with_the_verbs_checks_and_their_own_defaults():
    import argparse

    from edgenas.cli_options import add_to_parser

    ap = argparse.ArgumentParser(exit_on_error=False)
    add_to_parser(ap, "epochs", "backend", "prune-ratio", "budget-ms", backend="ort")
    assert {a.dest: a.help for a in ap._actions if a.dest in ("epochs", "backend")} == {
        "epochs": SHARED["epochs"].help, "backend": SHARED["backend"].help.replace("%", "%%")}
    args = ap.parse_args(["--budget-ms", "0.5"])
    assert (args.epochs, args.backend, args.prune_ratio, args.budget_ms) == (TrainConfig.epochs, "ort", 1.0, 0.5)
    with pytest.raises(argparse.ArgumentError, match="0 is not in the range"):
        ap.parse_args(["--budget-ms", "1", "--epochs", "0"])
    with pytest.raises(TypeError, match="seed"):
        add_to_parser(argparse.ArgumentParser(), "epochs", seed=3)
