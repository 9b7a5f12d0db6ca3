"""The stand-in for Dataverse that ``melkit data fetch`` downloads from in tests/test_fetch.py and in
benchmarks/reliability.py's fetch check (benchmarks/_reliability_fetch.py): never the internet.

It runs on a free port of 127.0.0.1, in a thread, and answers like the real record of melkit's DOI: a file list
with ids, sizes and MD5s (native API), files by id (access API), an ingested table served as ``.tab`` unless
``format=original`` is asked for, a redirect to storage, HTTP range requests. Faults are injected per file
(``StoredFile``): a connection dropped mid-file, a transient or permanent HTTP error, a body that drips a byte
now and then, answers that are no HTTP or carry garbage in the reason phrase, a listing that lies about the
MD5 or omits a size; and per server (``Dataverse``): a file list that is never answered. The reliability
benchmark injects no faults (its kills are the faults) but has every answer trickle, a few kB at a time, so
that a kill lands mid-transfer.

A plain module, not a conftest: the tests import it from tests/ (pytest puts that folder on sys.path), the
benchmark as ``tests.fake_dataverse`` from the repository root.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import threading
import time
import zipfile
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import numpy as np
from PIL import Image

__all__ = ["DOI", "Dataverse", "StoredFile", "jpeg", "zip_of"]

# The record melkit's data sets live in, written out rather than taken from melkit: a fetch asking for another
# DOI gets a 404, as it would from the real server.
DOI = "doi:10.7910/DVN/DBW86T"

DRIP_LIMIT_S = 8.0  # a dripping answer ends after this long, so that a client that never gives up fails, not hangs
GARBAGE = b"\x1b[2J\x07\x00EVIL\x08\x9b\x7f " + b"x" * 5000  # clears a terminal, rings, and goes on and on


def jpeg(seed: int) -> bytes:
    """A 16x16 JPEG of noise, the same bytes for the same seed."""
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def zip_of(entries) -> bytes:
    """A zip of [(name or ZipInfo, bytes)]."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries:
            z.writestr(name, data)
    return buf.getvalue()


