"""What a converted model says about where it came from: licence, author and the package versions behind it.

The licence defaults to the training data's (melkit/data/sources.py keeps each source's): a model trained on
HAM10000 inherits its CC BY-NC 4.0 terms whatever licence melkit's code has. The versions are those of the
packages that shaped the numbers: the run's own record of its training (config.json ``versions``) and the
packages installed when converting (TensorFlow's converter, Keras, the LiteRT interpreter of the self-check,
Pillow decoding the check images, numpy; tensorflow-model-optimization for a QAT model). Both go into the
TFLite metadata and the card, each named, because a conversion may run on other versions than the training.

Nothing here names a path: the card and the metadata travel with the model to other machines and the app.
"""

from __future__ import annotations

import importlib.metadata
import platform
import re
from dataclasses import dataclass, field

from melkit import __version__
from melkit.data.readers import read_sources
from melkit.data.sources import training_licence
from melkit.util.errors import BadInputError

DEFAULT_AUTHOR = "melkit contributors"
MAX_TEXT = 300  # a licence or author is one line of metadata, not a document
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_text(flag: str, value) -> str:
    """``value`` of a one-line text option (--license, --author), or a one-line BadInputError saying why not:
    empty, several lines (a newline or other control character) or longer than MAX_TEXT characters."""
    if not isinstance(value, str) or not value.strip():
        raise BadInputError(f"{flag} must not be empty")
    if _CONTROL.search(value):
        raise BadInputError(f"{flag} must be one line of text (no newline or control character)")
    if len(value) > MAX_TEXT:
        raise BadInputError(f"{flag} is {len(value)} characters; at most {MAX_TEXT}")
    return value


def training_sources(config, data_dir=None) -> list:
    """The source names of the run's data: the run's own per-source counts when it had several, else the
    sources its data directory holds now (one directory: the set it was split from)."""
    by_source = config.data.get("counts_by_source")
    if by_source:
        return sorted(by_source)
    return sorted(read_sources([data_dir] if data_dir else config.data_dirs).sources)


def conversion_versions() -> dict:
    """Versions of the packages a conversion uses, as installed now (python and melkit for completeness).
    Read from the installed distributions' metadata: nothing is imported, the numbers are the same."""
    return {"melkit": __version__, "python": platform.python_version(),
            **{name: _installed(name) for name in ("tensorflow", "tf_keras", "ai-edge-litert", "pillow", "numpy")}}


def qat_versions() -> dict:
    """What a QAT model adds: tensorflow-model-optimization trained its fake-quantized weights."""
    return {"tensorflow-model-optimization": _installed("tensorflow-model-optimization")}


def _installed(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


@dataclass(frozen=True)
class Provenance:
    """The licence, author and versions every file of one conversion states."""

    license: str
    author: str
    training: dict = field(default_factory=dict)  # the run's config.json versions
    conversion: dict = field(default_factory=dict)  # conversion_versions()

    @classmethod
    def of(cls, config, license: str | None, author: str, data_dir=None) -> Provenance:
        """``license`` None: the training data's (training_licence of the run's sources)."""
        if license is None:
            license = training_licence(training_sources(config, data_dir))
        return cls(license, author, dict(config.versions), conversion_versions())

    def versions(self, variant: str) -> dict:
        """The card's and the metadata's ``versions``: the training run's and this conversion's, each named."""
        conversion = {**self.conversion, **(qat_versions() if variant == "qat" else {})}
        return {"training": dict(self.training), "conversion": conversion}

    def card_fields(self, variant: str) -> dict:
        """make_card's ``license``, ``author`` and ``versions`` for one variant."""
        return {"license": self.license, "author": self.author, "versions": self.versions(variant)}
