#!/usr/bin/env bash
# Create .venv and install edgenas with its pinned dependencies; `--test` adds the test extra.
# torch==2.13.0 resolves to the CPU wheel when one is on the machine's find-links path (/opt/wheels);
# from PyPI alone the same pin would pull the CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
# OpenVINO is an optional extra of the package, installed here so that `build --backend auto` can ship it too
extra="[openvino]"
[ "${1:-}" = "--test" ] && extra="[test]"
links=()
[ -d /opt/wheels ] && links=(--find-links /opt/wheels)
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check "${links[@]}" -e ".${extra}"
# the tests reproduce an AVX2 CPU under qemu-user (tests/test_cpu_classes.py) and read Fashion-MNIST (tests/test_data.py)
if [ "$extra" = "[test]" ]; then bash tools/install-qemu.sh && bash tools/install-data.sh; fi
exit 0
