"""The model card contract: ModelCard (melkit/core/card.py) and its JSON Schema (model_card.schema.json).

Every committed card validates against the schema and round-trips through ModelCard byte for byte; a card
missing a required field, or with a field of the wrong type, is refused by both, naming the field; the
schema and ModelCard list the same fields; the card is checked against a real interpreter. No training:
the committed release models are enough (the Android side is in test_android.py).
"""

from __future__ import annotations

import copy
import json
import re
import shutil
from dataclasses import replace

import numpy as np
import pytest
from conftest import REPO

from melkit.core.card import (
    OPTIONAL_FIELDS,
    SCHEMA_PATH,
    ModelCard,
    load_card,
    write_card,
)
from melkit.core.card_build import make_card
from melkit.core.recipe import default_recipe
from melkit.core.run import RunConfig
from melkit.data.contract import Contract
from melkit.util.errors import BadInputError

jsonschema = pytest.importorskip("jsonschema")

CARDS = sorted([*REPO.glob("tflite_models/*.json"), *REPO.glob("android_demo/app/src/main/assets/*.json"),
                REPO / "android_demo" / "app" / "src" / "test" / "resources" / "golden" / "card.json"])
RELEASE = REPO / "tflite_models" / "melkit_mnv2_1_224_int8.tflite"
RELEASE_V1 = REPO / "tflite_models" / "previous-1.1.0" / "melkit_mnv2_1_224_int8.tflite"  # a contract-v1 card


@pytest.fixture(scope="module")
def schema():
    s = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(s)
    return s


@pytest.fixture(scope="module")
def validator(schema):
    return jsonschema.Draft202012Validator(schema)


def card_json(path=CARDS[0]) -> dict:
    return json.loads(path.read_text())


def required_paths(schema) -> list[tuple[str, ...]]:
    """Every required field, top-level and nested (through $ref), as a key path; the golden card's values."""

    def resolve(node):
        if "$ref" in node:
            target = schema
            for part in node["$ref"].lstrip("#/").split("/"):
                target = target[part]
            merged = resolve(target)
            return {**merged, "required": merged.get("required", []) + node.get("required", []),
                    "properties": {**merged.get("properties", {}), **node.get("properties", {})}}
        if "anyOf" in node:  # nullable: the object branch
            return resolve(next(b for b in node["anyOf"] if b.get("type") != "null"))
        return node

    out = []

    def walk(node, prefix):
        node = resolve(node)
        for key in node.get("required", []):
            out.append((*prefix, key))
            sub = node.get("properties", {}).get(key)
            if sub is not None:
                walk(sub, (*prefix, key))

    walk(schema, ())
    return out


def without(d: dict, path: tuple) -> dict:
    d = copy.deepcopy(d)
    holder = d
    for key in path[:-1]:
        holder = holder[key]
    del holder[path[-1]]
    return d


def replaced(d: dict, path: tuple, value) -> dict:
    d = copy.deepcopy(d)
    holder = d
    for key in path[:-1]:
        holder = holder[key]
    holder[path[-1]] = value
    return d


def test_there_are_committed_cards():
    assert len(CARDS) >= 3 and all(p.is_file() for p in CARDS)


@pytest.mark.parametrize("path", CARDS, ids=lambda p: str(p.relative_to(REPO)))
def test_committed_card_validates_and_round_trips_byte_for_byte(path, validator, tmp_path):
    d = card_json(path)
    validator.validate(d)
    card = ModelCard.from_json(d)
    assert card.to_json() == d and json.dumps(card.to_json()) == json.dumps(d)  # same keys, order, values
    write_card(tmp_path / "card.json", card)
    assert (tmp_path / "card.json").read_bytes() == path.read_bytes()
    assert card.labels[card.p_mel_index] == "mel" and card.image_size == d["preprocessing"]["image_size"]
    # what `melkit bundle` prints (cli.py)
    assert (card.name, card.version, card.variant, card.input.dtype, card.threshold) == (
        d["name"], d["version"], d["variant"], d["input"]["dtype"], d["threshold"])


