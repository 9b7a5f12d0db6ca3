"""The threshold folded into a model (melkit/convert/fold.py), the card's threshold_fold record and the shown
probability (melkit/core/probability.py), on committed release models: no training. The fold itself is tried on
1.1.0's (unfolded; its negative threshold logit flips the steps' signs); the current release is checked to be
folded."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
from conftest import REPO, SHARED

from melkit.convert.fold import fold_threshold
from melkit.core.card import ModelCard, load_card
from melkit.core.litert import load_interpreter, run_outputs
from melkit.core.probability import shown_p_mel, tempered, unfold
from melkit.util.errors import BadInputError

RELEASE_INT8 = REPO / "tflite_models" / "melkit_mnv2_1_224_int8.tflite"
UNFOLDED_INT8 = REPO / "tflite_models" / "previous-1.1.0" / "melkit_mnv2_1_224_int8.tflite"
UNFOLDED_FLOAT = REPO / "tflite_models" / "previous-1.1.0" / "melkit_mnv2_1_224_float32.tflite"


@pytest.fixture(scope="module")
def images(synth_dir):
    """Synthetic lesions (and, with ../shared, real ones) through the unfolded release's contract, plus noise."""
    from melkit.data.pipeline import load_images
    from melkit.data.readers import read_dataset

    contract = load_card(UNFOLDED_INT8).preprocessing
    records = read_dataset(synth_dir).records[:80]
    real = SHARED / "data" / "isic2017-nv-mel"
    if real.exists():
        records += read_dataset(real).records[:120]
    noise = np.random.default_rng(0).integers(0, 256, (20, 224, 224, 3), dtype=np.uint8)
    return np.concatenate([load_images(records, contract).images, noise])


def outputs(data: bytes, images) -> np.ndarray:
    (probs,) = run_outputs(load_interpreter(data, num_threads=1), images, [0])
    return probs


