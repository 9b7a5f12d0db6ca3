"""Training augmentation: the camera / dermatoscope simulation layers, their defaults and determinism."""

from __future__ import annotations

import numpy as np
import pytest

from melkit.data.augment import CAMERA_ORDER, AugmentParams, build_augmenter

OLD_FIELDS = {"flip": True, "rotation": 0.5, "zoom": 0.15, "brightness": 0.1, "contrast": 0.1}
GEOMETRY_OFF = dict(flip=False, rotation=0.0, zoom=0.0, brightness=0.0, contrast=0.0)
ON = {"hue": 0.1, "saturation": 0.5, "gamma": 0.5, "temperature": 0.2, "blur": 1.5, "jpeg": 10, "noise": 8.0,
      "vignette": 1.0, "lowres": 8}


def _batch(n=8, size=32, seed=0):
    """Integer-valued colourful images with edges (so blur and JPEG have something to change)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    base = np.stack([xx * 255 / size, yy * 255 / size, 128 + 60 * ((xx // 4 + yy // 4) % 2)], -1)
    imgs = [np.clip(base * rng.uniform(0.5, 1.0, 3) + rng.uniform(0, 40, 3), 0, 255) for _ in range(n)]
    return np.round(np.stack(imgs)).astype(np.float32)


def _only(name, amount=None, **kw):
    return AugmentParams(**GEOMETRY_OFF, **{name: ON[name] if amount is None else amount}, **kw)


def _run(params, x, seed=0):
    return np.asarray(build_augmenter(params, seed)(x))


def _changed(x, y):
    """Which images of the batch the augmenter changed."""
    return np.abs(x - y).reshape(len(x), -1).max(axis=1) > 1e-3


def test_defaults_are_off_and_old_dicts_still_load():
    p = AugmentParams()
    assert all(getattr(p, name) == 0 for name in CAMERA_ORDER)
    assert AugmentParams(**p.to_dict()) == p
    assert AugmentParams(**OLD_FIELDS) == p  # a config saved before the camera fields
    assert set(p.to_dict()) == set(OLD_FIELDS) | set(CAMERA_ORDER)


def test_recipe_from_an_old_dict_gets_no_camera_augmentation():
    from melkit.core.recipe import Recipe

    old = {"name": "old", "stages": [{"name": "s", "trainable": "head", "epochs": 1, "learning_rate": 1e-3}],
           "augment": {"flip": False, "rotation": 0.25, "zoom": 0.1, "brightness": 0.0, "contrast": 0.05}}
    aug = Recipe.from_dict(old).augment
    assert (aug.flip, aug.rotation, aug.contrast) == (False, 0.25, 0.05)
    assert all(getattr(aug, name) == 0 for name in CAMERA_ORDER)


def test_default_augmenter_has_the_old_layers_and_gives_the_old_output():
    from melkit.util.tf import keras

    aug = build_augmenter(AugmentParams(), seed=3)
    assert [type(layer).__name__ for layer in aug.model.layers] == [
        "RandomFlip", "RandomRotation", "RandomZoom", "RandomContrast", "RandomBrightness"]
    # The layers exactly as built before the camera fields existed, same seeds.
    old = keras.Sequential([
        keras.layers.RandomFlip("horizontal_and_vertical", seed=3),
        keras.layers.RandomRotation(0.5, fill_mode="reflect", seed=4),
        keras.layers.RandomZoom(0.15, fill_mode="reflect", seed=5),
        keras.layers.RandomContrast(0.1, seed=6),
        keras.layers.RandomBrightness(0.1, value_range=(0, 255), seed=7),
    ])
    for i in range(2):
        x = _batch(4, seed=i)
        np.testing.assert_array_equal(np.asarray(aug(x)), np.asarray(old(x, training=True)))


@pytest.mark.parametrize("name", CAMERA_ORDER)
def test_each_op_changes_images_and_stays_in_range(name):
    x = _batch(16)
    aug = build_augmenter(_only(name), seed=1)
    assert [type(layer).__name__ for layer in aug.model.layers] == [f"Random{name.title()}"]
    y = np.asarray(aug(x))
    assert y.shape == x.shape and y.dtype == np.float32
    assert np.isfinite(y).all() and y.min() >= 0 and y.max() <= 255
    changed = _changed(x, y)
    if name in ("blur", "jpeg", "vignette", "lowres"):  # a random half of the images
        assert 0 < changed.sum() < len(x), changed
    else:
        assert changed.all(), changed
    assert np.abs(y - x).mean() > 0.5


@pytest.mark.parametrize("name", CAMERA_ORDER)
def test_each_layer_is_identity_at_inference(name):
    x = _batch(2)
    layer = build_augmenter(_only(name), seed=0).model.layers[0]
    np.testing.assert_array_equal(np.asarray(layer(x, training=False)), x)


@pytest.mark.parametrize("name", CAMERA_ORDER)
def test_zero_amount_adds_no_layer(name):
    aug = build_augmenter(_only(name, 0), seed=0)
    assert not aug.model.layers


def test_same_seed_same_output_different_seed_different_output():
    p = AugmentParams.camera()
    batches = [_batch(4, seed=i) for i in range(3)]
    a, b, c = build_augmenter(p, 7), build_augmenter(p, 7), build_augmenter(p, 8)
    for x in batches:  # the random stream advances batch by batch in step
        ya, yb, yc = (np.asarray(f(x)) for f in (a, b, c))
        np.testing.assert_array_equal(ya, yb)
        assert np.abs(ya - yc).mean() > 1.0
        assert np.isfinite(ya).all() and -1e-3 <= ya.min() and ya.max() <= 255 + 1e-3
    # and the stream does advance: the same batch twice gets different augmentations
    x = batches[0]
    assert np.abs(np.asarray(a(x)) - np.asarray(a(x))).mean() > 1.0


@pytest.mark.parametrize("name", CAMERA_ORDER)
def test_each_op_is_seeded(name):
    x = _batch(8)
    y1, y2, y3 = _run(_only(name), x, 5), _run(_only(name), x, 5), _run(_only(name), x, 6)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(y1, y3)


def test_vignette_darkens_corners_not_centre():
    x = np.full((16, 32, 32, 3), 200.0, np.float32)
    y = _run(_only("vignette", 1.0), x, seed=2)
    centre = y[:, 12:20, 12:20].mean(axis=(1, 2, 3))
    corners = np.stack([y[:, :3, :3], y[:, :3, -3:], y[:, -3:, :3], y[:, -3:, -3:]]).mean(axis=(0, 2, 3, 4))
    edges = y[:, 14:18, :2].mean(axis=(1, 2, 3))
    np.testing.assert_allclose(centre, 200.0, atol=1e-3)  # the field of view's centre is untouched
    assert (corners <= centre + 1e-3).all() and (edges <= centre + 1e-3).all()
    on = corners < 199
    assert 0 < on.sum() < len(x)  # a random half
    assert corners[on].min() < 120  # strength up to 1: some corners strongly darkened
    assert (corners[on] <= edges[on] + 1e-3).all()  # darker further out: a circle, not a frame
    assert len(np.unique(np.round(corners[on]))) > 1  # per-image strength


def test_temperature_changes_red_blue_ratio_only():
    x = np.full((16, 8, 8, 3), 128.0, np.float32)
    y = _run(_only("temperature", 0.2), x, seed=0)
    ratio = y[..., 0].mean(axis=(1, 2)) / y[..., 2].mean(axis=(1, 2))
    assert (np.abs(ratio - 1) > 1e-3).all()
    assert (ratio > 1).any() and (ratio < 1).any()  # warm and cool
    assert (ratio <= 1.2 / 0.8 + 1e-4).all() and (ratio >= 0.8 / 1.2 - 1e-4).all()
    np.testing.assert_allclose(y[..., 1], 128.0)  # green gain stays 1
    # red and blue move by the same t in opposite directions
    np.testing.assert_allclose(y[..., 0] - 128.0, 128.0 - y[..., 2], atol=1e-3)


def test_hue_and_saturation_keep_greys_grey_and_colours_move():
    grey = np.tile(np.linspace(0, 255, 8, dtype=np.float32)[None, :, None, None], (4, 1, 8, 3))
    for name in ("hue", "saturation"):
        np.testing.assert_allclose(_run(_only(name), grey), grey, atol=1e-2)
    x = _batch(8)
    hue = _run(_only("hue", 0.1), x)
    # a hue rotation about the grey axis keeps each pixel's mean (up to clipping)
    inside = (hue > 0.5).all(-1) & (hue < 254.5).all(-1)
    np.testing.assert_allclose(hue.mean(-1)[inside], x.mean(-1)[inside], atol=1e-2)
    assert np.abs(hue - x).max() > 5
    sat = _run(_only("saturation", 0.5), x)
    spread_x, spread_y = x.std(-1).mean(axis=(1, 2)), sat.std(-1).mean(axis=(1, 2))
    assert (spread_y > spread_x * 1.02).any() and (spread_y < spread_x * 0.98).any()


def test_gamma_keeps_black_and_white_and_is_monotone():
    ramp = np.tile(np.linspace(0, 255, 32, dtype=np.float32)[None, :, None, None], (8, 1, 4, 3))
    y = _run(_only("gamma", 0.5), ramp)
    np.testing.assert_allclose(y[:, 0], 0.0, atol=1e-3)
    np.testing.assert_allclose(y[:, -1], 255.0, atol=1e-2)
    assert (np.diff(y[:, :, 0, 0], axis=1) > 0).all()
    mid = y[:, 16, 0, 0] / ramp[0, 16, 0, 0]
    assert (mid > 1.01).any() and (mid < 0.99).any()  # brighter and darker
    gamma = np.log(y[:, 16, 0, 0] / 255) / np.log(ramp[0, 16, 0, 0] / 255)
    assert (gamma >= 1 / 1.5 - 1e-3).all() and (gamma <= 1.5 + 1e-3).all()


def test_blur_smooths_and_keeps_the_mean():
    x = np.zeros((16, 32, 32, 3), np.float32)
    x[:, ::2] = 255.0  # stripes: maximal high frequency
    y = _run(_only("blur", 2.0), x, seed=4)
    on = _changed(x, y)
    assert 0 < on.sum() < len(x)
    np.testing.assert_array_equal(y[~on], x[~on])  # the other half exactly untouched
    assert (np.abs(np.diff(y[on], axis=1)).mean(axis=(1, 2, 3)) < 0.8 * 255).all()
    np.testing.assert_allclose(y[on].mean(axis=(1, 2, 3)), x[on].mean(axis=(1, 2, 3)), rtol=0.02)


def test_lowres_takes_detail_away_as_a_downscaled_source_has_none():
    """Half the images lose their finest detail (area-downscaled to a side in [8, 32) pixels, then bilinear
    back up); the mean stays, the other half is untouched; images no larger than the amount stay as they are."""
    x = np.zeros((16, 32, 32, 3), np.float32)
    x[:, ::2] = 255.0  # stripes one pixel wide: gone at any downscale
    y = _run(_only("lowres", 8), x, seed=2)
    on = _changed(x, y)
    assert 0 < on.sum() < len(x)
    np.testing.assert_array_equal(y[~on], x[~on])
    assert (np.abs(np.diff(y[on], axis=1)).mean(axis=(1, 2, 3)) < 0.6 * 255).all()
    np.testing.assert_allclose(y[on].mean(axis=(1, 2, 3)), x[on].mean(axis=(1, 2, 3)), rtol=0.05)
    np.testing.assert_array_equal(_run(_only("lowres", 32), x, seed=2), x)


def test_noise_std_is_bounded_and_random_per_image():
    x = np.full((16, 32, 32, 3), 128.0, np.float32)
    y = _run(_only("noise", 8.0), x, seed=0)
    std = (y - x).std(axis=(1, 2, 3))
    assert (std < 8.0 * 1.1).all() and std.max() > 2.0
    assert len(np.unique(np.round(std, 2))) > 8
    assert np.abs((y - x).mean()) < 0.5


def test_jpeg_keeps_shape_and_dtype_and_recompresses_half():
    x = _batch(8)
    y = _run(_only("jpeg", 5), x, seed=1)
    assert y.shape == x.shape and y.dtype == np.float32
    on = _changed(x, y)
    assert 0 < on.sum() < len(x)
    np.testing.assert_array_equal(y[~on], x[~on])
    assert (np.abs(y[on] - x[on]).mean(axis=(1, 2, 3)) > 1.0).all()  # quality <= 95 loses detail
    np.testing.assert_array_equal(y, np.round(y))  # decoded JPEG values are integers


def test_camera_preset():
    p = AugmentParams.camera()
    assert (p.hue, p.saturation, p.gamma, p.temperature, p.blur, p.jpeg, p.noise, p.vignette) == (
        0.02, 0.2, 0.2, 0.1, 1.0, 50, 4.0, 0.5)
    assert p.flip == AugmentParams().flip and p.zoom == AugmentParams().zoom  # geometry as the default
    assert AugmentParams.camera(jpeg=0).jpeg == 0
    assert AugmentParams(**p.to_dict()) == p
    names = [type(layer).__name__ for layer in build_augmenter(p, 0).model.layers]
    assert names[5:] == ["RandomBlur", "RandomVignette", "RandomTemperature", "RandomHue", "RandomSaturation",
                         "RandomGamma", "RandomNoise", "RandomJpeg"]


@pytest.mark.parametrize("bad", [dict(hue=-0.1), dict(jpeg=99), dict(jpeg=-1), dict(saturation=1.5),
                                 dict(vignette=2.0), dict(noise=-1.0), dict(lowres=1), dict(lowres=-8)])
def test_bad_values_are_refused(bad):
    with pytest.raises(ValueError):
        build_augmenter(AugmentParams(**bad), 0)


def test_pipeline_runs_camera_augmentation_deterministically():
    """In tf.data (graph mode), as training uses it: same seed, same batches."""
    from melkit.data.pipeline import make_dataset

    images = _batch(8).astype(np.uint8)
    labels = np.arange(8) % 2

    def batches(seed):
        ds = make_dataset(images, labels, 4, training=True, augmenter=build_augmenter(AugmentParams.camera(), seed),
                          seed=seed)
        return [np.asarray(x) for x, _ in ds]

    a, b, c = batches(0), batches(0), batches(1)
    assert len(a) == 2 and all(np.isfinite(x).all() for x in a)
    for xa, xb in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
    assert any(not np.array_equal(xa, xc) for xa, xc in zip(a, c))
