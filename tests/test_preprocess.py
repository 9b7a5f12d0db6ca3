"""The preprocessing contract: exact values, agreement with TensorFlow, and the uint8 input identity."""

import numpy as np
import pytest
from conftest import HAM, need

from melkit.data.contract import (
    CONTRACT,
    SHADES_OF_GRAY,
    Contract,
    _root,
    contract_input,
    normalize,
    resize_uint8,
    shades_of_gray,
)
from melkit.data.imageio import read_rgb


def test_downscale_by_two_averages_each_2x2_block():
    img = np.array([[[0] * 3, [10] * 3, [20] * 3, [31] * 3]] * 2, np.uint8)  # 2x4 -> 1x2
    img = np.concatenate([img, img], axis=0)  # 4x4
    out = resize_uint8(img, 2)
    # half-pixel centres at 0.5 and 2.5: average of (0,10) = 5 and (20,31) = 25.5 -> rounds half up to 26
    assert out[..., 0].tolist() == [[5, 26], [5, 26]]


def test_round_half_up_not_to_even():
    img = np.array([[[1] * 3, [2] * 3]], np.uint8)  # 1x2 -> 1x1: value 1.5
    img = np.repeat(img, 2, axis=0)
    assert resize_uint8(img, 1)[0, 0, 0] == 2  # numpy's round() would give 2 too; 2.5 below must give 3
    img2 = np.repeat(np.array([[[2] * 3, [3] * 3]], np.uint8), 2, axis=0)
    assert resize_uint8(img2, 1)[0, 0, 0] == 3


def test_stretch_not_crop():
    # A left half black, right half white 100x50 image stays half/half after resizing to a square.
    img = np.zeros((50, 100, 3), np.uint8)
    img[:, 50:] = 255
    out = resize_uint8(img, 20)
    assert (out[:, :9] == 0).all() and (out[:, 11:] == 255).all()


def test_upscale_uses_edge_clamping():
    img = np.array([[[0] * 3, [100] * 3]], np.uint8).repeat(2, axis=0)
    out = resize_uint8(img, 4)[0, :, 0]
    # centres map to -0.25, 0.25, 0.75, 1.25 -> clamped 0, 25, 75, 100
    assert out.tolist() == [0, 25, 75, 100]


@pytest.mark.parametrize("size", [32, 96, 160, 224])
def test_matches_tensorflow_bilinear_half_pixel(size):
    from melkit.util.tf import tf

    rng = np.random.default_rng(size)
    img = rng.integers(0, 256, (150, 200, 3), dtype=np.uint8)
    ref = tf.image.resize(img[None].astype(np.float32), (size, size), method="bilinear", antialias=False)[0].numpy()
    ref = np.clip(np.floor(ref + 0.5), 0, 255).astype(np.uint8)
    assert np.array_equal(resize_uint8(img, size), ref)


def test_real_image_matches_tensorflow():
    from melkit.util.tf import tf

    path = sorted((need(HAM) / "images").glob("*.jpg"))[0]
    img = read_rgb(path)
    ref = tf.image.resize(img[None].astype(np.float32), (224, 224), antialias=False)[0].numpy()
    assert np.array_equal(resize_uint8(img, 224), np.floor(ref + 0.5).astype(np.uint8))


def test_normalize_and_uint8_quantization_identity():
    q = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=3)
    x = normalize(q)
    assert x.dtype == np.float32 and x.min() == -1.0 and x.max() == 127 / 128
    qp = CONTRACT.input_quantization
    # A uint8 TFLite input with scale 1/128, zero point 128 dequantizes to exactly x.
    assert np.array_equal((q.astype(np.float32) - qp["zero_point"]) * np.float32(qp["scale"]), x)


def test_normalize_tensor_equals_numpy():
    from melkit.util.tf import tf
    q = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    assert np.array_equal(normalize(q), normalize(tf.constant(q)).numpy())


def test_contract_input_rejects_non_rgb():
    with pytest.raises(ValueError):
        contract_input(np.zeros((4, 4), np.uint8), 2)
    assert contract_input(np.zeros((4, 4, 3), np.uint8), 2).shape == (2, 2, 3)


