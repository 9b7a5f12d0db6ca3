"""``melkit card``: ``MODEL_CARD.md`` generated from a model card JSON and ``melkit bench`` reports.

Everything measurable comes from the inputs: the card (``ModelCard``: contract, threshold, training data,
validation, self-check, conversion) and each bench directory's ``report.json`` (one evaluated set each);
prose that cannot be generated (limitations, what was tried) comes verbatim from ``--notes NOTES.md``. The
output starts with Hugging Face-style YAML front matter (license, tags, datasets, ``model-index`` metrics)
written by a small emitter here, so the same inputs always give the same bytes: no timestamps, fixed order.

    text = render(load_inputs(CardOptions(model="tflite_models/m_int8.tflite", bench=["tflite_models/bench-test"])))

:func:`write_model_card` writes it (atomically) or, with ``check``, only says whether the file on disk is
what would be written (QualityGateError, exit 1, when not). Bad input is a one-line BadInputError (exit 2):
a missing card, a bench directory without report.json, or a report that measured another model file.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
from dataclasses import MISSING, asdict, dataclass, field
from pathlib import Path

import click

from melkit.benchmark.bench import BenchOptions
from melkit.benchmark.host import host_line
from melkit.convert.options import ConvertOptions
from melkit.core.card import ModelCard, load_card, sha256
from melkit.core.errors import BadInputError, QualityGateError
from melkit.core.files import atomic_writer, check_out_apart, exclusive, read_json, sweep_temps, writable_dir
from melkit.core.options import cli_fields, flag_name, opt, option_of
from melkit.core.probability import PREVALENCES, post_test_probability
from melkit.core.recipe import PRESETS
from melkit.data.sources import training_licence
from melkit.train.trainer import TrainOptions

OUT_NAME = "MODEL_CARD.md"
REPORT_NAME = "report.json"
BENCH_VERSION = 1
HAM10000_LICENSE = "cc-by-nc-4.0"  # HAM10000 is CC BY-NC 4.0: a model trained on it inherits the restriction
UNKNOWN_LICENSE = "other"
THRESHOLD_TOLERANCE = 1e-9
TAGS = ("melkit", "image-classification", "dermoscopy", "melanoma", "skin-lesion", "mobilenet-v2", "tflite")


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


@dataclass
class CardResult:
    out: Path
    text: str
    status: str  # "written", "unchanged" or "up to date" (--check)


# --------------------------------------------------------------------------- loading


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
        seen = ", ".join(Path(str(m.get("path") or m.get("name"))).name for m in models) or "nothing"
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


# --------------------------------------------------------------------------- YAML (a small, deterministic emitter)

_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_.+/-]*")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


def _yaml_scalar(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else "null"
    s = str(v)
    if _PLAIN.fullmatch(s) and s.lower() not in _YAML_WORDS:
        return s
    return json.dumps(s)  # a JSON string is a YAML double-quoted scalar


def _yaml_lines(obj, indent: int) -> list:
    pad = " " * indent
    lines = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            key = _yaml_scalar(str(k))
            if isinstance(v, dict) and v:
                lines += [f"{pad}{key}:"] + _yaml_lines(v, indent + 2)
            elif isinstance(v, list) and v and not all(isinstance(x, (int, float)) for x in v):
                lines += [f"{pad}{key}:"] + _yaml_lines(v, indent)  # block sequence at the key's indent
            else:
                lines.append(f"{pad}{key}: {_yaml_inline(v)}")
    elif isinstance(obj, list):
        for item in obj:
            if isinstance(item, dict) and item:
                sub = _yaml_lines(item, indent + 2)
                lines += [f"{pad}- {sub[0].lstrip()}"] + sub[1:]
            else:
                lines.append(f"{pad}- {_yaml_inline(item)}")
    else:
        lines.append(pad + _yaml_inline(obj))
    return lines


def _yaml_inline(v) -> str:
    if isinstance(v, dict):
        if v:
            raise ValueError("a non-empty mapping is written as a block")
        return "{}"
    if isinstance(v, list):
        return "[" + ", ".join(_yaml_scalar(x) for x in v) + "]"
    return _yaml_scalar(v)


def to_yaml(obj: dict) -> str:
    """``obj`` (dicts, lists, str, int, float, bool, None) as block YAML, keys in the dict's order."""
    return "\n".join(_yaml_lines(obj, 0)) + "\n"


# --------------------------------------------------------------------------- front matter


# Hugging Face licence ids a card's licence text may name (https://huggingface.co/docs/hub/repositories-licenses).
_HF_LICENSES = {"apache-2.0", "mit", "bsd-3-clause", "gpl-3.0", "cc0-1.0", "cc-by-2.0", "cc-by-2.5", "cc-by-3.0",
                "cc-by-4.0", "cc-by-sa-3.0", "cc-by-sa-4.0", "cc-by-nc-2.0", "cc-by-nc-3.0", "cc-by-nc-4.0",
                "cc-by-nd-4.0", "cc-by-nc-nd-3.0", "cc-by-nc-nd-4.0", "cc-by-nc-sa-2.0", "cc-by-nc-sa-3.0",
                "cc-by-nc-sa-4.0"}
_CC = re.compile(r"cc[- ]by((?:[- ](?:nc|sa|nd))*)[- ](\d\.\d)")


def _license_part_id(text: str) -> str | None:
    """The Hugging Face id of one licence ("CC BY-NC 4.0", "CC0 1.0", "Apache-2.0", "cc-by-4.0"), else None."""
    t = re.sub(r"\s*\([^()]*\)$", "", text.strip()).strip().lower()  # "(HAM10000)": whose licence it is
    if t in _HF_LICENSES:
        return t
    if re.fullmatch(r"cc[- ]?0(?:[- ]1\.0)?", t):
        return "cc0-1.0"
    m = _CC.fullmatch(t)
    if m:
        hf = "cc-by" + re.sub(r"[- ]", "-", m.group(1)) + "-" + m.group(2)
        return hf if hf in _HF_LICENSES else None
    if re.fullmatch(r"apache(?: license)?,?[- ](?:version )?2\.0", t):
        return "apache-2.0"
    return "mit" if t in ("mit license", "the mit license") else None


