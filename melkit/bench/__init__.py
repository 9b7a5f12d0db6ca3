"""``melkit bench`` and ``melkit predict``: parity (Keras vs TFLite), clinical metrics with confidence
intervals and latency on the same images; one model's answer for a few images.

    from melkit.bench import BenchOptions, run_bench
    result = run_bench(BenchOptions(models=["runs/ham", "runs/ham/tflite/MODEL_int8.tflite"]))   # -> BenchResult
"""

from melkit.util.lazy import lazy_exports

_EXPORTS = {  # name -> the submodule that defines it, imported on first use (melkit.util.lazy)
    "BenchOptions": "bench",
    "BenchResult": "bench",
    "run_bench": "bench",
    "PredictResult": "predict",
    "run_predict": "predict",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
