"""The contract goldens (melkit/release/golden.py write_contract_goldens): the committed files are what this melkit
writes, byte for byte, and they exercise what they claim to (colour constancy changes the casts, leaves
an all-zero channel alone, caps at 255; v2's box step runs with k >= 2, drops a remainder, follows the
EXIF orientation, and equals v1 where k = 1); plus cards with and without colour constancy, in Python.
The JVM side (ContractGoldenTest.java) runs in tests/test_android.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import REPO
from test_card import card_json, replaced

from melkit.core.card import ModelCard, sha256
from melkit.data.contract import (
    CONTRACT,
    CONTRACT_V2,
    SHADES_OF_GRAY,
    resize_uint8,
    shades_of_gray,
)
from melkit.release.golden import (
    CONTRACT_CASES,
    CONTRACT_SIZES,
    GENERATED,
    contract_images,
    photo_image,
    sog_illuminant,
    write_contract_goldens,
)
from melkit.util.errors import BadInputError

COMMITTED = REPO / "android_demo" / "app" / "src" / "test" / "resources" / "contract"


def files(d):
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


@pytest.fixture(scope="module")
def index():
    return json.loads((COMMITTED / "index.json").read_text())


def output(index, name, size, cc, contract=CONTRACT.name):
    img = next(i for i in index["images"] if i["name"] == name)
    return next(o for o in img["outputs"] if (o["contract"], o["size"], o["color_constancy"]) == (contract, size, cc))


def q_of(index, name, size, cc, contract=CONTRACT.name):
    out = output(index, name, size, cc, contract)
    return np.frombuffer((COMMITTED / out["q"]).read_bytes(), np.uint8).reshape(size, size, 3)


def test_regenerating_reproduces_the_committed_files_byte_for_byte(tmp_path):
    index = write_contract_goldens(tmp_path / "contract")
    want, got = files(COMMITTED), files(tmp_path / "contract")
    assert sorted(got) == sorted(want), "regenerate with: python -m melkit.release.golden " + str(COMMITTED.relative_to(REPO))
    for name in want:
        assert got[name] == want[name], f"{name} differs: regenerate with python -m melkit.release.golden"
    assert len(index["images"]) == len(CONTRACT_CASES) and sum(len(v) for v in want.values()) < 200_000  # small


def test_the_goldens_cover_what_they_claim(index):
    shapes = {i["name"]: (i["width"], i["height"]) for i in index["images"]}
    assert shapes["tiny_3x2"] == (3, 2) and shapes["wide_glare"][0] != shapes["wide_glare"][1]
    assert shapes["wide_glare"][0] > max(CONTRACT_SIZES)
    for img in index["images"]:
        contracts = sorted({o["contract"] for o in img["outputs"]})
        assert sorted((o["contract"], o["size"], o["color_constancy"] or "") for o in img["outputs"]) == sorted(
            (c, s, cc) for c in contracts for s in CONTRACT_SIZES for cc in ("", SHADES_OF_GRAY))
        if "pixels" in img:
            px = np.frombuffer((COMMITTED / img["pixels"]).read_bytes(), np.uint8)
            assert px.size == img["width"] * img["height"] * 4 and (px[3::4] == 255).all()
    for size in CONTRACT_SIZES:
        for name in ("reddish", "wide_glare", "noise", "tiny_3x2"):
            assert not np.array_equal(q_of(index, name, size, None), q_of(index, name, size, SHADES_OF_GRAY)), name
        assert np.array_equal(q_of(index, "zero_blue", size, None), q_of(index, "zero_blue", size, SHADES_OF_GRAY))
        sog = q_of(index, "reddish", size, SHADES_OF_GRAY).reshape(-1, 3).mean(0)
        plain = q_of(index, "reddish", size, None).reshape(-1, 3).mean(0)
        assert np.ptp(sog) < 0.2 * np.ptp(plain)  # the reddish cast is gone
        glare = q_of(index, "wide_glare", size, SHADES_OF_GRAY)
        assert (glare[..., 2] == 255).any()  # a gain > 1 capped at 255


def test_the_v2_goldens_cover_the_box_step(index):
    """k >= 2 with a remainder dropped, an EXIF-rotated photo, and v2 = v1 (the same file) where k = 1."""
    images = {i["name"]: i for i in index["images"]}
    assert index["contracts"] == [CONTRACT.name, CONTRACT_V2.name]
    v2 = [(i, o) for i in index["images"] for o in i["outputs"] if o["contract"] == CONTRACT_V2.name]
    for img, o in v2:
        w, h = (img["height"], img["width"]) if img["orientation"] in (5, 6, 7, 8) else (img["width"], img["height"])
        assert o["box_k"] == (min(w, h) // o["size"] if min(w, h) > 2 * o["size"] else 1)
        if o["box_k"] == 1:
            assert o["q"] == output(index, img["name"], o["size"], o["color_constancy"])["q"]
    with_remainder = {(i["name"], o["box_k"]) for i, o in v2 if o["box_k"] > 1
                      and (i["width"] % o["box_k"] or i["height"] % o["box_k"])}
    assert {k for _, k in with_remainder} >= {2, 4, 23, 44} and ("photo_exif6", 23) in with_remainder
    assert images["photo_exif6"]["orientation"] == 6 and min(images["photo"]["width"], images["photo"]["height"]) >= 750
    for size in CONTRACT_SIZES:
        v1, v2q = q_of(index, "photo", size, None), q_of(index, "photo", size, None, CONTRACT_V2.name)
        assert not np.array_equal(v1, v2q)
        # the box step removes the stripes' aliasing: neighbouring outputs differ much less
        rough = [np.abs(np.diff(q.astype(int), axis=1)).mean() for q in (v1, v2q)]
        assert rough[1] < 0.6 * rough[0], rough
        assert not np.array_equal(v2q, q_of(index, "photo_exif6", size, None, CONTRACT_V2.name))


def test_generated_pixels_are_recorded_by_hash(index):
    """The JVM generates the photo images itself; the recorded SHA-256 is that of photo_image's RGBA bytes."""
    for img in index["images"]:
        if "generated" in img:
            g = img["generated"]
            image = next(i for n, i, _, _ in CONTRACT_CASES if n == img["name"])
            assert (g["height"], g["width"], g["seed"]) == GENERATED[image]
            rgb = photo_image(g["height"], g["width"], g["seed"])
            rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=-1)
            assert (img["width"], img["height"]) == (g["width"], g["height"])
            assert img["pixels_sha256"] == sha256(rgba.tobytes())