def hf_license_id(text: str) -> str | None:
    """The Hugging Face licence id of a card's licence text, or None when it names none.

    Several licences joined by "; " (one per training source, melkit/data/sources.py) give one id when they
    agree; CC0 adds no terms, so "CC BY-NC 4.0 (HAM10000); CC0 1.0 (ISIC 2017)" is cc-by-nc-4.0. An unknown
    part (e.g. "unknown: see the training data's terms") gives None: the front matter says "other"."""
    ids = [_license_part_id(p) for p in text.split(";")]
    if not ids or None in ids:
        return None
    restricting = set(ids) - {"cc0-1.0"} or {"cc0-1.0"}
    return restricting.pop() if len(restricting) == 1 else None


def license_of(inputs: CardInputs) -> str:
    """The front matter's licence id: --license, else the card's licence mapped to an id ("other" when it maps
    to none), else (a card without one, from an older release) cc-by-nc-4.0 when trained on HAM10000."""
    if inputs.license_id:
        return inputs.license_id
    if inputs.card.license is not None:
        return hf_license_id(inputs.card.license) or UNKNOWN_LICENSE
    names = training_datasets(inputs.card) + list(inputs.card.training_data.get("counts_by_source") or {})
    return HAM10000_LICENSE if any("ham10000" in n.lower() for n in names) else UNKNOWN_LICENSE


def _r(v, digits=4):
    return None if v is None else round(float(v), digits)


def _index_metrics(m: dict, threshold: float, what: str) -> list:
    """model-index metrics of one evaluation (the card's validation form or a bench report's metrics)."""
    out = []
    if m.get("auc") is not None:
        ci = m.get("auc_ci")
        entry = {"type": "roc_auc", "value": _r(m["auc"])}
        if ci:
            entry["name"] = f"AUC{what} [95% CI {ci[0]:.3f}, {ci[1]:.3f}]"
            entry["args"] = {"ci_95": [_r(ci[0]), _r(ci[1])]}
        else:
            entry["name"] = f"AUC{what}"
        out.append(entry)
    for key, kind, name in (("balanced_accuracy", "balanced_accuracy", "balanced accuracy"),
                            ("sensitivity", "sensitivity", "sensitivity"),
                            ("specificity", "specificity", "specificity")):
        if m.get(key) is not None:
            out.append({"type": kind, "value": _r(m[key]), "name": f"{name}{what} at threshold {threshold:.4f}"})
    return out


def _result(dataset: str, split: str | None, name: str, metrics: list) -> dict:
    ds = {"name": name, "type": dataset}
    if split is not None:
        ds["split"] = split
    return {"task": {"type": "image-classification", "name": "melanoma vs nevus (dermoscopy)"},
            "dataset": ds, "metrics": metrics}


def front_matter(inputs: CardInputs) -> dict:
    card = inputs.card
    thr = card.trained_threshold  # on the P(mel) scale: the Keras model's and (unfolded) the file's
    train_sets = training_datasets(card)
    results = []
    v = card.validation
    if v:
        metrics = _index_metrics(v, thr, " (source Keras model)")
        sc = card.selfcheck
        if sc.get("auc_tflite") is not None:
            metrics.append({"type": "roc_auc", "value": _r(sc["auc_tflite"]),
                            "name": f"AUC of this {card.variant} file (convert self-check)"})
        if sc.get("agreement") is not None:
            metrics.append({"type": "agreement", "value": _r(sc["agreement"]),
                            "name": "decision agreement with the source Keras model"})
        results.append(_result("+".join(train_sets), "val", f"{'+'.join(train_sets)} val", metrics))
    for src, m in sorted((card.extra.get("validation_by_source") or {}).items()):
        results.append(_result(src, "val", f"{src} val (source Keras model)",
                               _index_metrics(m, thr, " (source Keras model)")))
    for name, m in sorted((card.extra.get("external") or {}).items()):
        results.append(_result(name, None, f"{name} (external, source Keras model)",
                               _index_metrics(m, thr, " (source Keras model)")))
    for b in inputs.benches:
        metrics = _index_metrics(b.entry["metrics"], thr, "")
        vs = b.entry.get("vs_reference")
        if vs and vs.get("agreement") is not None:
            metrics.append({"type": "agreement", "value": _r(vs["agreement"]),
                            "name": f"decision agreement with {b.reference}"})
        results.append(_result(b.dataset, b.split, f"{b.label} (melkit bench)", metrics))
    fm = {"license": license_of(inputs)}
    if fm["license"] == UNKNOWN_LICENSE:
        fm["license_name"] = card.license or "not stated"  # the card's own words when they name no id
    fm["tags"] = list(dict.fromkeys(TAGS + (card.variant,)))
    fm["datasets"] = train_sets
    fm["pipeline_tag"] = "image-classification"
    fm["model-index"] = [{"name": f"{card.name}-{card.version}-{card.variant}", "results": results}]
    return fm


# --------------------------------------------------------------------------- markdown helpers


def _f(v, spec=".3f", none="n/a") -> str:
    return none if v is None else format(v, spec)


def _pct(v, digits=1) -> str:
    return "n/a" if v is None else f"{100 * v:.{digits}f}"


def _int(v) -> str:
    return "n/a" if v is None else f"{v:,}"


def _auc_ci(m: dict) -> str:
    if m.get("auc") is None:
        return "n/a"
    ci = m.get("auc_ci")
    return f"{m['auc']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def _mb(n) -> str:
    return f"{n / 1e6:.2f}"


def _table(head, rows) -> list:
    cell = lambda c: str(c).replace("|", "\\|").replace("\n", " ")
    return (["| " + " | ".join(cell(h) for h in head) + " |", "|" + "|".join("---" for _ in head) + "|"]
            + ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows] + [""])


