"""Paths that a file records, stored relative to the folder that holds the file.

A run's ``config.json`` names its data directory, a bench ``report.json`` the models it measured. Stored
relative to their own folder (posix form, ``../data``), they stay true when that folder and what it names
move together: a run published by renaming ``OUT.partial`` to ``OUT``, a demo folder copied elsewhere. A
path stored by an older melkit is absolute and reads as it is.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["stored_path", "read_path"]


def stored_path(path, folder) -> str:
    """``path`` as a file in ``folder`` records it: relative to ``folder`` in posix form, both resolved first
    (so that ``..`` means the real parent). ``folder`` need not exist yet, only where it will be. Absolute
    where no relative path leads there (another drive on Windows)."""
    target = Path(path).resolve()
    try:
        return Path(os.path.relpath(target, Path(folder).resolve())).as_posix()
    except ValueError:
        return target.as_posix()


def read_path(stored, folder) -> str:
    """A path recorded by a file in ``folder`` (see :func:`stored_path`), usable from any working directory:
    a relative one joined to ``folder`` and resolved, an absolute one (an older file's) unchanged."""
    if os.path.isabs(stored):
        return str(stored)
    return str((Path(folder) / stored).resolve())
