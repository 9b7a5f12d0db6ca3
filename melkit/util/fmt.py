"""How numbers and tables read in everything melkit prints or writes for a person: terminal tables, bench
reports, the model card document, calibrate's summary.

One convention, stated once: a value that is undefined on the data at hand (``None`` in melkit's metrics,
e.g. an AUC with one class) reads ``n/a`` everywhere; fractions read as percentages with the digits asked
for; an AUC reads with three decimals and its confidence interval in brackets. The JSON files keep every
number; these are only its text.
"""

from __future__ import annotations

__all__ = ["NA", "num", "pct", "count", "mb", "auc_ci", "pct_ci", "md_table", "code"]

NA = "n/a"


def num(v, spec: str = ".3f", none: str = NA) -> str:
    """``v`` formatted with ``spec``, or ``none`` when it is undefined."""
    return none if v is None else format(v, spec)


def pct(v, digits: int = 1) -> str:
    """A fraction as a percentage (no % sign): 0.9634 -> ``96.3``."""
    return NA if v is None else f"{100 * v:.{digits}f}"


def count(v) -> str:
    """An integer with thousands separators: 6882 -> ``6,882``."""
    return NA if v is None else f"{v:,}"


def mb(n_bytes) -> str:
    """A size in megabytes (10^6 bytes), two decimals."""
    return f"{n_bytes / 1e6:.2f}"


def auc_ci(m: dict) -> str:
    """A metrics dict's AUC and its 95 % interval: ``0.912 [0.883, 0.937]``; ``n/a`` without an AUC."""
    if m.get("auc") is None:
        return NA
    ci = m.get("auc_ci")
    return f"{m['auc']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def pct_ci(ci, signed: bool = False) -> str:
    """An interval of fractions as percentages, ``[88.4, 97.1]`` (``signed``: ``[-1.2, +3.4]``, for a change)."""
    if ci is None:
        return f"[{NA}]"
    spec = "+.1f" if signed else ".1f"
    return f"[{100 * ci[0]:{spec}}, {100 * ci[1]:{spec}}]"


def md_table(head, rows) -> list:
    """A markdown pipe table as lines (also readable as plain text). A ``|`` inside a cell (as in |Δp|) is
    escaped and a newline becomes a space, so neither ends the cell or the row."""
    cell = lambda c: str(c).replace("|", "\\|").replace("\n", " ")
    return (["| " + " | ".join(cell(h) for h in head) + " |", "|" + "|".join("---" for _ in head) + "|"]
            + ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows])


def code(s) -> str:
    """Inline markdown code."""
    return f"`{s}`"
