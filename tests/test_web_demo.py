"""The browser page (web_demo/): its contract in JavaScript against Python's, ``melkit bundle --web`` and
``melkit web``, and the page end to end in headless Chromium against ``melkit predict``.

- ``node --test web_demo/test/`` (node's own runner): the JS contract equals Python's bit for bit on contract
  goldens written now by ``melkit.release.golden.write_contract_goldens``, the JS card, header and postprocessing
  equal Python's on the app's model goldens, and the batch patch (2.1.0's -1 to 1) changes nothing else.
- One Chromium (Debian's, driven by puppeteer-core: web_demo/tools/drive.mjs) opens the served pages and gives
  each image to the file picker (one by drag and drop) as a person would, reading the result the page shows: the
  released model on real dermoscopic images from ../shared (both classes, three sources), generated non-lesion
  images, the app's golden images (EXIF orientation 6, transparency) and large photos (JPEG draft reduction and
  the v2 box step), compared with ``melkit predict`` on the same files, borderline, risk band and likelihood
  ratio included; release 2.1.0 (a card without risk bands, a model declaring batch -1 that the page patches)
  and the tests' tiny model (one band's LR left unmeasured) the same way on fewer images; bad input and models
  whose card does not match, each one sentence on the page; a screenshot kept in the tmp dir.

Skips (with the reason) where node, the npm packages (setup.sh's npm ci) or chromium are missing:
``web_demo/setup_browser.sh`` installs them, and .ci/run runs it. Only the real images need ../shared.
"""

from __future__ import annotations

import base64
import csv
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from decimal import ROUND_HALF_UP, Decimal, localcontext
from pathlib import Path

import numpy as np
import pytest
from conftest import HAM, ISIC2016, REPO, SHARED, cli, copy_model, one_line_error
from PIL import Image

WEB = REPO / "web_demo"
CHROMIUM = Path(os.environ.get("MELKIT_CHROMIUM", "/usr/bin/chromium"))
RELEASED = REPO / "tflite_models" / "melkit_mnv2_1_224_int8.tflite"
PREVIOUS = REPO / "tflite_models" / "previous-2.1.0" / RELEASED.name  # release 2.1.0: batch -1, no risk bands
APP_GOLDEN = REPO / "android_demo" / "app" / "src" / "test" / "resources" / "golden"
ISIC2017 = SHARED / "data" / "isic2017-nv-mel"
DECISIONS = {"mel": "melanoma-suspicious", "nv": "nevus-like", "not_assessed": "not assessed"}


def tiny_model(converted) -> Path:
    return converted[1] / "melkit_mnv2_0.35_48_int8.tflite"


def need_node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (bash web_demo/setup_browser.sh installs it; .ci/run does)")
    return node