@dataclass
class StoredFile:
    """One file of the record, and the faults its answers carry (none by default)."""

    id: int
    label: str
    body: bytes  # the original bytes, the ones the checksum is of
    tab: bytes | None = None  # an ingested table's .tab rendering
    original_name: str | None = None
    md5: str | None = None  # what the listing claims, if not the truth
    redirect: bool = False  # the access URL answers 303 to /storage/ID
    truncate_once: bool = False  # the first answer drops the connection halfway
    fail_once: int | None = None  # the first answer is this HTTP status
    size_listed: bool = True  # False: the listing omits the original's size (only the checksum can tell)
    drip_s: float | None = None  # every answer sends its body one byte per this many seconds
    fail_always: int | None = None  # every answer is this HTTP status
    garbage: str | None = None  # "status": every answer is no HTTP at all; "reason": a 404 with a garbage reason

    def listing(self) -> dict:
        """The file's entry in the record's file list, as Dataverse's native API writes it."""
        md5 = self.md5 or hashlib.md5(self.body).hexdigest()
        df = {"id": self.id, "filename": self.label, "filesize": len(self.tab or self.body), "md5": md5,
              "checksum": {"type": "MD5", "value": md5}, "contentType": "application/zip"}
        if self.tab is not None:
            df.update(contentType="text/tab-separated-values", originalFileFormat="text/csv",
                      originalFileName=self.original_name, originalFileSize=len(self.body))
        if not self.size_listed:
            df.pop("originalFileSize" if self.tab is not None else "filesize")
        return {"label": self.label, "restricted": False, "dataFile": df}


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, so closing early is a real truncation, and a killed client ends
    # only its own answer.

    def log_message(self, *args):
        pass

    def do_GET(self):
        dv = self.server.dataverse
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        dv.log.append((url.path, url.query, self.headers.get("Range")))
        if url.path == "/api/datasets/:persistentId/" and query.get("persistentId") == [DOI]:
            if dv.listing == "silent":  # accepts the request, then never answers
                dv.stopping.wait()
                return
            body = json.dumps({"status": "OK", "data": {"latestVersion": {
                "files": [f.listing() for f in dv.files.values()]}}}).encode()
            return self._answer(200, body, {"Content-Type": "application/json"})
        m = re.fullmatch(r"/api/access/datafile/(\d+)|/storage/(\d+)", url.path)
        f = dv.files.get(int(m[1] or m[2])) if m else None
        if f is None:
            return self._answer(404, b'{"status":"ERROR"}')
        if f.fail_once:
            status, f.fail_once = f.fail_once, None
            return self._answer(status, b"busy")
        if f.fail_always:
            return self._answer(f.fail_always, b"busy")
        if f.garbage == "status":
            self.wfile.write(GARBAGE + b"\r\n\r\n")
            return
        if f.garbage == "reason":
            self.send_response(404, GARBAGE.decode("latin-1"))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if m[1] and f.redirect:
            return self._answer(303, b"", {"Location": f"{dv.url}/storage/{f.id}?{url.query}"})
        body = f.body if f.tab is None or query.get("format") == ["original"] else f.tab
        start = int(re.fullmatch(r"bytes=(\d+)-", self.headers["Range"])[1]) if self.headers["Range"] else 0
        if start >= len(body):
            return self._answer(416, b"")
        headers = {"Content-Type": "application/octet-stream"}
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
        if f.drip_s:
            return self._drip(206 if start else 200, body[start:], headers, f.drip_s)
        if f.truncate_once:
            f.truncate_once = False
            return self._answer(206 if start else 200, body[start:], headers, send=(len(body) - start) // 2)
        return self._answer(206 if start else 200, body[start:], headers)

    def _drip(self, status, body, headers, every_s):
        """Headers at once, then the body one byte per ``every_s`` seconds, for DRIP_LIMIT_S at most."""
        dv = self.server.dataverse
        self._head(status, headers, len(body))
        until = time.monotonic() + DRIP_LIMIT_S
        for i in range(len(body)):
            if dv.stopping.wait(every_s) or time.monotonic() > until:
                return
            try:
                self.wfile.write(body[i:i + 1])
            except OSError:  # the client hung up
                return

    def _answer(self, status, body, headers=None, send=None):
        """Status and headers, then the body (its first ``send`` bytes only, if given): at once, or trickling
        ``trickle_chunk`` bytes per ``trickle_every_s`` seconds where the server was started so."""
        dv = self.server.dataverse
        self._head(status, headers or {}, len(body))
        body = body if send is None else body[:send]
        if dv.trickle_chunk is None:
            self.wfile.write(body)
            return
        try:
            for i in range(0, len(body), dv.trickle_chunk):
                self.wfile.write(body[i:i + dv.trickle_chunk])
                time.sleep(dv.trickle_every_s)
        except OSError:  # the client was killed mid-answer
            pass

    def _head(self, status, headers, length):
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(length))
        self.end_headers()


class Dataverse:
    """The stand-in server, started on construction; ``url`` is its base URL (melkit's ``--base-url``), ``log``
    the (path, query, Range header) of every request it got.

    ``listing="silent"``: the file list request is never answered. ``trickle_chunk``: every answer's body goes
    out that many bytes at a time, ``trickle_every_s`` seconds apart (for the reliability benchmark, whose
    clients are killed mid-answer: their broken connections are then no errors to report)."""

    def __init__(self, files, listing: str | None = None, trickle_chunk: int | None = None,
                 trickle_every_s: float = 0.0):
        self.files = {f.id: f for f in files}
        self.listing = listing
        self.trickle_chunk, self.trickle_every_s = trickle_chunk, trickle_every_s
        self.log = []
        self.stopping = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.dataverse = self
        if trickle_chunk is not None:
            self.server.handle_error = lambda request, client_address: None
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def requests_for(self, file_id):
        """The log's entries for one file, by the access URL or the storage one."""
        return [e for e in self.log if e[0] in (f"/api/access/datafile/{file_id}", f"/storage/{file_id}")]

    def close(self):
        self.stopping.set()  # ends the handlers that drip or stay silent
        self.server.shutdown()
        self.server.server_close()
