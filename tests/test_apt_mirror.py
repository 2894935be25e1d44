"""tools/arm64-root.sh takes Debian from the machine's own mirror, read from its apt sources as apt reads them.

Only its `apt_mirror` function runs here (the whole script downloads an arm64 root), on apt directories written
in the formats apt reads: one-line .list files and deb822 .sources files."""

import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "tools" / "arm64-root.sh"

# this machine's format (Debian 12 images): deb822, with the security archive in a second stanza
DEBIAN_SOURCES = """Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
# http://snapshot.debian.org/archive/debian-security/20250520T000000Z
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""

NODESOURCE = """Types: deb
URIs: https://deb.nodesource.com/node_20.x
Suites: nodistro
Components: main
Architectures: amd64
Signed-By: /usr/share/keyrings/nodesource.gpg
"""


def apt_mirror(apt_dir, suite: str = "bookworm") -> str:
    proc = subprocess.run(["bash", "-c", f'source "{SCRIPT}" && apt_mirror "$1" "$2"', "-", str(apt_dir), suite],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and not proc.stderr, proc
    assert proc.stdout.count("\n") <= 1
    return proc.stdout.strip()


def apt_dir(tmp_path, sources_list: str | None = None, **parts: str) -> Path:
    """An apt directory: `sources_list` as sources.list, and each of `parts` (name with '_' for '.') in sources.list.d."""
    (tmp_path / "sources.list.d").mkdir(parents=True)
    if sources_list is not None:
        (tmp_path / "sources.list").write_text(sources_list)
    for name, text in parts.items():
        (tmp_path / "sources.list.d" / name.replace("_", ".")).write_text(text)
    return tmp_path


def test_script_syntax():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_deb822_as_on_this_machine(tmp_path):
    d = apt_dir(tmp_path, debian_sources=DEBIAN_SOURCES, nodesource_sources=NODESOURCE,
                google_list_disabled="deb http://elsewhere.example/debian bookworm main\n")  # not .list: apt skips it
    assert apt_mirror(d) == "http://deb.debian.org/debian"


def test_one_line_format_with_options_comments_and_deb_src(tmp_path):
    d = apt_dir(tmp_path, sources_list="""# deb cdrom:[Debian GNU/Linux 12.5.0 _Bookworm_ - Official amd64 DVD]/ bookworm main
deb cdrom:[Debian GNU/Linux 12.5.0 _Bookworm_ - Official amd64 DVD]/ bookworm contrib main

deb-src http://src.example.org/debian bookworm main
deb http://security.debian.org/debian-security bookworm-security main contrib
deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://ftp.de.debian.org/debian/ bookworm main contrib  # the mirror
""")
    assert apt_mirror(d) == "http://ftp.de.debian.org/debian"


def test_snapshot_mirror_with_an_inline_key_and_a_disabled_stanza(tmp_path):
    d = apt_dir(tmp_path, debian_sources="""Types: deb
URIs: http://disabled.example.org/debian
Suites: bookworm
Components: main
Enabled: no

types: deb deb-src
uris: http://snapshot.debian.org/archive/debian/20250520T000000Z
suites: bookworm bookworm-updates
components: main contrib
signed-by:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 URIs: http://not-a-field.example.org/debian
 -----END PGP PUBLIC KEY BLOCK-----
""")
    assert apt_mirror(d) == "http://snapshot.debian.org/archive/debian/20250520T000000Z"


def test_a_debian_archive_wins_over_an_earlier_third_party_source_of_the_suite(tmp_path):
    d = apt_dir(tmp_path, a_php_list="deb https://packages.sury.org/php/ bookworm main\n",
                b_debian_sources=DEBIAN_SOURCES.replace("deb.debian.org", "mirror.example.org"))
    assert apt_mirror(d) == "http://mirror.example.org/debian"


def test_a_local_mirror_of_the_suite_without_a_debian_path(tmp_path):
    d = apt_dir(tmp_path, sources_list="deb http://apt-cache.lan:3142/mirror bookworm main\n")
    assert apt_mirror(d) == "http://apt-cache.lan:3142/mirror"


def test_the_mirror_of_another_debian_release(tmp_path):
    d = apt_dir(tmp_path, debian_sources=DEBIAN_SOURCES.replace("bookworm", "trixie").replace("deb.debian.org", "ftp.fr.debian.org"))
    assert apt_mirror(d) == "http://ftp.fr.debian.org/debian"


@pytest.mark.parametrize("sources_list", [None, "", "deb http://archive.ubuntu.com/ubuntu jammy main universe\n"])
def test_no_debian_mirror_leaves_debootstrap_its_default(tmp_path, sources_list):
    assert apt_mirror(apt_dir(tmp_path, sources_list, nodesource_sources=NODESOURCE)) == ""


def test_no_apt_directory_at_all(tmp_path):
    assert apt_mirror(tmp_path / "nothing") == ""


def test_this_machine():
    mirror = apt_mirror("/etc/apt")
    assert mirror == "" or mirror.startswith(("http://", "https://", "file:/")), mirror