def _display(path: Path, *bases: Path) -> str:
    """``path`` relative to the first base that holds it (posix), else its name: the same text from any
    working directory."""
    p = Path(path).resolve()
    for base in bases:
        try:
            rel = p.relative_to(Path(base).resolve()).as_posix()
        except ValueError:
            continue
        return rel or "."
    return p.name


def _code(s) -> str:
    return f"`{s}`"


# --------------------------------------------------------------------------- sections


def _files(inputs: CardInputs) -> list:
    card, d = inputs.card, inputs.card_dir
    out_dir = inputs.out.parent
    where = "" if out_dir.resolve() == d.resolve() else f" (in {_code(_display(d, out_dir))})"
    out = ["## Files", "", f"Paths relative to the model's directory{where}.", ""]
    io = f"input {card.input.dtype} {list(card.input.shape)}, output {card.output.dtype} {list(card.output.shape)}"
    rows = [[f"{_code(card.model_file)} ({_mb(card.size_bytes)} MB)",
             f"this model: {card.variant}, {io} ({card.output.meaning}); sha256 {_code(card.sha256)}"],
            [_code(inputs.card_path.name), "its melkit model card: preprocessing contract, I/O, threshold, sha256, "
                                           "validation and self-check (what bench, bundle and the app read)"]]
    for name, other in inputs.siblings:
        rows.append([f"{_code(other.model_file)} ({_mb(other.size_bytes)} MB)",
                     f"the {other.variant} variant of the same release (card {_code(name)})"])
    labels = ", ".join(_code(x) for x in card.labels)
    present = "" if (d / card.labels_file).is_file() else " (not beside the model; the labels are in the card)"
    rows.append([_code(card.labels_file), f"{labels}: the output's order{present}"])
    if (d / "split.csv").is_file():
        rows.append([_code("split.csv"), "the data split the model was trained and evaluated on (ids only)"])
    for b in inputs.benches:
        im = b.report["images"]
        rows.append([_code(_display(b.dir, d, out_dir) + "/"),
                     f"melkit bench report on {b.label}: {_int(im.get('n'))} images (report.md / report.json)"])
    return out + _table(["file", "what it is"], rows)


def _model(inputs: CardInputs) -> list:
    card = inputs.card
    p = card.preprocessing
    sr = card.source_run
    alpha = sr.get("alpha")
    out = ["## Model", ""]
    arch = f"MobileNetV2 (alpha {alpha})" if isinstance(alpha, (int, float)) else "MobileNetV2"
    out += [f"- Architecture: {arch}, {p.image_size}x{p.image_size} {p.color} input, one logit exported as "
            f"two scores {card.output.meaning}.",
            f"- Initial weights: {_code(sr.get('weights'))}." if sr.get("weights") else "- Initial weights: n/a.",
            f"- Decision: {card.decision}; threshold {card.trained_threshold:.4f} (policy "
            f"{_code(card.threshold_policy)}, "
            "chosen on the validation split).",
            *([f"- Threshold folded into the model: the trained threshold {card.threshold_fold['threshold']:.4f} "
               f"(logit {card.threshold_fold['logit']:.4f}) now sits at 0.5 of the output, so a generic client's top "
               "category is this decision; the calibrated P(mel) = sigmoid(logit(output) + logit)."]
              if card.threshold_fold else []),
            f"- Input tensor {_code(card.input.name)}: {card.input.dtype} {list(card.input.shape)}"
            + (f", scale {card.input.quantization.scale:g}, zero point {card.input.quantization.zero_point}"
               if card.input.quantization else "") + ".",
            f"- Output tensor {_code(card.output.name)}: {card.output.dtype} {list(card.output.shape)}"
            + (f", scale {card.output.quantization.scale:g}, zero point {card.output.quantization.zero_point}"
               if card.output.quantization else "") + "."]
    if card.domain_guard is not None:
        g, q = card.guard_output, card.guard_output.quantization
        out += [f"- Input-domain guard, output {card.guard_index} {_code(g.name)}: {g.dtype} {list(g.shape)}"
                + (f", scale {q.scale:g}, zero point {q.zero_point}" if q else "")
                + f"; an image whose domain score is above {card.guard_threshold:.4g} does not look like a "
                "dermoscopic lesion image and is not assessed (no melanoma score)."]
    if card.borderline is not None:
        b, v = card.borderline, card.borderline.get("validation") or {}
        out += [f"- Borderline band: an assessed image whose output P(mel) lies in [{b['low']:.4f}, {b['high']:.4f}] "
                "is shown as \"borderline: nevus-like\" or \"borderline: melanoma-suspicious\" (the decision itself "
                "is unchanged): there this model and the float model it came from were seen to disagree "
                f"({_pct(v.get('share'))} of validation, {_int(v.get('flips'))} disagreement(s), all inside)."]
    if card.license is not None or card.author is not None:  # cards of 2.0.0 and older state neither
        out += [f"- Licence: {card.license or 'not stated'}; author: {card.author or 'not stated'} (as the "
                "model's TFLite metadata states them)."]
    out += [""]
    out += [f"Preprocessing contract {_code(p.name)} (every client must feed the model exactly this):", ""]
    pj = p.to_json()
    rows = [[k, _code(pj[k])] for k in ("color", "resize", "rounding", "scale", "mean", "std", "image_size")]
    iq = pj["input_quantization"]
    rows.append(["input_quantization", _code(f"{iq['dtype']}, scale {iq['scale']:g}, zero point {iq['zero_point']}")])
    rows.append(["color_constancy", _code(pj["color_constancy"]) if pj.get("color_constancy") else "none"])
    out += _table(["field", "value"], rows)
    conv = card.conversion
    if conv:
        out += ["### Conversion", ""]
        items = []
        if "calibration_images" in conv:
            items.append(f"calibration: {_int(conv['calibration_images'])} images from the "
                         f"{conv.get('calibration_split', '?')} split"
                         + (", drawn equally from each source" if conv.get("calibration_sources") == "balanced" else "")
                         + f" (seed {conv.get('seed', '?')})")
        eq = conv.get("range_equalization")
        items.append(f"ReLU6 range equalisation: {eq['layers']} layers, margin {eq['margin']:g}"
                     if isinstance(eq, dict) else "ReLU6 range equalisation: off")
        wr = conv.get("weight_rounding")
        if isinstance(wr, dict):
            items.append(f"int8 weight rounding: {wr.get('method')} ({wr.get('layers')} layers)")
        grid = conv.get("decision_grid")
        if isinstance(grid, dict):
            items.append(f"output grid aligned to the threshold: scale {grid.get('scale_before', 0):.4f} -> "
                         f"{grid.get('scale_after', 0):.4f}, threshold logit {grid.get('threshold_logit', 0):.4f} "
                         f"at {grid.get('threshold_in_steps', 0):.1f} steps")
        layers = conv.get("float_layers")
        items.append("layers kept in float: " + (", ".join(map(_code, layers)) if layers else "none"))
        out += [f"- {i}" for i in items] + [""]
    return out


