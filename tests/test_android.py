"""The Android app, as far as CI can prove it without a device or Gradle (README "Android app").

1. The plain-Java core compiles (Java 8, no Android imports) and its JUnit 4 tests pass on the JVM against
   golden vectors from Python: the input tensor byte for byte, P(mel) and the decision.
2. All app sources compile against the real API 23 android.jar with compile-only LiteRT stubs.
3. A debug APK is assembled from a temp copy of android_demo/ with a bundled test model, signed and
   verified, and the assets inside are the bundled files, the model stored uncompressed.
Plus ``melkit bundle``'s refusals. Tests never write into the checkout; without the Android toolchain
(android_demo/setup_toolchain.sh, needs ../shared/android-sdk) the toolchain tests skip.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import HAM, REPO, built_once, need

from melkit.cli import main

APP = REPO / "android_demo"
CORE = APP / "app" / "src" / "main" / "java" / "org" / "melkit" / "core"
CORE_TESTS = APP / "app" / "src" / "test" / "java" / "org" / "melkit" / "core"
COMMITTED_GOLDEN = APP / "app" / "src" / "test" / "resources" / "golden"
COMMITTED_CONTRACT = APP / "app" / "src" / "test" / "resources" / "contract"
COMMITTED_DECODE = APP / "app" / "src" / "test" / "resources" / "decode" / "sizes.json"
RES = APP / "app" / "src" / "main" / "res"
DEMO = APP / "app" / "src" / "main" / "java" / "org" / "melkit" / "demo"
ANDROID_NS = "{http://schemas.android.com/apk/res/android}"
STUBS = REPO / "tests" / "android" / "litert_stubs"
TOOLCHAIN = Path(os.environ.get("MELKIT_ANDROID_TOOLCHAIN", APP / ".toolchain"))
JAVA = Path("/usr/share/java")
JVM_CP = [JAVA / "com.android.json.jar", JAVA / "junit4.jar", JAVA / "hamcrest-core.jar"]
FRAMEWORK = Path("/usr/share/android-framework-res/framework-res.apk")
SETUP_HINT = "run android_demo/setup_toolchain.sh (needs ../shared/android-sdk)"


def need_jvm():
    missing = [str(p) for p in JVM_CP if not p.is_file()] + [t for t in ("javac", "java") if not shutil.which(t)]
    if missing:
        pytest.skip(f"JVM test tools missing ({', '.join(missing)}): {SETUP_HINT}")


def need_android():
    need_jvm()
    files = [TOOLCHAIN / "android.jar", TOOLCHAIN / "dx.jar", FRAMEWORK]
    missing = [str(p) for p in files if not p.is_file()]
    missing += [t for t in ("aapt", "zipalign", "apksigner", "keytool", "dexdump") if not shutil.which(t)]
    if missing:
        pytest.skip(f"Android toolchain missing ({', '.join(missing)}): {SETUP_HINT}")


def sh(*cmd, **kw):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300, **kw)
    assert r.returncode == 0, f"{cmd[0]} failed ({r.returncode}):\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    return r.stdout


def java_files(*dirs):
    return sorted(str(p) for d in dirs for p in Path(d).rglob("*.java"))


def cp(*parts):
    return os.pathsep.join(str(p) for p in parts)


def model_file(out: Path, variant: str) -> Path:
    return out / f"melkit_mnv2_0.35_48_{variant}.tflite"


def app_copy(tmp_path: Path) -> Path:
    """A copy of android_demo/ to bundle into and build from: the checkout is never written."""
    dest = tmp_path / "android_demo"
    shutil.copytree(APP, dest, ignore=shutil.ignore_patterns(".toolchain", "build", ".gradle"))
    return dest


def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


# ---------------------------------------------------------------------------------------------------
# 1. the core on the JVM against Python's goldens
# ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def core_classes(tmp_path_factory):
    need_jvm()

    def build(out):
        # --release 8: Java 8 language and library only, as on the phone.
        sh("javac", "--release", "8", "-encoding", "UTF-8", "-Xlint:all", "-Werror", "-cp", cp(*JVM_CP), "-d",
           out, *java_files(CORE, CORE_TESTS))
        return out

    return built_once(tmp_path_factory, "core_classes", build)


def run_junit(classes, golden_dirs):
    return subprocess.run(["java", f"-Dmelkit.golden={cp(*golden_dirs)}", "-cp", cp(classes, *JVM_CP),
                           "org.junit.runner.JUnitCore", "org.melkit.core.CoreTest", "org.melkit.core.GoldenTest"],
                          capture_output=True, text=True, timeout=300)


def real_images(n_per_class=2):
    """A few HAM10000 images of each class (shared data: goldens from them stay in a temp dir)."""
    rows = list(csv.DictReader(open(need(HAM) / "metadata.csv", newline="")))
    picked = []
    for dx in ("nv", "mel"):
        ids = sorted(r["image_id"] for r in rows if r["dx"] == dx)[:n_per_class]
        picked += [next((HAM / "images").glob(f"{i}.*")) for i in ids]
    return picked


def test_core_is_plain_java():
    for f in CORE.glob("*.java"):
        text = f.read_text()
        assert "import android." not in text and "org.tensorflow" not in text, f"{f.name} is not plain Java"


def edge_bands(outputs, threshold) -> dict:
    """likelihood_ratios whose inner edges are the threshold and the raw ``outputs`` themselves, so that each of
    those images lies exactly on an edge (and belongs to the band above it); band 1's LR is null."""
    edges = sorted({0.0, 1.0, float(threshold), *(p for p in outputs if 0.0 < p < 1.0)})
    return {"method": "test: an edge at each output", "bands": [
        {"name": f"band {k}", "low": edges[k], "high": edges[k + 1], "lr": None if k == 1 else 0.5 * (k + 1)}
        for k in range(len(edges) - 1)]}


