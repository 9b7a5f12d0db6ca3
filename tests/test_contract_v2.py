"""Contract v2 (melkit-v2): the box step before the resize, its JSON and cards, JPEG draft decoding, and
``melkit convert --contract-version 2``'s check, all without training (the JVM side is in
test_contract_goldens.py / test_android.py)."""

from __future__ import annotations

import csv
import json
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from melkit.convert.contract_version import (
    check_contract_change,
    config_for_cards,
    image_sizes,
)
from melkit.convert.options import ConvertOptions
from melkit.core.card import ModelCard
from melkit.core.card_build import make_card
from melkit.core.recipe import default_recipe
from melkit.core.run import RunConfig
from melkit.data.contract import (
    CONTRACT,
    CONTRACT_V2,
    SHADES_OF_GRAY,
    Contract,
    box_factor,
    box_reduce,
    resize_uint8,
    shades_of_gray,
)
from melkit.data.imageio import draft_scale, read_rgb
from melkit.data.synth import write_synth_dataset
from melkit.release.golden import photo_image
from melkit.util.errors import BadInputError


# ---------------------------------------------------------------------------------------------------
# the box step
# ---------------------------------------------------------------------------------------------------
def test_box_factor_is_short_side_over_size_above_twice_the_size():
    assert box_factor(64, 90, 32) == 1  # short side 64 = 2 * 32: no box
    assert box_factor(65, 90, 32) == 2
    assert box_factor(90, 65, 32) == 2  # orientation does not matter
    assert box_factor(3000, 4000, 224) == 13
    for short in range(2 * 17 + 1, 600):
        k = box_factor(short, 1000, 17)
        assert k >= 2 and 17 <= short // k < 2 * 17


