"""What ``melkit card`` reads, checked: its options, the model card, each bench directory's report, the notes and
the previous release it is compared with.

:func:`load_inputs` turns :class:`CardOptions` into :class:`CardInputs`, or raises a one-line BadInputError
(exit 2) on bad input: a missing card, a bench directory without report.json, a report that measured another
model file, an output path that is one of the inputs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import click

from melkit.core.card import ModelCard, load_card, sha256
from melkit.util.errors import BadInputError
from melkit.util.files import check_out_apart, read_json
from melkit.util.options import opt

__all__ = ["OUT_NAME", "REPORT_NAME", "CardOptions", "Bench", "CardInputs", "load_model_card", "training_datasets",
           "load_bench", "load_inputs"]

OUT_NAME = "MODEL_CARD.md"
REPORT_NAME = "report.json"
BENCH_VERSION = 1
THRESHOLD_TOLERANCE = 1e-9


@dataclass
class CardOptions:
    # The released .tflite (its card beside it, checked by sha256) or the card .json itself.
    model: str = opt(argument=True, type=click.Path())
    bench: list = opt(default_factory=list, type=click.Path(), multiple=True,
                      help="A melkit bench output directory (report.json): one results table each; repeatable.")
    notes: str | None = opt(None, type=click.Path(), help="Markdown included verbatim (limitations, what was "
                                                           "tried: prose that cannot be generated).")
    compare: str | None = opt(None, type=click.Path(), help="A previous release's card (.json or .tflite): "
                                                             "a comparison table.")
    compare_bench: list = opt(default_factory=list, type=click.Path(), multiple=True,
                              help="The previous release's bench directories (repeatable; needs --compare).")
    license_id: str | None = opt(None, flag="--license", help="License id for the front matter (default: the "
                                                              "card's licence as a Hugging Face id, else "
                                                              "cc-by-nc-4.0 when trained on HAM10000).")
    out: str | None = opt(None, type=click.Path(), help="Output file (default MODEL_CARD.md beside the model).")
    check: bool = opt(False, help="Write nothing; exit 1 if OUT differs from what would be written.")

    def __post_init__(self):
        self.bench = [self.bench] if isinstance(self.bench, (str, Path)) else list(self.bench or [])
        self.compare_bench = ([self.compare_bench] if isinstance(self.compare_bench, (str, Path))
                              else list(self.compare_bench or []))


@dataclass
class Bench:
    """One bench directory: its report, the set it evaluated, and the card's model's entry in it."""

    dir: Path
    report: dict
    entry: dict
    dataset: str  # e.g. "ham10000-nv-mel"
    split: str | None  # None: every image of the data set
    label: str = ""  # unique among the benches given

    @property
    def reference(self) -> str:
        return self.report.get("reference") or ""


@dataclass
class CardInputs:
    card: ModelCard
    card_path: Path  # the card .json (the model file, if there, is beside it)
    out: Path
    benches: list = field(default_factory=list)
    notes: str | None = None
    notes_path: Path | None = None
    compare: ModelCard | None = None
    compare_path: Path | None = None
    compare_benches: list = field(default_factory=list)
    license_id: str | None = None
    siblings: list = field(default_factory=list)  # (json name, ModelCard) of the release's other variants

    @property
    def card_dir(self) -> Path:
        return self.card_path.parent


def load_model_card(path) -> tuple[ModelCard, Path]:
    """(card, card .json path) from a .tflite (card beside it, sha256 checked) or a card .json (checked
    against the model file beside it, when there)."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"{path}: no such file (give a .tflite model or its card .json)")
    if path.suffix == ".tflite":
        card = load_card(path)
        if card.model_file != path.name:
            raise BadInputError(f"{path}: its card describes {card.model_file!r}")
        return card, path.with_suffix(".json")
    if path.suffix != ".json":
        raise BadInputError(f"{path}: not a .tflite model or a model card .json")
    try:
        d = read_json(path)
    except (OSError, ValueError) as e:
        raise BadInputError(f"{path}: not valid JSON ({e})") from None
    try:
        card = ModelCard.from_json(d)
    except BadInputError as e:
        raise BadInputError(f"{path}: {e}") from None
    model = path.parent / card.model_file
    if model.is_file() and sha256(model.read_bytes()) != card.sha256:
        raise BadInputError(f"{model} does not match its card {path} (sha256 differs)")
    return card, path


def _names(dirs) -> list:
    return [Path(str(d).rstrip("/")).name or str(d) for d in dirs]


def training_datasets(card: ModelCard) -> list:
    """The training data sets' names: each source directory's name (the card joins several with " + ")."""
    d = card.training_data.get("dir")
    dirs = d if isinstance(d, list) else [p.strip() for p in str(d or "").split(" + ") if p.strip()]
    return _names(dirs)


