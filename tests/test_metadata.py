"""TFLite metadata: written in the metadata_schema.fbs layout, read back, labels zip, model still runs."""

import io
import zipfile
from dataclasses import replace

import flatbuffers
import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as tfl
from ai_edge_litert.interpreter import Interpreter

from melkit.convert.metadata import ModelInfo, add_metadata, read_metadata
from melkit.util.errors import BadInputError

INFO = ModelInfo(name="melkit nv-vs-mel", version="0.1.0", description="Nevus vs melanoma, MobileNetV2.",
                 author="melkit", license="Apache-2.0", labels=["nv", "mel"], image_size=16)


@pytest.fixture(scope="module")
def plain():
    """A tiny real float classifier shaped like ours: [1, 16, 16, 3] -> [1, 2] = [1 - p, p]."""
    from melkit.util.tf import keras, tf

    keras.utils.set_random_seed(0)
    x = keras.Input((16, 16, 3), batch_size=1)
    p = keras.layers.Dense(1, activation="sigmoid")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(x, keras.layers.Concatenate()([1 - p, p]))
    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


@pytest.fixture(scope="module")
def with_md(plain):
    return add_metadata(plain, INFO)


def _metadata_buffer(model_bytes):
    m = tfl.Model.GetRootAs(model_bytes, 0)
    idx = [m.Metadata(i).Buffer() for i in range(m.MetadataLength()) if m.Metadata(i).Name() == b"TFLITE_METADATA"]
    assert len(idx) == 1
    return m.Buffers(idx[0]).DataAsNumpy().tobytes()


def _run(model_bytes, x):
    it = Interpreter(model_content=model_bytes)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"]), it.get_signature_list()


def _metadata_names(model_bytes):
    m = tfl.Model.GetRootAs(model_bytes, 0)
    return [m.Metadata(i).Name().decode() for i in range(m.MetadataLength())]


def test_round_trip(with_md):
    md = read_metadata(with_md)
    assert {k: md[k] for k in ("name", "version", "description", "author", "license")} == {
        "name": INFO.name, "version": INFO.version, "description": INFO.description, "author": INFO.author,
        "license": INFO.license}
    assert md["min_parser_version"] == "1.0.0"
    assert md["input"] == {"name": "image", "description": INFO.input_description, "image_size": 16,
                           "color_space": "RGB", "mean": [128.0], "std": [128.0],
                           "stats": {"min": [-1.0], "max": [127 / 128]}}  # float input: normalised range
    assert md["output"] == {"name": "probability", "description": INFO.output_description,
                            "labels_file": "labels.txt"}
    assert md["associated_files"] == [{"name": "labels.txt", "description": "Class labels, one per output index.",
                                       "type": "TENSOR_AXIS_LABELS"}]
    assert md["labels"] == ["nv", "mel"]


def test_metadata_buffer_is_an_m001_flatbuffer(with_md):
    buf = _metadata_buffer(with_md)
    assert buf[4:8] == b"M001" and flatbuffers.util.BufferHasIdentifier(buf, 0, b"M001")
    assert with_md[4:8] == b"TFL3"


def test_labels_zip_is_stored_and_readable(with_md):
    with zipfile.ZipFile(io.BytesIO(with_md)) as z:
        (zi,) = z.infolist()
        assert zi.filename == "labels.txt" and zi.compress_type == zipfile.ZIP_STORED
        assert z.read("labels.txt") == b"nv\nmel\n"
        # offsets count from the start of the .tflite, as tflite-support writes them
        assert with_md[zi.header_offset:zi.header_offset + 4] == b"PK\x03\x04"


def test_model_still_runs_with_same_output(plain, with_md):
    x = ((np.random.default_rng(0).integers(0, 256, (1, 16, 16, 3)) - 128.0) / 128.0).astype(np.float32)
    want, signatures = _run(plain, x)
    assert want.shape == (1, 2) and 0 < want[0, 1] < 1
    got, got_signatures = _run(with_md, x)
    np.testing.assert_array_equal(got, want)
    assert got_signatures == signatures
    # the converter's own metadata entries (min_runtime_version, ...) survive the re-pack
    assert _metadata_names(with_md) == _metadata_names(plain) + ["TFLITE_METADATA"]


def test_weight_buffers_are_16_byte_aligned(with_md):
    m = tfl.Model.GetRootAs(with_md, 0)
    for i in range(m.BuffersLength()):
        t = m.Buffers(i)._tab
        o = t.Offset(4)  # Buffer.data, field id 0
        if o:
            assert t.Vector(o) % 16 == 0, i


def test_idempotent(plain, with_md):
    assert add_metadata(with_md, INFO) == with_md
    # replacing metadata keeps a single TFLITE_METADATA entry and a single zip entry
    other = add_metadata(with_md, replace(INFO, version="0.2.0", labels=["a", "b"]))
    md = read_metadata(other)
    assert md["version"] == "0.2.0" and md["labels"] == ["a", "b"]
    _metadata_buffer(other)
    assert len(zipfile.ZipFile(io.BytesIO(other)).infolist()) == 1


def test_input_stats_override(plain):
    md = read_metadata(add_metadata(plain, replace(INFO, input_stats=(0.0, 255.0))))
    assert md["input"]["stats"] == {"min": [0.0], "max": [255.0]}


def test_refusals(plain):
    for junk in (b"", b"not a model at all", b"PK\x03\x04" + bytes(100)):
        with pytest.raises(BadInputError):
            add_metadata(junk, INFO)
        with pytest.raises(BadInputError):
            read_metadata(junk)
    with pytest.raises(BadInputError, match="no TFLITE_METADATA"):
        read_metadata(plain)
    with pytest.raises(BadInputError, match="input shape"):
        add_metadata(plain, replace(INFO, image_size=224))
    with pytest.raises(BadInputError, match="labels"):
        add_metadata(plain, replace(INFO, labels=["nv", "mel", "bcc"]))


def test_package_versions_round_trip_through_the_description(plain):
    """ModelMetadata has no free-form map: each step's versions are one description line, read back apart."""
    versions = {"training": {"tensorflow": "2.21.0", "numpy": "2.2.6"},
                "conversion": {"tensorflow": "2.21.0", "ai-edge-litert": "2.3.0", "pillow": "13.0.0"}}
    md = read_metadata(add_metadata(plain, replace(INFO, versions=versions)))
    assert md["versions"] == versions and list(md["versions"]) == ["training", "conversion"]
    assert md["description"] == INFO.description  # the lines are not part of the description read back
    raw = _decode_description(add_metadata(plain, replace(INFO, versions=versions)))
    assert raw == (INFO.description + "\nPackage versions, training: tensorflow 2.21.0, numpy 2.2.6"
                   "\nPackage versions, conversion: tensorflow 2.21.0, ai-edge-litert 2.3.0, pillow 13.0.0")
    assert read_metadata(add_metadata(plain, INFO))["versions"] == {}  # none stated: none read
    for bad in ({"training": {"tensorflow": "2.21 rc"}}, {"training": {"a,b": "1"}}, {"training": {}},
                {"train: x": {"numpy": "2"}}):
        with pytest.raises(BadInputError, match="package versions"):
            add_metadata(plain, replace(INFO, versions=bad))


def _decode_description(model_bytes) -> str:
    from melkit.convert import metadata

    buf = _metadata_buffer(model_bytes)
    md = metadata._decode(buf, flatbuffers.encode.Get(flatbuffers.number_types.UOffsetTFlags.packer_type, buf, 0),
                          "ModelMetadata")
    return md["description"]