def need_browser() -> str:
    node = need_node()
    if not (WEB / "node_modules" / "puppeteer-core").is_dir() or not (WEB / "node_modules" / "@litertjs").is_dir():
        pytest.skip("web_demo's npm packages are not installed (bash setup.sh runs npm ci in web_demo/)")
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is not installed (bash web_demo/setup_browser.sh installs Debian's chromium)")
    return node


def need_litert():
    if not (WEB / "node_modules" / "@litertjs" / "core").is_dir():
        pytest.skip("LiteRT.js is not installed (bash setup.sh runs npm ci in web_demo/)")


# ---------------------------------------------------------------------------------------------------------------
# the contract, card and postprocessing in JavaScript (node --test)
# ---------------------------------------------------------------------------------------------------------------
def test_js_contract_card_and_postprocessing_equal_pythons(tmp_path):
    from melkit.release.golden import write_contract_goldens

    node = need_node()
    index = write_contract_goldens(tmp_path / "contract")
    outputs = sum(len(img["outputs"]) for img in index["images"])
    env = {**os.environ, "MELKIT_CONTRACT_GOLDEN": str(tmp_path / "contract"), "MELKIT_GOLDEN": str(APP_GOLDEN)}
    r = subprocess.run([node, "--test", "web_demo/test/"], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "# fail 0" in r.stdout and f"contract goldens checked: {outputs} " in r.stdout, r.stdout[-4000:]


# ---------------------------------------------------------------------------------------------------------------
# melkit bundle --web, melkit web
# ---------------------------------------------------------------------------------------------------------------
def _edited(converted, tmp_path, edit):
    model = copy_model(tiny_model(converted), tmp_path / "m")
    card = json.loads(model.with_suffix(".json").read_text())
    edit(card)
    model.with_suffix(".json").write_text(json.dumps(card))
    return model


@pytest.mark.parametrize("edit, words", [
    (lambda c: c.update(sha256="0" * 64), ["does not match its card", "sha256 differs"]),
    (lambda c: c["input"]["quantization"].update(scale=0.5), ["card says input quantization"]),
    (lambda c: c.update(labels=["nv", "bcc"]), ["labels"]),
])
def test_bundle_web_refuses_a_card_that_does_not_match_its_model(converted, tmp_path, edit, words):
    out = tmp_path / "web"
    r = cli("bundle", _edited(converted, tmp_path, edit), "--web", out)
    one_line_error(r, *words)
    assert not out.exists()


def test_bundle_web_usage_and_folders_it_will_not_replace(converted, tmp_path):
    model = tiny_model(converted)
    r = cli("bundle", model, "--web", tmp_path / "w", "--golden-dir", tmp_path / "g")
    assert r.exit_code == 2 and "--web makes the browser page" in r.output, r.output
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "mine.jpg").write_bytes(b"x")
    one_line_error(cli("bundle", model, "--web", foreign), "holds files melkit did not write")
    assert sorted(p.name for p in foreign.iterdir()) == ["mine.jpg"]
    (tmp_path / "empty").mkdir()
    one_line_error(cli("web", tmp_path / "empty"), "not a page made by melkit bundle --web")
    one_line_error(cli("web", tmp_path / "nothing-here.tflite"), "no such model file")


def test_bundle_web_and_melkit_web_serve_the_page_with_its_mime_types(converted, tmp_path):
    from melkit.release.bundle import WEB_MANIFEST, web_server

    need_litert()
    out = tmp_path / "web"
    r = cli("bundle", tiny_model(converted), "--web", out)
    assert r.exit_code == 0, r.output
    manifest = json.loads((out / WEB_MANIFEST).read_text())
    assert (out / manifest["model"]).read_bytes() == tiny_model(converted).read_bytes()
    assert json.loads((out / manifest["card"]).read_text()) == json.loads(
        tiny_model(converted).with_suffix(".json").read_text())
    assert (out / manifest["labels"]).read_text() == "nv\nmel\n"
    assert not any(p.name.endswith((".map", ".ts")) for p in out.rglob("*")), "only what the page loads"
    # a second bundle replaces melkit's own folder
    assert cli("bundle", tiny_model(converted), "--web", out).exit_code == 0
    server = web_server(out, port=0)
    assert server.server_address[0] == "127.0.0.1"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/"
        for path, mime in (("", "text/html"), ("js/app.js", "text/javascript"), (manifest["card"], "application/json"),
                           ("vendor/litertjs/wasm/litert_wasm_internal.wasm", "application/wasm"),
                           ("vendor/litertjs/core/index.js", "text/javascript")):
            with urllib.request.urlopen(base + path, timeout=30) as response:
                assert response.headers["Content-Type"].startswith(mime), (path, response.headers["Content-Type"])
    finally:
        server.shutdown()
        server.server_close()


# ---------------------------------------------------------------------------------------------------------------
# end to end in headless Chromium
# ---------------------------------------------------------------------------------------------------------------
def _real_images() -> list[Path]:
    """60 real dermoscopic images, both classes, from three sources (first by image id: the same every run)."""
    picks = []
    for folder, per_class in ((HAM, 15), (ISIC2016, 8), (ISIC2017, 7)):
        if not (folder / "metadata.csv").is_file():
            return []
        with open(folder / "metadata.csv", newline="") as f:
            rows = sorted(csv.DictReader(f), key=lambda r: r["image_id"])
        for dx in ("mel", "nv"):
            ids = [r["image_id"] for r in rows if r["dx"] == dx][:per_class]
            picks += [folder / "images" / f"{i}.jpg" for i in ids]
    return [p for p in picks if p.is_file()]


def _non_lesion(folder: Path) -> list[Path]:
    """Two generated images of each non-lesion group (melkit.bench.ood), as PNG (lossless: the page's q must
    equal Python's exactly), plus two as JPEG."""
    from melkit.bench.ood import GROUPS, generated

    folder.mkdir()
    out = []
    for group in GROUPS:
        for _, name, rgb in generated(seed=3, groups=(group,))[:2]:
            out.append(folder / f"{group}_{name}.png")
            Image.fromarray(rgb).save(out[-1])
    for i, (_, name, rgb) in enumerate(generated(seed=4, groups=("text", "gradient"))[:2]):
        out.append(folder / f"jpeg_{name}.jpg")
        Image.fromarray(rgb).save(out[-1], quality=90)
    return out


def _large_photos(folder: Path, real: list[Path]) -> list[Path]:
    """Phone-sized JPEGs: a generated photo-like field (melkit.release.golden.photo_image) and, with ../shared, two real
    lesions upscaled 4x, one stored sideways with EXIF orientation 6. For the released (v2) model Python decodes
    them at 1/4 (draft mode) then boxes by 2; the page reduces its full decode to the same size."""
    from melkit.release.golden import photo_image

    folder.mkdir()
    photo = folder / "photo_1800x2400.jpg"
    Image.fromarray(photo_image(1800, 2400, 9)).save(photo, quality=92)
    out = [photo]
    for k, src in enumerate(real[-2:]):
        img = Image.open(src).convert("RGB")
        big = img.resize((img.width * 4, img.height * 4), Image.Resampling.BICUBIC)
        path = folder / f"big_{src.stem}.jpg"
        if k == 0:
            exif = Image.Exif()
            exif[0x0112] = 6  # stored sideways: turned 90 degrees clockwise it is upright
            big.transpose(Image.Transpose.ROTATE_90).save(path, quality=92, exif=exif.tobytes())
        else:
            big.save(path, quality=92)
        out.append(path)
    return out


def _bad_inputs(folder: Path, a_jpeg: Path) -> dict:
    """Files the page must refuse with one sentence: not an image, over the pixel limit (a PNG whose header says
    10000 x 6000: refused before decoding), a JPEG cut short."""
    folder.mkdir()
    text = folder / "notes.jpg"
    text.write_text("this is a note, not a photo\n")
    huge = folder / "huge.png"
    ihdr = b"\x00\x00\x00\x0dIHDR" + (10000).to_bytes(4, "big") + (6000).to_bytes(4, "big") + b"\x08\x02\x00\x00\x00"
    huge.write_bytes(b"\x89PNG\r\n\x1a\n" + ihdr + b"\x00" * 4 + b"\x00\x00\x00\x00IEND\xaeB`\x82")
    cut = folder / "cut.jpg"
    data = a_jpeg.read_bytes()
    cut.write_bytes(data[:len(data) * 2 // 3])
    return {text: "is not an image this page reads", huge: "over melkit's limit of 50 Mpx",
            cut: "is damaged or incomplete"}


def _serve(folder: Path):
    from melkit.release.bundle import web_server

    server = web_server(folder, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def _python_q(path: Path, card) -> np.ndarray:
    from melkit.data.imageio import read_rgb

    return card.preprocessing.apply(read_rgb(path, contract=card.preprocessing))


def _with_unmeasured_band(model: Path, folder: Path, images: list[Path]) -> Path:
    """A copy of ``model`` whose card leaves the LR of the risk band most of ``images`` fall in unmeasured (null,
    as melkit writes it for a band holding no image of a class): the page's words for that, end to end. No
    committed card has such a band. ``model`` as it is where its card has no bands."""
    from melkit.bench.predict import run_predict

    card = json.loads(model.with_suffix(".json").read_text())
    if "likelihood_ratios" not in card:
        return model
    hits = [row["risk_band"] for row in run_predict(model, [str(p) for p in images]).predictions
            if row.get("risk_band") is not None]
    top = Counter(hits).most_common(1)[0][0] if hits else None
    copy = copy_model(model, folder)
    for band in card["likelihood_ratios"]["bands"]:
        if band["name"] == top:
            band["lr"] = None
    copy.with_suffix(".json").write_text(json.dumps(card))
    return copy


def _ratio_text(lr: float) -> str:
    """An LR as the page and the app write it: two significant digits (half up), plain decimals."""
    with localcontext() as ctx:
        ctx.prec, ctx.rounding = 2, ROUND_HALF_UP
        return format((+Decimal(lr)).normalize(), "f")


def _lr(page: dict) -> float | None:
    """The likelihood ratio the page gave (its shortest round-trip decimal: the same float); None for none."""
    return None if page["likelihoodRatio"] == "" else float(page["likelihoodRatio"])


def _check_risk(page: dict, card, p_raw: float) -> None:
    """The page's risk band for its own raw output is Python's (ModelCard.risk_band), with the band's LR, the
    post-test probabilities and the words for them in the result region's text."""
    from melkit.core.probability import PREVALENCES, post_test_probability

    band = card.likelihood_ratios["bands"][int(card.risk_band([p_raw])[0])]
    lr = band["lr"]
    assert (page["riskBand"], _lr(page)) == (band["name"], lr), page
    if lr is None:
        assert f"{band['name']} \u2014 likelihood ratio not measured" in page["text"], page["text"]
        assert page["postTest"] == "" and "prevalence" not in page["text"], page
        return
    words = _ratio_text(lr)
    assert f"{band['name']} \u2014 likelihood ratio {words}" in page["text"], page["text"]
    assert f"Results like this are {words} times as common for melanomas as for nevi." in page["text"], page["text"]
    want = [post_test_probability(lr, q) for q in PREVALENCES]
    assert np.allclose([float(x) for x in page["postTest"].split(",")], want, rtol=1e-12, atol=0), page
    for q, pt in zip(PREVALENCES, want):
        assert f"at {100 * q:.0f}\u00a0% prevalence: {100 * pt:.1f}\u00a0%" in page["text"], page["text"]


def _compare(page_rows: dict, result, step: float, reduced=(), card=None) -> dict:
    """Page vs melkit predict on the same files: decisions equal, raw outputs within one output step, and every
    image predict did not assess not assessed on the page either. ``reduced``: files Python decodes reduced
    (draft mode) and the page approximates by block means; their distance in steps is kept apart. With ``card``
    (the model's, with risk bands) and rows giving ``risk_band``: the page's band is Python's for the page's raw
    output, and predict's where both outputs are the same; none on the page for an image not assessed."""
    n = same = close = assessed = risk_same = risk_compared = risk_unmeasured = 0
    missed_guard, apart, reduced_steps, risk_apart, bands_shown = [], {}, {}, {}, {}
    reduced = {str(p) for p in reduced}
    for row in result.predictions:
        page = page_rows[row["image"]]
        assert page["state"] == "done", (row["image"], page)
        n += 1
        same += page["decision"] == DECISIONS[row["decision"]]
        if page["decision"] == "not assessed":  # no band, no LR, no words for them
            assert (page["riskBand"], page["likelihoodRatio"], page["postTest"]) == ("", "", ""), page
            assert "likelihood ratio" not in page["text"], page["text"]
        if row["decision"] == "not_assessed":
            if page["decision"] != "not assessed":
                missed_guard.append(row["image"])
            assert page["pMel"] == "", "no score for an image that is not assessed"
            assert row.get("risk_band") is None and row.get("likelihood_ratio") is None, row
            continue
        if page["decision"] == "not assessed":
            continue
        raw = row.get("p_output", row["p_mel"])
        if "risk_band" in row:
            assert card is not None and card.likelihood_ratios is not None
            _check_risk(page, card, float(page["pRaw"]))
            risk_unmeasured += page["likelihoodRatio"] == ""
            bands_shown[page["riskBand"]] = bands_shown.get(page["riskBand"], 0) + 1
            if abs(float(page["pRaw"]) - raw) < step / 2:  # the same output: the same band as predict
                risk_compared += 1
                risk_same += (page["riskBand"], _lr(page)) == (row["risk_band"], row["likelihood_ratio"])
            elif page["riskBand"] != row["risk_band"]:
                risk_apart[Path(row["image"]).name] = [page["riskBand"], row["risk_band"]]
        else:
            assert page["riskBand"] == "" and "likelihood ratio" not in page["text"], page
        if row["image"] in reduced:
            reduced_steps[Path(row["image"]).name] = round(abs(float(page["pRaw"]) - raw) / step, 3)
            continue
        assessed += 1
        close += abs(float(page["pRaw"]) - raw) <= step * (1 + 1e-9)
        if abs(float(page["pRaw"]) - raw) > step * (1 + 1e-9):
            apart[Path(row["image"]).name] = [float(page["pRaw"]), raw]
        if "borderline" in row:
            assert (page["borderline"] == "true") == row["borderline"], (row, page)
    return {"n": n, "decisions_equal": same, "assessed": assessed, "within_one_step": close,
            "not_assessed_missed": missed_guard, "apart": apart, "reduced_steps": reduced_steps,
            "risk_compared": risk_compared, "risk_same": risk_same, "risk_unmeasured": risk_unmeasured,
            "risk_apart": risk_apart, "bands_shown": bands_shown}


def test_page_in_headless_chromium_answers_as_melkit_predict(converted, synth_dir, tmp_path):
    from melkit.bench.predict import run_predict
    from melkit.core.card import load_card
    from melkit.core.litert import load_interpreter, predict_p_mel
    from melkit.release.bundle import run_bundle_web

    node = need_browser()
    real = _real_images()
    if SHARED.exists() and HAM.exists():
        assert len(real) >= 50, f"only {len(real)} real images found in {SHARED}"
    non_lesion = _non_lesion(tmp_path / "non_lesion")
    index = json.loads((APP_GOLDEN / "index.json").read_text())
    goldens = [APP_GOLDEN / img["source"] for img in index["images"]]
    large = _large_photos(tmp_path / "large", real)
    bad = _bad_inputs(tmp_path / "bad", large[0])
    images = real + non_lesion + goldens + large
    tiny_images = sorted((synth_dir / "images").glob("*.jpg"))[:12]
    tiny = _with_unmeasured_band(tiny_model(converted), tmp_path / "tiny-unmeasured", tiny_images)
    previous_images = goldens + real[::10]  # both classes, three sources

    site = tmp_path / "site"
    run_bundle_web(RELEASED, site / "released")
    run_bundle_web(tiny, site / "tiny")
    run_bundle_web(PREVIOUS, site / "previous")
    # a model that is not the one its card describes: other bytes (sha256), or the right sha256 but other tensors
    shutil.copytree(site / "released", site / "other-bytes")
    model = site / "other-bytes" / "model" / RELEASED.name
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    shutil.copytree(site / "tiny", site / "other-tensors")
    float32 = converted[1] / "melkit_mnv2_0.35_48_float32.tflite"
    card_path = site / "other-tensors" / "model" / tiny.with_suffix(".json").name
    card = json.loads(card_path.read_text())
    card.update(sha256=load_card(float32).sha256, size_bytes=float32.stat().st_size)
    card_path.write_text(json.dumps(card))
    shutil.copy(float32, site / "other-tensors" / "model" / tiny.name)

    servers = {name: _serve(site / name) for name in ("released", "tiny", "other-bytes", "other-tensors", "previous")}
    shot = tmp_path / "web_demo.png"
    card = load_card(RELEASED)
    shown = real[0] if real else goldens[0]  # dropped last, in the screenshot: a melanoma of HAM10000
    q_for = [str(p) for p in real[:20] + non_lesion + large]
    job = {"chromium": str(CHROMIUM), "pages": [
        {"url": servers["released"][1], "images": [str(p) for p in list(bad) + images], "q_for": q_for,
         "drop": [str(shown)], "viewport": {"width": 412, "height": 915}, "screenshot": str(shot)},
        {"url": servers["tiny"][1], "images": [str(p) for p in tiny_images]},
        {"url": servers["other-bytes"][1]},
        {"url": servers["other-tensors"][1]},
        {"url": servers["previous"][1], "images": [str(p) for p in previous_images]},
    ]}
    (tmp_path / "job.json").write_text(json.dumps(job))
    try:
        t0 = time.perf_counter()
        r = subprocess.run([node, str(WEB / "tools" / "drive.mjs"), str(tmp_path / "job.json")], cwd=WEB,
                           capture_output=True, text=True, timeout=600)
        browser_s = time.perf_counter() - t0
    finally:
        for server, _ in servers.values():
            server.shutdown()
            server.server_close()
    assert r.returncode == 0, r.stderr[-4000:]
    released, tiny_page, other_bytes, other_tensors, previous = json.loads(r.stdout)["pages"]

    # the page as a person finds it: the card's words, the notice, an accessible live result, a narrow screen
    assert "error" not in released["ready"], released["ready"]
    assert released["ready"]["batchFixed"] == 0, "the released model declares batch 1: loaded as it is"
    assert [e for e in released["consoleErrors"] if not e.startswith(("INFO:", "WARNING:"))] == []
    assert "Not a medical device." in released["page"]["notice"] and card.not_a_medical_device in released["page"]["notice"]
    for words in (f"{card.name} {card.version}", "Intended use", card.decision, "Shades of Gray", card.license):
        assert words in released["page"]["modelInfo"], words
    assert (released["page"]["live"], released["page"]["role"], released["page"]["capture"]) == (
        "polite", "status", "environment")
    assert released["page"]["overflow"] <= 0, "no sideways scrolling on a 412 px wide phone screen"
    for name in ("button: Choose an image", "button: Take a photo"):
        assert name in released["accessible"], released["accessible"]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    rows = {}
    for row in released["results"]:
        rows.setdefault(row["path"], row)
    # bad input: one sentence naming the file, no result, no stack trace
    for path, words in bad.items():
        row = rows[str(path)]
        assert row["state"] == "error" and words in row["error"] and path.name in row["error"], row
        assert "\n" not in row["error"] and row["error"].endswith(".") and "at " not in row["error"], row
        assert "decision" not in row
    dropped = [x for x in released["results"] if x.get("dropped")]
    assert dropped and dropped[0]["state"] == "done"

    result = run_predict(RELEASED, [str(p) for p in images])
    t0 = time.perf_counter()  # melkit predict's time per image on the real ones, as the page's below
    run_predict(RELEASED, [str(p) for p in real or goldens])
    predict_ms = 1000 * (time.perf_counter() - t0) / len(real or goldens)
    step = card.output.quantization.scale
    stats = _compare(rows, result, step, reduced=large, card=card)
    real_rows = [rows[str(p)] for p in real]
    predicted_real = [row for row in result.predictions if Path(row["image"]) in set(real)]
    # the image predict did not assess is not assessed on the page; none of the generated non-lesion images
    # is given a score there that predict did not give
    assert stats["not_assessed_missed"] == [], stats
    assert stats["decisions_equal"] >= 0.99 * stats["n"], stats
    assert stats["within_one_step"] >= 0.95 * stats["assessed"], stats
    # phone-sized JPEGs: Python's scaled decode approximated by block means; how far the output moves with that
    # is the model's own sensitivity (kept in the report, 2-4 steps for 2.1.0, up to 13 for 3.0.0), checked below
    # by its two parts: q within 2 of Python's, and the page's output equal to Python's on the page's own q
    assert sum(row["decision"] == "not_assessed" for row in result.predictions) >= len(non_lesion) // 2
    # risk bands: predict gives them for every assessed image; the page shows the same band and LR for the same
    # output (and, by _check_risk, Python's band for its own output everywhere)
    assert stats["risk_compared"] >= 0.9 * stats["assessed"] and stats["risk_same"] == stats["risk_compared"], stats
    assert stats["risk_unmeasured"] == 0 and len(stats["bands_shown"]) >= 3, stats  # every band measured

    # decoding: q from the page vs Python's, byte for byte where the file is lossless (PNG), measured for JPEGs
    q_stats = {"png": [0, 0], "jpeg": [0, 0, 0]}  # png: images, identical; jpeg: bytes, differing, max |diff|
    q_files = {}
    interp = load_interpreter(str(RELEASED))
    for path in map(Path, q_for):
        page_q = np.frombuffer(base64.b64decode(rows[str(path)]["q"]), np.uint8)
        want = _python_q(path, card).reshape(-1)
        if path in large and rows[str(path)]["pRaw"] != "":  # the page runs the model as Python on its q
            size = card.input.shape[1]
            raw = predict_p_mel(interp, page_q.reshape(1, size, size, 3), p_mel_index=card.p_mel_index,
                                output=card.output.name)[0]
            assert abs(float(rows[str(path)]["pRaw"]) - raw) <= step * (1 + 1e-9), (path.name, rows[str(path)], raw)
            assert int(np.abs(page_q.astype(int) - want.astype(int)).max()) <= 2, path.name
        if path.suffix == ".png":
            q_stats["png"][0] += 1
            q_stats["png"][1] += bool(np.array_equal(page_q, want))
        else:
            diff = np.abs(page_q.astype(int) - want.astype(int))
            q_stats["jpeg"][0] += diff.size
            q_stats["jpeg"][1] += int((diff > 0).sum())
            q_stats["jpeg"][2] = max(q_stats["jpeg"][2], int(diff.max()))
            q_files[path.name] = [round(float((diff > 0).mean()), 4), int(diff.max())]
    assert q_stats["png"][0] and q_stats["png"][1] == q_stats["png"][0], q_stats

    # the tests' tiny model (no guard, 48 px) the same way
    assert "error" not in tiny_page["ready"], tiny_page["ready"]
    tiny_result = run_predict(tiny, [str(p) for p in tiny_images])
    tiny_card = load_card(tiny)
    tiny_stats = _compare({x["path"]: x for x in tiny_page["results"]}, tiny_result,
                          tiny_card.output.quantization.scale, card=tiny_card)
    assert tiny_stats["decisions_equal"] >= 0.99 * tiny_stats["n"], tiny_stats
    assert tiny_stats["within_one_step"] >= 0.95 * tiny_stats["assessed"], tiny_stats
    if tiny_card.likelihood_ratios is not None:  # converted now: melkit convert writes risk bands
        assert tiny_stats["risk_same"] == tiny_stats["risk_compared"] > 0, tiny_stats
        assert tiny_stats["risk_unmeasured"] > 0, "the band whose LR is null: 'not measured' on the page"

    # release 2.1.0: the page patches its batch -1 to 1 (LiteRT.js refuses -1) and answers as melkit predict on
    # that model; its card has no risk bands, so none is shown
    assert "error" not in previous["ready"], previous["ready"]
    assert previous["ready"]["batchFixed"] > 0, "2.1.0 declares batch -1: fixed in the page"
    previous_card = load_card(PREVIOUS)
    assert previous_card.likelihood_ratios is None
    previous_stats = _compare({x["path"]: x for x in previous["results"]},
                              run_predict(PREVIOUS, [str(p) for p in previous_images]),
                              previous_card.output.quantization.scale, card=previous_card)
    assert previous_stats["n"] == len(previous_images) and previous_stats["risk_compared"] == 0, previous_stats
    assert previous_stats["decisions_equal"] == previous_stats["n"], previous_stats
    assert previous_stats["within_one_step"] == previous_stats["assessed"] > 0, previous_stats

    # models whose card does not match: one sentence on the page, nothing to click
    assert other_bytes["ready"]["error"] == ("The model file does not match its card (sha256 differs): bundle them "
                                             "again with melkit bundle --web.")
    assert other_tensors["ready"]["error"].startswith("The model does not match its card: its input is float32")
    for page in (other_bytes, other_tensors):
        assert page["page"]["status"] == page["ready"]["error"]

    page_ms = [float(x["msPre"]) + float(x["msModel"]) for x in real_rows or [rows[str(p)] for p in images]]
    model_ms = [float(x["msModel"]) for x in real_rows or [rows[str(p)] for p in images]]
    report = {"browser": "Chromium (headless, Debian)", "images": len(images), "real": len(real),
              "non_lesion": len(non_lesion), "stats": stats, "tiny": tiny_stats, "previous": previous_stats,
              "q": {"png_identical": q_stats["png"], "jpeg_bytes": q_stats["jpeg"][0],
                    "jpeg_bytes_differing": q_stats["jpeg"][1], "jpeg_max_abs_diff": q_stats["jpeg"][2],
                    "jpeg_by_file": q_files},
              "page_ms_per_image_median": float(np.median(page_ms)),
              "page_model_ms_median": float(np.median(model_ms)), "page_ms_per_image_mean": float(np.mean(page_ms)),
              "predict_ms_per_image": predict_ms,
              "first_inference_ms": released["ready"]["firstMs"], "browser_run_s": browser_s,
              "real_predicted": len(predicted_real), "screenshot": str(shot)}
    (tmp_path / "web_demo_report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report))
