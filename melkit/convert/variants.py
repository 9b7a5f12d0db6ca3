"""TFLite conversion of one variant: float32, fp16, dynamic, int8 (full integer), qat, int8-mixed.

int8 I/O follows the contract: a uint8 input with scale 1/128 and zero point 128 (int8: zero point 0)
is the resized pixel itself, so the phone skips the float normalisation. Checked after conversion.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import numpy as np

from melkit.core.litert import load_interpreter
from melkit.data.contract import CONTRACT, normalize
from melkit.util.errors import BadInputError, QualityGateError
from melkit.util.files import atomic_writer

IO_TYPES = ("uint8", "int8", "float32")


@dataclass(frozen=True)
class Variant:
    """One kind of TFLite model ``melkit convert`` can build, and which conversion passes apply to it."""

    name: str
    help: str
    calibrated: bool = False  # quantized on the representative set: range equalisation, decision grid
    integer_only: bool = False  # integer-only ops and the contract's uint8/int8 I/O
    rounded: bool = False  # compensated 1x1 weight rounding (QAT learns its own weights: it would be undone)


VARIANTS = {v.name: v for v in (
    Variant("float32", "Float32 TFLite (the parity reference)."),
    Variant("fp16", "Float16 weights."),
    Variant("dynamic", "Dynamic-range quantization (int8 weights)."),
    Variant("int8", "Full integer: int8 weights and activations, integer-only ops.", calibrated=True,
            integer_only=True, rounded=True),
    Variant("qat", "Quantization-aware training, then full-integer conversion.", calibrated=True,
            integer_only=True),
    Variant("int8-mixed", "int8 with --float-layer ops kept in float.", calibrated=True, rounded=True),
)}
FULL_INTEGER = tuple(n for n, v in VARIANTS.items() if v.integer_only)


def _representative(images_q):
    def gen():
        for q in images_q:
            yield [normalize(q[None])]

    return gen


def keras_converter(model):
    """A TFLiteConverter for a one-input Keras model: from_keras_model's graph, in a fraction of its time.

    from_keras_model first saves the whole Keras model as a SavedModel, which traces every layer's own call
    functions: about 15 of the 17 s a conversion of the tests' 48-px alpha-0.35 model took on 2 CPU cores. Here
    one inference function is traced and saved on a bare ``tf.Module`` that holds the model's variables. The
    TFLite model has the same ops, tensor names, quantization parameters and ``serving_default`` signature
    (outputs named as the model's), and the same outputs to the bit; only the converter's own record of what
    it converted from differs (measured on float32 and int8: 3-4 s instead of 17-18 s).
    """
    from melkit.util.tf import tf  # TensorFlow: imported when first needed

    if len(model.inputs) != 1:
        raise ValueError(f"expected a model with one input, not {len(model.inputs)}")
    names = list(model.output_names)
    # Batch 1, as phone models declare it: LiteRT.js (and some delegates) refuse a dynamic batch dimension, and
    # every client runs one image per invoke (the Java core, MediaPipe Tasks, melkit bench and predict).
    spec = tf.TensorSpec([1, *model.inputs[0].shape[1:]], model.inputs[0].dtype, name=model.input_names[0])

    @tf.function(input_signature=[spec])
    def serve(image):
        out = model(image, training=False)
        return dict(zip(names, out if isinstance(out, (list, tuple)) else [out]))

    root = tf.Module()
    root.model_variables = list(model.variables)  # what the saved function reads
    root.serve = serve
    return tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()], root)


def convert(model, variant: str, images_q=None, input_type="uint8", output_type="uint8",
            float_layers=()) -> bytes:
    """Convert a Keras model (image -> [P(nv), P(mel)]) to TFLite bytes."""
    from melkit.util.tf import tf  # TensorFlow: imported when first needed

    conv = keras_converter(model)
    if variant == "float32":
        pass
    elif variant == "fp16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif variant == "dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif VARIANTS[variant].calibrated:
        if images_q is None or len(images_q) == 0:
            raise BadInputError("int8 conversion needs a non-empty representative set")
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = _representative(images_q)
        if variant == "int8-mixed":
            return _mixed(conv, images_q, float_layers)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = getattr(tf, input_type)
        conv.inference_output_type = getattr(tf, output_type)
    else:
        raise BadInputError(f"unknown variant {variant!r}: {', '.join(VARIANTS)}")
    try:
        return conv.convert()
    except Exception as e:  # the converter raises many types; all mean "this model cannot be converted"
        raise BadInputError(f"TFLite conversion ({variant}) failed: {type(e).__name__}: {e}") from None


def _mixed(conv, images_q, float_layers) -> bytes:
    """int8 except the named ops (TFLite tensor names, e.g. from the debug report), which stay float.

    Not integer-only: float I/O and float kernels where denied. Uses TFLite's QuantizationDebugger,
    whose denylist is the supported way to keep selected nodes in float.
    """
    from melkit.util.tf import tf  # TensorFlow: imported when first needed

    if not float_layers:
        raise BadInputError("int8-mixed needs --float-layer NAME (see the --debug report for candidates)")
    opts = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=list(float_layers))
    try:
        dbg = tf.lite.experimental.QuantizationDebugger(converter=conv, debug_dataset=_representative(images_q),
                                                        debug_options=opts)
        data = dbg.get_nondebug_quantized_model()
    except Exception as e:
        raise BadInputError(f"int8-mixed conversion failed: {type(e).__name__}: {e}") from None
    # An unknown name is silently ignored by the converter: refuse it instead of writing plain int8.

    names = {t["name"] for t in load_interpreter(data).get_tensor_details()}
    unknown = [n for n in float_layers if n not in names]
    if unknown:
        raise BadInputError(f"--float-layer: no tensor named {unknown[0]!r} in the model "
                            "(use a tensor_name from the --debug report)")
    return data


def debug_report(model, images_q, out_csv) -> list:
    """Per-layer quantization error of the int8 model (TFLite QuantizationDebugger), worst first."""
    from melkit.util.tf import tf  # TensorFlow: imported when first needed

    conv = keras_converter(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = _representative(images_q)
    dbg = tf.lite.experimental.QuantizationDebugger(converter=conv, debug_dataset=_representative(images_q[:32]))
    dbg.run()

    buf = io.StringIO()
    dbg.layer_statistics_dump(buf)
    buf.seek(0)
    rows = list(csv.DictReader(buf))
    for r in rows:
        # RMSE in units of the quantization step: ~0.29 is the floor of rounding alone; much more hurts.
        scale = float(r.get("scale") or "nan")
        r["scaled_rmse"] = float(np.sqrt(float(r["mean_squared_error"])) / scale) if scale > 0 else float("nan")
    rows.sort(key=lambda r: -np.nan_to_num(r["scaled_rmse"], nan=-1.0))

    with atomic_writer(out_csv) as f:
        w = csv.DictWriter(f, ["tensor_name", "op_name", "scaled_rmse", "mean_squared_error", "scale"],
                           extrasaction="ignore",
                           lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return rows


def check_input_quantization(io: dict, input_type: str):
    """The contract's input quantization: uint8 (1/128, 128) or int8 (1/128, 0); fail otherwise."""
    if input_type == "float32":
        return
    q = io["input"]["quantization"]
    want_scale = CONTRACT.input_quantization["scale"]
    want_zero = 128 if input_type == "uint8" else 0
    if q is None or not np.isclose(q["scale"], want_scale, rtol=1e-6) or q["zero_point"] != want_zero:
        raise QualityGateError(
            f"converted input quantization {q} differs from the contract's (scale 1/128, zero point {want_zero}); "
            "the representative set must span the full pixel range"
        )
