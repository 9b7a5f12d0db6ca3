"""``melkit predict``: P(mel) and the decision for single photos, exactly as the app computes them.

An unreadable image is bad input (exit 2), never silently dropped: a person asked about that photo. Images
stream through the model a chunk of CHUNK at a time (decoded, run, then let go), so memory stays flat in the
number of images. Before any model runs, a first pass opens every file and reads its header (no pixels):
a missing file, a folder or a file that is not an image is reported then, not after minutes of work. A file
whose pixels then fail to decode (a truncated download) still raises mid-way, and since the result is
printed only once every image has run, nothing is printed for any image: exit 2, one line.

A model converted with ``--domain-guard`` also says, for each image, whether it looks like a dermoscopic
lesion image (``in_domain`` and the ``domain_score`` behind it). When it does not, the decision is
``not_assessed`` with a plain message and no melanoma score (``p_mel`` is null); the exit code stays 0.
Rows of models without a guard are as before (no ``in_domain``).

``p_mel`` is the probability shown to a person (melkit.core.probability: unfolded when the card's threshold
was folded into the model, tempered when melkit calibrate fitted a temperature); the decision compares the
model's raw output with the card's threshold. When the two differ (such a card), each row also gives that raw
output (``p_output``) and the result the threshold on the shown scale (``threshold_shown``).

A quantized model whose card has a ``borderline`` band (melkit/convert/borderline.py) marks each assessed
image whose raw output lies in it: ``borderline`` true and the meaning "borderline: nevus-like" or
"borderline: melanoma-suspicious" (rounding may decide these; the float model could answer otherwise). The
decision itself stays binary.

A card with risk bands (``likelihood_ratios``, melkit/core/likelihood.py) also gives each assessed image its band
(``risk_band``: the band's name) and that band's ``likelihood_ratio``: how many times as common such an output is
for melanomas as for nevi, which holds whatever the prevalence of melanoma where the model is used (P(mel) does
not).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
from PIL import Image

from melkit.bench import evaluate
from melkit.bench.inputs import open_model
from melkit.core.card import NOT_ASSESSED
from melkit.core.probability import shown_p_mel
from melkit.core.run import predict_proba
from melkit.data.contract import Contract
from melkit.data.imageio import UnreadableImage, read_rgb
from melkit.util.errors import BadInputError
from melkit.util.fmt import num
from melkit.util.progress import progress_bar

DECISIONS = {True: ("mel", "melanoma-suspicious"), False: ("nv", "nevus-like")}
BORDERLINE = "borderline: "  # the meaning's prefix for an image in the card's borderline band
CHUNK = 64  # images decoded and held at once: 64 x 224 x 224 x 3 bytes = 9.6 MB, whatever the number of images
NOTE = "Research model, not a medical device: it gives no diagnosis."

__all__ = ["PredictResult", "contract_images", "run_predict", "text"]


@dataclass(kw_only=True)
class PredictResult:
    """What ``melkit predict`` says about its images: the model, its threshold, one row (a dict, the keys of
    ``--json``'s rows) per image in the order given. The fields are in ``--json``'s order; the three that only
    some cards have are None for the others, and left out of :meth:`to_dict`."""

    model: str
    kind: str  # "tflite" or "keras"
    variant: str
    threshold: float  # on the model's raw output
    domain_threshold: float | None = None  # a model converted with --domain-guard
    borderline: dict | None = None  # {"low", "high"}: a card with a borderline band
    threshold_shown: float | None = None  # the threshold on the P(mel) shown, where that differs from the raw
    image_size: int
    predictions: list
    note: str = NOTE

    def to_dict(self) -> dict:
        """The ``--json`` object: every field, less those of the three a card does not have."""
        optional = ("domain_threshold", "borderline", "threshold_shown")
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name not in optional or getattr(self, f.name) is not None}


def contract_images(paths, contract: Contract) -> np.ndarray:
    """The contract's steps up to q for each file: (N, size, size, 3) uint8."""
    out = []
    for p in paths:
        try:
            out.append(contract.apply(read_rgb(p, contract=contract)))
        except UnreadableImage as e:
            raise BadInputError(f"unreadable image: {e}") from None
    return np.stack(out)


def check_headers(paths) -> None:
    """The cheap first pass: each file is there and Pillow reads its header (no pixels are decoded);
    BadInputError (as for an unreadable image) naming the first that is not."""
    for p in paths:
        try:
            if not Path(p).is_file():
                read_rgb(p)  # not a regular file: read_rgb's own message (missing, a folder, ...)
            with Image.open(p):
                pass
        except UnreadableImage as e:
            raise BadInputError(f"unreadable image: {e}") from None
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            raise BadInputError(f"unreadable image: {p}: cannot decode ({e})") from None


def model_outputs(model, image_paths) -> tuple[np.ndarray, np.ndarray | None]:
    """(P(mel), domain score or None) for every image, streamed: CHUNK images decoded at a time, run through
    one model (the tflite's interpreter built once from its checked bytes), then let go."""
    probs, scores = [], []
    keras_model = evaluate.load_keras(model) if model.kind == "keras" else None
    interp = model.interpreter() if keras_model is None else None
    with progress_bar(total=len(image_paths), desc="predict", unit="img") as bar:
        for start in range(0, len(image_paths), CHUNK):
            images = contract_images(image_paths[start:start + CHUNK], model.contract)
            if keras_model is not None:
                probs.append(predict_proba(keras_model, images, progress=bar.update))
            else:
                p, score = evaluate.run_tflite(model, interp, images, progress=bar.update)
                probs.append(p)
                scores.append(score)
            del images
    guard = bool(scores) and scores[0] is not None
    return np.concatenate(probs), (np.concatenate(scores) if guard else None)


def run_predict(model_path, image_paths) -> PredictResult:
    """P(mel), the decision and what the card adds to it (guard, borderline band, risk band) for each image;
    BadInputError (exit 2) for no images or one that cannot be read, before any is printed."""
    if not image_paths:
        raise BadInputError("no images given")
    model = open_model(model_path)
    image_paths = list(image_paths)
    check_headers(image_paths)
    probs, scores = model_outputs(model, image_paths)
    rows = []
    shown = shown_p_mel(model.card, probs)  # None for a Keras run: its raw P(mel)
    mapped = model.card is not None and (model.card.threshold_fold is not None
                                         or (model.card.calibration or {}).get("temperature") is not None)
    band = model.card.borderline if model.card is not None else None
    borderline = model.card.is_borderline(probs) if band is not None else None
    bands = (model.card.likelihood_ratios or {}).get("bands") if model.card is not None else None
    risk = model.card.risk_band(probs) if bands is not None else None
    for i, (path, p) in enumerate(zip(image_paths, probs)):
        label, meaning = DECISIONS[bool(p >= model.threshold)]
        row = {"image": str(path), "p_mel": float(shown[i]), "decision": label, "meaning": meaning}
        if mapped:
            row["p_output"] = float(p)
        if bands is not None:
            k = int(risk[i])
            row.update(risk_band=bands[k]["name"] if k >= 0 else None, likelihood_ratio=bands[k]["lr"] if k >= 0 else None)
        if band is not None:
            row["borderline"] = bool(borderline[i])
            if borderline[i]:
                row["meaning"] = BORDERLINE + meaning
        if scores is not None:
            in_domain = bool(model.card.in_domain(scores[i]))
            if not in_domain:  # no melanoma score at all, raw or shown
                row.update(p_mel=None, decision="not_assessed", meaning=NOT_ASSESSED,
                           **({"p_output": None} if mapped else {}), **({"borderline": None} if band else {}),
                           **({"risk_band": None, "likelihood_ratio": None} if bands else {}))
            row.update(in_domain=in_domain, domain_score=float(scores[i]))
        rows.append(row)
    return PredictResult(
        model=str(Path(model_path)), kind=model.kind, variant=model.card.variant if model.card else model.kind,
        threshold=model.threshold, image_size=model.image_size, predictions=rows,
        domain_threshold=model.card.guard_threshold if scores is not None else None,
        borderline={"low": float(band["low"]), "high": float(band["high"])} if band is not None else None,
        threshold_shown=float(shown_p_mel(model.card, [model.threshold])[0]) if mapped else None)


def shown_name(name: str) -> str:
    """A file name for one row of text: a newline, tab or other control character in it is written as its
    escape (``\\n``, ``\\x1b``), so one image is one row and nothing in a name can move the cursor. The JSON
    output keeps the true name."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(name))


def text(result: PredictResult) -> str:
    """The rows for a person: one line per image, the model and its thresholds above, the note below."""
    guard = (f", domain guard threshold {result.domain_threshold:.3f}" if result.domain_threshold is not None else "")
    if result.borderline is not None:
        guard += f", borderline output {result.borderline['low']:.3f}-{result.borderline['high']:.3f}"
    threshold = result.threshold if result.threshold_shown is None else result.threshold_shown  # the P(mel)'s scale
    lines = [f"{shown_name(result.model)} ({result.variant}, threshold {threshold:.3f}{guard})"]
    names = [shown_name(r["image"]) for r in result.predictions]
    width = max(map(len, names))
    for name, r in zip(names, result.predictions):
        if r.get("in_domain") is False:
            lines.append(f"{name:<{width}}  P(mel)   -     {r['meaning']} "
                         f"(domain score {r['domain_score']:.3g} > {result.domain_threshold:.3g})")
        else:
            lr = r.get("likelihood_ratio")
            risk = (f"  ({r['risk_band']}: likelihood ratio {num(lr, '.2g')})"
                    if r.get("risk_band") else "")
            lines.append(f"{name:<{width}}  P(mel) {r['p_mel']:.4f}  {r['meaning']}{risk}")
    if any(r.get("risk_band") for r in result.predictions):
        lines.append("likelihood ratio: how many times as common such a result is for melanomas as for nevi "
                     "(it holds whatever the share of melanomas where the model is used; the score itself does not)")
    lines.append(result.note)
    return "\n".join(lines)
