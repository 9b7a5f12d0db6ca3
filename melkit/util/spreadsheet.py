"""CSV files that people open in a spreadsheet (every ``predictions.csv``): what a cell holds is shown, never run.

Image ids come from file names and metadata the user (or whoever sent the images) chose. A spreadsheet runs a
cell that starts with ``=``, ``+``, ``-`` or ``@`` as a formula (``=HYPERLINK(...)`` leaks data when a clinician
opens the file), and a tab or carriage return at the start hides or shifts it. Such text cells get a leading
single quote (OWASP's advice against CSV injection), so the spreadsheet shows the text. Numbers are data: a
number, or text that is a plain decimal number such as ``-0.5``, is written as it is. Rows end in CRLF (RFC 4180),
which also makes the csv module quote a cell holding a carriage return: a bare CR in an id no longer splits its
row. The JSON outputs keep the true ids; a CSV cell is for reading, a JSON value for recomputing.
"""

from __future__ import annotations

import csv
import re

FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def safe_cell(value):
    """``value`` as a spreadsheet must show it: text starting with a formula character gets a leading ``'``."""
    if isinstance(value, str) and value.startswith(FORMULA_START) and not _PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


class SpreadsheetWriter:
    """csv.writer for a file opened with ``newline=""`` (as atomic_writer opens it): every cell through
    :func:`safe_cell`, CRLF row ends, cells with a delimiter, quote, CR or LF quoted."""

    def __init__(self, f):
        self._writer = csv.writer(f, lineterminator="\r\n")

    def writerow(self, row) -> None:
        self._writer.writerow([safe_cell(c) for c in row])
