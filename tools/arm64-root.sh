#!/usr/bin/env bash
# Build an arm64 Debian root holding the aarch64 TVM runtime, in which aarch64 artifacts run under qemu-user.
#   bash tools/arm64-root.sh [DIR]        (default .cache/arm64-root; about 3 minutes; does nothing if DIR is ready)
# Everything comes from Debian's packages and PyPI: debootstrap, qemu-user-static (binfmt), and the aarch64
# wheels of the pinned apache-tvm, downloaded by this machine's pip and installed by the root's own pip.
# debootstrap takes Debian from the machine's own mirror, the one apt uses (see apt_mirror).
SUITE=bookworm

# The machine's Debian mirror, as its apt sources give it: APT_DIR/sources.list and sources.list.d/*.list (one-line
# `deb [options] URI SUITE COMPONENT...`) and sources.list.d/*.sources (deb822 stanzas with Types/URIs/Suites/
# Components, skipped if `Enabled: no`), in apt's order. The first `deb` source with component main that serves
# SUITE from a Debian archive (a URI with a /debian path segment) wins; else the first with main that serves SUITE;
# else the first Debian archive with main (another release's mirror serves SUITE too), security archives aside.
# Only http(s) and file URIs count (debootstrap's). Prints nothing if none is found: debootstrap then uses its default.
#   bash -c 'source tools/arm64-root.sh && apt_mirror [APT_DIR [SUITE]]'
apt_mirror() {
    local apt_dir="${1:-/etc/apt}" suite="${2:-$SUITE}" f files=()
    [ -f "$apt_dir/sources.list" ] && files+=("$apt_dir/sources.list")
    for f in "$apt_dir"/sources.list.d/*; do
        case "$f" in *.list | *.sources) [ -f "$f" ] && files+=("$f") ;; esac
    done
    [ ${#files[@]} -gt 0 ] || return 0
    # one line per (URI, suite) of every enabled `deb` source: URI SUITE COMPONENT...
    awk '
        function flush(  n, i, s, u) {
            if (types ~ /(^|[ \t])deb([ \t]|$)/ && enabled !~ /^(no|false|0)$/ && uris != "") {
                split(uris, u, /[ \t]+/); n = split(suites, s, /[ \t]+/)
                for (i = 1; i <= n; i++) print u[1], s[i], comps
            }
            types = uris = suites = comps = ""; enabled = "yes"
        }
        FNR == 1 { flush(); deb822 = FILENAME ~ /\.sources$/ }
        /^[ \t]*#/ { next }
        deb822 && /^[ \t]*$/ { flush(); next }  # a blank line ends a stanza
        deb822 && /^[ \t]/ { next }             # a continuation line (a key block of Signed-By)
        deb822 {
            if (!match($0, /^[A-Za-z0-9-]+:/)) next
            key = tolower(substr($0, 1, RLENGTH - 1)); val = substr($0, RLENGTH + 1)
            sub(/#.*/, "", val); gsub(/^[ \t]+|[ \t]+$/, "", val)
            if (key == "types") types = val; else if (key == "uris") uris = val
            else if (key == "suites") suites = val; else if (key == "components") comps = val
            else if (key == "enabled") enabled = tolower(val)
            next
        }
        $1 == "deb" {
            line = $0; sub(/#.*/, "", line); sub(/^[ \t]*deb[ \t]+/, "", line)
            sub(/^\[[^]]*\][ \t]*/, "", line)  # [arch=... signed-by=...]
            n = split(line, w, /[ \t]+/); c = ""
            for (i = 3; i <= n; i++) c = c " " w[i]
            if (n >= 2) print w[1], w[2], substr(c, 2)
        }
        END { flush() }
    ' "${files[@]}" | awk -v suite="$suite" '
        $1 !~ /^(https?:\/\/|file:\/)/ { next }
        { main = 0; for (i = 3; i <= NF; i++) if ($i == "main") main = 1 }
        !main { next }
        { debian = $1 ~ /\/debian(\/|$)/; sub(/\/+$/, "", $1) }
        $2 == suite && debian && !a { a = $1 }
        $2 == suite && !b { b = $1 }
        debian && $2 !~ /-security$/ && !c { c = $1 }
        END { print (a != "" ? a : b != "" ? b : c) }
    ' | grep . || true
}

# `source`d (by a test), it only defines apt_mirror
[[ "${BASH_SOURCE[0]}" == "$0" ]] || return 0
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
MIRROR="$(apt_mirror /etc/apt "$SUITE")"
echo "debootstrap $SUITE from ${MIRROR:-the default mirror of debootstrap}"
$SUDO debootstrap --arch=arm64 --variant=minbase --include=python3,python3-venv,python3-pip "$SUITE" "$WORK" \
    ${MIRROR:+"$MIRROR"} >/dev/null
.venv/bin/pip download --quiet --disable-pip-version-check --dest "$WORK/wheels" --only-binary=:all: \
    --platform manylinux_2_28_aarch64 --python-version 3.11 $TVM_PINS numpy
$SUDO chroot "$WORK" python3 -m venv /opt/venv
$SUDO chroot "$WORK" /opt/venv/bin/pip install --quiet --disable-pip-version-check --no-index --find-links /wheels \
    $TVM_PINS numpy
$SUDO rm -rf "$WORK/wheels" "$WORK/var/cache/apt/archives/"*.deb
mv "$WORK" "$ROOT"
echo "$ROOT: arm64 root with $(chroot "$ROOT" /opt/venv/bin/python -c 'import tvm; print("apache-tvm", tvm.__version__)')"