def _recipe(card: ModelCard):
    """(name, stages as dicts, settings dict, where they come from) of the training recipe."""
    r = card.source_run.get("recipe")
    if isinstance(r, dict):
        return r.get("name"), r.get("stages") or [], r, "the card"
    stages = card.source_run.get("stages")
    if stages:
        return r, stages, {}, "the card"
    if r in PRESETS:
        preset = PRESETS[r]()
        return r, [asdict(s) for s in preset.stages], preset.to_dict(), f"melkit's {_code(r)} preset"
    return r, [], {}, None


def _training(inputs: CardInputs) -> list:
    card = inputs.card
    sr, td = card.source_run, card.training_data
    name, stages, settings, origin = _recipe(card)
    out = ["## Training", "",
           f"Recipe {_code(name)}, seed {sr.get('seed', 'n/a')}, from run {_code(Path(str(sr.get('path', ''))).name)}."]
    if stages:
        out += ["", f"Stages (from {origin}; epochs are the most each stage may run):", ""]
        rows = [[s.get("name"), _code(s.get("trainable")), s.get("epochs"), f"{s.get('learning_rate', 0):g}",
                 s.get("optimizer", "adam"), "yes" if s.get("augment") else "no",
                 s.get("early_stopping_patience") or "off"] for s in stages]
        out += _table(["stage", "trains", "epochs", "learning rate", "optimizer", "augmentation",
                       "early stopping patience"], rows)[:-1]
        keys = ("batch_size", "dropout", "class_weights", "oversample", "source_balance", "color_constancy",
                "label_smoothing", "bn_inference")
        shown = [f"{k} {settings[k]}" for k in keys if k in settings]
        if shown:
            out += ["", f"Settings (from {origin}): " + ", ".join(shown) + "."]
    steps = card.versions_by_step
    if steps and steps.get("training") == card.versions:  # an older card: one flat record, the training run's
        out += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in card.versions.items()) + "."]
    elif steps:
        out += ["", "Package versions:", ""]
        out += [f"- {step}: " + ", ".join(f"{k} {v}" for k, v in packages.items()) + "."
                for step, packages in steps.items()]
    out += ["", "### Training data", ""]
    names = training_datasets(card)
    out += [f"{', '.join(map(_code, names)) or 'n/a'} ({_code(td.get('dir'))})."]
    split = td.get("split") or {}
    if split:
        out += ["", f"Split: mode {_code(split.get('mode'))}, seed {split.get('seed')}, augmentation before the "
                    f"split {'yes' if split.get('augment_before_split') else 'no'}."]
    head = ["set", "images", "nv", "mel", "lesions"]
    counts = td.get("counts") or {}
    rows = [["all", *(_int(counts.get(k)) for k in head[1:])]] if counts else []
    rows += [[s, *(_int(c.get(k)) for k in head[1:])] for s, c in (split.get("counts") or {}).items()
             if s != "by_source"]  # split counts per source: a table of their own would repeat the one below
    if rows:
        out += [""] + _table(head, rows)[:-1]
    by_source = td.get("counts_by_source") or {}
    if by_source:
        out += ["", "By source:", ""]
        out += _table(["source", *head[1:]],
                      [[s, *(_int(c.get(k)) for k in head[1:])] for s, c in sorted(by_source.items())])[:-1]
    return out + [""]


def _validation_rows(name: str, m: dict) -> list:
    return [name, _int(m.get("n")), _auc_ci(m), _pct(m.get("sensitivity")), _pct(m.get("specificity")),
            _pct(m.get("balanced_accuracy"))]


def _validation(inputs: CardInputs) -> list:
    card = inputs.card
    rows = []
    if card.validation:
        rows.append(_validation_rows("validation", card.validation))
    for src, m in sorted((card.extra.get("validation_by_source") or {}).items()):
        rows.append(_validation_rows(f"validation: {src}", m))
    for name, m in sorted((card.extra.get("external") or {}).items()):
        rows.append(_validation_rows(f"external: {name}", m))
    out = ["## Validation", "",
           f"As the card states them: the source (Keras) model from training, at the threshold {card.trained_threshold:.4f}. "
           "The validation split also chose the threshold and the best epoch, so its numbers are optimistic. AUC "
           "with its 95 % bootstrap CI.", ""]
    if rows:
        out += _table(["set", "n", "AUC [95 % CI]", "sens %", "spec %", "bal. acc %"], rows)
    sc = card.selfcheck
    if sc:
        verdict = "passed." if sc.get("passed") else f"**failed** ({sc.get('reason') or 'no reason given'})."
        out += [f"Conversion self-check ({sc.get('variant', card.variant)} vs Keras on {_int(sc.get('n'))} validation "
                f"images): AUC {_f(sc.get('auc_tflite'), '.4f')} vs {_f(sc.get('auc_keras'), '.4f')}, decision "
                f"agreement {_pct(sc.get('agreement'), 2)} %, mean / max abs ΔP "
                f"{_f(sc.get('mean_abs_diff'), '.4f')} / {_f(sc.get('max_abs_diff'), '.4f')}: {verdict}", ""]
    return out


