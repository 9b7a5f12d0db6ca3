"""melkit bundle is one transaction: killed at any moment, the app holds the old bundle or the new one (model,
card, labels and golden vectors of one model), never a new model with the old goldens; a bad --image changes
nothing; the app's other assets survive; a second bundle into the same app exits 2 while one runs."""

import json
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner

from melkit.cli import main
from melkit.core.card import sha256
from melkit.release.bundle import ASSETS, GOLDEN
from melkit.util.files import exclusive, recover

APP = Path(__file__).resolve().parents[1] / "android_demo"


def app_copy(tmp_path: Path) -> Path:
    dest = tmp_path / "android_demo"
    shutil.copytree(APP, dest, ignore=shutil.ignore_patterns(".toolchain", "build", ".gradle"))
    (dest / ASSETS).mkdir(parents=True, exist_ok=True)
    (dest / ASSETS / "about.html").write_text("the app's own asset")  # not melkit's: must survive every bundle
    return dest


def bundled_state(app: Path) -> str:
    """The model the app holds, after checking assets and goldens describe that one model; recovery first,
    as the next bundle would do it."""
    recover(app / ASSETS.parent / (ASSETS.name + ".swap"))
    assets, golden = app / ASSETS, app / GOLDEN
    assert (assets / "about.html").read_text() == "the app's own asset"
    models = sorted(assets.glob("*.tflite"))
    assert len(models) == 1, [p.name for p in assets.iterdir()]
    card = json.loads(models[0].with_suffix(".json").read_text())
    assert card["sha256"] == sha256(models[0].read_bytes())
    index = json.loads((golden / "index.json").read_text())
    assert index["model_sha256"] == card["sha256"], "goldens of another model than the bundled one"
    assert json.loads((golden / "card.json").read_text())["sha256"] == card["sha256"]
    return card["variant"]


def test_a_bad_image_changes_nothing_and_a_second_bundle_waits(converted, tmp_path):
    out = converted[1]
    app = app_copy(tmp_path)
    int8 = out / "melkit_mnv2_0.35_48_int8.tflite"
    f32 = out / "melkit_mnv2_0.35_48_float32.tflite"
    assert CliRunner().invoke(main, ["bundle", str(int8), "--app", str(app)]).exit_code == 0
    assert bundled_state(app) == "int8"
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    r = CliRunner().invoke(main, ["bundle", str(f32), "--app", str(app), "--image", str(bad),
                                  "--golden-dir", str(app / GOLDEN)])
    assert r.exit_code == 2, r.output
    assert bundled_state(app) == "int8"  # was: new assets published, then exit 2 on the image
    with exclusive(app / ".melkit-bundle"):
        r = CliRunner().invoke(main, ["bundle", str(f32), "--app", str(app)])
        assert r.exit_code == 2 and "being written by another melkit process" in r.output
    assert bundled_state(app) == "int8"


def test_kill_9_at_random_moments_never_leaves_a_mixed_app(converted, tmp_path):
    """Fault injection: bundle alternately the float32 and the int8 model, kill -9 at a random moment of
    each run; after each kill (and the recovery the next bundle does first) the app is consistent."""
    out = converted[1]
    app = app_copy(tmp_path)
    models = [out / "melkit_mnv2_0.35_48_float32.tflite", out / "melkit_mnv2_0.35_48_int8.tflite"]
    cmd = [sys.executable, "-m", "melkit.cli", "bundle", "--app", str(app)]
    assert subprocess.run(cmd + [str(models[0])], capture_output=True).returncode == 0
    start = time.perf_counter()
    assert subprocess.run(cmd + [str(models[1])], capture_output=True).returncode == 0
    full = time.perf_counter() - start
    rng = random.Random(0)
    seen = set()
    for i in range(5):
        child = subprocess.Popen(cmd + [str(models[i % 2])], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 1.1) * full)
        child.send_signal(signal.SIGKILL)
        child.wait()
        seen.add(bundled_state(app))
    assert seen <= {"float32", "int8"}
