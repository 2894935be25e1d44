#!/usr/bin/env bash
# Install Debian's dataset-fashion-mnist (30 MB): `--data fashion` reads it from /usr/share/datasets/fashion-mnist.
# edgenas downloads nothing at run time; this script, run once, is how the data set gets onto the machine.
set -euo pipefail
if [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then exit 0; fi
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null