RESULTS_HEAD = ["model", "thr", "AUC [95 % CI]", "sens %", "spec %", "bal. acc %", "sens @ 90 % spec",
                "spec @ 90 % sens", "acc % (majority)", "agreement % (flips)", "ECE", "Brier"]


def _results_rows(b: Bench) -> list:
    rows = []
    for e in b.report["models"]:
        m, vs = e.get("metrics") or {}, e.get("vs_reference")
        name = e.get("name", "?") + (" (reference)" if e.get("name") == b.reference else "")
        if e is b.entry:
            name = f"**{name}** (this model)"
        rows.append([name, _f(e.get("threshold"), ".3f"), _auc_ci(m), _pct(m.get("sensitivity")),
                     _pct(m.get("specificity")), _pct(m.get("balanced_accuracy")),
                     _pct(m.get("sensitivity_at_90_specificity")), _pct(m.get("specificity_at_90_sensitivity")),
                     f"{_pct(m.get('accuracy_at_threshold'))} ({_pct(m.get('majority_baseline'))})",
                     "reference" if not vs else f"{_pct(vs.get('agreement'), 2)} ({vs.get('n_flipped', 'n/a')})",
                     _f(m.get("ece")), _f(m.get("brier"))])
    return rows


def _by_source(b: Bench) -> list:
    by = b.report.get("by_source") or {}
    if not by:
        return []
    rows = []
    for src, s in by.items():  # the report's order: largest source first
        for k, e in enumerate(b.report["models"]):
            r = (s.get("models") or {}).get(e.get("name"))
            if r is None:
                continue
            m, vs = r.get("metrics") or {}, r.get("vs_reference")
            rows.append(([src, _int(s.get("n")), _int(s.get("n_pos"))] if k == 0 else ["", "", ""])
                        + [e.get("name"), _auc_ci(m), _pct(m.get("balanced_accuracy")), _pct(m.get("sensitivity")),
                           _pct(m.get("specificity")), "reference" if not vs else _pct(vs.get("agreement"), 2)])
    return ["By source (each source's images alone, same thresholds):", ""] + _table(
        ["source", "n", "mel", "model", "AUC [95 % CI]", "bal. acc %", "sens %", "spec %", "agreement %"], rows)


def _subgroups(b: Bench) -> list:
    groups = b.report.get("subgroups") or {}
    name = b.entry.get("name")
    out = []
    for field_name, rows in groups.items():
        body = [[r.get("value"), _int(r.get("n")), _int(r.get("n_pos")), _f(r["models"][name].get("auc")),
                 _pct(r["models"][name].get("sensitivity")), _pct(r["models"][name].get("specificity")),
                 _pct(r["models"][name].get("agreement"))]
                for r in rows if name in (r.get("models") or {})]
        if body:
            out += [f"<details><summary>{b.label}: by {field_name} ({name}; no CIs: small groups vary a lot)"
                    "</summary>", ""]
            out += _table([field_name, "n", "mel", "AUC", "sens %", "spec %", "agreement %"], body)
            out += ["</details>", ""]
    return out


SCREENING_HEAD = ["set", "n", "mel", "AUC", "sens %", "spec %", "spec @ 90 % sens %", "mel not assessed %",
                  "nv not assessed %", "borderline %", "agreement outside it %"]


def _screening_row(label: str, n, n_pos, m: dict, guard: dict, band: dict) -> list:
    return [label, _int(n), _int(n_pos), _f(m.get("auc")), _pct(m.get("sensitivity")), _pct(m.get("specificity")),
            _pct(m.get("specificity_at_90_sensitivity")), _pct(guard.get("not_assessed_mel")),
            _pct(guard.get("not_assessed_nv")), _pct(band.get("share")), _pct(band.get("agreement_outside"), 2)]


def _screening(inputs: CardInputs) -> list:
    """This model on every benchmarked set and source at its one threshold: what a screening aid is judged by
    (melanomas found, at what specificity), the melanomas and nevi its guard would not assess, and the share of
    images in its borderline band. Only for cards whose benches report the guard or the band (3.0.0 onwards)."""
    if not any(b.entry.get("domain_guard") or b.entry.get("borderline") for b in inputs.benches):
        return []
    rows = []
    for b in inputs.benches:
        e, im = b.entry, b.report["images"]
        guard, band = e.get("domain_guard") or {}, e.get("borderline") or {}
        rows.append(_screening_row(f"**{b.label}**", im.get("n"), im.get("n_mel"), e.get("metrics") or {}, guard,
                                   band))
        for src, s in (b.report.get("by_source") or {}).items():
            r = (s.get("models") or {}).get(e.get("name"))
            if r is not None:
                rows.append(_screening_row(f"{b.label}: {src}", s.get("n"), s.get("n_pos"), r.get("metrics") or {},
                                           (guard.get("by_source") or {}).get(src, {}),
                                           (band.get("by_source") or {}).get(src, {})))
    return (["## Screening at the card's threshold", "",
             f"This model ({inputs.card.variant}) at its one threshold ({_threshold_text(inputs.card)}), on each set "
             "`melkit bench` measured and each source in it: melanomas found (sensitivity) and nevi cleared "
             "(specificity), the specificity it would have at 90 % sensitivity, the share of melanomas and of nevi "
             "its input-domain guard would not assess, and the share of images in its borderline band with the "
             "agreement with the reference outside it. The metrics count every image, assessed or not.", ""]
            + _table(SCREENING_HEAD, rows))