def test_box_averages_exactly_with_round_half_up_and_drops_the_remainder():
    rgb = np.zeros((7, 9, 3), np.uint8)  # size 3: short 7 > 6, k = 2 -> 3 x 4, last row and column dropped
    rgb[..., 0] = np.arange(63).reshape(7, 9) * 4 % 256
    rgb[0:2, 0:2, 1] = [[1, 2], [2, 1]]  # sum 6 -> 6 / 4 = 1.5 -> 2 (half up, not to even)
    rgb[0:2, 2:4, 1] = [[1, 0], [0, 1]]  # 0.5 -> 1
    rgb[0:2, 4:6, 1] = [[1, 0], [0, 0]]  # 0.25 -> 0
    rgb[0:2, 6:8, 1] = [[3, 2], [2, 2]]  # 2.25 -> 2
    rgb[6, :, :] = 255  # the remainder row and column: never read
    rgb[:, 8, :] = 255
    out = box_reduce(rgb, 3)
    assert out.shape == (3, 4, 3) and out.dtype == np.uint8
    assert out[0, :, 1].tolist() == [2, 1, 0, 2]
    blocks = rgb[:6, :8].astype(int).reshape(3, 2, 4, 2, 3).sum(axis=(1, 3))
    assert np.array_equal(out, (blocks + 2) // 4)
    assert (out[..., 2] == 0).all()  # the 255s of the dropped row/column did not leak in


def test_box_k3_rounds_half_up_in_integers():
    rgb = np.zeros((10, 10, 3), np.uint8)  # size 3: k = 3, blocks of 9; (sum + 4) // 9
    rgb[0:3, 0:3, 0] = [[1, 1, 1], [1, 0, 0], [0, 0, 0]]  # 4/9 = 0.44 -> 0
    rgb[0:3, 3:6, 0] = [[1, 1, 1], [1, 1, 0], [0, 0, 0]]  # 5/9 = 0.56 -> 1
    out = box_reduce(rgb, 3)
    assert out.shape == (3, 3, 3) and out[0, :2, 0].tolist() == [0, 1]


def test_v2_equals_v1_up_to_twice_the_size():
    rng = np.random.default_rng(0)
    for h, w, size in ((64, 90, 32), (150, 200, 96), (450, 600, 225), (448, 600, 224), (20, 30, 32)):
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        for cc in (False, True):
            v1 = CONTRACT.for_size(size).with_color_constancy(cc)
            assert np.array_equal(v1.with_version(2).apply(rgb), v1.apply(rgb)), (h, w, size, cc)


def test_v2_on_a_photo_differs_from_v1_and_is_smoother():
    rgb = photo_image(757, 1003, 5)  # fine stripes: v1 samples them a few pixels per output pixel
    v1, v2 = CONTRACT.for_size(64).apply(rgb), CONTRACT_V2.for_size(64).apply(rgb)
    assert v2.shape == v1.shape == (64, 64, 3) and not np.array_equal(v1, v2)
    rough = [np.abs(np.diff(q.astype(int), axis=1)).mean() for q in (v1, v2)]
    assert rough[1] < 0.5 * rough[0], rough
    # v2 is v1's bilinear on the box image, and then Shades of Gray as in v1
    assert np.array_equal(v2, resize_uint8(box_reduce(rgb, 64), 64))
    sog = CONTRACT_V2.for_size(64).with_color_constancy(True)
    assert np.array_equal(sog.apply(rgb), shades_of_gray(v2))


def test_box_refuses_what_it_does_not_define():
    with pytest.raises(ValueError):
        box_reduce(np.zeros((100, 100, 3), np.float32), 10)
    with pytest.raises(ValueError):
        box_reduce(np.zeros((100, 100), np.uint8), 10)


# ---------------------------------------------------------------------------------------------------
# the contract as data, and cards
# ---------------------------------------------------------------------------------------------------
def test_contract_v2_round_trips_and_v1_stays_the_default():
    assert (CONTRACT.name, CONTRACT.version, CONTRACT_V2.name, CONTRACT_V2.version) == (
        "melkit-v1", 1, "melkit-v2", 2)
    assert "box" in CONTRACT_V2.resize and "box" not in CONTRACT.resize
    for c in (CONTRACT_V2.for_size(224), CONTRACT_V2.for_size(96).with_color_constancy(True)):
        d = c.to_json()
        assert d["name"] == "melkit-v2" and Contract.from_json(json.loads(json.dumps(d))) == c
        assert Contract.from_json(d).version == 2
    assert CONTRACT.for_size(32).with_version(2) == CONTRACT_V2.for_size(32)
    sog = CONTRACT_V2.for_size(32).with_color_constancy(True)
    assert sog.with_version(1) == CONTRACT.for_size(32).with_color_constancy(True)
    assert (CONTRACT.for_size(224).decode_min_short_side, CONTRACT_V2.for_size(224).decode_min_short_side) == (
        None, 448)
    with pytest.raises(ValueError, match="version 3"):
        CONTRACT.with_version(3)


@pytest.mark.parametrize("change", [{"name": "melkit-v3"}, {"resize": CONTRACT.resize},
                                    {"color_constancy": "grey_world"}])
def test_contract_v2_from_json_refuses_what_is_not_v2(change):
    with pytest.raises(ValueError):
        Contract.from_json({**CONTRACT_V2.for_size(32).to_json(), **change})
    with pytest.raises(ValueError):  # v1's text under v2's name is not a contract either
        Contract.from_json({**CONTRACT.for_size(32).to_json(), "name": "melkit-v2"})


def test_a_v2_card_validates_and_is_checked_against_the_release_model():
    jsonschema = pytest.importorskip("jsonschema")
    from test_card import RELEASE_V1 as RELEASE
    from test_card import SCHEMA_PATH, card_json

    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))
    d = card_json(RELEASE.with_suffix(".json"))
    d["preprocessing"] = CONTRACT_V2.for_size(d["preprocessing"]["image_size"]).to_json()
    validator.validate(d)
    card = ModelCard.from_json(d)
    assert card.preprocessing.version == 2 and card.to_json() == d
    from melkit.core.litert import load_interpreter

    card.check_against(load_interpreter(RELEASE), RELEASE)  # the same model file takes either contract
    d["preprocessing"]["name"] = "melkit-v3"
    assert not validator.is_valid(d)
    with pytest.raises(BadInputError, match="melkit-v1 or melkit-v2"):
        ModelCard.from_json(d)


