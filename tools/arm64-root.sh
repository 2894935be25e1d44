#!/usr/bin/env bash
# Build an arm64 Debian root holding the aarch64 TVM runtime, in which aarch64 artifacts run under qemu-user.
#   bash tools/arm64-root.sh [DIR]        (default .cache/arm64-root; about 3 minutes; does nothing if DIR is ready)
# Everything comes from Debian's packages and PyPI: debootstrap, qemu-user-static (binfmt), and the aarch64
# wheels of the pinned apache-tvm, downloaded by this machine's pip and installed by the root's own pip.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(realpath -m "${1:-.cache/arm64-root}")"
mkdir -p "$(dirname "$ROOT")"
[ -x "$ROOT/opt/venv/bin/python" ] && exit 0

SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
need=()
for cmd in debootstrap qemu-aarch64-static update-binfmts; do command -v "$cmd" >/dev/null || need+=("$cmd"); done
if [ ${#need[@]} -gt 0 ]; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq debootstrap qemu-user-static binfmt-support >/dev/null
fi
# Executing arm64 programs needs binfmt_misc, which a fresh VM or container may not have mounted.
[ -e /proc/sys/fs/binfmt_misc/register ] || $SUDO mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || $SUDO update-binfmts --enable qemu-aarch64

TVM_PINS=$(grep -oE '"apache-tvm(-ffi)?==[^"]+"' pyproject.toml | tr -d '"')
WORK="$ROOT.partial"
$SUDO rm -rf "$WORK"
$SUDO debootstrap --arch=arm64 --variant=minbase --include=python3,python3-venv,python3-pip bookworm "$WORK" \
    http://deb.debian.org/debian >/dev/null
.venv/bin/pip download --quiet --disable-pip-version-check --dest "$WORK/wheels" --only-binary=:all: \
    --platform manylinux_2_28_aarch64 --python-version 3.11 $TVM_PINS numpy
$SUDO chroot "$WORK" python3 -m venv /opt/venv
$SUDO chroot "$WORK" /opt/venv/bin/pip install --quiet --disable-pip-version-check --no-index --find-links /wheels \
    $TVM_PINS numpy
$SUDO rm -rf "$WORK/wheels" "$WORK/var/cache/apt/archives/"*.deb
mv "$WORK" "$ROOT"
echo "$ROOT: arm64 root with $(chroot "$ROOT" /opt/venv/bin/python -c 'import tvm; print("apache-tvm", tvm.__version__)')"
