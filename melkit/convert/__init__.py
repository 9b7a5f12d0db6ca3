"""``melkit convert``: a run's Keras model to TFLite models (float32, fp16, dynamic, int8, QAT) with typed
cards and metadata, each written only if it decides as the Keras model does.

    from melkit.convert import ConvertOptions, run_convert
    result = run_convert("runs/ham", ConvertOptions(variants=["float32", "int8"]))   # -> ConvertResult
"""

from melkit.convert.converter import ConvertResult, run_convert
from melkit.convert.options import ConvertOptions

__all__ = ["ConvertOptions", "ConvertResult", "run_convert"]