def test_make_card_states_the_v2_contract_of_an_upgraded_config():
    pytest.importorskip("jsonschema")
    from test_card import RELEASE_V1 as RELEASE
    from test_card import card_json

    d = card_json(RELEASE.with_suffix(".json"))
    config = RunConfig(labels=tuple(d["labels"]), preprocessing=CONTRACT_V2.for_size(d["preprocessing"]["image_size"]),
                       recipe=replace(default_recipe(), name=d["source_run"]["recipe"]),
                       model={"alpha": d["source_run"]["alpha"], "weights": d["source_run"]["weights"]},
                       seed=d["source_run"]["seed"], versions=d["versions"], training={},
                       data={"dir": d["training_data"]["dir"], "counts": d["training_data"]["counts"],
                             "split": d["training_data"]["split"]})
    metrics = {"threshold": d["threshold"], "threshold_policy": d["threshold_policy"], "val": d["validation"]}
    io = {"input": d["input"], "output": {k: v for k, v in d["output"].items() if k != "meaning"}}
    change = {"from": "melkit-v1", "checked_images": 3, "max_short_side": 256}
    card = make_card(model_file=d["model_file"], data=RELEASE.read_bytes(), variant=d["variant"], io=io,
                     config=config, metrics=metrics, run_dir=d["source_run"]["path"],
                     name=d["name"], version=d["version"], selfcheck=d["selfcheck"],
                     extra={"conversion": {**d["conversion"], "contract_change": change}})
    assert card.preprocessing == CONTRACT_V2.for_size(224) and card.to_json()["preprocessing"]["name"] == "melkit-v2"
    assert card.conversion["contract_change"] == change


def test_run_config_schema_accepts_both_contracts():
    jsonschema = pytest.importorskip("jsonschema")
    from pathlib import Path

    import melkit.core.run

    schema = json.loads(Path(melkit.core.run.__file__).with_name("run_config.schema.json").read_text())
    node = schema["properties"]["preprocessing"]["properties"]["name"]
    for name, ok in (("melkit-v1", True), ("melkit-v2", True), ("melkit-v3", False)):
        assert jsonschema.Draft202012Validator(node).is_valid(name) == ok


# ---------------------------------------------------------------------------------------------------
# JPEG draft decoding
# ---------------------------------------------------------------------------------------------------
def test_draft_scale_is_the_largest_that_keeps_twice_the_size():
    assert draft_scale(4000, 3000, 448) == 4  # 750 >= 448; 1/8 would give 375
    assert draft_scale(4000, 3000, 64) == 8
    assert draft_scale(600, 450, 448) == 1
    assert draft_scale(1800, 897, 448) == 2  # ceil(897 / 2) = 449
    assert draft_scale(4000, 3000, None) == 1


def _photo_jpeg(path, w, h, orientation=1):
    img = Image.fromarray(photo_image(h, w, 3))
    exif = Image.Exif()
    exif[0x0112] = orientation
    img.save(path, quality=90, exif=exif.tobytes())
    return path


def test_draft_decoding_keeps_orientation_and_twice_the_size(tmp_path):
    path = _photo_jpeg(tmp_path / "p.jpg", 1600, 1200, orientation=6)  # stored landscape, upright portrait
    v2 = CONTRACT_V2.for_size(96)
    full = read_rgb(path)
    drafted = read_rgb(path, contract=v2)
    assert full.shape == (1600, 1200, 3)  # upright: EXIF 6 applied
    assert drafted.shape == (400, 300, 3)  # 1/4: short side 300 >= 2 * 96; 1/8 would give 150
    assert min(drafted.shape[:2]) >= v2.decode_min_short_side
    # the same upright picture: the full decode's 4x4 means are close to the drafted pixels
    means = full.reshape(400, 4, 300, 4, 3).mean(axis=(1, 3))
    assert np.abs(means - drafted).mean() < 4
    q_full, q_draft = v2.apply(full), v2.apply(drafted)
    assert np.abs(q_full.astype(int) - q_draft.astype(int)).mean() < 3
    # v1 and no contract: the full decode, exactly as before
    assert np.array_equal(read_rgb(path, contract=CONTRACT.for_size(96)), full)