def _model_entry(card: ModelCard, report: dict, where: str) -> dict:
    """The report's entry for the card's model file; BadInputError if it measured another model."""
    models = [m for m in report["models"] if isinstance(m, dict)]
    named = [m for m in models if Path(str(m.get("path") or "")).name == card.model_file]
    if not named:
        # a run benched into RUN/bench is stored as "..": its name then says what it was
        seen = ", ".join(Path(str(m.get("path") or "")).name.strip(".") and Path(str(m["path"])).name
                         or str(m.get("name")) for m in models) or "nothing"
        raise BadInputError(f"{where}: the report has no result for {card.model_file} (it measured {seen})")
    same = [m for m in named if m.get("size_bytes") == card.size_bytes]
    if not same:
        raise BadInputError(f"{where}: the report measured another {card.model_file} ({named[0].get('size_bytes')} "
                            f"bytes; the card's has {card.size_bytes})")
    e = same[0]
    if e.get("variant") not in (None, card.variant):
        raise BadInputError(f"{where}: the report's {card.model_file} is a {e['variant']} model, the card's "
                            f"{card.variant}")
    if e.get("input") is not None and e["input"] != card.input.to_json():
        raise BadInputError(f"{where}: the report's {card.model_file} has input {e['input']}, the card says "
                            f"{card.input.to_json()}")
    thr = e.get("threshold")
    if not isinstance(thr, (int, float)) or abs(thr - card.threshold) > THRESHOLD_TOLERANCE:
        raise BadInputError(f"{where}: the report read {card.model_file} at threshold {thr}, the card says "
                            f"{card.threshold}")
    if not isinstance(e.get("metrics"), dict):
        raise BadInputError(f"{where}: the report's {card.model_file} has no metrics")
    return e


def _evaluated_set(report: dict, card: ModelCard) -> tuple[str, str | None]:
    """(data set name, split or None for all images) from the report's options."""
    o = report.get("options") or {}
    data = o.get("data")
    dirs = [data] if isinstance(data, str) else list(data or [])
    names = _names(dirs) or training_datasets(card) or ["images"]
    whole = bool(dirs) and not o.get("split_csv")
    return "+".join(names), None if whole else str(o.get("split") or "test")


def load_bench(directory, card: ModelCard) -> Bench:
    """A bench directory's report.json, checked to have measured the card's model."""
    directory = Path(directory)
    path = directory / REPORT_NAME
    if not directory.is_dir():
        raise BadInputError(f"{directory}: no such bench directory")
    if not path.is_file():
        raise BadInputError(f"{directory}: no {REPORT_NAME} (write one with melkit bench ... --out {directory})")
    try:
        report = read_json(path)
    except (OSError, ValueError) as e:
        raise BadInputError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(report, dict) or report.get("melkit_bench") != BENCH_VERSION:
        raise BadInputError(f"{path}: not a melkit bench report (version {BENCH_VERSION})")
    if not isinstance(report.get("models"), list) or not isinstance(report.get("images"), dict):
        raise BadInputError(f"{path}: a bench report needs 'models' and 'images'")
    entry = _model_entry(card, report, str(path))
    dataset, split = _evaluated_set(report, card)
    return Bench(directory, report, entry, dataset, split)


def _label(dataset: str, split: str | None) -> str:
    return dataset if split is None else f"{dataset} {split}"


def _label_all(benches: list) -> list:
    """Each bench's label: its set, with the directory's name where two benches evaluated the same set."""
    base = [_label(b.dataset, b.split) for b in benches]
    for b, label in zip(benches, base):
        b.label = label if base.count(label) == 1 else f"{label} ({b.dir.name})"
    return benches


def _siblings(card: ModelCard, card_path: Path) -> list:
    """(json file name, card) of the other variants of the same release in the card's directory, by name."""
    out = []
    for p in sorted(card_path.parent.glob("*.json")):
        if p.name == card_path.name:
            continue
        try:
            other = ModelCard.from_json(read_json(p))
        except (OSError, ValueError, BadInputError):
            continue
        if (other.name, other.version) == (card.name, card.version) and other.model_file != card.model_file:
            out.append((p.name, other))
    return out


def load_inputs(opts: CardOptions) -> CardInputs:
    """Everything the card is made of, checked; BadInputError (one line) on bad input."""
    card, card_path = load_model_card(opts.model)
    benches = _label_all([load_bench(d, card) for d in opts.bench])
    notes = notes_path = None
    if opts.notes:
        notes_path = Path(opts.notes)
        if not notes_path.is_file():
            raise BadInputError(f"--notes {notes_path}: no such file")
        try:
            notes = notes_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise BadInputError(f"--notes {notes_path}: cannot read it ({e})") from None
    compare = compare_path = None
    compare_benches = []
    if opts.compare_bench and not opts.compare:
        raise BadInputError("--compare-bench needs --compare (the previous release's card)")
    if opts.compare:
        compare, compare_path = load_model_card(opts.compare)
        compare_benches = _label_all([load_bench(d, compare) for d in opts.compare_bench])
    if opts.license_id is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.+-]*", opts.license_id):
        raise BadInputError(f"--license {opts.license_id!r}: a license id, like cc-by-nc-4.0 or apache-2.0")
    out = Path(opts.out) if opts.out else card_path.parent / OUT_NAME
    if out.is_dir():
        raise BadInputError(f"--out {out} is a directory; give the file to write (e.g. {out / OUT_NAME})")
    siblings = _siblings(card, card_path)
    # MODEL_CARD.md beside the model is the default; the model, a card or a report it is made from never is
    read = [("the model", card_path.parent / card.model_file), ("the model card", card_path),
            ("the notes", notes_path)]
    read += [("a bench report", b.dir / REPORT_NAME) for b in benches + compare_benches]
    read += [("a model card", card_path.parent / name) for name, _ in siblings]
    if compare_path is not None:
        read += [("the compared card", compare_path), ("the compared model", compare_path.parent / compare.model_file)]
    check_out_apart(out, read=read)
    return CardInputs(card=card, card_path=card_path, out=out, benches=benches, notes=notes, notes_path=notes_path,
                      compare=compare, compare_path=compare_path, compare_benches=compare_benches,
                      license_id=opts.license_id, siblings=siblings)
