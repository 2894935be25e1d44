"""Progress bars on stderr, so that stdout stays clean for --json."""

import sys

from tqdm import tqdm


def say(message: str, who: str = "edgenas") -> None:
    """A line above any progress bars (tqdm.write keeps them intact), on stderr with the bars."""
    tqdm.write(f"{who}: {message}", file=sys.stderr)


def bar(total: int, desc: str, initial: int = 0, unit: str = "it") -> tqdm:
    # disable=None: tqdm hides itself when stderr is not a terminal (CI logs, pipes)
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, file=sys.stderr, disable=None, dynamic_ncols=True)
