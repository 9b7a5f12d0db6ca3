"""``melkit bundle``: put a converted model into the Android app, after checking it is what its card says.

The app reads only its assets (model, card, labels.txt), so a model whose card disagrees with the file
(sha256, input/output dtype, shape, quantization, image size) would be fed or read wrongly on the phone
with no error at all. Such a model is refused here (BadInputError, exit 2) before anything is written.

The model is read once: the bytes checked against the card are the ones the goldens are computed with and
the ones copied into the app, and the card copied is the one checked (a file replaced meanwhile changes
nothing of what is bundled).

``melkit bundle MODEL --web DIR`` (:func:`run_bundle_web`) makes the same checked copy for the browser: a copy of
the page in ``web_demo/`` with the model, card, labels.txt and LiteRT.js's files (from ``web_demo/node_modules``,
installed by setup.sh's ``npm ci``), which any static server can serve; ``melkit web`` (:func:`run_web`)
serves it on localhost with the MIME types the page needs (``application/wasm``, ``text/javascript``).
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from melkit.core.card import ModelCard, read_model, write_card
from melkit.util.errors import BadInputError
from melkit.util.files import (check_out_apart, check_replaceable, exclusive, keep_the_rest, mark_output, staging,
                               staging_many, write_json)
from melkit.core.litert import load_interpreter
from melkit.release.golden import fill_goldens

ASSETS = Path("app", "src", "main", "assets")
GOLDEN = Path("app", "src", "test", "resources", "golden")


@dataclass
class BundleResult:
    """What :func:`run_bundle` put into the app: the assets folder and the model in it, the golden folder and
    how many golden vectors it holds, and the card it copied (the one checked against the model)."""

    assets: Path
    model: Path
    golden: Path
    images: int
    card: ModelCard


@dataclass
class WebBundleResult:
    """What :func:`run_bundle_web` wrote: the page's folder, the card it copied and LiteRT.js's version."""

    dir: Path
    card: ModelCard
    litertjs: str  # from web_demo/node_modules' package.json; "unknown" where that cannot be read


def check_model(model_path):
    """The card of ``model_path`` (a ModelCard) and a loaded interpreter, after checking they agree;
    BadInputError if not (see ModelCard.check_against)."""
    card, interp, _ = checked_model(model_path)
    return card, interp


def checked_model(model_path):
    """(card, interpreter, bytes): :func:`check_model` plus the model's bytes as read once and checked, from
    which the interpreter was built."""

    model_path = Path(model_path)
    if not model_path.is_file():
        raise BadInputError(f"{model_path}: no such model file")
    if model_path.suffix != ".tflite":
        raise BadInputError(f"{model_path}: not a .tflite file")
    card, data = read_model(model_path)  # missing card, not a card, sha256 mismatch
    if card.model_file != model_path.name:  # the app opens the model the card names
        raise BadInputError(f"{model_path}: its card describes {card.model_file!r}")
    interp = load_interpreter(data)
    card.check_against(interp, model_path)
    return card, interp, data


def _labels_text(model_path: Path, card: ModelCard) -> str:
    text = "".join(f"{label}\n" for label in card.labels)
    beside = model_path.parent / card.labels_file
    if beside.is_file() and beside.read_text(encoding="utf-8").split() != list(card.labels):
        raise BadInputError(f"{beside} does not list the card's labels {list(card.labels)}")
    return text


def _is_ours(path: Path) -> bool:
    """Files a previous bundle put into assets (replaced, so exactly one model is in the app)."""
    return path.suffix in (".tflite", ".json") or path.name == "labels.txt"


def run_bundle(model_path, app_dir, golden_dir=None, images=None) -> BundleResult:
    """Copy model, card and labels.txt into ``app_dir``'s assets and write golden vectors.

    Goldens go to ``golden_dir`` (default: the app's JVM test resources). Real images (``images``) need an
    explicit ``golden_dir``, so shared data never lands in the app's source tree by default.
    """

    model_path, app_dir = Path(model_path), Path(app_dir)
    if not (app_dir / "app" / "src" / "main" / "AndroidManifest.xml").is_file():
        raise BadInputError(f"{app_dir}: not the melkit Android app (no app/src/main/AndroidManifest.xml)")
    if images and golden_dir is None:
        raise BadInputError("--image needs --golden-dir: goldens from real images are not put into the app")
    card, interp, data = checked_model(model_path)
    labels = _labels_text(model_path, card)
    card_path = model_path.with_suffix(".json")

    assets = app_dir / ASSETS
    golden = Path(golden_dir) if golden_dir is not None else app_dir / GOLDEN
    # The golden folder is replaced whole: never one that holds an input or the app, never a folder of someone
    # else's files (melkit's marker, or the app's own golden folder, says a folder is bundle's to replace).
    check_out_apart(golden, flag="--golden-dir",
                    read=[("the model", model_path), ("the model card", card_path), ("the app", app_dir),
                          ("the app's assets", assets)] + [("the image", p) for p in images or []])
    if os.path.realpath(golden) != os.path.realpath(app_dir / GOLDEN):
        check_replaceable(golden, "--golden-dir")
    # One transaction: the assets and the goldens are both built in staging folders, then published together
    # (a journal makes the next bundle finish a publication a crash interrupted), so the app never holds a
    # new model with the old model's goldens, and a bad --image fails before anything is replaced. The lock
    # makes a second bundle into the same app exit 2 instead of mixing its files with ours.
    with exclusive(app_dir / ".melkit-bundle"), staging_many([assets, golden]) as (staged, staged_golden):
        keep_the_rest(assets, staged, skip=_is_ours)  # whatever else the app ships (after any recovery above)
        (staged / model_path.name).write_bytes(data)  # the checked bytes and card, not the paths again
        write_card(staged / card_path.name, card)  # the same bytes as a card melkit wrote (tests/test_card.py)
        (staged / "labels.txt").write_text(labels, encoding="utf-8")
        index = fill_goldens(staged_golden, model_path, card, interp, images=images)
        mark_output(staged_golden, "bundle")  # melkit's: the next bundle may replace it
    return BundleResult(assets=assets, model=assets / model_path.name, golden=golden, images=len(index["images"]),
                        card=card)


# ---------------------------------------------------------------------------------------------------
# the page in the browser: web_demo/ with a model, served on localhost
# ---------------------------------------------------------------------------------------------------
WEB_DEMO = Path(__file__).resolve().parents[2] / "web_demo"  # the repository's page (an editable install's)
WEB_FORMAT = "melkit-web-1"
WEB_MANIFEST = "melkit-web.json"  # what the page loads first: where its model, card and labels are
PAGE_FILES = ("index.html", "style.css")
LITERT = Path("node_modules", "@litertjs")
# LiteRT.js's loader picks litert_wasm_internal (relaxed SIMD) or litert_wasm_compat_internal (without); its
# threaded and JSPI builds are not used by the page (no cross-origin isolation, no WebNN), so not copied.
LITERT_FILES = {Path("core", "dist", "index.js"): Path("core", "index.js"),
                Path("wasm-utils", "dist", "index.js"): Path("wasm-utils", "index.js"),
                **{Path("core", "wasm", f"litert_wasm_{k}internal.{ext}"): Path("wasm", f"litert_wasm_{k}internal.{ext}")
                   for k in ("", "compat_") for ext in ("js", "wasm")}}
MIME_TYPES = {".wasm": "application/wasm", ".js": "text/javascript", ".mjs": "text/javascript",
              ".json": "application/json", ".tflite": "application/octet-stream", ".txt": "text/plain; charset=utf-8",
              ".html": "text/html; charset=utf-8", ".css": "text/css", ".png": "image/png"}


def _litert_version(page: Path) -> str:
    try:
        return json.loads((page / LITERT / "core" / "package.json").read_text(encoding="utf-8"))["version"]
    except (OSError, ValueError, KeyError):
        return "unknown"


def run_bundle_web(model_path, out_dir, page_dir=None) -> WebBundleResult:
    """Copy the page (``page_dir``, default the repository's web_demo/), LiteRT.js's files, and the model, its
    card and labels.txt (checked against each other as for the app) into ``out_dir``, replaced whole: a new
    folder, an empty one or one melkit wrote. A card that does not match its model exits 2, nothing written."""
    model_path, out_dir = Path(model_path), Path(out_dir)
    card, _, data = checked_model(model_path)  # missing or mismatching card: exit 2 before anything is written
    labels = _labels_text(model_path, card)
    page = Path(page_dir) if page_dir is not None else WEB_DEMO
    if not (page / "index.html").is_file() or not (page / "js" / "app.js").is_file():
        raise BadInputError(f"{page}: not melkit's web page (no index.html and js/app.js); bundle --web needs the "
                            f"repository's web_demo/")
    missing = [str(page / LITERT / src) for src in LITERT_FILES if not (page / LITERT / src).is_file()]
    if missing:
        raise BadInputError(f"LiteRT.js is not installed ({missing[0]} is missing): run bash setup.sh, or npm ci in "
                            f"{page}")
    card_path = model_path.with_suffix(".json")
    check_out_apart(out_dir, flag="--web", read=[("the model", model_path), ("the model card", card_path),
                                                  ("the page", page)])
    check_replaceable(out_dir, "--web")
    with exclusive(out_dir), staging(out_dir) as staged:
        for name in PAGE_FILES:
            shutil.copy2(page / name, staged / name)
        (staged / "js").mkdir()
        for f in sorted((page / "js").glob("*.js")):
            shutil.copy2(f, staged / "js" / f.name)
        vendor = staged / "vendor" / "litertjs"
        for src, dest in LITERT_FILES.items():
            (vendor / dest).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(page / LITERT / src, vendor / dest)
        (staged / "model").mkdir()
        (staged / "model" / model_path.name).write_bytes(data)  # the checked bytes and card, not the paths again
        write_card(staged / "model" / card_path.name, card)
        (staged / "model" / "labels.txt").write_text(labels, encoding="utf-8")
        write_json(staged / WEB_MANIFEST, {
            "format": WEB_FORMAT, "model": f"model/{model_path.name}", "card": f"model/{card_path.name}",
            "labels": "model/labels.txt", "name": card.name, "version": card.version, "variant": card.variant,
            "litertjs": _litert_version(page)})
        mark_output(staged, "bundle --web")
    return WebBundleResult(dir=out_dir, card=card, litertjs=_litert_version(page))


class _PageHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with the page's MIME types, never cached (a new bundle shows at once), no request log."""

    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, **MIME_TYPES}

    def end_headers(self):
        self.send_header("Cache-Control", "no-cache")
        self.send_header("X-Content-Type-Options", "nosniff")
        super().end_headers()

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass


class _PageServer(http.server.ThreadingHTTPServer):
    """One thread per request; a browser that drops a connection it no longer needs is no error to report."""

    daemon_threads = True

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def web_server(web_dir, host: str = "127.0.0.1", port: int = 8000) -> _PageServer:
    """A server (not yet serving) for the bundle in ``web_dir``; ``port`` 0 takes a free one. BadInputError for
    a folder that is no bundle, or a port that cannot be had."""
    web_dir = Path(web_dir)
    if not (web_dir / WEB_MANIFEST).is_file():
        raise BadInputError(f"{web_dir}: not a page made by melkit bundle --web (no {WEB_MANIFEST})")
    handler = functools.partial(_PageHandler, directory=str(web_dir))
    try:
        return _PageServer((host, port), handler)
    except OSError as e:
        raise BadInputError(f"cannot serve on {host}:{port}: {e.strerror or e}") from None


def run_web(target=None, host: str = "127.0.0.1", port: int = 8000, echo=print) -> None:
    """Serve a page until Ctrl-C: ``target`` a folder made by :func:`run_bundle_web`, or a model (default the released
    one in tflite_models/) bundled first into a temporary folder that is removed afterwards."""
    target = Path(target) if target is not None else WEB_DEMO.parent / "tflite_models" / "melkit_mnv2_1_224_int8.tflite"
    with contextlib.ExitStack() as stack:
        if target.is_dir():
            web_dir = target
        else:
            web_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="melkit-web-"))) / "page"
            r = run_bundle_web(target, web_dir)
            echo(f"bundled {r.card.name} {r.card.version} ({r.card.variant}) with LiteRT.js {r.litertjs}")
        server = stack.enter_context(web_server(web_dir, host, port))
        shown = f"[{host}]" if ":" in host else host
        echo(f"serving {web_dir} at http://{shown}:{server.server_address[1]}/  (Ctrl-C stops it)")
        if host not in ("127.0.0.1", "localhost", "::1"):
            echo(f"melkit: warning: {host} is reachable from other machines; the page has no access control")
        try:
            server.serve_forever()
        except KeyboardInterrupt as e:
            if getattr(e, "signum", signal.SIGINT) != signal.SIGINT:  # SIGTERM: the CLI's exit 143, as any command
                raise
            echo("stopped")