def test_jvm_core_matches_python_goldens(converted, core_classes, tmp_path):
    """Every variant's goldens (the quantized ones' cards have a borderline band, float32's none; all have risk
    bands), plus the int8 model under a band of every output, so that each image is borderline, and risk bands
    with an edge at each image's output: the JVM's borderline, meaning, risk band, likelihood ratio and post-test
    probabilities are Python's."""
    from dataclasses import replace

    from melkit.release.bundle import check_model
    from melkit.release.golden import write_goldens

    _, out = converted
    dirs, images, indexes = [], [], []
    wide = {"low": 0.0, "high": 1.0, "method": "test: every output is borderline"}
    for variant, band in (("float32", None), ("fp16", None), ("dynamic", None), ("int8", None), ("int8", wide)):
        model = model_file(out, variant)  # float32 and uint8 input/output tensors
        card, interp = check_model(model)
        assert (card.borderline is None) == (variant == "float32"), variant
        assert card.likelihood_ratios is not None and len(card.likelihood_ratios["bands"]) == 4, variant
        name = variant if band is None else f"{variant}-wide-band"
        if band is not None:  # the outputs of the plain int8 goldens (written just before) on the edges
            ratios = edge_bands([i["p_mel"] for i in indexes[-1]["images"]], card.threshold)
            card = replace(card, borderline=band, likelihood_ratios=ratios)
        index = write_goldens(model, card, interp, tmp_path / name)
        images += index["images"]
        indexes.append(index)
        assert all(i["risk_band"] is not None for i in index["images"])  # no guard: every image is assessed
        if band is not None:
            assert all(i["borderline"] and i["meaning"] == "borderline: " + i["decision"] for i in index["images"])
            edges = index["risk_bands"]["edges"]
            for i in index["images"]:  # an output on an inner edge is in the band above it; 1.0 in the last band
                assert i["risk_band"] == min(edges.index(i["p_mel"]), len(edges) - 2), (i["p_mel"], edges)
                assert (i["likelihood_ratio"] is None) == (i["risk_band"] == 1) == (i["post_test"] is None)
        dirs.append(tmp_path / name)
    if HAM.is_dir():
        model = model_file(out, "int8")
        card, interp = check_model(model)
        images += write_goldens(model, card, interp, tmp_path / "real", images=real_images())["images"]
        dirs.append(tmp_path / "real")
    if (COMMITTED_GOLDEN / "index.json").is_file():  # the release model's synthetic goldens, once bundled
        images += json.loads((COMMITTED_GOLDEN / "index.json").read_text())["images"]
        dirs.append(COMMITTED_GOLDEN)
    banded = sum("borderline" in i for i in images)
    borderline = sum(i.get("borderline", False) for i in images)
    per_band = [0] * max(len(x["risk_bands"]["edges"]) - 1 for x in indexes)
    for i in images:
        if i.get("risk_band") is not None:
            per_band[i["risk_band"]] += 1
    r = run_junit(core_classes, dirs)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    assert f"golden images checked: {len(images)}" in r.stdout, r.stdout[-3000:]
    assert "orientation 6" in r.stdout and r.stdout.count("orientation ok:") == len(dirs)
    assert borderline >= 4 and f"golden borderline checked: {banded} (borderline: {borderline})" in r.stdout
    risked = sum("risk_band" in i for i in images)
    assert f"golden risk bands checked: {risked} (per band: {per_band})" in r.stdout, r.stdout[-3000:]