def test_int8_fold_keeps_every_decision_and_never_ties(images):
    card = load_card(UNFOLDED_INT8)
    data = UNFOLDED_INT8.read_bytes()
    grid = card.conversion["decision_grid"]
    folded, record = fold_threshold(data, card.threshold, grid)
    assert record.pop("folded") and len(folded) == len(data) and folded != data
    n = round(grid["threshold_in_steps"])  # 37: the logit is negative, so mel moves up by m and nv down by m+1
    assert record["threshold"] == card.threshold and record["steps"] == {"mel": n // 2, "nv": -(n // 2 + 1)}
    assert record["logit"] == pytest.approx(math.log(card.threshold / (1 - card.threshold)), abs=1e-6)
    before, after = outputs(data, images), outputs(folded, images)
    decided = before[:, 1] >= card.threshold
    assert 0 < decided.sum() < len(decided)
    assert ((after[:, 1] >= 0.5) == decided).all()  # the unfolded int8 decision, image for image
    assert (after[:, 1] != after[:, 0]).all() and ((after[:, 1] > after[:, 0]) == decided).all()  # argmax, no tie
    # The calibrated probability comes back to within the uint8 output's rounding.
    assert np.abs(unfold(after[:, 1], record["logit"]) - before[:, 1]).max() < 2.5 / 256
    # The argmax of the unfolded model disagreed with its own decision on some of them (else nothing is shown).
    assert ((before[:, 1] > before[:, 0]) != decided).any() or not (SHARED / "data").exists()


def test_float_fold_keeps_decisions_and_recovers_the_probability(images):
    card = load_card(UNFOLDED_FLOAT)
    data = UNFOLDED_FLOAT.read_bytes()
    folded, record = fold_threshold(data, card.threshold, None)
    assert record.pop("folded") and record["method"].startswith("float32 bias")
    before, after = outputs(data, images), outputs(folded, images)
    p = unfold(after[:, 1], record["logit"])
    assert np.abs(p - before[:, 1]).max() < 1e-5
    near = np.abs(before[:, 1] - card.threshold) < 1e-5  # float rounding may move only these
    assert ((after[:, 1] >= 0.5) == (before[:, 1] >= card.threshold))[~near].all()


def test_no_fold_where_it_would_not_be_exact():
    card = load_card(UNFOLDED_INT8)
    data = UNFOLDED_INT8.read_bytes()
    same, record = fold_threshold(data, card.threshold, None)  # --no-align-threshold: no grid
    assert same == data and record["folded"] is False and "grid" in record["reason"]
    same, record = fold_threshold(data, 0.6, card.conversion["decision_grid"])  # not an odd number of steps
    assert same == data and record["folded"] is False and "odd" in record["reason"]


def test_the_release_is_folded_and_its_top_category_is_its_decision(synth_dir):
    from melkit.data.pipeline import load_images
    from melkit.data.readers import read_dataset

    card = load_card(RELEASE_INT8)
    assert card.threshold == 0.5 and card.threshold_fold is not None and 0 < card.trained_threshold < 1
    assert card.trained_threshold != 0.5  # (3.0.0: 0.233, sensitivity-first; 2.1.0: 0.588)
    records = read_dataset(synth_dir).records[:40]
    real = SHARED / "data" / "isic2016-nv-mel"
    if real.exists():
        records += read_dataset(real).records[:160]
    after = outputs(RELEASE_INT8.read_bytes(), load_images(records, card.preprocessing).images)
    decided = after[:, 1] >= card.threshold
    assert (after[:, 1] != after[:, 0]).all() and ((after[:, 1] > after[:, 0]) == decided).all()
    shown = shown_p_mel(card, after[:, 1])
    assert ((shown >= card.trained_threshold) == decided).all()  # the same decision on the scale shown


def test_unfold_and_temperature():
    zt = math.log(0.6 / 0.4)
    assert unfold([0.0, 0.5, 1.0], zt).tolist() == pytest.approx([0.0, 0.6, 1.0])
    p = np.array([0.1, 0.3, 0.7])
    z = np.log(p / (1 - p))
    assert unfold(p, zt) == pytest.approx(1 / (1 + np.exp(-(z + zt))))
    assert (unfold(p, None) == p).all()
    assert tempered(p, 2.0, 1e-6) == pytest.approx(1 / (1 + np.exp(-z / 2)))
    assert (tempered(p, None, 1e-6) == p).all()


def fold_card(**fold) -> dict:
    """The release card as a folded model's: threshold 0.5, then threshold_fold (its fields overridden)."""
    out = {}
    for k, v in json.loads(RELEASE_INT8.with_suffix(".json").read_text()).items():
        if k == "threshold_fold":  # the release's own record: replaced by the one made here
            continue
        out[k] = 0.5 if k == "threshold" else v
        if k == "threshold":
            out["threshold_fold"] = {"threshold": 0.6, "logit": math.log(1.5), "method": "test", **fold}
    return out


def test_threshold_fold_round_trips_and_is_validated():
    jsonschema = pytest.importorskip("jsonschema")
    from melkit.core.card import SCHEMA_PATH

    d = fold_card()
    card = ModelCard.from_json(d)
    assert json.dumps(card.to_json()) == json.dumps(d)  # same keys, order and values
    jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text())).validate(d)
    assert shown_p_mel(card, [0.5])[0] == pytest.approx(0.6)
    with_t = replace(card, calibration={"temperature": 2.0, "temperature_fit": {"logit_clip": 1e-6}})
    assert shown_p_mel(with_t, [0.5])[0] == pytest.approx(1 / (1 + 1.5 ** -0.5))  # unfolded, then tempered
    plain = json.loads(RELEASE_INT8.with_suffix(".json").read_text())
    assert json.dumps(ModelCard.from_json(plain).to_json()) == json.dumps(plain)  # unchanged without the field
    for bad in ({"threshold": 1.0}, {"threshold": "0.6"}, {"logit": float("inf")}, {"method": None}):
        with pytest.raises(BadInputError, match="threshold_fold"):
            ModelCard.from_json(fold_card(**bad))