def _risk(inputs: CardInputs) -> list:
    """What an output means: the card's risk bands, each with its likelihood ratio on validation (and per source),
    the probability of melanoma it gives at a few prevalences, and the ratios measured on each benched set."""
    lr = inputs.card.likelihood_ratios
    if lr is None:
        return []
    bands = lr["bands"]
    sources = sorted({s for b in bands for s in (b.get("lr_by_source") or {})})
    head = (["band (output P(mel))", "LR (validation)"] + [f"LR {s}" for s in sources]
            + [f"P(melanoma) % at {100 * q:g} % prevalence" for q in PREVALENCES])
    rows = [[f"{b['name']} [{b['low']:.3f}, {b['high']:.3f})", _f(b["lr"], ".2f")]
            + [_f((b.get("lr_by_source") or {}).get(s), ".2f") for s in sources]
            + [_pct(post_test_probability(b["lr"], q)) for q in PREVALENCES] for b in bands]
    out = ["## What an output means", "",
           "The P(mel) this model outputs is a score, not a probability: it was trained on sources with 14 % to 40 % "
           "melanomas, so no single number is calibrated for every clinic or phone. Each output instead falls in one "
           "of the risk bands below, whose likelihood ratio (how many times as common such an output is for "
           "melanomas as for nevi; every source's classes weighted alike) holds whatever the prevalence of "
           "melanoma where the model is used; the probability it gives follows from the prevalence (post-test "
           "odds = prior odds x LR). `melkit predict` and the app show the band and its ratio. Ratios per source "
           "show how much they move from one device to the next.", ""] + _table(head, rows)
    measured = [(b.label, b.entry["risk_bands"]) for b in inputs.benches if b.entry.get("risk_bands")]
    if measured:
        out += ["Measured by `melkit bench` on each set (LR here / card):", ""]
        out += _table(["set"] + [b["name"] for b in bands],
                      [[label] + [f"{_f(x['lr'], '.2f')} / {_f(x['lr_card'], '.2f')}" for x in r["bands"]]
                       for label, r in measured])
    return out


def _results(inputs: CardInputs) -> list:
    if not inputs.benches:
        return []
    out = ["## Results", "",
           "From `melkit bench`, at each model's threshold (this model's is the card's, "
           f"{_threshold_text(inputs.card)}). AUC with its 95 % bootstrap CI (over lesions); agreement: the same "
           "decision as the reference on the same image; acc % (majority): accuracy, and that of always answering "
           "the larger class.", ""]
    for b in inputs.benches:
        im = b.report["images"]
        out += [f"### {b.label}", "",
                f"{_int(im.get('n'))} images ({_int(im.get('n_mel'))} mel, {_int(im.get('n_nv'))} nv; "
                f"{_int(im.get('lesions'))} lesions): {im.get('source', 'n/a')}. Reference: {_code(b.reference)}."
                + (f" {len(im['skipped'])} unreadable image(s) left out." if im.get("skipped") else ""), ""]
        out += _table(RESULTS_HEAD, _results_rows(b))
        out += _by_source(b)
        out += _subgroups(b)
    return out


def _parity(inputs: CardInputs) -> list:
    card = inputs.card
    rows = []
    sc = card.selfcheck
    if sc.get("agreement") is not None:
        n = sc.get("n")
        flips = round((1 - sc["agreement"]) * n) if isinstance(n, int) else "n/a"
        delta = None if None in (sc.get("auc_tflite"), sc.get("auc_keras")) else sc["auc_tflite"] - sc["auc_keras"]
        rows.append(["validation (convert self-check)", sc.get("variant", card.variant), "Keras", _f(delta, "+.4f"),
                     _pct(sc["agreement"], 2), flips,
                     f"{_f(sc.get('mean_abs_diff'), '.4f')} / {_f(sc.get('max_abs_diff'), '.4f')}"])
    for b in inputs.benches:
        for e in b.report["models"]:
            vs = e.get("vs_reference")
            if not vs:
                continue
            rows.append([b.label, e.get("name"), b.reference, _f(vs.get("delta_auc"), "+.4f"),
                         _pct(vs.get("agreement"), 2), vs.get("n_flipped", "n/a"),
                         f"{_f(vs.get('mean_abs_dp'), '.4f')} / {_f(vs.get('max_abs_dp'), '.4f')}"])
    if not rows:
        return []
    return (["## Parity", "", "Each model against its reference on the same images: ΔAUC (model − reference), "
             "decision agreement at each model's threshold, decisions flipped, mean / max abs change of P(mel).", ""]
            + _table(["set", "model", "vs", "ΔAUC", "agreement %", "flips", "mean / max abs ΔP"], rows))


def _cmp_rows(label: str, old: dict, new: dict, vs_old=None, vs_new=None) -> list:
    rows = []
    for key, name, kind in (("auc", "AUC", "auc"), ("balanced_accuracy", "bal. acc %", "pct"),
                            ("sensitivity", "sens %", "pct"), ("specificity", "spec %", "pct")):
        a, b = old.get(key), new.get(key)
        if a is None and b is None:
            continue
        if kind == "auc":
            rows.append([label, name, _f(a), _f(b), _f(None if None in (a, b) else b - a, "+.3f")])
        else:
            rows.append([label, name, _pct(a), _pct(b), _f(None if None in (a, b) else 100 * (b - a), "+.1f")])
    if vs_old is not None or vs_new is not None:
        a, b = (vs_old or {}).get("agreement"), (vs_new or {}).get("agreement")
        rows.append([label, "agreement %", _pct(a, 2), _pct(b, 2),
                     _f(None if None in (a, b) else 100 * (b - a), "+.2f")])
    return rows


def _threshold_text(card) -> str:
    """The card's threshold, and for a folded card the P(mel) it stands for."""
    if card.threshold_fold is None:
        return f"{card.threshold:.4f}"
    return f"{card.threshold:.4f} of the output, P(mel) {card.trained_threshold:.4f}"


