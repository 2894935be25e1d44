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
    proc = run_cli("profile", "--backend", "nosuch")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert_one_line_error(run_cli("profile", "--space", "nosuchspace"), "nosuchspace")
