"""``melkit data fetch``: download a public data set from its Dataverse record, verified and resumable.

The record's native API lists every file with its id, size and checksum; the access API serves a file by
id. Ingested tabular files are requested with ``format=original``: without it Dataverse serves its own
``.tab`` rendering, whose bytes differ from the uploaded file the checksum belongs to.

A download goes to ``NAME.part`` and is renamed only after its checksum matches, so a file under its final
name is always a verified one. An interrupted download continues with an HTTP range request; each try
starts again from the access URL, because its redirect to storage is a signed link that expires.

Every request is bounded in time (``Patience``). A watchdog thread cuts a try off when it stalls: fewer
than ``MIN_PROGRESS`` bytes in ``stall_s`` seconds, whether the server is silent, drips a byte now and then,
or never finishes its headers. Failed tries are retried with doubling waits, each announced on a line of
its own; the whole fetch, waits included, gives up at its deadline. What a cut-off try received stays in
``NAME.part`` on purpose: the next try, or the next run of the command, resumes from there. Text a server
sends (reason phrases, garbled status lines, header values, file names) reaches a message only through
``_printable``: control characters replaced, at most ``SERVER_TEXT`` characters.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import json
import os
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from melkit.core.errors import BadInputError
from melkit.core.files import exclusive, file_in_the_way, sweep_temps, writable_dir
from melkit.core.progress import progress_bar
from melkit.data.extract import marker_path, other_sets_in, read_marker, safe_extract, write_marker
from melkit.data.sources import CITATION, DEFAULT_BASE_URL, DOI, LICENCE, get_source, write_metadata_from_ground_truth

BASE_URL_ENV = "MELKIT_DATAVERSE_URL"
BACKOFF_S = 2.0  # first wait between tries; doubles each time up to MAX_WAIT_S (tests set 0)
MAX_WAIT_S = 120.0
STALL_S = 60.0  # a try that receives fewer than MIN_PROGRESS bytes in this long is cut off and retried
MIN_PROGRESS = 16 << 10
DEADLINE_S = 6 * 3600.0  # the whole fetch: HAM10000 is ~2.7 GB, i.e. 6 h at ~125 kB/s
SERVER_TEXT = 200  # at most this many characters of what a server sent go into a message
_MAX_LISTING = 64 << 20
_WATCH_POLL_S = 0.1
_CHUNK = 1 << 20
_HASHES = {"MD5": "md5", "SHA-1": "sha1", "SHA-256": "sha256", "SHA-512": "sha512"}


class _Retryable(Exception):
    """A failure another try may get past: no connection, a dropped one, a 5xx, an expired storage link, a stall."""


class _DeadlinePassed(Exception):
    """The whole fetch ran out of time during a try."""


def _printable(text, limit: int = SERVER_TEXT) -> str:
    """Server-sent ``text`` fit for a one-line message: whitespace runs become one space, other control
    characters '?', and it is cut to ``limit`` characters."""
    text = "".join(c if c.isprintable() else " " if c.isspace() else "?" for c in str(text))
    text = " ".join(text.split())
    return text if len(text) <= limit else f"{text[:limit]}... [{len(text) - limit} more characters]"


def _seconds(s: float) -> str:
    if s < 120:
        return f"{s:g} s"
    return f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:g} h"


@dataclass
class Patience:
    """How long a fetch keeps at it. ``retries``: further tries of one request after consecutive failures;
    ``stall_s``: a try is cut off once fewer than MIN_PROGRESS bytes arrive in this many seconds;
    ``deadline_s``: the whole fetch gives up this long after ``started``; ``echo`` announces each retry."""

    retries: int = 5
    stall_s: float = STALL_S
    deadline_s: float = DEADLINE_S
    echo: Callable = print
    started: float = field(default_factory=time.monotonic)

    def left(self) -> float:
        return self.started + self.deadline_s - time.monotonic()

    def socket_timeout(self) -> float:
        # Bounds what the watchdog cannot cut (connecting, a TLS handshake); a little over the watchdog's
        # limit, so that the watchdog, which words it better, reports a stall.
        return max(0.1, min(self.stall_s, self.left())) + 1.0

    def too_late(self, what: str, problem=None) -> BadInputError:
        return BadInputError(f"{what}: gave up, the deadline of {_seconds(self.deadline_s)} for the whole fetch "
                             "(--deadline) passed" + (f" ({problem})" if problem else "") + ". Run the same "
                             "command again to resume; what is downloaded so far is kept.")

    def retry(self, what: str, failures: int, err: Exception) -> None:
        """After a failed try: raise if out of tries or time; else announce the retry and wait for it."""
        if failures > self.retries:
            raise _no_network(what, failures, err)
        wait = min(BACKOFF_S * 2 ** (failures - 1), MAX_WAIT_S) if failures else 0.0
        if wait >= self.left():
            raise self.too_late(what, f"before retry {failures} of {self.retries}, after: {err}")
        then = f"retry {failures} of {self.retries} in {_seconds(wait)}" if failures else \
            "resuming at once (that try made progress)"
        with tqdm.external_write_mode():  # a line of its own, not through the middle of a progress bar
            self.echo(f"{what}: {err}; {then}")
        time.sleep(wait)


def _shut(sock) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)  # wakes a read blocked on it in another thread, with end-of-file
    except OSError:
        pass


class _Watch:
    """One try's watchdog: a thread that shuts the try's connections down once fewer than MIN_PROGRESS bytes
    arrived in ``stall_s`` seconds, or the deadline passes, whatever the try is blocked in (headers, body).
    On leaving, such a cut replaces whatever error the try ran into: _Retryable for a stall,
    _DeadlinePassed for the deadline."""

    def __init__(self, patience: Patience):
        self.patience = patience
        self.reason = None
        self.late = False
        self._sockets = []
        self._lock = threading.Lock()
        self._since = time.monotonic()  # the start of the current stall window
        self._bytes = 0  # bytes received in it
        self._total = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="melkit-fetch-watch", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        if self.late:
            raise _DeadlinePassed(self.reason) from None
        if self.reason:
            raise _Retryable(self.reason) from None
        return False

    def register(self, sock) -> None:
        with self._lock:
            self._sockets.append(sock)
            cut = self.reason is not None
        if cut:
            _shut(sock)

    def progress(self, n: int) -> None:
        with self._lock:
            self._bytes += n
            self._total += n
            if self._bytes >= MIN_PROGRESS:
                self._since, self._bytes = time.monotonic(), 0

    def _run(self) -> None:
        p = self.patience
        while not self._stop.wait(_WATCH_POLL_S):
            with self._lock:
                if p.left() <= 0:
                    self.late = True
                    self.reason = f"cut off {self._total} bytes into a try"
                elif time.monotonic() - self._since >= p.stall_s:
                    self.reason = f"stalled: {self._bytes} bytes in {_seconds(p.stall_s)} (--stall-timeout)"
                else:
                    continue
                sockets = list(self._sockets)
            for sock in sockets:
                _shut(sock)
            return


class _Watched:
    """Mixed into an HTTP(S) connection: its socket is registered with the watchdog once connected."""

    def __init__(self, *args, watch: _Watch, **kwargs):
        super().__init__(*args, **kwargs)
        self._watch = watch

    def connect(self):
        super().connect()
        self._watch.register(self.sock)


class _WatchedHTTP(_Watched, http.client.HTTPConnection):
    pass


class _WatchedHTTPS(_Watched, http.client.HTTPSConnection):
    pass


class _WatchedHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, watch: _Watch):
        super().__init__()
        self._watch = watch

    def http_open(self, req):
        return self.do_open(functools.partial(_WatchedHTTP, watch=self._watch), req)


class _WatchedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, watch: _Watch):
        super().__init__()
        self._watch = watch

    def https_open(self, req):
        return self.do_open(functools.partial(_WatchedHTTPS, watch=self._watch), req, context=self._context)


@dataclass(frozen=True)
class RemoteFile:
    id: int
    names: tuple  # label, stored file name, original file name (an ingested table has all three)
    size: int | None  # bytes of what is downloaded (the original, for a table); None if the record omits it
    hash_name: str  # hashlib name
    checksum: str
    tabular: bool

    @property
    def name(self) -> str:
        return self.names[-1] or self.names[0]


def _user_agent() -> str:

    try:
        return f"melkit/{version('melkit')}"
    except PackageNotFoundError:
        return "melkit"


def _host(url: str) -> str:
    return _printable(urllib.parse.urlsplit(url).netloc or url, 100)


def _urlopen(url: str, headers, patience: Patience, watch: _Watch):
    """Open ``url`` with ``watch`` on its connections; failures sorted: _Retryable for transient ones,
    HTTPError (4xx) for the caller to word."""
    req = urllib.request.Request(url, headers={"User-Agent": _user_agent(), **(headers or {})})
    opener = urllib.request.build_opener(_WatchedHTTPHandler(watch), _WatchedHTTPSHandler(watch))
    try:
        return opener.open(req, timeout=patience.socket_timeout())
    except urllib.error.HTTPError as e:
        e.close()
        if e.code in (408, 429) or e.code >= 500:
            raise _Retryable(f"HTTP {e.code} {_printable(e.reason)} from {_host(e.geturl() or url)}") from None
        if e.geturl() and e.geturl() != url and e.code in (400, 401, 403, 404, 410):
            # Refused by the storage a redirect led to: its signed link expired; the access URL mints a new one.
            raise _Retryable(f"HTTP {e.code} from redirected storage {_host(e.geturl())}") from None
        raise
    except http.client.HTTPException as e:  # reached, but what came back is no HTTP answer
        raise _Retryable(f"{_host(url)} sent no valid HTTP answer ({type(e).__name__}: {_printable(e)})") from None
    except (urllib.error.URLError, OSError) as e:
        raise _Retryable(f"cannot reach {_host(url)}: {_printable(getattr(e, 'reason', e))}") from None


def _body(resp, watch: _Watch):
    """The body of ``resp`` as it arrives, each piece counted as progress; _Retryable if it ends short."""
    announced = resp.headers.get("Content-Length")
    received = 0
    while True:
        try:
            chunk = resp.read1(_CHUNK)  # whatever has arrived: a slow server cannot hide in a long read
        except (http.client.HTTPException, OSError) as e:
            raise _Retryable(f"connection lost: {type(e).__name__}: {_printable(e)}") from None
        if not chunk:
            break
        received += len(chunk)
        watch.progress(len(chunk))
        yield chunk
    # http.client ends a short body without complaint when the connection drops early.
    if announced and announced.isdigit() and received < int(announced):
        raise _Retryable(f"connection closed after {received} of {announced} bytes")


def _no_network(what: str, tries: int, err: Exception) -> BadInputError:
    return BadInputError(f"{what} failed after {tries} tr{'y' if tries == 1 else 'ies'}: {err}. Check the network "
                         f"connection, or point --base-url (or {BASE_URL_ENV}) at a reachable Dataverse mirror.")


def list_files(base_url: str, patience: Patience | None = None, doi: str = DOI) -> list:
    """The files of the latest version of the record ``doi``, from the native API."""
    patience = patience or Patience()
    url = f"{base_url}/api/datasets/:persistentId/?persistentId={urllib.parse.quote(doi, safe=':/')}"
    what = f"listing the files of {doi} at {url}"
    failures, last = 0, None
    while True:
        if patience.left() <= 0:
            raise patience.too_late(what, last and f"last problem: {last}")
        try:
            with _Watch(patience) as watch, _urlopen(url, {"Accept": "application/json"}, patience, watch) as resp:
                body = bytearray()
                for chunk in _body(resp, watch):
                    body += chunk
                    if len(body) > _MAX_LISTING:
                        raise BadInputError(f"{url}: the file list is over {_MAX_LISTING >> 20} MiB; "
                                            f"is --base-url a Dataverse server?")
            break
        except _Retryable as e:
            failures, last = failures + 1, e
            patience.retry(what, failures, e)
        except _DeadlinePassed as e:
            raise patience.too_late(what, e) from None
        except urllib.error.HTTPError as e:
            raise BadInputError(f"{base_url} has no data set {doi} (HTTP {e.code} {_printable(e.reason)}); "
                                f"is --base-url a Dataverse server?") from None
    try:
        files = json.loads(bytes(body))["data"]["latestVersion"]["files"]
        return [_remote_file(f) for f in files]
    except (ValueError, KeyError, TypeError) as e:
        raise BadInputError(f"{url}: not a Dataverse file list ({type(e).__name__}: {_printable(e)})") from None


def _remote_file(entry: dict) -> RemoteFile:
    df = entry["dataFile"]
    tabular = bool(df.get("originalFileFormat") or df.get("tabularData"))
    checksum = df.get("checksum") or ({"type": "MD5", "value": df["md5"]} if df.get("md5") else {})
    size = df.get("originalFileSize") if tabular else df.get("filesize")
    return RemoteFile(
        id=int(df["id"]),
        names=(entry.get("label") or "", df.get("filename") or "", df.get("originalFileName") or ""),
        size=int(size) if size is not None else None,
        hash_name=_HASHES.get(str(checksum.get("type", "")).upper(), ""),
        checksum=str(checksum.get("value", "")).lower(),
        tabular=tabular,
    )


def select_files(source, remote: list) -> list:
    """[(Wanted, RemoteFile)] for every file the set needs; BadInputError naming what the record lacks."""
    chosen, missing = [], []
    for wanted in source.files:
        hits = [f for f in remote if wanted.matches(f.names)]
        if not hits:
            missing.append(wanted.save_as)
            continue
        # Several matches (e.g. a .csv uploaded beside an ingested .tab): prefer the exact local name.
        hits.sort(key=lambda f: wanted.save_as not in f.names)
        chosen.append((wanted, hits[0]))
    if missing:
        names = sorted(_printable(f.name, 100) for f in remote)
        listed = ", ".join(names[:20]) + (f" and {len(names) - 20} more" if len(names) > 20 else "") or "none"
        raise BadInputError(f"the record lacks {', '.join(missing)} (it lists: {listed})")
    return chosen


def download_url(base_url: str, f: RemoteFile) -> str:
    return f"{base_url}/api/access/datafile/{f.id}" + ("?format=original" if f.tabular else "")


def file_digest(path: Path, hash_name: str) -> str:
    h = hashlib.new(hash_name)
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def download(url: str, dest: Path, f: RemoteFile, patience: Patience | None = None) -> Path:
    """Download ``url`` to ``dest`` via ``dest.part``, resuming and retrying; verify the checksum; rename.

    A try that stalls or fails leaves what it received in ``dest.part`` for the next try, or the next run."""
    patience = patience or Patience()
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    what = f"downloading {dest.name} from {url}"
    failures, last = 0, None
    with progress_bar(total=f.size, desc=dest.name, unit="B", unit_scale=True, unit_divisor=1024) as bar:
        while True:
            have = _size(part)
            if f.size is not None and have > f.size:
                part.unlink()  # not a prefix of this file (another version of the record): start over
                have = 0
            if f.size is not None and have == f.size:
                break
            if patience.left() <= 0:
                raise patience.too_late(what, last and f"last problem: {last}")
            bar.n = have
            bar.refresh()
            try:
                _get_from(url, part, have, bar, patience)
                if f.size is None or _size(part) == f.size:
                    break
                if _size(part) < f.size:
                    raise _Retryable(f"the server sent {_size(part)} of {f.size} bytes")
            except _Retryable as e:
                # A try that got somewhere is no failure; one that dribbled a few bytes is.
                failures = 0 if _size(part) - have >= MIN_PROGRESS else failures + 1
                last = e
                patience.retry(what, failures, e)
            except _DeadlinePassed as e:
                raise patience.too_late(what, e) from None
            except urllib.error.HTTPError as e:
                raise BadInputError(f"{url}: HTTP {e.code} {_printable(e.reason)} for {dest.name}") from None
    actual = file_digest(part, f.hash_name)
    if actual != f.checksum:
        part.unlink()
        raise BadInputError(f"{dest.name}: checksum mismatch ({f.hash_name} {actual}, the record lists {f.checksum}); "
                            f"the file was deleted. Run the command again to download it afresh.")
    os.replace(part, dest)
    return dest


def _get_from(url: str, part: Path, have: int, bar, patience: Patience) -> None:
    """One try, watched: GET (from byte ``have`` on, if any) and append to ``part``."""
    headers = {"Range": f"bytes={have}-"} if have else {}
    with _Watch(patience) as watch:
        try:
            resp = _urlopen(url, headers, patience, watch)
        except urllib.error.HTTPError as e:
            if e.code == 416:  # our partial file is no prefix the server knows: start over
                part.unlink(missing_ok=True)
                raise _Retryable("the server refused to resume; starting over") from None
            raise
        with resp:
            mode = "wb"
            if have and resp.status == 206:
                m = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range", ""))
                if not m or int(m.group(1)) != have:
                    part.unlink(missing_ok=True)
                    raise _Retryable(f"the server resumed at the wrong offset "
                                     f"({_printable(resp.headers.get('Content-Range'), 100)})")
                mode = "ab"
            elif have:
                bar.n = 0  # the server ignored the range and sends the whole file
            with open(part, mode) as out:
                for chunk in _body(resp, watch):
                    out.write(chunk)
                    bar.update(len(chunk))


def resolve_base_url(base_url: str | None) -> str:
    url = (base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL).rstrip("/")
    if not re.match(r"https?://", url):
        raise BadInputError(f"base URL must start with http:// or https://, got {url!r}")
    return url


def fetch_set(name: str, to=None, base_url: str | None = None, retries: int = 5, keep_archives: bool = False,
              stall_timeout: float = STALL_S, deadline: float = DEADLINE_S, echo=print) -> dict:
    """Download, verify and extract the set ``name`` into ``to`` (default ``data/NAME``) in melkit's layout.

    A try that receives fewer than MIN_PROGRESS bytes in ``stall_timeout`` seconds is cut off; failed tries
    are retried (``retries`` in a row at most, with doubling waits); the whole fetch gives up after
    ``deadline`` seconds, keeping what it downloaded for the next run to resume."""
    patience = Patience(retries=retries, stall_s=stall_timeout, deadline_s=deadline, echo=echo)
    source = get_source(name)
    root = Path(to) if to is not None else Path("data") / source.name
    blocker = file_in_the_way(root)
    if blocker is not None:  # refused before the listing, not after it
        raise BadInputError(f"cannot fetch into {root}: {blocker} is a file, not a folder")
    done = read_marker(root, source.name)
    if done is not None:
        echo(f"{root}: {source.title} is already fetched, verified and extracted; nothing to do.")
        _echo_terms(echo)
        return {"path": str(root), "already_complete": True, "files": done.get("files", [])}
    others = other_sets_in(root, source.name)
    if others:
        raise BadInputError(f"{root} already holds the data set {', '.join(others)}; fetch each set into its own "
                            f"directory (--to)")
    base = resolve_base_url(base_url)
    echo(f"listing the files of {DOI} at {base}")
    chosen = select_files(source, list_files(base, patience))
    for _, f in chosen:
        if not f.hash_name or not f.checksum:
            raise BadInputError(f"the record lists no usable checksum for {_printable(f.name, 100)}; refusing an "
                                f"unverifiable download")
    writable_dir(root)  # only now: a failed listing leaves no empty directory behind
    # Under the folder's lock: a second fetch into it exits 2 instead of appending to the same .part files,
    # and the temp files a killed fetch left beside metadata.csv and the marker are this one's to remove.
    with exclusive(root):
        sweep_temps(root, ["metadata.csv", marker_path(root, source.name).name])
        return _fetch_into(root, source, base, chosen, keep_archives, patience, echo)


def _fetch_into(root: Path, source, base: str, chosen: list, keep_archives: bool, patience: Patience,
                echo) -> dict:
    """Download what is missing of ``chosen``, verify, extract and mark ``root`` complete (fetch_set's work
    once the listing is known, under the folder's lock)."""
    downloads = root / "downloads"
    local = {}
    for wanted, f in chosen:
        # Everything waits in downloads/ until the images are extracted: a table under its final name is what
        # melkit's readers take for a data set, so tables move beside the images last (a kill before that
        # leaves no folder that reads as a half data set).
        dest = downloads / wanted.save_as
        # a table an earlier fetch already moved beside the images counts as downloaded too
        places = ([root / wanted.save_as] if wanted.kind != "archive" else []) + [dest]
        done = next((p for p in places if p.exists() and file_digest(p, f.hash_name) == f.checksum), None)
        if done is not None:
            echo(f"{wanted.save_as}: already downloaded and verified")
            local[wanted.save_as] = done
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.unlink(missing_ok=True)
        echo(f"{wanted.save_as}: downloading {_human(f.size)} (file id {f.id})")
        download(download_url(base, f), dest, f, patience)
        echo(f"{wanted.save_as}: {f.hash_name} verified")
        local[wanted.save_as] = dest

    for wanted, _ in chosen:
        if wanted.kind == "archive":
            folder = root / Path(wanted.save_as).stem
            n = safe_extract(local[wanted.save_as], folder)
            echo(f"{wanted.save_as}: extracted {n} files into {folder}")
    for wanted, _ in chosen:  # the tables last, each with one rename
        if wanted.kind != "archive" and local[wanted.save_as] != root / wanted.save_as:
            os.replace(local[wanted.save_as], root / wanted.save_as)
            local[wanted.save_as] = root / wanted.save_as
    if source.ground_truth:
        n = write_metadata_from_ground_truth(root / source.ground_truth, root / "metadata.csv")
        echo(f"wrote {root / 'metadata.csv'} ({n} rows) from {source.ground_truth}")

    files = [{"name": w.save_as, "id": f.id, "size": f.size, "checksum": f"{f.hash_name}:{f.checksum}"}
             for w, f in chosen]
    write_marker(root, source.name, {"source": f"{base} {DOI}", "files": files,
                                     "fetched_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    if not keep_archives:
        for wanted, _ in chosen:
            if wanted.kind == "archive":
                local[wanted.save_as].unlink(missing_ok=True)
        if downloads.is_dir() and not any(downloads.iterdir()):
            downloads.rmdir()
    echo(f"{source.title}: ready in {root} ({source.use.replace('DIR', str(root))})")
    _echo_terms(echo)
    return {"path": str(root), "already_complete": False, "files": files}


def _human(size) -> str:
    if size is None:
        return "(size not listed)"
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000


def _echo_terms(echo) -> None:
    echo(f"Licence: {LICENCE}")
    echo(f"Cite: {CITATION}")
