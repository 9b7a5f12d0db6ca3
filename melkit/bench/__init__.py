"""``melkit bench`` and ``melkit predict``: parity (Keras vs TFLite), clinical metrics with confidence
intervals and latency on the same images; one model's answer for a few images.

    from melkit.bench import BenchOptions, run_bench
    result = run_bench(BenchOptions(models=["runs/ham", "runs/ham/tflite/MODEL_int8.tflite"]))   # -> BenchResult
"""

from melkit.bench.bench import BenchOptions, BenchResult, run_bench
from melkit.bench.predict import PredictResult, run_predict

__all__ = ["BenchOptions", "BenchResult", "run_bench", "PredictResult", "run_predict"]
