"""``melkit bundle``: put a converted model into the Android app, after checking it is what its card says.

The app reads only its assets (model, card, labels.txt), so a model whose card disagrees with the file
(sha256, input/output dtype, shape, quantization, image size) would be fed or read wrongly on the phone
with no error at all. Such a model is refused here (BadInputError, exit 2) before anything is written.

The model is read once: the bytes checked against the card are the ones the goldens are computed with and
the ones copied into the app, and the card copied is the one checked (a file replaced meanwhile changes
nothing of what is bundled).
"""

from __future__ import annotations

import os
from pathlib import Path

from melkit.core.card import ModelCard, read_model, write_card
from melkit.core.errors import BadInputError
from melkit.core.files import check_out_apart, check_replaceable, exclusive, keep_the_rest, mark_output, staging_many
from melkit.core.litert import load_interpreter
from melkit.golden import fill_goldens

ASSETS = Path("app", "src", "main", "assets")
GOLDEN = Path("app", "src", "test", "resources", "golden")


def check_model(model_path):
    """The card of ``model_path`` (a ModelCard) and a loaded interpreter, after checking they agree;
    BadInputError if not (see ModelCard.check_against)."""
    card, interp, _ = checked_model(model_path)
    return card, interp


def checked_model(model_path):
    """(card, interpreter, bytes): :func:`check_model` plus the model's bytes as read once and checked, from
    which the interpreter was built."""

    model_path = Path(model_path)
    if not model_path.is_file():
        raise BadInputError(f"{model_path}: no such model file")
    if model_path.suffix != ".tflite":
        raise BadInputError(f"{model_path}: not a .tflite file")
    card, data = read_model(model_path)  # missing card, not a card, sha256 mismatch
    if card.model_file != model_path.name:  # the app opens the model the card names
        raise BadInputError(f"{model_path}: its card describes {card.model_file!r}")
    interp = load_interpreter(data)
    card.check_against(interp, model_path)
    return card, interp, data


def _labels_text(model_path: Path, card: ModelCard) -> str:
    text = "".join(f"{label}\n" for label in card.labels)
    beside = model_path.parent / card.labels_file
    if beside.is_file() and beside.read_text(encoding="utf-8").split() != list(card.labels):
        raise BadInputError(f"{beside} does not list the card's labels {list(card.labels)}")
    return text


def _is_ours(path: Path) -> bool:
    """Files a previous bundle put into assets (replaced, so exactly one model is in the app)."""
    return path.suffix in (".tflite", ".json") or path.name == "labels.txt"


def bundle(model_path, app_dir, golden_dir=None, images=None) -> dict:
    """Copy model, card and labels.txt into ``app_dir``'s assets and write golden vectors.

    Goldens go to ``golden_dir`` (default: the app's JVM test resources). Real images (``images``) need an
    explicit ``golden_dir``, so shared data never lands in the app's source tree by default.
    """

    model_path, app_dir = Path(model_path), Path(app_dir)
    if not (app_dir / "app" / "src" / "main" / "AndroidManifest.xml").is_file():
        raise BadInputError(f"{app_dir}: not the melkit Android app (no app/src/main/AndroidManifest.xml)")
    if images and golden_dir is None:
        raise BadInputError("--image needs --golden-dir: goldens from real images are not put into the app")
    card, interp, data = checked_model(model_path)
    labels = _labels_text(model_path, card)
    card_path = model_path.with_suffix(".json")

    assets = app_dir / ASSETS
    golden = Path(golden_dir) if golden_dir is not None else app_dir / GOLDEN
    # The golden folder is replaced whole: never one that holds an input or the app, never a folder of someone
    # else's files (melkit's marker, or the app's own golden folder, says a folder is bundle's to replace).
    check_out_apart(golden, flag="--golden-dir",
                    read=[("the model", model_path), ("the model card", card_path), ("the app", app_dir),
                          ("the app's assets", assets)] + [("the image", p) for p in images or []])
    if os.path.realpath(golden) != os.path.realpath(app_dir / GOLDEN):
        check_replaceable(golden, "--golden-dir")
    # One transaction: the assets and the goldens are both built in staging folders, then published together
    # (a journal makes the next bundle finish a publication a crash interrupted), so the app never holds a
    # new model with the old model's goldens, and a bad --image fails before anything is replaced. The lock
    # makes a second bundle into the same app exit 2 instead of mixing its files with ours.
    with exclusive(app_dir / ".melkit-bundle"), staging_many([assets, golden]) as (staged, staged_golden):
        keep_the_rest(assets, staged, skip=_is_ours)  # whatever else the app ships (after any recovery above)
        (staged / model_path.name).write_bytes(data)  # the checked bytes and card, not the paths again
        write_card(staged / card_path.name, card)  # the same bytes as a card melkit wrote (tests/test_card.py)
        (staged / "labels.txt").write_text(labels, encoding="utf-8")
        index = fill_goldens(staged_golden, model_path, card, interp, images=images)
        mark_output(staged_golden, "bundle")  # melkit's: the next bundle may replace it
    return {"assets": assets, "model": assets / model_path.name, "golden": golden, "images": len(index["images"]),
            "card": card}