def test_jvm_golden_test_fails_on_one_wrong_byte(converted, core_classes, tmp_path):
    """Negative control: the JVM test really compares (one flipped input byte fails it)."""
    from melkit.release.bundle import check_model
    from melkit.release.golden import write_goldens

    model = model_file(converted[1], "int8")
    card, interp = check_model(model)
    index = write_goldens(model, card, interp, tmp_path / "g")
    victim = tmp_path / "g" / index["images"][0]["input"]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 1
    victim.write_bytes(bytes(data))
    r = run_junit(core_classes, [tmp_path / "g"])
    assert r.returncode != 0 and "input tensor differs from Python's at byte" in r.stdout


def test_jvm_golden_test_fails_on_a_wrong_borderline_meaning(converted, core_classes, tmp_path):
    """Negative control: a golden whose recorded meaning drops its "borderline: " fails GoldenTest."""
    from dataclasses import replace

    from melkit.release.bundle import check_model
    from melkit.release.golden import write_goldens

    model = model_file(converted[1], "int8")
    card, interp = check_model(model)
    write_goldens(model, replace(card, borderline={"low": 0.0, "high": 1.0, "method": "test"}), interp,
                  tmp_path / "g")
    index = json.loads((tmp_path / "g" / "index.json").read_text())
    index["images"][0]["meaning"] = index["images"][0]["decision"]
    (tmp_path / "g" / "index.json").write_text(json.dumps(index))
    r = run_junit(core_classes, [tmp_path / "g"])
    assert r.returncode != 0 and "meaning expected" in r.stdout, r.stdout[-3000:]


def test_jvm_golden_test_fails_on_a_wrong_risk_band(converted, core_classes, tmp_path):
    """Negative controls: a golden whose recorded risk band, or post-test probability, is not the JVM's fails."""
    from melkit.release.bundle import check_model
    from melkit.release.golden import write_goldens

    model = model_file(converted[1], "int8")
    card, interp = check_model(model)
    write_goldens(model, card, interp, tmp_path / "g")
    intact = json.loads((tmp_path / "g" / "index.json").read_text())
    for key, change, message in (("risk_band", lambda k: (k + 1) % 4, "risk band expected"),
                                 ("post_test", lambda v: [x * (1 + 1e-9) for x in v], "post-test probability at")):
        index = json.loads(json.dumps(intact))
        img = next(i for i in index["images"] if i["post_test"] is not None)
        img[key] = change(img[key])
        (tmp_path / "g" / "index.json").write_text(json.dumps(index))
        r = run_junit(core_classes, [tmp_path / "g"])
        assert r.returncode != 0 and message in r.stdout, r.stdout[-3000:]


def run_contract_junit(classes, contract_dir):
    return subprocess.run(["java", f"-Dmelkit.contract={contract_dir}", "-cp", cp(classes, *JVM_CP),
                           "org.junit.runner.JUnitCore", "org.melkit.core.CoreTest",
                           "org.melkit.core.ContractGoldenTest"], capture_output=True, text=True, timeout=300)


def test_jvm_core_matches_python_contract_goldens(core_classes):
    """No model needed: the core's q for every contract golden (v1 and v2, plain and Shades of Gray, EXIF
    orientations) is Python's byte for byte, and its colour-constancy illuminant bit for bit; CoreTest (card
    refusals, SoG identities, the v2 box step)."""
    index = json.loads((COMMITTED_CONTRACT / "index.json").read_text())
    outputs = [(i, o) for i in index["images"] for o in i["outputs"]]
    n_sog = sum(o["color_constancy"] is not None for _, o in outputs)
    n_box = sum(o.get("box_k", 1) > 1 for _, o in outputs)
    n_rotated = sum(i["orientation"] != 1 for i, _ in outputs)
    r = run_contract_junit(core_classes, COMMITTED_CONTRACT)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    assert (f"contract goldens checked: {len(outputs)} (with colour constancy: {n_sog}, v2 box step: {n_box}, "
            f"EXIF-rotated: {n_rotated})") in r.stdout, r.stdout[-3000:]
    assert n_sog > 0 and n_box > 0 and n_rotated > 0 and "wide_glare 120x80 at 17 shades_of_gray:p=6" in r.stdout
    assert "photo_exif6 1003x757 at 32 melkit-v2 orientation 6" in r.stdout


