"""Progress bars on stderr, so that stdout stays clean for --json."""

import sys

from tqdm import tqdm


def bar(total: int, desc: str, initial: int = 0, unit: str = "it") -> tqdm:
    # disable=None: tqdm hides itself when stderr is not a terminal (CI logs, pipes)
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, file=sys.stderr, disable=None, dynamic_ncols=True)
