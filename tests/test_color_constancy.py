"""Shades of Gray as a contract step, end to end: a run trained with it records it, its card states it, and
predict, bench and the golden vectors all apply it, so the phone sees what the model was trained on."""

import json
from dataclasses import replace

import numpy as np
import pytest
from conftest import LOOSE, built_once, tiny_recipe

from melkit.core.run import load_run, load_trained_model, predict_proba
from melkit.data.contract import SHADES_OF_GRAY, resize_uint8, shades_of_gray
from melkit.data.imageio import read_rgb


@pytest.fixture(scope="module")
def sog_models(tiny_data, tmp_path_factory):
    from melkit.convert.converter import ConvertOptions, run_convert
    from melkit.train.trainer import TrainOptions, run_train

    def build(folder):
        recipe = tiny_recipe()
        recipe = replace(recipe, stages=[replace(recipe.stages[0], epochs=4)], color_constancy=False)
        run, out = folder / "run", folder / "tflite"
        run_train(TrainOptions(data=str(tiny_data), out=str(run), recipe=recipe, weights=None, n_boot=50,
                           color_constancy=True))
        run_convert(run, ConvertOptions(variants=["float32"], out=str(out), calibration_images=10,
                                        min_agreement=LOOSE))
        return run, out

    return built_once(tmp_path_factory, "sog_models", build)


def test_the_run_and_its_card_state_the_step(sog_models):
    run, out = sog_models
    config = load_run(run)
    assert config.recipe.color_constancy and config.preprocessing.color_constancy == SHADES_OF_GRAY
    card = json.loads(next(out.glob("*_float32.json")).read_text())
    assert card["preprocessing"]["color_constancy"] == SHADES_OF_GRAY


def test_predict_applies_the_step_like_training(sog_models, tiny_data):
    from melkit.bench.predict import run_predict

    run, out = sog_models
    paths = sorted((tiny_data / "images").iterdir())[:6]
    size = load_run(run).image_size
    with_step = np.stack([shades_of_gray(resize_uint8(read_rgb(p), size)) for p in paths])
    without = np.stack([resize_uint8(read_rgb(p), size) for p in paths])
    assert (with_step != without).any()  # the synthetic images carry colour casts: the step changes them
    model, _ = load_trained_model(run)
    expected = predict_proba(model, with_step)
    assert not np.allclose(expected, predict_proba(model, without), atol=1e-4)
    for m in (run, next(out.glob("*_float32.tflite"))):
        got = [r["p_mel"] for r in run_predict(m, paths).predictions]
        np.testing.assert_allclose(got, expected, atol=2e-3)
