"""Embed and read standard TFLite model metadata, without tflite-support or MediaPipe.

TFLite metadata (tflite-support's ``metadata_schema.fbs``, file identifier "M001") is a second flatbuffer
stored in one of the model's Buffers; ``Model.metadata`` names that buffer "TFLITE_METADATA". Associated
files (our ``labels.txt``) are appended to the end of the .tflite as an uncompressed zip, which MediaPipe
and the TFLite Task library open by reading the model file as a zip.

The model flatbuffer is parsed and re-packed with the generated object API in ``ai_edge_litert``; the
metadata flatbuffer is written and read by the small schema-driven code below (``_SCHEMA``).
"""

from __future__ import annotations

import io
import re
import struct
import zipfile
from dataclasses import dataclass, field

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as tfl
from flatbuffers import number_types

from melkit.util.errors import BadInputError

METADATA_NAME = "TFLITE_METADATA"
LABELS_FILE = "labels.txt"
INPUT_NAME, OUTPUT_NAME = "image", "probability"  # the names tflite-support's image-classifier writer uses
DOMAIN_NAME = "domain_score"  # the second output of a --domain-guard model
# Only schema-1.0.0 members are used (no VOCABULARY files, subgraph process units or tensor groups), so the
# minimum parser version is tflite-support's default (metadata/cc/metadata_version.cc).
MIN_PARSER_VERSION = "1.0.0"

# Field ids of the tables we touch, from tflite-support's metadata_schema.fbs (schema 1.2.1; later versions only
# append fields and union members). A union field takes two ids: "<field>_type" (ubyte), then the table.
# Kinds: "str", "[str]", "[float]", a scalar from _SCALARS, a table name, "[Table]" or "union:<Union>".
_SCHEMA: dict[str, dict[str, tuple[int, str]]] = {
    "ModelMetadata": {"name": (0, "str"), "description": (1, "str"), "version": (2, "str"),
                      "subgraph_metadata": (3, "[SubGraphMetadata]"), "author": (4, "str"), "license": (5, "str"),
                      "associated_files": (6, "[AssociatedFile]"), "min_parser_version": (7, "str")},
    "SubGraphMetadata": {"name": (0, "str"), "description": (1, "str"),
                         "input_tensor_metadata": (2, "[TensorMetadata]"),
                         "output_tensor_metadata": (3, "[TensorMetadata]"),
                         "associated_files": (4, "[AssociatedFile]"), "input_process_units": (5, "[ProcessUnit]"),
                         "output_process_units": (6, "[ProcessUnit]"), "input_tensor_groups": (7, "[TensorGroup]"),
                         "output_tensor_groups": (8, "[TensorGroup]")},
    "TensorMetadata": {"name": (0, "str"), "description": (1, "str"), "dimension_names": (2, "[str]"),
                       "content": (3, "Content"), "process_units": (4, "[ProcessUnit]"), "stats": (5, "Stats"),
                       "associated_files": (6, "[AssociatedFile]")},
    "Content": {"content_properties_type": (0, "ubyte"), "content_properties": (1, "union:ContentProperties"),
                "range": (2, "ValueRange")},
    "FeatureProperties": {},
    "ImageProperties": {"color_space": (0, "byte"), "default_size": (1, "ImageSize")},
    "ImageSize": {"width": (0, "uint"), "height": (1, "uint")},
    "ValueRange": {"min": (0, "int"), "max": (1, "int")},
    "ProcessUnit": {"options_type": (0, "ubyte"), "options": (1, "union:ProcessUnitOptions")},
    "NormalizationOptions": {"mean": (0, "[float]"), "std": (1, "[float]")},
    "Stats": {"max": (0, "[float]"), "min": (1, "[float]")},
    "TensorGroup": {"name": (0, "str"), "tensor_names": (1, "[str]")},
    "AssociatedFile": {"name": (0, "str"), "description": (1, "str"), "type": (2, "byte"), "locale": (3, "str"),
                       "version": (4, "str")},
}
_SCALARS = {"byte": "Int8", "ubyte": "Uint8", "int": "Int32", "uint": "Uint32"}  # flatbuffers' Prepend*/*Flags names
# Union members and enum values (metadata_schema.fbs; union members are numbered from 1 in declaration order).
FEATURE_PROPERTIES, IMAGE_PROPERTIES = 1, 2  # ContentProperties (BoundingBoxProperties=3, AudioProperties=4)
NORMALIZATION_OPTIONS = 1  # ProcessUnitOptions
_UNIONS = {"ContentProperties": {FEATURE_PROPERTIES: "FeatureProperties", IMAGE_PROPERTIES: "ImageProperties"},
           "ProcessUnitOptions": {NORMALIZATION_OPTIONS: "NormalizationOptions"}}
