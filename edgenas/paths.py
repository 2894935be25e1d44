"""Where edgenas finds its bundled data and writes its tables."""

import os
from pathlib import Path

#: The source checkout (editable install); its `targets/` and `latency_tables/` are the defaults.
ROOT = Path(__file__).resolve().parent.parent


def targets_dir() -> Path:
    return Path(os.environ.get("EDGENAS_TARGETS", ROOT / "targets"))


def tables_dir() -> Path:
    return Path(os.environ.get("EDGENAS_TABLES", ROOT / "latency_tables"))