def test_to_json_is_a_copy():
    card = ModelCard.from_json(card_json())
    d = card.to_json()
    d["input"]["shape"][0] = 7
    d["conversion"]["seed"] = 99
    d["preprocessing"]["input_quantization"]["zero_point"] = 0
    assert card.to_json() == card_json()


def test_schema_and_model_card_list_the_same_fields(schema):
    fields = {f for f in ModelCard.__dataclass_fields__ if f != "extra"} | {"melkit_card"}
    assert set(schema["required"]) == fields - set(OPTIONAL_FIELDS)
    assert set(schema["properties"]) == fields | {"conversion"}


def test_every_required_field_missing_is_refused_by_schema_and_from_json(schema, validator):
    d = card_json()
    paths = required_paths(schema)
    assert ("input", "quantization", "scale") in paths and ("output", "meaning") in paths
    assert ("preprocessing", "image_size") in paths and len(paths) > 40
    for path in paths:
        bad = without(d, path)
        assert not validator.is_valid(bad), path
        with pytest.raises(BadInputError) as e:
            ModelCard.from_json(bad)
        message = str(e.value)
        assert "\n" not in message
        if path != ("melkit_card",):
            assert f"'{'.'.join(path)}' is missing" in message, (path, message)


@pytest.mark.parametrize("path, value", [
    (("threshold",), "0.5"), (("threshold",), 1.5), (("name",), 3), (("labels",), "nv,mel"), (("labels",), ["nv", 1]),
    (("size_bytes",), "10"), (("input",), None), (("input", "shape"), [1, "224", 224, 3]),
    (("input", "dtype"), None), (("output", "quantization"), {"scale": "1", "zero_point": 0}),
    (("output", "quantization", "zero_point"), 0.5), (("preprocessing", "image_size"), "224"),
    (("preprocessing", "mean"), "128"), (("preprocessing", "name"), "melkit-v3"), (("sha256",), "XYZ"),
    (("validation",), []), (("versions",), "2.21"), (("melkit_card",), 2),
])
def test_a_wrong_type_is_refused_by_schema_and_from_json(validator, path, value):
    bad = replaced(card_json(), path, value)
    assert not validator.is_valid(bad)
    with pytest.raises(BadInputError) as e:
        ModelCard.from_json(bad)
    if path[0] != "melkit_card":
        assert path[-1] in str(e.value) or ".".join(path) in str(e.value), str(e.value)


def test_a_float_tensor_has_null_quantization(validator):
    d = replaced(card_json(), ("input", "quantization"), None)
    validator.validate(d)
    assert ModelCard.from_json(d).input.quantization is None


def test_extra_top_level_fields_are_kept_in_order():
    d = {**card_json(), "notes": {"by": "someone"}}
    assert list(ModelCard.from_json(d).to_json()) == list(d)


