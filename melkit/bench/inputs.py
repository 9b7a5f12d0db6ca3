"""What a benchmark or a prediction runs on: checked models and the images to feed them.

A model is either a train run directory (its Keras model, threshold from ``metrics.json``) or a .tflite
file with its card. A .tflite is only used when its card matches it (sha256) and the interpreter's
actual input agrees with what the card promises: the app reads the card, so a mismatch would make the
phone feed the model something else than what bench measured. Its bytes are read once, checked, and kept
on the :class:`ModelRef`: every interpreter (and every copy or temp file a tool measures) is made from
them, so a file replaced on disk after the check never runs under the old card.

Images come from, in this order of precedence: ``--data DIR`` with ``--split-csv`` (one split of DIR),
``--data DIR`` alone (every image of DIR), or the reference run's own split of its data directories.
``--data`` may be repeated, one directory per source, as in ``melkit train``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from melkit.core.card import ModelCard, read_model
from melkit.core.litert import load_interpreter
from melkit.core.run import RunConfig, load_run
from melkit.data.contract import Contract
from melkit.data.readers import read_sources
from melkit.data.records import refuse_unusable
from melkit.data.split import SPLITS, check_split_labels, read_split_csv
from melkit.util.errors import BadInputError
from melkit.util.files import read_json
from melkit.util.paths import stored_path


@dataclass
class ModelRef:
    """One model to evaluate: ``kind`` is "keras" (a run dir) or "tflite"."""

    kind: str
    path: Path
    name: str
    threshold: float
    image_size: int
    card: ModelCard | None = None  # tflite only
    config: RunConfig | None = None  # keras only (the run's config.json)
    extra: dict = field(default_factory=dict)
    # tflite only: the model's bytes as read once and checked against the card (never the path again)
    data: bytes | None = field(default=None, repr=False)

    def interpreter(self, num_threads: int | None = None):
        """A LiteRT interpreter built from the checked bytes."""
        if self.data is None:
            raise ValueError(f"{self.path}: no checked bytes (open it with open_tflite)")
        return load_interpreter(self.data, num_threads=num_threads)

    @property
    def contract(self) -> Contract:
        """The preprocessing this model takes (its card's, or its run's)."""
        return self.card.preprocessing if self.card is not None else self.config.preprocessing

    @property
    def input_key(self) -> tuple:
        """Models with equal keys take the same images (size, optional colour constancy, contract version)."""
        return self.contract.image_size, self.contract.color_constancy, self.contract.name

    @property
    def size_bytes(self) -> int | None:
        if self.kind != "tflite":
            return None
        return len(self.data) if self.data is not None else self.path.stat().st_size


def open_run(path) -> ModelRef:
    """A finished train run as a model: its Keras weights and the threshold it chose on val."""
    path = Path(path)
    config = load_run(path)
    metrics_path = path / "metrics.json"
    if not metrics_path.is_file():
        raise BadInputError(f"{path} has no metrics.json (no decision threshold): is the run finished?")
    try:
        threshold = float(read_json(metrics_path)["threshold"])
    except (ValueError, KeyError, TypeError) as e:
        raise BadInputError(f"{metrics_path}: no usable threshold ({e})") from None
    return ModelRef("keras", path, "keras", threshold, int(config.image_size), config=config)


def open_tflite(path) -> ModelRef:
    """A .tflite with its card, checked: card present and matching, model loadable, I/O as the card says
    (ModelCard.check_against: the same check as melkit bundle and the app). The bytes checked are the
    ModelRef's ``data``, what every later use of the model runs."""

    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"model file not found: {path}")
    card, data = read_model(path)
    card.check_against(load_interpreter(data), path)
    return ModelRef("tflite", path, card.variant or path.stem, float(card.threshold), card.image_size, card=card,
                    data=data)


def open_model(path) -> ModelRef:
    """A run directory or a .tflite file, whichever ``path`` is."""
    path = Path(path)
    if path.is_dir():
        return open_run(path)
    if path.suffix.lower() == ".tflite" or path.is_file():
        return open_tflite(path)
    raise BadInputError(f"not found: {path} (expected a run directory or a .tflite file)")


def unique_names(models: list) -> None:
    """Give each model a distinct display name: its variant, prefixed by its folder when variants repeat."""
    seen = {}
    for m in models:
        seen.setdefault(m.name, []).append(m)
    for name, group in seen.items():
        if len(group) > 1:
            for m in group:
                m.name = f"{m.path.parent.name}/{name}"
    # Still equal (same folder name twice): number them, the order of the command line.
    counts = {}
    for m in models:
        counts[m.name] = counts.get(m.name, 0) + 1
        if counts[m.name] > 1:
            m.name = f"{m.name}#{counts[m.name]}"


@dataclass
class ImageSource:
    records: list
    description: str  # where the images came from, as said on the terminal and in errors
    # (image_id, reason) of what the data lists (in the split chosen) but cannot be used: an image the metadata
    # lists and no file holds, a file in a class folder that is not an image. The caller refuses or reports it.
    skipped: list = field(default_factory=list)
    other_dx: dict = field(default_factory=dict)  # diagnosis -> rows of the data folders left out (not nv/mel)
    recorded: str = ""  # the same, as the report records it: paths relative to the report's folder

    def refuse_skipped(self, remedy: str) -> None:
        """BadInputError when some listed image cannot be used: no row is left out in silence."""
        refuse_unusable(self.skipped, self.description, remedy)


def select_records(run: Path | None, config: RunConfig | None, split: str, data=None, split_csv=None,
                   folder=None) -> ImageSource:
    """The records to benchmark on (see the module docstring for the precedence). ``data``: a directory or
    a list of them (one per source). ``folder``: the report's, which the recorded description's paths are
    relative to."""
    if split not in SPLITS:
        raise BadInputError(f"unknown split {split!r}: one of {', '.join(SPLITS)}")
    dirs = [data] if isinstance(data, (str, Path)) else list(data or [])
    if split_csv and not dirs and not run:
        raise BadInputError("--split-csv needs --data (the images it refers to) or a run directory")
    if not dirs:
        if run is None:
            raise BadInputError("no images: give a run directory or --data DIR")
        dirs = config.data_dirs
        missing = [d for d in dirs if not Path(d).is_dir()]
        if missing:
            raise BadInputError(f"the run's data directory {missing[0]} is not there; if it moved, pass "
                                f"--data NEW_DIR (one per source) --split-csv {run / 'split.csv'}")
        split_csv = split_csv or run / "split.csv"
        describe = lambda shown: f"split {split} of run {shown(run)}"
    else:
        describe = lambda shown: (f"split {split} of {shown(split_csv)} over {' + '.join(map(shown, dirs))}"
                                  if split_csv else f"all images of {' + '.join(map(shown, dirs))}")
    where = describe(str)
    dataset = read_sources(dirs)
    records, skipped = dataset.records, dataset.skipped
    if split_csv:
        mapping = read_split_csv(split_csv)
        check_split_labels(records, mapping)
        records = [r for r in records if mapping.get(r.image_id) == split]
        skipped = [s for s in skipped if mapping.get(s[0]) == split]
    if not records:
        raise BadInputError(f"no images to benchmark: {where} is empty"
                            + (f" ({len(skipped)} listed image(s) cannot be used, e.g. {skipped[0][1]})"
                               if skipped else ""))
    recorded = where if folder is None else describe(lambda p: stored_path(p, folder))
    return ImageSource(records, where, list(skipped), dict(dataset.other_dx), recorded)