def test_draft_is_never_below_twice_the_size_and_not_for_png(tmp_path):
    for w, h in ((1003, 757), (900, 449), (1200, 897)):
        path = _photo_jpeg(tmp_path / f"{w}.jpg", w, h)
        rgb = read_rgb(path, contract=CONTRACT_V2.for_size(224))
        assert min(rgb.shape[:2]) >= 448 and rgb.shape[1] > rgb.shape[0]
    mpo = tmp_path / "p.mpo"  # many phones' JPEGs open as MPO (multi-picture): drafted all the same
    big = Image.fromarray(photo_image(1200, 1600, 2))
    big.save(mpo, format="MPO", save_all=True, append_images=[big.resize((160, 120))])
    assert read_rgb(mpo, contract=CONTRACT_V2.for_size(96)).shape == (300, 400, 3)
    png = tmp_path / "p.png"
    Image.fromarray(photo_image(757, 1003, 1)).save(png)
    assert read_rgb(png, contract=CONTRACT_V2.for_size(32)).shape == (757, 1003, 3)


# ---------------------------------------------------------------------------------------------------
# melkit convert --contract-version 2
# ---------------------------------------------------------------------------------------------------
def test_contract_change_is_refused_when_an_image_is_over_twice_the_size():
    sizes = [("a.jpg", 200, 150), ("b.jpg", 256, 256)]
    change = check_contract_change(sizes, 224, "melkit-v1", "melkit-v2")
    assert change == {"from": "melkit-v1", "checked_images": 2, "max_short_side": 256}
    assert check_contract_change([("c.jpg", 600, 448)], 224, "melkit-v1", "melkit-v2")["max_short_side"] == 448
    with pytest.raises(BadInputError) as e:
        check_contract_change(sizes + [("big.jpg", 600, 450), ("huge.jpg", 4000, 3000)], 224, "melkit-v1",
                              "melkit-v2")
    message = str(e.value)
    assert "\n" not in message and "2 of the run's 4" in message and "huge.jpg, 4000x3000" in message
    assert "448 px" in message


def _fake_run(tmp_path, image_size):
    """A run's config and split.csv over a synthetic data set of 56x40 images: no training."""
    data = tmp_path / "data"
    write_synth_dataset(data, n_lesions=6, images_per_lesion=(1, 1), image_size=(56, 40), seed=1)
    ids = [r["image_id"] for r in csv.DictReader(open(data / "metadata.csv", newline=""))]
    run = tmp_path / "run"
    run.mkdir()
    with open(run / "split.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image_id", "split"])
        w.writerows([i, ("train", "val", "test")[n % 3]] for n, i in enumerate(ids))
    config = RunConfig(data={"dir": str(data)}, preprocessing=CONTRACT.for_size(image_size),
                       labels=("nv", "mel"), recipe=default_recipe(), model={}, seed=0, training={}, versions={})
    return run, config


def test_config_for_cards_upgrades_only_when_no_image_is_affected(tmp_path):
    run, config = _fake_run(tmp_path, 20)  # short side 40 <= 2 * 20: v1 == v2 on every image
    same, none = config_for_cards(run, config, None)
    assert same is config and none is None
    assert config_for_cards(run, config, 1) == (config, None)
    upgraded, change = config_for_cards(run, config, 2)
    assert upgraded.preprocessing == CONTRACT_V2.for_size(20)
    assert upgraded == replace(config, preprocessing=CONTRACT_V2.for_size(20))
    assert change == {"from": "melkit-v1", "checked_images": 4, "max_short_side": 40}  # train + val, not test
    small = replace(config, preprocessing=CONTRACT.for_size(16))  # 40 > 2 * 16: the box step would run
    with pytest.raises(BadInputError, match="cannot change the contract melkit-v1 -> melkit-v2: 4 of"):
        config_for_cards(run, small, 2)


def test_image_sizes_reads_headers_and_skips_unreadable_files(tmp_path):
    Image.new("RGB", (30, 20)).save(tmp_path / "a.png")
    (tmp_path / "b.jpg").write_bytes(b"not a jpeg")

    class R:
        def __init__(self, path):
            self.path = str(path)

    records = [R(tmp_path / "a.png"), R(tmp_path / "a.png"), R(tmp_path / "b.jpg")]
    assert list(image_sizes(records)) == [(str(tmp_path / "a.png"), 30, 20)]


def test_convert_option_contract_version():
    assert ConvertOptions(variants=["int8"]).contract_version is None
    ConvertOptions(variants=["int8"], contract_version=2).validate()
    with pytest.raises(BadInputError, match="--contract-version"):
        ConvertOptions(variants=["int8"], contract_version=3).validate()


def test_shades_of_gray_constant_is_shared():
    assert CONTRACT_V2.with_color_constancy(True).color_constancy == SHADES_OF_GRAY