def test_a_borderline_band_is_read_and_one_without_the_threshold_refused(validator):
    """The optional ``borderline`` band: low <= threshold <= high within [0, 1], numbers, a method string, the
    rest kept; is_borderline includes both edges. The schema cannot compare with the threshold; from_json does."""
    d = {k: v for k, v in card_json().items() if k not in ("borderline", "likelihood_ratios")}  # added below
    t = d["threshold"]
    band = {"low": t - 0.03125, "high": t + 0.03125, "method": "test", "validation": {"n": 3}}
    card = ModelCard.from_json({**d, "borderline": band})
    assert validator.is_valid({**d, "borderline": band}) and card.to_json()["borderline"] == band
    assert card.is_borderline([band["low"] - 1e-9, band["low"], t, band["high"], band["high"] + 1e-9,
                               float("nan")]).tolist() == [False, True, True, True, False, False]
    assert not ModelCard.from_json(d).is_borderline([t]).any()
    assert ModelCard.from_json({**d, "borderline": {**band, "low": t, "high": t}}).is_borderline(t)
    out_of_order = [{**band, "low": t + 0.01, "high": t + 0.02}, {**band, "low": t - 0.02, "high": t - 0.01},
                    {**band, "low": -0.1}, {**band, "high": 1.1}, {**band, "high": float("nan")},
                    {**band, "high": float("inf")}]
    wrong_type = [{**band, "low": str(t - 0.03)}, {**band, "high": True}, {**band, "method": 3},
                  without(band, ("method",)), without(band, ("low",)), [t - 0.03, t + 0.03], None]
    for bad in out_of_order + wrong_type:
        with pytest.raises(BadInputError, match="'borderline") as e:
            ModelCard.from_json({**d, "borderline": bad})
        assert "\n" not in str(e.value)
    assert all(not validator.is_valid({**d, "borderline": bad}) for bad in wrong_type)
    with pytest.raises(BadInputError, match=r"0 <= low <= threshold <= high <= 1, not low"):
        ModelCard.from_json({**d, "borderline": out_of_order[0]})


def _risk_bands(t: float) -> dict:
    """Four risk bands with edges 0, t/2, t, (1+t)/2, 1 (the converter's form); the last LR not measured."""
    edges = [0.0, t / 2, t, (1 + t) / 2, 1.0]
    lrs = [0.1, 0.6, 3.0, None]
    return {"method": "test", "measured_on": "validation", "n": 9, "bands": [
        {"name": f"band {k}", "low": edges[k], "high": edges[k + 1], "lr": lrs[k], "share_mel": 0.25}
        for k in range(4)]}


def test_risk_bands_are_read_and_round_trip(validator, tmp_path):
    """The optional ``likelihood_ratios``: kept whole (free-form fields too) through from_json, to_json and a
    file; risk_band puts an output at an inner edge in the band above it, 0 in the first band and 1 in the last."""
    d = {k: v for k, v in card_json().items() if k not in ("borderline", "likelihood_ratios")}
    t = d["threshold"]
    ratios = _risk_bands(t)
    with_bands = {**d, "likelihood_ratios": ratios}
    validator.validate(with_bands)
    card = ModelCard.from_json(with_bands)
    assert card.to_json()["likelihood_ratios"] == ratios and card.risk_edges == [0.0, t / 2, t, (1 + t) / 2, 1.0]
    write_card(tmp_path / "card.json", card)
    assert ModelCard.from_json(json.loads((tmp_path / "card.json").read_text())) == card
    assert ModelCard.from_json(d).likelihood_ratios is None and ModelCard.from_json(d).risk_edges is None
    p = [0.0, t / 2 - 1e-9, t / 2, t - 1e-9, t, (1 + t) / 2, 1.0 - 1e-9, 1.0]
    assert card.risk_band(p).tolist() == [0, 0, 1, 1, 2, 3, 3, 3]
    assert (card.risk_band(p) >= 2).tolist() == [x >= t for x in p]  # the bands above the threshold: suspicious
    # an empty band (low == high) is allowed; its edge is in the band above it
    empty = {**ratios, "bands": [{"name": "a", "low": 0.0, "high": t, "lr": 1.0},
                                 {"name": "at", "low": t, "high": t, "lr": None},
                                 {"name": "b", "low": t, "high": 1.0, "lr": 2.0}]}
    assert ModelCard.from_json({**d, "likelihood_ratios": empty}).risk_band([t]).tolist() == [2]