def test_recorded_illuminant_reproduces_shades_of_gray():
    """sog_illuminant (recorded for the JVM test) is shades_of_gray's own estimate: its LUT gives the same q."""
    for _, rgb in contract_images():
        for size in CONTRACT_SIZES:
            q = resize_uint8(rgb, size)
            e = sog_illuminant(q)
            if min(e) == 0.0:
                assert np.array_equal(shades_of_gray(q), q)
                continue
            grey = (e[0] + e[1] + e[2]) / 3.0
            v = np.arange(256, dtype=np.float64)
            luts = [np.minimum(np.floor(v * (grey / ec) + 0.5), 255.0).astype(np.uint8) for ec in e]
            mine = np.stack([luts[c][q[..., c]] for c in range(3)], axis=-1)
            assert np.array_equal(mine, shades_of_gray(q))


def test_a_card_with_colour_constancy_validates_and_round_trips():
    pytest.importorskip("jsonschema")
    from test_card import SCHEMA_PATH, jsonschema

    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))
    from test_card import RELEASE_V1

    d = card_json(RELEASE_V1.with_suffix(".json"))
    assert "color_constancy" not in d["preprocessing"]  # cards before the step: off
    assert ModelCard.from_json(d).preprocessing.color_constancy is None
    sog = replaced(d, ("preprocessing", "color_constancy"), SHADES_OF_GRAY)
    validator.validate(sog)
    card = ModelCard.from_json(sog)
    assert card.preprocessing == CONTRACT.for_size(d["preprocessing"]["image_size"]).with_color_constancy(True)
    assert card.to_json() == sog
    for value in ("shades_of_gray:p=2", "grey_world", 6):
        bad = replaced(d, ("preprocessing", "color_constancy"), value)
        assert not validator.is_valid(bad)
        with pytest.raises(BadInputError, match="color_constancy"):
            ModelCard.from_json(bad)