def test_jvm_contract_golden_test_fails_on_one_wrong_byte(core_classes, tmp_path):
    """Negative control: one flipped byte in a Shades of Gray q fails ContractGoldenTest."""
    shutil.copytree(COMMITTED_CONTRACT, tmp_path / "c")
    index = json.loads((tmp_path / "c" / "index.json").read_text())
    out = next(o for o in index["images"][1]["outputs"] if o["color_constancy"])
    victim = tmp_path / "c" / out["q"]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 1
    victim.write_bytes(bytes(data))
    r = run_contract_junit(core_classes, tmp_path / "c")
    assert r.returncode != 0 and "q differs from Python's at byte" in r.stdout, r.stdout[-3000:]


def test_jvm_model_card_reads_every_field_the_schema_requires(core_classes):
    """ModelCard.java refuses the golden card without any field the JSON Schema requires (or with it of the
    wrong type), naming the field (CardSchemaTest); the count is the schema's, as Python reads it."""
    from test_card import required_paths

    from melkit.core.card import SCHEMA_PATH

    r = subprocess.run(["java", f"-Dmelkit.schema={SCHEMA_PATH}", f"-Dmelkit.card={COMMITTED_GOLDEN / 'card.json'}",
                        "-cp", cp(core_classes, *JVM_CP), "org.junit.runner.JUnitCore",
                        "org.melkit.core.CardSchemaTest"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    n = len(required_paths(json.loads(SCHEMA_PATH.read_text())))
    assert f"card fields checked: {n} " in r.stdout, r.stdout[-3000:]


def decode_golden():
    """tests/android/decode_golden.py, the generator of the committed decode-size table."""
    spec = importlib.util.spec_from_file_location("decode_golden", REPO / "tests" / "android" / "decode_golden.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_decode_junit(classes, table):
    return subprocess.run(["java", f"-Dmelkit.decode={table}", "-cp", cp(classes, *JVM_CP),
                           "org.junit.runner.JUnitCore", "org.melkit.core.DecodePlanTest"],
                          capture_output=True, text=True, timeout=300)


def test_jvm_decode_plan_matches_python_decode_sizes(core_classes):
    """DecodePlan (the app's inSampleSize) against melkit predict's decode sizes: the committed table is
    decode_golden.py's output now; JPEGs get Python's draft scale and size, within 8 Mpx, else a bounded
    power of two, and images over Python's 50-Mpx limit are refused in its words; 4000x3000 and
    12000x12000 are never decoded in full; the photo-picker rule."""
    gen = decode_golden()
    assert COMMITTED_DECODE.read_text() == gen.dumps(gen.table()), (
        "the committed decode table is stale: .venv/bin/python tests/android/decode_golden.py > " + str(COMMITTED_DECODE))
    r = run_decode_junit(core_classes, COMMITTED_DECODE)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    rows = gen.table()["plans"]
    n_refused = sum("refused" in row for row in rows)
    m = re.search(r"decode plans checked: (\d+) \(as Python: (\d+), bounded: (\d+), refused: (\d+)\)", r.stdout)
    assert m and int(m[1]) == len(rows) and int(m[4]) == n_refused, r.stdout[-3000:]
    assert int(m[2]) > 0 and int(m[3]) > 0 and "OK (5 tests)" in r.stdout


def test_jvm_decode_plan_test_fails_on_one_wrong_size(core_classes, tmp_path):
    """Negative control: one decoded width off by one in the table fails DecodePlanTest."""
    table = json.loads(COMMITTED_DECODE.read_text())
    row = next(r for r in table["plans"] if r["format"] == "jpeg" and r["scale"] == 4 and "refused" not in r)
    row["decoded"][0] += 1
    (tmp_path / "sizes.json").write_text(json.dumps(table))
    r = run_decode_junit(core_classes, tmp_path / "sizes.json")
    assert r.returncode != 0 and "Python's decoded width" in r.stdout, r.stdout[-3000:]


def test_decode_table_is_what_pillow_decodes(tmp_path):
    """The table's sizes are read_rgb's own: real JPEGs (draft mode) and PNGs (full decode) up to 12 Mpx."""
    from PIL import Image

    from melkit.data.contract import CONTRACTS
    from melkit.data.imageio import read_rgb

    checked = set()
    for row in decode_golden().table()["plans"]:
        w, h, fmt = row["width"], row["height"], row["format"]
        if "refused" in row or w * h > (13_000_000 if fmt == "jpeg" else 3_100_000) or min(w, h) < 2:
            continue
        f = tmp_path / f"{w}x{h}.{fmt}"
        if not f.exists():
            Image.new("RGB", (w, h), (190, 120, 100)).save(f)
        contract = next(c for c in CONTRACTS.values() if c.name == row["contract"]).for_size(row["image_size"])
        shape = read_rgb(f, contract=contract).shape
        assert (shape[1], shape[0]) == tuple(row["decoded"]), (row, shape)
        checked.add((fmt, row["scale"]))
    assert {("jpeg", 1), ("jpeg", 2), ("jpeg", 4), ("jpeg", 8), ("png", 1)} <= checked


# ---------------------------------------------------------------------------------------------------
# The Activity: what can be checked without a device (picker, TalkBack, no score out of domain, LiteRT pin)
# ---------------------------------------------------------------------------------------------------
def _layout(name):
    return ET.parse(RES / "layout" / name).getroot()


def _strings():
    return {e.get("name"): e.text for e in ET.parse(RES / "values" / "strings.xml").getroot().iter("string")}


def test_layouts_speak_to_talkback():
    """The result view is a live region; every button and image has a content description (a real string);
    the spinner has a label; the spoken results are complete sentences, and the not-assessed ones carry no
    number (no format argument to put a score into)."""
    strings = _strings()
    main_layout = _layout("activity_main.xml")
    views = {v.get(ANDROID_NS + "id"): v for v in main_layout.iter() if v.get(ANDROID_NS + "id")}
    assert views["@+id/result"].get(ANDROID_NS + "accessibilityLiveRegion") in ("polite", "assertive")
    described = 0
    for name in ("activity_main.xml", "first_run.xml"):
        for v in _layout(name).iter():
            if v.tag in ("Button", "ImageButton", "ImageView"):
                desc = v.get(ANDROID_NS + "contentDescription") or ""
                assert desc.startswith("@string/") and strings.get(desc[8:]), (name, v.attrib)
                described += 1
    assert described == 4
    assert any(v.get(ANDROID_NS + "labelFor") == "@+id/threads" for v in main_layout.iter())
    for key in ("result_suspicious_spoken", "result_nevus_spoken", "result_borderline_spoken",
                "result_not_assessed_spoken"):
        assert strings[key].startswith("Result: ") and strings[key].endswith("."), key
    assert "%1$.1f percent" in strings["result_nevus_spoken"]
    assert all("%3$s" in strings[k] for k in ("result_borderline", "result_borderline_spoken"))  # meaning()
    # the risk band: its name and likelihood ratio, and in plain words what the ratio means, shown and spoken
    assert strings["risk_band"].startswith("%1$s — likelihood ratio %2$s\\n")
    for key in ("risk_band", "risk_band_spoken"):
        assert "%2$s times as common for melanomas as for nevi." in strings[key], key
    for key in ("risk_band_spoken", "risk_band_unmeasured_spoken"):
        assert strings[key].startswith("Risk band: %1$s") and strings[key].endswith("."), key
        assert "\\n" not in strings[key], key  # one spoken paragraph
    assert "%1$.0f %% prevalence: %2$.1f %%" in strings["post_test_at"]
    for key in ("result_not_assessed", "result_not_assessed_spoken"):
        assert "%" not in strings[key] and "melanoma" not in strings[key].lower(), key


def test_activity_uses_the_picker_the_plan_and_no_score_out_of_domain():
    """MainActivity: the photo picker by its action string behind PhotoPicker.available(SDK_INT, ...), with
    ACTION_GET_CONTENT as the fallback; every result through showResult (text plus spoken sentence); the
    out-of-domain branch shows and speaks only the not-assessed strings. ImageLoader decodes by DecodePlan."""
    act = (DEMO / "MainActivity.java").read_text()
    assert "PhotoPicker.available(Build.VERSION.SDK_INT, rExtensionVersion())" in act
    assert "new Intent(PhotoPicker.ACTION_PICK_IMAGES)" in act and "Intent.ACTION_GET_CONTENT" in act
    assert "android.os.ext.SdkExtensions" in act  # reflection: API 30, not in the API 23 android.jar
    assert act.count("result.setText(") == 1  # only inside showResult, which sets the content description too
    branch = re.search(r"if \(!p\.inDomain\) \{(.*?)\} else", act, re.S)
    assert branch, "no out-of-domain branch in MainActivity.show"
    used = set(re.findall(r"R\.string\.(\w+)", branch[1]))
    assert used == {"result_not_assessed", "result_not_assessed_spoken"} and "pMel" not in branch[1]
    assert "risk" not in branch[1]  # no risk band for an image not assessed
    assert act.count("+ riskSpoken") == 3 and act.count("+ risk,") == 3  # the three assessed branches
    from melkit.release.golden import PREVALENCES

    # the goldens check the post-test probabilities at the prevalences the app shows
    shown = re.search(r"double\[\] PREVALENCES = \{([^}]*)\}", act)
    assert shown and tuple(float(x) for x in shown[1].split(",")) == PREVALENCES
    assert "p.postTestProbability(q)" in act
    branch = re.search(r"\} else if \(p\.borderline\) \{(.*?)\} else", act, re.S)  # the card's band: meaning()
    assert branch and branch[1].count("p.meaning()") == 2 and "R.string.result_borderline_spoken" in branch[1]
    loader = (DEMO / "ImageLoader.java").read_text()
    assert "inJustDecodeBounds = true" in loader and "o.inSampleSize = plan.sampleSize" in loader
    assert "DecodePlan.forCard(bounds.outWidth, bounds.outHeight, bounds.outMimeType, card)" in loader
    assert "ExifReader.orientation(data)" in loader


def test_litert_is_pinned_to_a_16kb_page_release():
    """One LiteRT version for every LiteRT artifact in the Gradle build, 1.4.0 or later (its native libraries
    are built for 16 KB pages), no TensorFlow Lite artifacts beside it; README and build_apk.sh name it."""
    gradle = (APP / "app" / "build.gradle").read_text()
    version = re.search(r'def litertVersion = "(\d+)\.(\d+)\.(\d+)"', gradle)
    assert version and tuple(map(int, version.groups())) >= (1, 4, 0), version
    deps = re.findall(r'"com\.google\.ai\.edge\.litert:([\w-]+):([^"]+)"', gradle)
    assert {a for a, _ in deps} == {"litert", "litert-gpu", "litert-gpu-api"}
    assert all(v == "${litertVersion}" for _, v in deps), deps
    for f in (APP / "build.gradle", APP / "app" / "build.gradle", APP / "settings.gradle"):
        assert "org.tensorflow:tensorflow-lite" not in f.read_text(), f
    pinned = ".".join(version.groups())
    assert f"litertVersion = {pinned}" in (APP / "build_apk.sh").read_text()
    assert f"LiteRT {pinned}" in (REPO / "README.md").read_text()


# ---------------------------------------------------------------------------------------------------
# 2. the app's sources against android.jar (API 23) with LiteRT stubs
# ---------------------------------------------------------------------------------------------------
def test_app_compiles_against_android_jar_with_litert_stubs(tmp_path):
    need_android()
    src = APP / "app" / "src" / "main"
    manifest = tmp_path / "AndroidManifest.xml"
    manifest.write_text(src.joinpath("AndroidManifest.xml").read_text().replace("<manifest ", '<manifest package='
                                                                                '"org.melkit.demo" ', 1))
    (tmp_path / "gen").mkdir()
    sh("aapt", "package", "-f", "-m", "-J", tmp_path / "gen", "-M", manifest, "-S", src / "res", "-I", FRAMEWORK)
    boot = ["-source", "8", "-target", "8", "-bootclasspath", TOOLCHAIN / "android.jar", "-encoding", "UTF-8"]
    sh("javac", *boot, "-nowarn", "-d", tmp_path / "stubs", *java_files(STUBS))
    sh("javac", *boot, "-cp", tmp_path / "stubs", "-d", tmp_path / "classes",
       *java_files(src / "java", tmp_path / "gen"))
    classes = {p.relative_to(tmp_path / "classes").as_posix() for p in (tmp_path / "classes").rglob("*.class")}
    for name in ("MainActivity", "CaptureProvider", "LiteRtClassifier", "ImageLoader", "ModelAssets"):
        assert f"org/melkit/demo/{name}.class" in classes
    assert not any(c.startswith("org/tensorflow") for c in classes)  # the stubs are never part of the app


# ---------------------------------------------------------------------------------------------------
# 3. the debug APK, from a temp copy of the app with a bundled model
# ---------------------------------------------------------------------------------------------------
def test_apk_is_built_signed_aligned_and_holds_the_bundled_assets(converted, tmp_path):
    need_android()
    before = sorted(p.name for p in (APP / "app" / "src" / "main" / "assets").iterdir())
    app = app_copy(tmp_path)
    model = model_file(converted[1], "int8")
    r = run_cli("bundle", model, "--app", app)
    assert r.exit_code == 0, r.output
    assert "bundled melkit_mnv2_0.35_48 1.0.0 (int8, uint8 input" in r.output
    assets = app / "app" / "src" / "main" / "assets"
    assert sorted(p.name for p in assets.iterdir()) == sorted(
        [".gitkeep", model.name, model.with_suffix(".json").name, "labels.txt"])
    golden = json.loads((app / "app" / "src" / "test" / "resources" / "golden" / "index.json").read_text())
    assert [i["name"] for i in golden["images"]] == ["synth_wide", "synth_square", "synth_exif6", "synth_alpha"]

    env = {**os.environ, "MELKIT_ANDROID_TOOLCHAIN": str(TOOLCHAIN), "MELKIT_LITERT_STUBS": str(STUBS)}
    log = sh("bash", app / "build_apk.sh", "--debian", "--out", tmp_path / "apk", env=env)
    assert "Verifies" in log and "sdkVersion:'24'" in log and "targetSdkVersion:'34'" in log
    assert "launchable-activity: name='org.melkit.demo.MainActivity'" in log
    apk = tmp_path / "apk" / "melkit-demo-debug.apk"
    sh("apksigner", "verify", apk)
    sh("zipalign", "-c", "-p", "4", apk)
    with zipfile.ZipFile(apk) as z:
        for f in (model, model.with_suffix(".json")):
            assert z.read(f"assets/{f.name}") == f.read_bytes()
        assert z.read("assets/labels.txt") == b"nv\nmel\n"
        assert z.getinfo(f"assets/{model.name}").compress_type == zipfile.ZIP_STORED  # mmap-able
        z.extract("classes.dex", tmp_path)
    dex = sh("dexdump", tmp_path / "classes.dex")
    for cls in ("Lorg/melkit/demo/MainActivity;", "Lorg/melkit/core/ContractPreprocessor;"):
        assert f"Class descriptor  : '{cls}'" in dex
    assert "Class descriptor  : 'Lorg/tensorflow" not in dex  # the stubs are never packed
    assert sorted(p.name for p in (APP / "app" / "src" / "main" / "assets").iterdir()) == before


def test_apk_with_litert_aar_packs_its_classes_and_native_library(tmp_path):
    """build_apk.sh --litert-aar on a stand-in AAR (the stubs' classes, a dummy .so, and real ELF libraries
    aligned to 4 KB and, where gcc is, 16 KB): the packing path and the 16 KB page check only; the real AAR
    is not reachable here, so this proves no LiteRT behaviour."""
    need_android()
    sh("javac", "-source", "8", "-target", "8", "-bootclasspath", TOOLCHAIN / "android.jar", "-nowarn",
       "-d", tmp_path / "stubs", *java_files(STUBS))
    aar = tmp_path / "litert-standin.aar"
    page4k = Path(os.path.realpath("/usr/lib/x86_64-linux-gnu/libz.so.1"))  # Debian's: 4 KB LOAD alignment
    page16k = tmp_path / "lib16k.so"
    if shutil.which("gcc"):
        (tmp_path / "empty.c").write_text("int melkit_standin(void) { return 0; }\n")
        sh("gcc", "-shared", "-fPIC", "-Wl,-z,max-page-size=16384", "-o", page16k, tmp_path / "empty.c")
    with zipfile.ZipFile(aar, "w") as z:
        z.writestr("AndroidManifest.xml", '<manifest package="org.tensorflow.lite"/>')
        z.writestr("jni/arm64-v8a/libtensorflowlite_jni.so", b"\x7fELF stand-in")
        if page4k.is_file():
            z.write(page4k, "jni/x86_64/libpage4k.so")
        if page16k.is_file():
            z.write(page16k, "jni/x86_64/libpage16k.so")
        jar = tmp_path / "classes.jar"
        with zipfile.ZipFile(jar, "w") as cj:
            for c in (tmp_path / "stubs").rglob("*.class"):
                cj.write(c, c.relative_to(tmp_path / "stubs").as_posix())
        z.write(jar, "classes.jar")
    app = app_copy(tmp_path)
    env = {**os.environ, "MELKIT_ANDROID_TOOLCHAIN": str(TOOLCHAIN)}
    r = subprocess.run(["bash", app / "build_apk.sh", "--debian", "--litert-aar", aar, "--out", tmp_path / "apk"],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    log = r.stdout
    assert "no --litert-aar" not in log
    if shutil.which("readelf"):
        assert "lib/arm64-v8a/libtensorflowlite_jni.so: no ELF program headers read" in r.stderr, r.stderr
        if page4k.is_file():
            assert "WARNING: lib/x86_64/libpage4k.so is aligned to 4096, not 16 KB" in r.stderr, r.stderr
        if page16k.is_file():
            assert "libpage16k.so" not in r.stderr, r.stderr
    apk = tmp_path / "apk" / "melkit-demo-debug.apk"
    with zipfile.ZipFile(apk) as z:
        assert z.read("lib/arm64-v8a/libtensorflowlite_jni.so") == b"\x7fELF stand-in"
        z.extract("classes.dex", tmp_path)
    assert "Class descriptor  : 'Lorg/tensorflow/lite/Interpreter;'" in sh("dexdump", tmp_path / "classes.dex")


# ---------------------------------------------------------------------------------------------------
# melkit bundle refuses models it cannot vouch for (exit 2, app untouched)
# ---------------------------------------------------------------------------------------------------
def _refused(app, model, *extra, match):
    assets = app / "app" / "src" / "main" / "assets"
    before = sorted(p.name for p in assets.iterdir())
    r = CliRunner().invoke(main, ["bundle", str(model), "--app", str(app), *map(str, extra)])
    assert r.exit_code == 2, r.output
    assert match in r.output, r.output
    assert sorted(p.name for p in assets.iterdir()) == before


def _model_with_card(converted, tmp_path, edit=None):
    src = model_file(converted[1], "int8")
    dest = tmp_path / "m" / src.name
    dest.parent.mkdir()
    shutil.copy(src, dest)
    card = json.loads(src.with_suffix(".json").read_text())
    if edit:
        edit(card)
    dest.with_suffix(".json").write_text(json.dumps(card))
    return dest


def test_bundle_refuses_a_model_without_card(converted, tmp_path):
    app = app_copy(tmp_path)
    lone = tmp_path / "lone.tflite"
    shutil.copy(model_file(converted[1], "int8"), lone)
    _refused(app, lone, match="no model card")


def test_bundle_refuses_a_sha256_mismatch(converted, tmp_path):
    app = app_copy(tmp_path)
    _refused(app, _model_with_card(converted, tmp_path, lambda c: c.update(sha256="0" * 64)), match="sha256 differs")


def test_bundle_refuses_a_card_with_the_wrong_dtype(converted, tmp_path):
    app = app_copy(tmp_path)
    model = _model_with_card(converted, tmp_path, lambda c: c["input"].update(dtype="float32"))
    _refused(app, model, match="card says input dtype float32, the model has uint8")


def test_bundle_refuses_wrong_image_size_and_no_app(converted, tmp_path):
    app = app_copy(tmp_path)
    model = _model_with_card(converted, tmp_path, lambda c: c["preprocessing"].update(image_size=64))
    _refused(app, model, match="image_size 64 does not fit")
    r = run_cli("bundle", model_file(converted[1], "int8"), "--app", tmp_path)
    assert r.exit_code == 2 and "not the melkit Android app" in r.output
    _refused(app, model_file(converted[1], "int8"), "--image", model, match="--image needs --golden-dir")
