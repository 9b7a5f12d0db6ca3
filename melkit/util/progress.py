"""Progress bars that behave in a terminal and stay quiet-ish in CI logs."""

from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm


def interactive() -> bool:
    return sys.stderr.isatty() and os.environ.get("CI", "").lower() not in ("1", "true")


def progress_bar(total=None, desc=None, unit="it", **kw):
    # In CI / pipes, redraw rarely so logs stay readable.
    return tqdm(total=total, desc=desc, unit=unit, leave=not interactive(), dynamic_ncols=True,
                mininterval=0.2 if interactive() else 10.0, disable=os.environ.get("MELKIT_QUIET") == "1", **kw)


def keras_verbose() -> int:
    """Keras fit verbosity: a live bar in a terminal, one line per epoch otherwise."""
    return 1 if interactive() else 2
