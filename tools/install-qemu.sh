#!/usr/bin/env bash
# Install Debian's qemu-user: `qemu-x86_64 -cpu Haswell` runs ONNX Runtime, PyTorch and OpenVINO as on an x86 CPU
# with AVX2 and no AVX-512 (they pick kernels from CPUID), so the tests see what a user of that CPU class sees.
set -euo pipefail
if command -v qemu-x86_64 >/dev/null; then exit 0; fi
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq qemu-user >/dev/null
