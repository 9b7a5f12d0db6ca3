"""P(mel) of every image from one model, Keras or LiteRT, through the preprocessing contract (and, for a
.tflite converted with --domain-guard, its domain score)."""

from __future__ import annotations

import numpy as np

from melkit.bench.inputs import ModelRef
from melkit.core.litert import predict_p_mel, predict_with_domain
from melkit.core.run import load_trained_model, predict_proba
from melkit.util.errors import BadInputError
from melkit.util.progress import progress_bar


def load_keras(model: ModelRef):
    """The run's float32 logit model (what every .tflite was converted from)."""
    keras_model, _ = load_trained_model(model.path)
    return keras_model


def keras_probs(keras_model, images_q: np.ndarray, batch_size=64, desc="keras") -> np.ndarray:
    """Batched (a thousand images cost a few batched calls, not a thousand single ones), with progress."""
    with progress_bar(total=len(images_q), desc=desc, unit="img") as bar:
        return predict_proba(keras_model, images_q, batch_size, progress=bar.update)


def tflite_outputs(model: ModelRef, images_q: np.ndarray, threads=None, desc=None):
    """(P(mel), domain score or None without a guard): one invoke per image, as on the phone, each output
    read where the card says; the interpreter is built from the model's checked bytes (ModelRef.data)."""
    interp = model.interpreter(threads)
    with progress_bar(total=len(images_q), desc=desc or model.name, unit="img") as bar:
        return run_tflite(model, interp, images_q, progress=bar.update)


def run_tflite(model: ModelRef, interp, images_q: np.ndarray, progress=None):
    """:func:`tflite_outputs` on an interpreter already built from ``model.data`` (predict streams its images
    through one interpreter, a chunk at a time)."""
    card = model.card
    if card.domain_guard is None:
        p, score = predict_p_mel(interp, images_q, progress=progress, p_mel_index=card.p_mel_index,
                                 output=card.output.name), None
    else:
        p, score = predict_with_domain(interp, images_q, progress=progress, p_mel_index=card.p_mel_index,
                                       output=card.output.name, domain_output=card.guard_output.name)
    if not np.all(np.isfinite(p)):
        raise BadInputError(f"{model.path}: the model outputs NaN or inf")
    # A uint8 output dequantizes to at most 255/256; clip guards float rounding just past [0, 1].
    return np.clip(p, 0.0, 1.0), score


def tflite_probs(model: ModelRef, images_q: np.ndarray, threads=None, desc=None) -> np.ndarray:
    """P(mel), one invoke per image, as on the phone."""
    return tflite_outputs(model, images_q, threads, desc)[0]
