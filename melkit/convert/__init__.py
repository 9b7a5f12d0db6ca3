"""``melkit convert``: a run's Keras model to TFLite models (float32, fp16, dynamic, int8, QAT) with typed
cards and metadata, each written only if it decides as the Keras model does.

    from melkit.convert import ConvertOptions, run_convert
    result = run_convert("runs/ham", ConvertOptions(variants=["float32", "int8"]))   # -> ConvertResult
"""

from melkit.util.lazy import lazy_exports

_EXPORTS = {  # name -> the submodule that defines it, imported on first use (melkit.util.lazy)
    "ConvertOptions": "options",
    "ConvertResult": "converter",
    "run_convert": "converter",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