def _comparison(inputs: CardInputs) -> list:
    old, new = inputs.compare, inputs.card
    if old is None:
        return []
    rows = [["model file", "MB", _mb(old.size_bytes), _mb(new.size_bytes),
             f"{(new.size_bytes - old.size_bytes) / 1e6:+.2f}"],
            ["decision", "threshold (P(mel))", f"{old.trained_threshold:.4f}", f"{new.trained_threshold:.4f}",
             f"{new.trained_threshold - old.trained_threshold:+.4f}"]]
    rows += _cmp_rows("validation (cards, Keras)", old.validation, new.validation)
    a, b = old.selfcheck.get("agreement"), new.selfcheck.get("agreement")
    if a is not None or b is not None:
        rows.append(["validation (self-check)", "agreement %", _pct(a, 2), _pct(b, 2),
                     _f(None if None in (a, b) else 100 * (b - a), "+.2f")])
    olds = {b.label: b for b in inputs.compare_benches}
    for b in inputs.benches:
        o = olds.pop(b.label, None)
        if o is not None:
            rows += _cmp_rows(b.label, o.entry["metrics"], b.entry["metrics"], o.entry.get("vs_reference"),
                              b.entry.get("vs_reference"))
    old_name, new_name = f"{old.version} ({old.variant})", f"{new.version} ({new.variant})"
    out = ["## Compared with the previous release", "",
           f"{_code(old.name)} {old.version} ({_code(old.model_file)}) against this model; bench rows only for "
           "sets both releases were benchmarked on.", ""]
    out += _table(["set", "metric", old_name, new_name, "Δ"], rows)
    if olds:
        out += ["Benchmarked for the previous release only: " + ", ".join(sorted(olds)) + ".", ""]
    return out


def _latency(inputs: CardInputs) -> list:
    rows, hosts = [], {}
    for b in inputs.benches:
        lat = b.report.get("latency") or {}
        tfl = lat.get("tflite") or {}
        for e in b.report["models"]:
            r = tfl.get(e.get("name"))
            if not r:
                continue
            t, off = r.get("timed") or {}, r.get("xnnpack_off") or {}
            rows.append([b.label, e.get("name") + (" (this model)" if e is b.entry else ""),
                         _mb(e["size_bytes"]) if e.get("size_bytes") else "n/a", r.get("threads", "n/a"),
                         _f(t.get("mean_ms"), ".2f"),
                         f"{_f(t.get('p50_ms'), '.2f')} / {_f(t.get('p90_ms'), '.2f')} / {_f(t.get('p99_ms'), '.2f')}",
                         _f(off.get("mean_ms"), ".2f", "-"), _f(r.get("peak_rss_mb"), ".0f")])
        k = lat.get("keras")
        if k and k.get("single"):
            rows.append([b.label, "Keras (1 image)", "", "", _f(k["single"].get("mean_ms"), ".2f"),
                         f"{_f(k['single'].get('p50_ms'), '.2f')} / {_f(k['single'].get('p90_ms'), '.2f')} / "
                         f"{_f(k['single'].get('p99_ms'), '.2f')}", "", ""])
        if tfl and b.report.get("host"):
            try:
                hosts.setdefault(host_line(b.report["host"]), []).append(b.label)
            except (KeyError, TypeError):
                pass
    if not rows:
        return []
    out = ["## Latency", "", "LiteRT interpreter, one image per invoke, as `melkit bench` measured it "
                             "(each model in a fresh process; XNNPACK off: the builtin kernels).", ""]
    out += _table(["set", "model", "MB", "threads", "mean ms", "p50 / p90 / p99 ms", "XNNPACK off ms",
                   "peak RSS MB"], rows)
    for line, labels in hosts.items():
        out += [f"Host ({', '.join(labels)}): {line}."]
    out += ["", "No phone numbers here: measure on a device with the `adb` commands in each bench report.md.", ""]
    return out


def _notes(inputs: CardInputs) -> list:
    if inputs.notes is None:
        return []
    return [inputs.notes.rstrip("\n"), ""]


# --------------------------------------------------------------------------- reproduce


def _default(f):
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


def command_line(prog: list, cls, values: dict) -> str:
    """The command that sets ``values`` (field name -> value) of options dataclass ``cls``: arguments first,
    then each option that differs from its default, by the flag ``cls`` declares for it."""
    args, options = [], []
    for f in cli_fields(cls):
        if f.name not in values:
            continue
        o, v, default = option_of(f), values[f.name], _default(f)
        flag = flag_name(f)
        if o.switches:
            options += [f"--{name}" for name in o.switches if name in (v or [])]
        elif o.argument:
            args += [str(x) for x in (v if isinstance(v, (list, tuple)) else [v])]
        elif v == default:
            continue
        elif o.off and v is None:
            options.append(o.off[0])
        elif o.is_flag or isinstance(default, bool):
            if bool(v) != bool(default):
                options.append(flag)
        else:
            for x in (v if isinstance(v, (list, tuple)) else [v]):
                options += [flag, str(x)]
    return " ".join(shlex.quote(a) for a in [*prog, *args, *options])


def _train_command(card: ModelCard, inputs: CardInputs) -> str | None:
    sr, td = card.source_run, card.training_data
    d = td.get("dir")
    if not d:
        return None
    recipe = sr.get("recipe") if isinstance(sr.get("recipe"), str) else None
    preset = PRESETS[recipe]() if recipe in PRESETS else None
    values = {"data": d if isinstance(d, list) else [p.strip() for p in str(d).split(" + ") if p.strip()],
              "out": f"runs/{Path(str(sr.get('path') or 'run')).name}", "seed": sr.get("seed", 0)}
    if recipe:
        values["recipe"] = recipe
    if sr.get("weights") is not None:
        values["weights"] = sr["weights"]
    alpha, size, cc = sr.get("alpha"), card.image_size, bool(card.preprocessing.color_constancy)
    if alpha is not None and (preset is None or alpha != preset.alpha):
        values["alpha"] = alpha
    if preset is None or size != preset.image_size:
        values["image_size"] = size
    if cc and (preset is None or not preset.color_constancy):
        values["color_constancy"] = True
    split = td.get("split") or {}
    if split.get("mode") == "csv":
        values["split_csv"] = "split.csv" if (inputs.card_dir / "split.csv").is_file() else "SPLIT.csv"
    elif split.get("mode") in ("lesion", "image"):
        values["split"] = split["mode"]
    if split.get("augment_before_split"):
        values["augment_before_split"] = True
    return command_line(["melkit", "train"], TrainOptions, values)


