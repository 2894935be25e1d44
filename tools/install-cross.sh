#!/usr/bin/env bash
# Install Debian's aarch64 cross compiler, which links TVM libraries for ARM boards and Jetsons.
set -euo pipefail
if command -v aarch64-linux-gnu-g++ >/dev/null; then exit 0; fi
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq g++-aarch64-linux-gnu
