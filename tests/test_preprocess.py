"""The preprocessing contract: exact values, agreement with TensorFlow, and the uint8 input identity."""

import numpy as np
import pytest
from conftest import HAM, need

from melkit.data.imageio import read_rgb
from melkit.data.preprocess import CONTRACT, contract_input, normalize, resize_uint8


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
    from melkit.core.tf import tf

    rng = np.random.default_rng(size)
    img = rng.integers(0, 256, (150, 200, 3), dtype=np.uint8)
    ref = tf.image.resize(img[None].astype(np.float32), (size, size), method="bilinear", antialias=False)[0].numpy()
    ref = np.clip(np.floor(ref + 0.5), 0, 255).astype(np.uint8)
    assert np.array_equal(resize_uint8(img, size), ref)


def test_real_image_matches_tensorflow():
    from melkit.core.tf import tf

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
    from melkit.core.tf import tf
    q = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    assert np.array_equal(normalize(q), normalize(tf.constant(q)).numpy())


def test_contract_input_rejects_non_rgb():
    with pytest.raises(ValueError):
        contract_input(np.zeros((4, 4), np.uint8), 2)
    assert contract_input(np.zeros((4, 4, 3), np.uint8), 2).shape == (2, 2, 3)
