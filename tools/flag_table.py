"""Write docs/cli.md's table of shared flags from the CLI itself (edgenas.cli_options.flag_table).

    .venv/bin/python tools/flag_table.py            # rewrites the section between the flag-table markers
    .venv/bin/python tools/flag_table.py --check    # exits 1 when docs/cli.md's table differs from the CLI
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgenas.cli import cli  # noqa: E402
from edgenas.cli_options import flag_table  # noqa: E402

README = Path(__file__).resolve().parents[1] / "docs" / "cli.md"  # the reference page of every verb and flag
BEGIN, END = "<!-- flag-table: written by tools/flag_table.py -->", "<!-- /flag-table -->"


def readme_table(text: str) -> str:
    """The table between the markers."""
    try:
        start = text.index(BEGIN) + len(BEGIN) + 1
        return text[start:text.index(END, start)]
    except ValueError:
        raise SystemExit(f"{README}: no '{BEGIN}' ... '{END}' section") from None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only compare; exit 1 when docs/cli.md is out of date")
    text = README.read_text()
    old, new = readme_table(text), flag_table(cli)
    if ap.parse_args().check:
        if old != new:
            print(f"{README}: the flag table differs from the CLI; run tools/flag_table.py", file=sys.stderr)
            return 1
        return 0
    README.write_text(text.replace(BEGIN + "\n" + old, BEGIN + "\n" + new, 1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