COLOR_SPACES = {0: "UNKNOWN", 1: "RGB", 2: "GRAYSCALE"}  # ColorSpaceType
RGB = 1
FILE_TYPES = {0: "UNKNOWN", 1: "DESCRIPTIONS", 2: "TENSOR_AXIS_LABELS", 3: "TENSOR_VALUE_LABELS",
              4: "TENSOR_AXIS_SCORE_CALIBRATION", 5: "VOCABULARY"}  # AssociatedFileType
TENSOR_AXIS_LABELS = 2


@dataclass
class ModelInfo:
    """What add_metadata writes. Normalisation follows melkit's contract x = (q - mean) / std."""

    name: str
    version: str
    description: str
    author: str
    license: str
    labels: list[str]  # output classes in output-axis order; written to labels.txt, one per line
    image_size: int  # input height == width
    mean: float = 128.0
    std: float = 128.0
    input_description: str = "RGB image, pixel values q in [0, 255], normalised as (q - mean) / std."
    output_description: str = "Probability of each class, in the order of labels.txt."
    # Written only for a model with a second output (melkit convert --domain-guard).
    domain_description: str = ("Domain score: how far the image is from the dermoscopic images the model was "
                               "trained on. Above the model card's domain_guard.threshold the image does not look "
                               "like a dermoscopic lesion image and is not assessed.")
    # (min, max) of the input tensor's values; None derives them from its type: float32 -> normalised
    # [(0 - mean) / std, (255 - mean) / std], uint8 -> [0, 255], int8 -> [-128, 127].
    input_stats: tuple[float, float] | None = None
    # Package versions behind the model, per step ({"training": {"tensorflow": "2.21.0", ...}, "conversion": ...}).
    # ModelMetadata has no free-form map, so each step is one line appended to the description (see
    # versions_lines), where metadata viewers show it and read_metadata gives it back as ``versions``.
    versions: dict = field(default_factory=dict)


