"""The machine the numbers were measured on, and how to measure the same files on a phone."""

from __future__ import annotations

import platform
from importlib import metadata

from melkit.bench.latency import usable_cores
from melkit.util.paths import stored_path

PHONE_DIR = "/data/local/tmp"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware")):  # x86, and ARM boards
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def host_info(with_tensorflow: bool = False) -> dict:
    info = {
        "cpu": _cpu_model(),
        "machine": platform.machine(),
        "usable_cores": usable_cores(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": {d: _version(d) for d in ("melkit", "numpy", "ai-edge-litert")},
    }
    if with_tensorflow:
        # Only when TF is loaded anyway (a Keras reference): importing it costs seconds.
        from melkit.util.tf import keras, tf  # TensorFlow: imported when first needed

        info["versions"].update({"tensorflow": tf.__version__, "tf_keras": keras.__version__})
    return info


def host_line(info: dict) -> str:
    v = info["versions"]
    parts = [f"{info['cpu']} ({info['usable_cores']} usable cores, {info['machine']})", f"Python {info['python']}",
             f"ai-edge-litert {v.get('ai-edge-litert')}"]
    if v.get("tensorflow"):
        parts.append(f"TensorFlow {v['tensorflow']} / tf_keras {v.get('tf_keras')}")
    return ", ".join(parts)


def phone_commands(model_files, threads: int, runs: int, warmup: int, folder=None) -> list:
    """The same measurement on an Android phone with TFLite's prebuilt ``benchmark_model`` binary. With
    ``folder`` (the report's), the models' paths are relative to it, as everything a report records is."""
    lines = ["# run from the report's folder: the models' paths are relative to it"] if folder is not None else []
    lines += [f"adb push benchmark_model {PHONE_DIR}/ && adb shell chmod +x {PHONE_DIR}/benchmark_model"]
    for path in model_files:
        name = path.name
        lines.append(f"adb push {path if folder is None else stored_path(path, folder)} {PHONE_DIR}/{name}")
        base = (f"adb shell {PHONE_DIR}/benchmark_model --graph={PHONE_DIR}/{name} --num_threads={threads} "
                f"--warmup_runs={warmup} --num_runs={runs}")
        lines.append(base + " --use_xnnpack=true")
        lines.append(base + " --use_xnnpack=false")
    return lines
