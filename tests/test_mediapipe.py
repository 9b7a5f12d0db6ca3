"""MediaPipe Tasks reads melkit's metadata (labels, normalization) and scores like melkit does.

Needs the separate mediapipe venv that `setup.sh --with-mediapipe` creates (CI does); skips without it.
"""

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from melkit.core.litert import load_interpreter

REPO = Path(__file__).resolve().parents[1]
MP_PYTHON = Path(os.environ.get("MELKIT_MEDIAPIPE_PYTHON", REPO / ".venv-mediapipe" / "bin" / "python"))


@pytest.mark.parametrize("variant", ["float32", "int8"])
def test_mediapipe_image_classifier_agrees(converted, variant, tmp_path, synth_dir):
    if not MP_PYTHON.exists():
        pytest.skip("no mediapipe venv (bash setup.sh --with-mediapipe)")
    from melkit.data.pipeline import load_images
    from melkit.data.readers import read_dataset

    _, out = converted
    model = out / f"melkit_mnv2_0.35_48_{variant}.tflite"
    images = load_images(read_dataset(synth_dir).records[:6], 48).images
    np.save(tmp_path / "images.npy", images)
    proc = subprocess.run([str(MP_PYTHON), str(REPO / "tests" / "mediapipe_client.py"), str(model),
                           str(tmp_path / "images.npy")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    scores = json.loads(proc.stdout.strip().splitlines()[-1])
    assert all(set(s) == {"nv", "mel"} for s in scores)  # labels.txt read from the model's metadata zip

    interp = load_interpreter(model)
    d_in, d_out = interp.get_input_details()[0], interp.get_output_details()[0]
    for img, s in zip(images, scores):
        from melkit.core.litert import to_input

        interp.set_tensor(d_in["index"], to_input(img[None], d_in))
        interp.invoke()
        y = interp.get_tensor(d_out["index"]).astype(np.float64)[0]
        scale, zero = d_out["quantization"]
        if scale:
            y = (y - zero) * scale
        assert s["nv"] == pytest.approx(y[0], abs=1e-5) and s["mel"] == pytest.approx(y[1], abs=1e-5)