def add_metadata(tflite_bytes: bytes, info: ModelInfo) -> bytes:
    """Return the model with ``info`` as TFLITE_METADATA and labels.txt appended as a stored zip.

    Idempotent: an existing TFLITE_METADATA buffer is replaced, and an appended zip is dropped because the
    model is re-packed from its parsed flatbuffer (which never reaches the bytes after it).
    """
    model = _parse_model(tflite_bytes)
    if any(b.offset > 1 for b in model.buffers or []):  # >2 GB models keep weights after the flatbuffer
        raise BadInputError("TFLite models with external buffers (offset/size) are not supported")
    sgs = model.subgraphs or []  # the metadata describes one input and one output (plus a domain score)
    if len(sgs) != 1 or len(_list(sgs[0].inputs)) != 1 or len(_list(sgs[0].outputs)) not in (1, 2):
        raise BadInputError("expected a TFLite model with one subgraph, one input and one output (and maybe a "
                            "domain score)")
    sg = sgs[0]
    in_shape, out_shape = (_list(sg.tensors[i[0]].shape) for i in (sg.inputs, sg.outputs))
    with_domain = len(_list(sg.outputs)) == 2
    if with_domain and _list(sg.tensors[sg.outputs[1]].shape) != [1, 1]:
        raise BadInputError(f"the second output {_list(sg.tensors[sg.outputs[1]].shape)} is not a [1, 1] domain score")
    if in_shape != [1, info.image_size, info.image_size, 3]:
        raise BadInputError(f"model input shape {in_shape} is not [1, {info.image_size}, {info.image_size}, 3]")
    if not info.labels or any("\n" in label for label in info.labels) or out_shape[-1:] != [len(info.labels)]:
        raise BadInputError(f"model output shape {out_shape} does not match {len(info.labels)} one-line labels")

    stats = _input_stats(info, sg.tensors[sg.inputs[0]].type)
    meta = np.frombuffer(_metadata_flatbuffer(info, stats, with_domain), np.uint8)
    entry = next((m for m in model.metadata or [] if _text(m.name) == METADATA_NAME), None)
    if entry is None:  # new buffer + named entry; else overwrite the old buffer in place, keeping indices stable
        model.buffers.append(tfl.BufferT())
        entry = tfl.MetadataT(name=METADATA_NAME, buffer=len(model.buffers) - 1)
        model.metadata = (model.metadata or []) + [entry]
    model.buffers[entry.buffer] = tfl.BufferT(data=meta)

    builder = _AlignedBuilder(len(tflite_bytes) + meta.size + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return _append_labels_zip(bytes(builder.Output()), info.labels)


VERSIONS_LINE = "Package versions, {step}: "
_VERSIONS_LINE = re.compile(r"Package versions, ([^:\n]+): (.+)")
_WORD = re.compile(r"[^\s,:]+")
_STEP = re.compile(r"[^\n:]+")


def versions_lines(versions: dict) -> str:
    """``versions`` ({step: {package: version}}) as the description's lines, one per step, e.g.
    "Package versions, conversion: tensorflow 2.21.0, numpy 2.2.6"; '' when there are none."""
    lines = []
    for step, packages in versions.items():
        words = [*map(str, packages), *map(str, packages.values())]  # no space, comma or colon: parsed back
        if not packages or not _STEP.fullmatch(str(step)) or not all(_WORD.fullmatch(w) for w in words):
            raise BadInputError(f"package versions of {step!r} cannot be written as one line: {packages}")
        lines.append(VERSIONS_LINE.format(step=step) + ", ".join(f"{p} {v}" for p, v in packages.items()))
    return "".join("\n" + line for line in lines)


def _split_versions(description: str | None) -> tuple[str | None, dict]:
    """(the description without its versions lines, the versions they state): versions_lines' inverse."""
    if description is None:
        return None, {}
    lines, versions = description.split("\n"), {}
    while lines and (m := _VERSIONS_LINE.fullmatch(lines[-1])):
        pairs = [p.split(" ") for p in m.group(2).split(", ")]
        if not all(len(p) == 2 for p in pairs):
            break
        versions = {m.group(1): dict(pairs), **versions}
        lines.pop()
    return "\n".join(lines), versions


def read_metadata(tflite_bytes: bytes) -> dict:
    """Read TFLITE_METADATA (and the labels from the appended zip) back into a plain dict.

    ``description`` is the model's description without the package versions lines, which come back as
    ``versions`` (as ModelInfo had them; {} when the model states none)."""
    meta = _metadata_buffer(tflite_bytes)
    if not flatbuffers.util.BufferHasIdentifier(meta, 0, b"M001"):
        raise BadInputError("TFLITE_METADATA is not a metadata_schema flatbuffer (file identifier is not M001)")
    md = _decode(meta, flatbuffers.encode.Get(number_types.UOffsetTFlags.packer_type, meta, 0), "ModelMetadata")
    sg = (md.get("subgraph_metadata") or [{}])[0]
    inp = (sg.get("input_tensor_metadata") or [{}])[0]
    out = (sg.get("output_tensor_metadata") or [{}])[0]
    domain = (sg.get("output_tensor_metadata") or [{}, {}])[1:]
    content = inp.get("content", {})
    image = content.get("content_properties", {}) if content.get("content_properties_type") == IMAGE_PROPERTIES else {}
    size = image.get("default_size", {})
    norm = next((u.get("options", {}) for u in inp.get("process_units", [])
                 if u.get("options_type") == NORMALIZATION_OPTIONS), {})
    files = [f for t in [md, sg, *sg.get("input_tensor_metadata", []), *sg.get("output_tensor_metadata", [])]
             for f in t.get("associated_files", [])]
    labels_file = next((f.get("name") for f in out.get("associated_files", []) if f.get("type") == TENSOR_AXIS_LABELS),
                       None)
    description, versions = _split_versions(md.get("description"))
    return {
        **{k: md.get(k) for k in ("name", "version", "description", "author", "license", "min_parser_version")},
        "description": description,
        "versions": versions,
        "input": {"name": inp.get("name"), "description": inp.get("description"),
                  "image_size": size.get("width") if size.get("width") == size.get("height") else
                  (size.get("height"), size.get("width")),
                  "color_space": COLOR_SPACES.get(image.get("color_space", 0), "UNKNOWN"),
                  "mean": norm.get("mean"), "std": norm.get("std"), "stats": inp.get("stats")},
        "output": {"name": out.get("name"), "description": out.get("description"), "labels_file": labels_file},
        **({"domain_output": {"name": domain[0].get("name"), "description": domain[0].get("description")}}
           if domain else {}),
        "associated_files": [{"name": f.get("name"), "description": f.get("description"),
                              "type": FILE_TYPES.get(f.get("type", 0), "UNKNOWN")} for f in files],
        "labels": _zip_labels(tflite_bytes, labels_file or LABELS_FILE),
    }


# --- the model flatbuffer -------------------------------------------------------------------------------------


def _check_tflite(data) -> bytes:
    data = bytes(data)
    if len(data) < 8 or data[4:8] != b"TFL3":  # the TFLite schema's file_identifier
        raise BadInputError("not a TFLite model (no TFL3 file identifier)")
    return data


def _parse_model(data) -> tfl.ModelT:
    data = _check_tflite(data)
    try:
        return tfl.ModelT.InitFromPackedBuf(data, 0)
    except Exception as e:  # a truncated or corrupt flatbuffer fails anywhere inside the generated code
        raise BadInputError(f"cannot parse the TFLite model: {e}") from e


def _metadata_buffer(data) -> bytes:
    data = _check_tflite(data)
    try:
        model = tfl.Model.GetRootAs(data, 0)
        for i in range(model.MetadataLength()):
            if _text(model.Metadata(i).Name()) == METADATA_NAME:
                return model.Buffers(model.Metadata(i).Buffer()).DataAsNumpy().tobytes()
    except Exception as e:
        raise BadInputError(f"cannot parse the TFLite model: {e}") from e
    raise BadInputError(f"the TFLite model has no {METADATA_NAME}")


def _list(v) -> list:
    return [] if v is None else [int(x) for x in v]  # the object API gives numpy arrays, or None when absent


def _text(s) -> str | None:
    return s.decode() if isinstance(s, bytes) else s  # generated code returns names as bytes


class _AlignedBuilder(flatbuffers.Builder):
    """TFLite's schema.fbs declares ``Buffer.data`` with ``force_align: 16`` (weights are used in place, even
    mmapped); the generated Python Pack ignores that, so align every byte vector (Buffer.data is the big one)."""

    def CreateNumpyVector(self, x):
        if x.dtype == np.uint8:
            self.Prep(16, x.nbytes)  # data start 16-aligned; Finish pads the whole buffer to a multiple of 16
        return super().CreateNumpyVector(x)


def _input_stats(info: ModelInfo, tensor_type: int) -> tuple[float, float]:
    if info.input_stats is not None:
        return info.input_stats
    if tensor_type == tfl.TensorType.FLOAT32:
        return (0 - info.mean) / info.std, (255 - info.mean) / info.std
    if tensor_type == tfl.TensorType.UINT8:
        return 0.0, 255.0
    if tensor_type == tfl.TensorType.INT8:
        return -128.0, 127.0
    raise BadInputError(f"unsupported input tensor type {tensor_type}; give ModelInfo.input_stats")


# --- the metadata flatbuffer --------------------------------------------------------------------------------------


def _metadata_flatbuffer(info: ModelInfo, stats: tuple[float, float], with_domain: bool = False) -> bytes:
    """The ModelMetadata tflite-support's image-classifier writer would produce for this model (plus, with
    ``with_domain``, a second output: the domain score, a feature without labels)."""
    image_input = {
        "name": INPUT_NAME, "description": info.input_description,
        "content": {"content_properties_type": IMAGE_PROPERTIES,
                    "content_properties": {"color_space": RGB,
                                           "default_size": {"width": info.image_size, "height": info.image_size}}},
        "process_units": [{"options_type": NORMALIZATION_OPTIONS,
                           "options": {"mean": [info.mean], "std": [info.std]}}],  # one value: all channels
        "stats": {"max": [stats[1]], "min": [stats[0]]},
    }
    scores_output = {
        "name": OUTPUT_NAME, "description": info.output_description,
        "content": {"content_properties_type": FEATURE_PROPERTIES, "content_properties": {}},
        "associated_files": [{"name": LABELS_FILE, "description": "Class labels, one per output index.",
                              "type": TENSOR_AXIS_LABELS}],
    }
    outputs = [scores_output]
    if with_domain:
        outputs.append({"name": DOMAIN_NAME, "description": info.domain_description,
                        "content": {"content_properties_type": FEATURE_PROPERTIES, "content_properties": {}}})
    md = {"name": info.name, "description": info.description + versions_lines(info.versions), "version": info.version,
          "subgraph_metadata": [{"input_tensor_metadata": [image_input], "output_tensor_metadata": outputs}],
          "author": info.author, "license": info.license, "min_parser_version": MIN_PARSER_VERSION}
    b = flatbuffers.Builder(1024)
    b.Finish(_encode(b, "ModelMetadata", md), file_identifier=b"M001")
    return bytes(b.Output())


def _encode(b: flatbuffers.Builder, table: str, obj: dict) -> int:
    """Write ``obj`` (field name -> value, as in _SCHEMA) as a ``table`` and return its offset."""
    fields = _SCHEMA[table]
    refs = {}  # children (strings, vectors, tables) must be finished before this table is started
    for name, value in obj.items():
        kind = fields[name][1]
        if kind == "str":
            refs[name] = b.CreateString(value)
        elif kind == "[float]":
            b.StartVector(4, len(value), 4)
            for v in reversed(value):
                b.PrependFloat32(v)
            refs[name] = b.EndVector()
        elif kind.startswith("["):
            items = [b.CreateString(v) if kind == "[str]" else _encode(b, kind[1:-1], v) for v in value]
            b.StartVector(4, len(items), 4)
            for off in reversed(items):
                b.PrependUOffsetTRelative(off)
            refs[name] = b.EndVector()
        elif kind.startswith("union:"):
            refs[name] = _encode(b, _UNIONS[kind[6:]][obj[name + "_type"]], value)
        elif kind not in _SCALARS:
            refs[name] = _encode(b, kind, value)
    b.StartObject(1 + max((fid for fid, _ in fields.values()), default=-1))
    for name, value in obj.items():
        fid, kind = fields[name]
        if kind in _SCALARS:
            getattr(b, f"Prepend{_SCALARS[kind]}Slot")(fid, value, 0)
        else:
            b.PrependUOffsetTRelativeSlot(fid, refs[name], 0)
    return b.EndObject()


def _decode(buf: bytes, pos: int, table: str) -> dict:
    """Read the ``table`` at ``pos`` into a dict of its present fields (unknown union members are skipped)."""
    t = flatbuffers.table.Table(buf, pos)
    out = {}
    for name, (fid, kind) in _SCHEMA[table].items():  # declaration order: a union's _type comes first
        o = t.Offset(4 + 2 * fid)  # vtable entry of field id n is at byte 4 + 2n
        if not o:
            continue
        if kind in _SCALARS:
            out[name] = t.Get(getattr(number_types, _SCALARS[kind] + "Flags"), t.Pos + o)
        elif kind == "str":
            out[name] = t.String(t.Pos + o).decode()
        elif kind == "[float]":
            out[name] = list(struct.unpack_from(f"<{t.VectorLen(o)}f", buf, t.Vector(o)))
        elif kind == "[str]":
            out[name] = [t.String(t.Vector(o) + 4 * i).decode() for i in range(t.VectorLen(o))]
        elif kind.startswith("["):
            out[name] = [_decode(buf, t.Indirect(t.Vector(o) + 4 * i), kind[1:-1]) for i in range(t.VectorLen(o))]
        elif kind.startswith("union:"):
            member = _UNIONS[kind[6:]].get(out.get(name + "_type", 0))
            if member:
                out[name] = _decode(buf, t.Indirect(t.Pos + o), member)
        else:
            out[name] = _decode(buf, t.Indirect(t.Pos + o), kind)
    return out


# --- the appended zip -------------------------------------------------------------------------------------------


def _append_labels_zip(model: bytes, labels: list[str]) -> bytes:
    """Append a stored zip of labels.txt. Its offsets count from the start of the .tflite (as when tflite-support
    appends with Python's zipfile), so readers that do not look for a prefix find the files too."""
    f = io.BytesIO(model)
    f.seek(0, io.SEEK_END)  # "w" on an open stream writes from here and keeps what is before
    with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as z:
        zi = zipfile.ZipInfo(LABELS_FILE, date_time=(1980, 1, 1, 0, 0, 0))  # fixed time: same bytes every run
        zi.create_system, zi.external_attr = 3, 0o644 << 16  # same bytes on every OS
        z.writestr(zi, "".join(label + "\n" for label in labels))
    return f.getvalue()


def _zip_labels(data: bytes, name: str) -> list[str]:
    try:
        with zipfile.ZipFile(io.BytesIO(bytes(data))) as z:
            return z.read(name).decode().splitlines()
    except (zipfile.BadZipFile, KeyError):  # no zip appended, or no such file in it
        return []