def _convert_command(card: ModelCard) -> str | None:
    conv = card.conversion
    values = {"variants": [card.variant], "version": card.version}
    alpha = card.source_run.get("alpha")
    if not (isinstance(alpha, (int, float)) and card.name == f"melkit_mnv2_{alpha:g}_{card.image_size}"):
        values["name"] = card.name
    if isinstance(conv, dict):
        if "calibration_images" in conv:
            values["calibration_images"] = conv["calibration_images"]
        eq = conv.get("range_equalization")
        values["equalize_margin"] = eq.get("margin") if isinstance(eq, dict) else None
        if isinstance(conv.get("weight_rounding"), dict):
            values["weight_rounding"] = conv["weight_rounding"].get("method")
        values["align_threshold"] = isinstance(conv.get("decision_grid"), dict)
        values["float_layers"] = list(conv.get("float_layers") or [])
        if "seed" in conv:
            values["seed"] = conv["seed"]
        if isinstance(conv.get("contract_change"), dict):  # the cards state another contract than the run's
            values["contract_version"] = card.preprocessing.version
        if "threshold_fold" in conv:  # a card from a convert that folds (or says why it did not)
            values["fold_threshold"] = card.threshold_fold is not None or isinstance(conv["threshold_fold"], dict)
    guard = card.domain_guard
    if guard:
        values["domain_guard"] = True
        quantile = re.search(r"quantile ([0-9.]+)", str(guard.get("threshold_policy", "")))
        if quantile:
            values["domain_guard_quantile"] = float(quantile.group(1))
        values["domain_guard_balance"] = guard.get("balance", "none")  # cards from before the option: none
        if isinstance(guard.get("shrinkage"), (int, float)):
            values["domain_guard_shrinkage"] = guard["shrinkage"]
    if card.author is not None:
        values["author"] = card.author
    if card.license is not None and card.license != _default_license(card):
        values["license"] = card.license
    return command_line(["melkit", "convert", f"runs/{Path(str(card.source_run.get('path') or 'run')).name}"],
                        ConvertOptions, values)


def _default_license(card: ModelCard) -> str:
    """The licence melkit convert states by default for the card's training sources (by their names)."""
    by_source = card.training_data.get("counts_by_source")
    return training_licence(list(by_source) if by_source else training_datasets(card))


def _bench_command(b: Bench) -> str | None:
    o = b.report.get("options")
    if not isinstance(o, dict):
        return None
    values = dict(o)
    if isinstance(values.get("data"), str):
        values["data"] = [values["data"]]
    return command_line(["melkit", "bench"], BenchOptions, values)


def _rel(path: Path, base: Path) -> str:
    return Path(os.path.relpath(Path(path).resolve(), Path(base).resolve())).as_posix()


def _card_command(inputs: CardInputs) -> str:
    """This command, run from the model's directory."""
    d = inputs.card_dir
    model = d / inputs.card.model_file
    args = ["melkit", "card", model.name if model.is_file() else inputs.card_path.name]
    for b in inputs.benches:
        args += ["--bench", _rel(b.dir, d)]
    if inputs.notes_path is not None:
        args += ["--notes", _rel(inputs.notes_path, d)]
    if inputs.compare is not None:
        args += ["--compare", _rel(inputs.compare_path, d)]
        args += [x for b in inputs.compare_benches for x in ("--compare-bench", _rel(b.dir, d))]
    if inputs.license_id:
        args += ["--license", inputs.license_id]
    if inputs.out.resolve() != (d / OUT_NAME).resolve():
        args += ["--out", _rel(inputs.out, d)]
    return " ".join(shlex.quote(a) for a in args)


def _reproduce(inputs: CardInputs) -> list:
    card = inputs.card
    lines = ["# training and conversion, as the card records them (data folders and weights by name)"]
    lines += [c for c in (_train_command(card, inputs), _convert_command(card)) if c]
    benches = [c for c in map(_bench_command, inputs.benches) if c]
    if benches:
        lines += ["# the results above (paths as the bench was run)"] + benches
    lines += ["# this file, from the model's directory", _card_command(inputs)]
    return ["## Reproduce", "", "```sh", *lines, "```", ""]


# --------------------------------------------------------------------------- the card


def render(inputs: CardInputs) -> str:
    """MODEL_CARD.md's text: the same inputs give the same bytes."""
    card = inputs.card
    made_from = ", ".join([inputs.card_path.name] + [_display(b.dir, inputs.card_dir, inputs.out.parent) + "/"
                                                    for b in inputs.benches]
                          + ([inputs.notes_path.name] if inputs.notes_path else []))
    out = ["---", to_yaml(front_matter(inputs)).rstrip("\n"), "---", "",
           f"# Model card: {_code(card.name)} {card.version} ({card.variant})", "",
           f"<!-- Generated by `melkit card` from {made_from}: edit those, not this file. -->", "",
           f"> **Not a medical device.** {card.not_a_medical_device}", ""]
    for section in (_files, _model, _training, _validation, _screening, _risk, _results, _parity, _comparison, _latency, _notes,
                    _reproduce):
        out += section(inputs)
    while out and out[-1] == "":
        out.pop()
    return "\n".join(out) + "\n"


def write_model_card(opts: CardOptions) -> CardResult:
    """Render the card and write it to ``opts.out`` (atomically; untouched when already the same), or with
    ``opts.check`` only compare: QualityGateError when the file differs or is missing."""
    inputs = load_inputs(opts)
    text = render(inputs)
    out = inputs.out
    data = text.encode("utf-8")
    current = None
    if out.is_file():
        try:
            current = out.read_bytes()
        except OSError as e:
            raise BadInputError(f"{out}: cannot read it ({e})") from None
    if opts.check:
        if current is None:
            raise QualityGateError(f"{out} does not exist (write it with melkit card without --check)")
        if current != data:
            raise QualityGateError(f"{out} differs from what melkit card generates (regenerate it without --check)")
        return CardResult(out, text, "up to date")
    if current == data:
        return CardResult(out, text, "unchanged")
    writable_dir(out.parent)
    with exclusive(out):  # the temp file a killed earlier `melkit card` left beside OUT is this one's to remove
        sweep_temps(out.parent, [out.name])
        with atomic_writer(out) as f:
            f.write(text)
    return CardResult(out, text, "written")
