"""Latency and memory of a .tflite on the LiteRT interpreter, measured like ``benchmark_model``.

Each model is measured in a fresh child process (``python -m melkit.bench.latency``): peak resident
memory only grows within a process, so a model measured after another would inherit its peak, and the
first-inference cost would already be paid by the evaluation that ran before. The child imports numpy
and LiteRT only (no TensorFlow), like a lean app would.

Per model: init (construct + allocate tensors), first inference, warm-up, then N timed single-image
invokes at ``threads``; then a thread sweep and the same runs with XNNPACK off (the builtin kernels).

The child measures the bytes bench checked against the card (``data``), written to a file in its own
private temp folder: never the user's path, which may hold another model by then.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from melkit.core.litert import to_input
from melkit.data.contract import normalize
from melkit.util.errors import MelkitError


def summarize(ms) -> dict:
    """mean/std/min/p50/p90/p99/max of a list of milliseconds (plus the raw list for the plots)."""
    a = np.asarray(ms, float)
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"n": int(a.size), "mean_ms": float(a.mean()), "std_ms": float(a.std()), "min_ms": float(a.min()),
            "p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99), "max_ms": float(a.max()),
            "runs_ms": [round(float(v), 4) for v in a]}


def usable_cores() -> int:
    """The cores this process may run on (a container's limit, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _status_mb(key: str) -> float | None:
    """A memory line of /proc/self/status (Linux) in MB, or None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def _rss_mb() -> float | None:
    return _status_mb("VmRSS")


def _peak_rss_mb() -> float:
    """Peak RSS of this process's own memory. VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork and
    exec, so a child started from a process holding TensorFlow would report the parent's gigabyte."""
    peak = _status_mb("VmHWM")
    if peak is not None:
        return peak
    raw = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return raw / 2**20 if sys.platform == "darwin" else raw / 1024  # bytes on macOS, KB elsewhere


def _interpreter(path, threads, xnnpack=True):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType  # LiteRT: imported when first needed

    resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interp = Interpreter(model_path=str(path), num_threads=threads, experimental_op_resolver_type=resolver)
    interp.allocate_tensors()
    return interp


def _invoke_ms(interp, n) -> list:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        interp.invoke()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def _feed(interp, image_q):

    detail = interp.get_input_details()[0]
    interp.set_tensor(detail["index"], to_input(image_q[None], detail))


def measure_tflite(path, image_q, threads, runs, warmup, sweep, xnnpack_off) -> dict:
    """Every latency number of one model, in this process (the child calls it)."""
    baseline = _rss_mb()
    t0 = time.perf_counter()
    interp = _interpreter(path, threads)
    init_ms = (time.perf_counter() - t0) * 1e3
    _feed(interp, image_q)
    first_ms = _invoke_ms(interp, 1)[0]
    warm = _invoke_ms(interp, warmup)
    timed = summarize(_invoke_ms(interp, runs))
    # Read the peak now: the sweep below builds more interpreters and would add to it.
    peak = _peak_rss_mb()
    del interp
    result = {"threads": threads, "init_ms": init_ms, "first_inference_ms": first_ms,
              "warmup_mean_ms": float(np.mean(warm)) if warm else None, "warmup_runs": warmup, "timed": timed,
              "rss_before_model_mb": baseline, "peak_rss_mb": peak, "sweep": {}, "xnnpack_off": None}
    for t in sweep:
        interp = _interpreter(path, t)
        _feed(interp, image_q)
        _invoke_ms(interp, 1 + warmup)
        result["sweep"][str(t)] = {k: v for k, v in summarize(_invoke_ms(interp, runs)).items() if k != "runs_ms"}
        del interp
    if xnnpack_off:
        interp = _interpreter(path, threads, xnnpack=False)
        _feed(interp, image_q)
        _invoke_ms(interp, 1 + warmup)
        result["xnnpack_off"] = summarize(_invoke_ms(interp, runs))
    return result


def measure_in_child(path, image_q, threads, runs, warmup, sweep, xnnpack_off, timeout=900, data=None) -> dict:
    """:func:`measure_tflite` in a fresh Python process; raises MelkitError with its stderr if it fails.
    ``data``: the model's checked bytes (ModelRef.data), measured from a private temp copy; ``path`` then only
    names the model in messages. Without ``data`` the file at ``path`` is measured."""
    with tempfile.TemporaryDirectory(prefix="melkit-latency-") as tmp:
        tmp = Path(tmp)
        np.save(tmp / "image.npy", np.asarray(image_q, np.uint8))
        model = Path(path).resolve()
        if data is not None:
            model = tmp / "model.tflite"
            model.write_bytes(data)
        spec = {"path": str(model), "image": str(tmp / "image.npy"), "threads": threads,
                "runs": runs, "warmup": warmup, "sweep": list(sweep), "xnnpack_off": xnnpack_off,
                "out": str(tmp / "result.json")}
        (tmp / "spec.json").write_text(json.dumps(spec))
        proc = subprocess.run([sys.executable, "-m", "melkit.bench.latency", str(tmp / "spec.json")],
                              capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0 or not (tmp / "result.json").is_file():
            raise MelkitError(f"latency measurement of {path} failed (exit {proc.returncode}): "
                              f"{proc.stderr.strip()[-800:]}")
        return json.loads((tmp / "result.json").read_text())


def measure_keras(model, image_q, runs, warmup, batch_size) -> dict:
    """Keras 2 latency through the contract: one image per call, and ``batch_size`` images per call.

    ``predict_on_batch`` rather than ``predict``: predict builds a tf.data pipeline on every call, which
    would measure the pipeline, not the model.
    """

    one = normalize(np.asarray(image_q, np.uint8)[None])
    batch = np.repeat(one, batch_size, axis=0)
    for _ in range(max(1, warmup)):
        model.predict_on_batch(one)
    single = []
    for _ in range(runs):
        t0 = time.perf_counter()
        model.predict_on_batch(one)
        single.append((time.perf_counter() - t0) * 1e3)
    model.predict_on_batch(batch)
    batched = []
    for _ in range(max(2, runs // 10)):  # a batch costs ~batch_size images: fewer runs keep the time bounded
        t0 = time.perf_counter()
        model.predict_on_batch(batch)
        batched.append((time.perf_counter() - t0) * 1e3)
    per_image = summarize(np.asarray(batched) / batch_size)
    return {"single": summarize(single), "batch_size": batch_size, "batch": summarize(batched),
            "batch_per_image": per_image}


def _main(spec_path):
    spec = json.loads(Path(spec_path).read_text())
    image = np.load(spec["image"])
    result = measure_tflite(spec["path"], image, spec["threads"], spec["runs"], spec["warmup"], spec["sweep"],
                            spec["xnnpack_off"])
    Path(spec["out"]).write_text(json.dumps(result))


if __name__ == "__main__":
    _main(sys.argv[1])
