"""A package's public face without its cost: names that live in submodules, imported on first use.

``melkit.train``, ``melkit.convert``, ``melkit.bench``, ``melkit.release`` and ``melkit.data`` each name their
entry point, options and result at the package (``from melkit.train import TrainOptions, run_train``). Imported
eagerly, every ``import melkit.data.contract`` would also run the download and synthetic-data modules, and
every command would pay for modules it never uses (PEP 562's module ``__getattr__`` defers them instead).
"""

from __future__ import annotations

import importlib

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: dict):
    """(``__getattr__``, ``__dir__``) for ``package`` whose public ``exports`` map a name to the submodule
    (relative to ``package``) that defines it."""

    def __getattr__(name: str):
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    def __dir__():
        return sorted(set(exports) | set(globals()))

    return __getattr__, __dir__
