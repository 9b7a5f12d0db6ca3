"""A second opinion on latency: LiteRT's own ``python -m ai_edge_litert.tools.benchmark_litert_model``.

It runs the file through the CompiledModel API on random input, so it shares nothing with melkit's
measurement but the .tflite; agreement within noise says melkit's timer measures the model, not itself.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

MODULE = "ai_edge_litert.tools.benchmark_litert_model"


def available() -> bool:
    try:
        return importlib.util.find_spec(MODULE) is not None
    except ModuleNotFoundError:  # ai_edge_litert itself or its tools package missing
        return False


def run(path, threads: int, runs: int, warmup: int, timeout=900, data=None) -> dict:
    """Its result JSON (``latency.avg_ms`` etc.), or ``{"error": ...}``: a failing second opinion is
    reported, not fatal. ``data``: the model's checked bytes (ModelRef.data), which the tool runs from a private
    temp copy (the recorded command still names ``path``); without it, the file at ``path``."""
    with tempfile.TemporaryDirectory(prefix="melkit-litert-") as tmp:
        out = Path(tmp) / "result.json"
        model = path
        if data is not None:
            model = Path(tmp) / "model.tflite"
            model.write_bytes(data)
        cmd = [sys.executable, "-m", MODULE, f"--model={model}", f"--num_threads={threads}", f"--num_runs={runs}",
               f"--warmup_runs={warmup}", f"--result_json={out}"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout} s"}
        if proc.returncode != 0 or not out.is_file():
            return {"error": f"exit {proc.returncode}: {proc.stderr.strip()[-400:]}"}
        result = json.loads(out.read_text())
    result["command"] = " ".join(["python", "-m", MODULE, f"--model={path}"] + cmd[4:-1])
    return result