def test_risk_bands_that_do_not_cover_zero_to_one_with_an_edge_at_the_threshold_are_refused(validator):
    """Refused, naming ``likelihood_ratios``, one line: a gap or overlap between bands, not from 0 or not to 1,
    out of order, no edge at the threshold, an LR <= 0 (or not finite), fewer than 2 bands, a missing field or
    one of the wrong type (as ModelCard.java refuses them: CoreTest)."""
    d = card_json()
    t = d["threshold"]
    good = _risk_bands(t)

    def with_band(k, **changes):
        bands = copy.deepcopy(good["bands"])
        bands[k].update(changes)
        return {**good, "bands": bands}

    def without_key(k, key):
        bands = copy.deepcopy(good["bands"])
        del bands[k][key]
        return {**good, "bands": bands}

    out_of_range = [
        with_band(1, low=t / 2 + 0.01),  # a gap between band 0 and band 1
        with_band(1, low=t / 2 - 0.01),  # an overlap
        with_band(0, low=0.01),  # not from 0
        with_band(3, high=0.99),  # not to 1
        with_band(3, high=1.5),
        {**good, "bands": [{**b, "low": -0.1} if k == 0 else b for k, b in enumerate(good["bands"])]},
        {**good, "bands": [{"name": "a", "low": 0.0, "high": t / 2, "lr": 1.0},  # no edge at the threshold
                           {"name": "b", "low": t / 2, "high": 1.0, "lr": 1.0}]},
        with_band(2, lr=0), with_band(2, lr=-2.0), with_band(2, lr=float("inf")), with_band(2, lr=float("nan")),
        with_band(1, high=float("nan")),
    ]
    out_of_order = {**good, "bands": [{"name": "a", "low": 0.0, "high": t, "lr": 1.0},
                                      {"name": "b", "low": t, "high": t / 2, "lr": 1.0},
                                      {"name": "c", "low": t / 2, "high": 1.0, "lr": 1.0}]}
    wrong_type = [
        with_band(2, lr="3"), with_band(2, lr=True), with_band(1, low=str(t / 2)), with_band(0, name=3),
        without_key(2, "lr"), without_key(2, "low"), without_key(2, "high"), without_key(2, "name"),
        {**good, "bands": good["bands"][:1]}, {**good, "bands": []}, {**good, "bands": {}},
        {**good, "bands": [*good["bands"][:3], [t, 1.0, 3.0]]},
        {k: v for k, v in good.items() if k != "method"}, {k: v for k, v in good.items() if k != "bands"},
        [], None,
    ]
    for bad in [*out_of_range, out_of_order, *wrong_type]:
        with pytest.raises(BadInputError, match="'likelihood_ratios") as e:
            ModelCard.from_json({**d, "likelihood_ratios": bad})
        assert "\n" not in str(e.value)
    assert all(not validator.is_valid({**d, "likelihood_ratios": bad}) for bad in wrong_type)
    for bad, words in ((out_of_range[0], "must equal the band before's high"),
                       (out_of_range[2], "must run from 0 to 1 in order"), (out_of_order, "in order"),
                       (out_of_range[6], f"must have an edge at the threshold {t}"),
                       (out_of_range[7], "'likelihood_ratios.bands[2].lr' must be a positive number or null")):
        with pytest.raises(BadInputError, match=re.escape(words)):
            ModelCard.from_json({**d, "likelihood_ratios": bad})


