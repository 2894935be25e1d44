from conftest import assert_one_line_error, run_cli


def test_version_lists_every_library():
    out = run_cli("--version", check=0).stdout
    for name in ("edgenas", "torch", "onnxruntime", "apache-tvm"):
        assert name in out


def test_spaces_json():
    import json

    spaces = {s["name"]: s for s in json.loads(run_cli("spaces", "--json", check=0).stdout)}
    assert spaces["digits"]["table_entries"] > 100


def test_usage_error_exit_code():
    assert_one_line_error(run_cli("profile", "--backend", "nosuch"), "--backend", "edgenas profile --help")
    assert_one_line_error(run_cli("nosuchverb"), "nosuchverb")
    assert_one_line_error(run_cli("profile", "--space", "nosuchspace"), "nosuchspace")


def test_every_verb_takes_json():
    from edgenas.cli import cli

    assert len(cli.commands) >= 13
    missing = [name for name, cmd in cli.commands.items() if "--json" not in {o for p in cmd.params for o in p.opts}]
    assert not missing, missing
