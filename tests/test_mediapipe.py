"""MediaPipe Tasks reads melkit's metadata (labels, normalization) and scores like melkit does; with the
threshold folded into the model (convert/fold.py), its top category is melkit's decision on every image.

Needs the separate mediapipe venv that `setup.sh --with-mediapipe` creates (CI does); skips without it.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from melkit.core.litert import load_interpreter

REPO = Path(__file__).resolve().parents[1]
MP_PYTHON = Path(os.environ.get("MELKIT_MEDIAPIPE_PYTHON", REPO / ".venv-mediapipe" / "bin" / "python"))


@pytest.mark.parametrize("variant", ["float32", "int8"])
def test_mediapipe_image_classifier_agrees(converted, variant, tmp_path, synth_dir):
    if not MP_PYTHON.exists():
        pytest.skip("no mediapipe venv (bash setup.sh --with-mediapipe)")
    from melkit.data.pipeline import load_images
    from melkit.data.readers import read_dataset

    _, out = converted
    model = out / f"melkit_mnv2_0.35_48_{variant}.tflite"
    images = load_images(read_dataset(synth_dir).records[:6], 48).images
    np.save(tmp_path / "images.npy", images)
    proc = subprocess.run([str(MP_PYTHON), str(REPO / "tests" / "mediapipe_client.py"), str(model),
                           str(tmp_path / "images.npy")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    scores = [r["scores"] for r in json.loads(proc.stdout.strip().splitlines()[-1])]
    assert all(set(s) == {"nv", "mel"} for s in scores)  # labels.txt read from the model's metadata zip

    interp = load_interpreter(model)
    d_in, d_out = interp.get_input_details()[0], interp.get_output_details()[0]
    for img, s in zip(images, scores):
        from melkit.core.litert import to_input

        interp.set_tensor(d_in["index"], to_input(img[None], d_in))
        interp.invoke()
        y = interp.get_tensor(d_out["index"]).astype(np.float64)[0]
        scale, zero = d_out["quantization"]
        if scale:
            y = (y - zero) * scale
        assert s["nv"] == pytest.approx(y[0], abs=1e-5) and s["mel"] == pytest.approx(y[1], abs=1e-5)


@pytest.mark.parametrize("variant", ["float32", "fp16", "dynamic", "int8"])
def test_mediapipe_top_category_is_melkits_decision(converted, variant, synth_dir):
    """Every image: MediaPipe's top category == melkit's decision (raw P(mel) >= the card's threshold), on the
    synthetic set and, with ../shared, real dermoscopy images at the model size, including any image an
    unfolded model's argmax would decide against its threshold (calibrated P(mel) between 0.5 and it). How
    many such images there are depends on the threshold this machine's tiny run chose (close to 0.5 on some
    seeds): the test on the release below counts them."""
    if not MP_PYTHON.exists():
        pytest.skip("no mediapipe venv (bash setup.sh --with-mediapipe)")
    from conftest import SHARED

    from melkit.bench.inputs import open_tflite
    from melkit.core.litert import predict_p_mel
    from melkit.core.probability import shown_p_mel
    from melkit.data.pipeline import load_images
    from melkit.data.readers import read_dataset

    sys.path.insert(0, str(REPO / "benchmarks"))
    from mediapipe_agreement import mediapipe_top

    _, out = converted
    model = open_tflite(out / f"melkit_mnv2_0.35_48_{variant}.tflite")
    card = model.card
    assert card.threshold == 0.5 and card.threshold_fold is not None
    records = read_dataset(synth_dir).records
    real = SHARED / "data" / "isic2017-nv-mel"
    if real.exists():
        records += read_dataset(real).records[:400]
    images = load_images(records, card.preprocessing).images
    p = predict_p_mel(load_interpreter(model.path), images, p_mel_index=card.p_mel_index)
    melkit = np.where(p >= card.threshold, "mel", "nv")
    top = np.array(mediapipe_top(model.path, images))
    assert (top == melkit).all(), np.flatnonzero(top != melkit)
    # Unfolded, these images' argmax (calibrated P(mel) > 0.5) and melkit's decision differed.
    calibrated = shown_p_mel(card, p)
    t = card.threshold_fold["threshold"]
    band = (calibrated > min(0.5, t)) & (calibrated < max(0.5, t))
    assert (top[band] == np.where(calibrated[band] >= t, "mel", "nv")).all()


def test_mediapipe_decides_as_melkit_where_the_releases_argmax_would_not():
    """The released int8 model (committed: the same on every machine; 3.0.0's threshold 0.233 folded in) on
    real ISIC 2017 images: MediaPipe's top category is melkit's decision on every image, among them those whose
    calibrated P(mel) lies between the threshold and 0.5, where an unfolded model's argmax would decide the
    other way (below 0.5: nevus, though melkit's screening threshold says melanoma-suspicious)."""
    if not MP_PYTHON.exists():
        pytest.skip("no mediapipe venv (bash setup.sh --with-mediapipe)")
    from conftest import SHARED, need

    from melkit.bench.inputs import open_tflite
    from melkit.core.litert import predict_p_mel
    from melkit.core.probability import shown_p_mel
    from melkit.data.pipeline import load_images
    from melkit.data.readers import read_dataset

    sys.path.insert(0, str(REPO / "benchmarks"))
    from mediapipe_agreement import mediapipe_top

    model = open_tflite(REPO / "tflite_models" / "melkit_mnv2_1_224_int8.tflite")
    card = model.card
    records = read_dataset(need(SHARED / "data" / "isic2017-nv-mel")).records[:400]
    images = load_images(records, card.preprocessing).images
    p = predict_p_mel(load_interpreter(model.path), images, p_mel_index=card.p_mel_index)
    top = np.array(mediapipe_top(model.path, images))
    melkit = np.where(p >= card.threshold, "mel", "nv")
    assert (top == melkit).all(), np.flatnonzero(top != melkit)
    calibrated, t = shown_p_mel(card, p), card.threshold_fold["threshold"]
    band = (calibrated > min(0.5, t)) & (calibrated < max(0.5, t))
    assert band.sum() >= 5 and (top[band] == ("mel" if t < 0.5 else "nv")).all()