def test_make_card_reproduces_the_release_card():
    """make_card from the inputs the converter had gives the committed card exactly."""
    d = card_json(RELEASE.with_suffix(".json"))
    config = RunConfig(labels=tuple(d["labels"]), preprocessing=Contract.from_json(d["preprocessing"]),
                       recipe=replace(default_recipe(), name=d["source_run"]["recipe"]),
                       model={"alpha": d["source_run"]["alpha"], "weights": d["source_run"]["weights"]},
                       seed=d["source_run"]["seed"], versions=d["versions"].get("training", d["versions"]), training={},
                       data={"dir": d["training_data"]["dir"], "counts": d["training_data"]["counts"],
                             "counts_by_source": d["training_data"]["counts_by_source"],
                             "split": {**d["training_data"]["split"], "other": "not in the card"}})
    trained = d["threshold_fold"]["threshold"] if "threshold_fold" in d else d["threshold"]  # the run's threshold
    metrics = {"threshold": np.float64(trained), "threshold_policy": d["threshold_policy"],
               "val": {**d["validation"], "auc_ci": tuple(d["validation"]["auc_ci"]), "extra": 1},
               # a multi-source run: each source's val (and test, not in the card) and each external set
               "sources": {s: {"val": m, "test": {"n": 1}} for s, m in d["validation_by_source"].items()},
               "external": {s: {**m, "dir": "not in the card"} for s, m in d["external"].items()}}
    io = {"input": d["input"], "output": {k: v for k, v in d["output"].items() if k != "meaning"}}
    # the records convert adds beside the run's: the guard, the fold, licence/author and both steps' versions
    card = make_card(model_file=d["model_file"], data=RELEASE.read_bytes(), variant=d["variant"], io=io,
                     config=config, metrics=metrics, run_dir=d["source_run"]["path"],
                     name=d["name"], version=d["version"], selfcheck=d["selfcheck"],
                     extra={"conversion": d["conversion"]}, domain_guard=d.get("domain_guard"),
                     threshold_fold=d.get("threshold_fold"), license=d.get("license"), author=d.get("author"),
                     versions=d["versions"] if "conversion" in d["versions"] else None,
                     borderline=d.get("borderline"), likelihood_ratios=d.get("likelihood_ratios"))
    assert isinstance(card, ModelCard) and json.dumps(card.to_json()) == json.dumps(d)


def test_load_card_names_the_file_and_the_field(tmp_path):
    model = tmp_path / RELEASE.name
    shutil.copy(RELEASE, model)
    model.with_suffix(".json").write_text(json.dumps(without(card_json(RELEASE.with_suffix(".json")),
                                                             ("output", "dtype"))))
    with pytest.raises(BadInputError, match=r"\.json: model card field 'output\.dtype' is missing"):
        load_card(model)
    model.with_suffix(".json").write_text(json.dumps({**card_json(RELEASE.with_suffix(".json")), "melkit_card": 2}))
    with pytest.raises(BadInputError, match="not a melkit model card"):
        load_card(model)


def test_check_against_the_release_model():
    from melkit.core.litert import load_interpreter, predict_p_mel  # LiteRT

    card = load_card(RELEASE)
    interp = load_interpreter(RELEASE)
    card.check_against(interp, RELEASE)
    d = card.to_json()
    cases = [
        (replaced(d, ("input", "dtype"), "float32"), "card says input dtype float32, the model has uint8"),
        (replaced(d, ("output", "quantization", "scale"), d["output"]["quantization"]["scale"] * (1 + 1e-4)),
         "card says output quantization"),
        (replaced(d, ("output", "quantization"), None), "card says output quantization None"),
        (replaced(d, ("preprocessing", "image_size"), 96), "card image_size 96 does not fit input shape"),
        (replaced(d, ("labels",), ["nv", "mel", "other"]), "do not fit output shape"),
        (replaced(d, ("labels",), ["nv", "melanoma"]), "do not fit output shape"),
    ]
    for bad, message in cases:
        with pytest.raises(BadInputError, match=message):
            ModelCard.from_json(bad).check_against(interp, RELEASE)
    # within tolerance: the same
    ModelCard.from_json(replaced(d, ("input", "quantization", "scale"), 0.0078125 * (1 + 1e-8))).check_against(interp)

    # P(mel) is read where the labels say
    q = np.random.default_rng(0).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    default = predict_p_mel(interp, q)
    swapped = ModelCard.from_json(replaced(d, ("labels",), ["mel", "nv"]))
    assert swapped.p_mel_index == 0 and card.p_mel_index == 1
    at_card = predict_p_mel(interp, q, p_mel_index=card.p_mel_index)
    first = predict_p_mel(interp, q, p_mel_index=swapped.p_mel_index)
    np.testing.assert_array_equal(default, at_card)
    assert not np.array_equal(first, at_card)
