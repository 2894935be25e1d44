#!/usr/bin/env bash
# The NVIDIA GPU device check (issue 34), within 8 minutes; tools/gpu_check.py says what it does. Its JSON report goes
# to $REPORT (default gpu-check.json). Exit 3: no GPU here, and it stopped before its first GPU call.
#
#   bash tools/gpu_check.sh [ARGS]            a machine with a GPU and the project set up (set-up first if .venv is
#                                             missing): compile, run and time, all here
#   bash tools/gpu_check.sh prepare DIR [ARGS]   here, for a GPU machine with no package index: the libraries (sm_90
#                                             unless --arch), TVM's runtime without its compiler, and the
#                                             apache-tvm-ffi wheel for that machine's CPython ($GPU_PYTHON, 3.12)
#   bash tools/gpu_check.sh run DIR [ARGS]    there, with its own python3 (numpy; torch for the PyTorch peer): the
#                                             runtime unpacked into a temporary folder, then the check
set -euo pipefail
cd "$(dirname "$0")/.."
report="${REPORT:-gpu-check.json}"
verb="${1:-all}"
case "$verb" in
  prepare)
    dir="$2"; shift 2
    [ -x .venv/bin/python ] || bash tools/setup.sh --test >&2
    .venv/bin/python tools/gpu_check.py prepare "$dir" --runtime --no-onnx --report "$report" "$@"
    ffi="$(.venv/bin/python -c 'import tvm_ffi; print(tvm_ffi.__version__)')"
    rm -rf "$dir/wheels"
    .venv/bin/python -m pip download -q --no-deps --only-binary=:all: --implementation cp \
      --python-version "${GPU_PYTHON:-3.12}" --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 \
      --platform manylinux_2_17_x86_64 -d "$dir/wheels" "apache-tvm-ffi==$ffi"
    du -sh "$dir" >&2
    ;;
  run)
    dir="$2"; shift 2
    site="$(mktemp -d)"
    python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" "$dir"/wheels/*.whl
    tar -xJf "$dir/tvm-runtime.tar.xz" -C "$site"
    # TVM's CUDA runtime links libcudart.so.13: the CUDA runtime wheel that PyTorch brought, where there is one
    cudart="$(python3 - <<'EOF' 2>/dev/null || true
import glob, os, site
for root in site.getsitepackages():
    for hit in glob.glob(os.path.join(root, "nvidia", "**", "libcudart.so.1*"), recursive=True):
        print(os.path.dirname(hit)); raise SystemExit
EOF
)"
    export LD_LIBRARY_PATH="${cudart:+$cudart:}${LD_LIBRARY_PATH:-}"
    TVM_USE_RUNTIME_LIB=1 PYTHONPATH="$site:$PWD" timeout 480 python3 tools/gpu_check.py run "$dir" \
      --report "$report" --minutes 6.5 "$@"
    ;;
  *)
    [ -x .venv/bin/python ] || bash tools/setup.sh --test >&2
    timeout 480 .venv/bin/python tools/gpu_check.py all --report "$report" --minutes 6.5 "$@"
    ;;
esac