# ---------------------------------------------------------------------------------------------------
# step 3b: Shades of Gray colour constancy
# ---------------------------------------------------------------------------------------------------
def _cast_image(h=40, w=60, seed=0):
    """A reddish colour cast (skin under warm light) with texture: R high, G and B lower."""
    rng = np.random.default_rng(seed)
    base = rng.integers(60, 200, (h, w, 1)).astype(np.float64)
    return np.clip(base * np.array([1.3, 0.75, 0.6]), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("x", [0.0, 0.125, 1.0, 2.5, 3.0, 7.75, 100.0, 200.5, 255.0])
def test_root_of_an_exact_sixth_power_is_exact(x):
    m = x ** 6
    assert m == x * x * x * x * x * x  # exactly representable: no rounding in the power
    assert _root(m, 6) == x


def test_root_brackets_the_true_root():
    for m in [1e-6, 0.3, 2.0, 12345.678, 1e10, 255.0 ** 6 - 1]:
        r = _root(m, 6)
        assert r ** 6 <= m < np.nextafter(r, np.inf) ** 6
        assert abs(r - m ** (1 / 6)) <= 1e-12 * max(1.0, r)


def test_a_grey_image_is_unchanged():
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 256, (30, 20, 1), dtype=np.uint8).repeat(3, axis=2)
    assert np.array_equal(shades_of_gray(grey), grey)
    flat = np.full((8, 8, 3), 137, np.uint8)
    assert np.array_equal(shades_of_gray(flat), flat)


def test_a_nearly_grey_image_is_nearly_unchanged():
    rng = np.random.default_rng(2)
    img = np.clip(rng.integers(20, 230, (30, 20, 1)) + rng.integers(-1, 2, (30, 20, 3)), 0, 255).astype(np.uint8)
    assert np.abs(shades_of_gray(img).astype(int) - img).max() <= 3


def test_a_colour_cast_is_removed():
    img = _cast_image()
    out = shades_of_gray(img)
    before, after = img.reshape(-1, 3).mean(0), out.reshape(-1, 3).mean(0)
    assert np.ptp(after) < 0.2 * np.ptp(before), (before, after)
    # The overall level stays: the gains average to 1 (grey is the mean of the three illuminants).
    assert abs(after.mean() - before.mean()) < 0.1 * before.mean()
    # Monotone per channel: the order of values within a channel is kept.
    for c in range(3):
        order = np.argsort(img[..., c].ravel(), kind="stable")
        assert (np.diff(out[..., c].ravel()[order].astype(int)) >= 0).all()


def test_gains_above_one_cap_at_255():
    img = _cast_image()
    img[0, 0] = 255  # a white glare pixel: blue's gain > 1 would take it past 255
    out = shades_of_gray(img)
    assert out[0, 0, 2] == 255 and out.dtype == np.uint8 and out[0, 0, 0] < 255


def test_an_all_zero_channel_leaves_the_image_unchanged():
    img = _cast_image()
    img[..., 1] = 0
    out = shades_of_gray(img)
    assert np.array_equal(out, img) and out is not img
    assert np.array_equal(shades_of_gray(np.zeros((3, 2, 3), np.uint8)), np.zeros((3, 2, 3), np.uint8))


def test_shades_of_gray_refuses_what_it_does_not_define():
    with pytest.raises(ValueError):
        shades_of_gray(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError):
        shades_of_gray(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError):
        shades_of_gray(np.zeros((4, 4, 3), np.uint8), 7)


def test_contract_apply_runs_resize_then_shades_of_gray():
    img = _cast_image(50, 70, seed=3)
    sog = CONTRACT.for_size(24).with_color_constancy(True)
    assert sog.color_constancy == SHADES_OF_GRAY == "shades_of_gray:p=6"
    assert np.array_equal(sog.apply(img), shades_of_gray(resize_uint8(img, 24), 6))
    assert np.array_equal(CONTRACT.for_size(24).apply(img), resize_uint8(img, 24))
    assert sog.with_color_constancy(False) == CONTRACT.for_size(24)


def test_contract_json_round_trips_colour_constancy_and_v1_has_no_key():
    sog = CONTRACT.for_size(224).with_color_constancy(True)
    d = sog.to_json()
    assert d["color_constancy"] == SHADES_OF_GRAY
    assert Contract.from_json(d) == sog
    for plain in (CONTRACT, CONTRACT.for_size(224)):
        assert "color_constancy" not in plain.to_json()  # v1 cards and run configs stay as they were
        assert Contract.from_json(plain.to_json()) == plain
    for value in ("shades_of_gray:p=2", "grey_world", ""):
        with pytest.raises(ValueError, match="color_constancy"):
            Contract.from_json({**d, "color_constancy": value})
