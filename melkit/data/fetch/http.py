"""The HTTP layer of ``melkit data fetch``: requests bounded in time, retried, and downloads that resume.

Every request is bounded in time (``Patience``). A watchdog thread cuts a try off when it stalls: fewer
than ``MIN_PROGRESS`` bytes in ``stall_s`` seconds, whether the server is silent, drips a byte now and then,
or never finishes its headers. Failed tries are retried with doubling waits, each announced on a line of
its own; the whole fetch, waits included, gives up at its deadline.

A download goes to ``NAME.part`` and is renamed only after its checksum matches, so a file under its final
name is always a verified one. An interrupted download continues with an HTTP range request; each try
starts again from the URL it was given, since a redirect from there may be a signed link that expires. What
a cut-off try received stays in ``NAME.part`` on purpose: the next try, or the next run of the command,
resumes from there. Text a server sends (reason phrases, garbled status lines, header values, file names)
reaches a message only through ``printable``: control characters replaced, at most ``SERVER_TEXT``
characters.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import os
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from melkit.util.errors import BadInputError
from melkit.util.progress import progress_bar

__all__ = ["BACKOFF_S", "DEADLINE_S", "MIN_PROGRESS", "SERVER_TEXT", "STALL_S", "DeadlinePassed", "Patience",
           "Retryable", "Watch", "download", "file_digest", "open_url", "printable", "read_body"]

BACKOFF_S = 2.0  # first wait between tries; doubles each time up to MAX_WAIT_S (tests set 0)
MAX_WAIT_S = 120.0
STALL_S = 60.0  # a try that receives fewer than MIN_PROGRESS bytes in this long is cut off and retried
MIN_PROGRESS = 16 << 10
DEADLINE_S = 6 * 3600.0  # the whole fetch: HAM10000 is ~2.7 GB, i.e. 6 h at ~125 kB/s
SERVER_TEXT = 200  # at most this many characters of what a server sent go into a message
_WATCH_POLL_S = 0.1
_CHUNK = 1 << 20


class Retryable(Exception):
    """A failure another try may get past: no connection, a dropped one, a 5xx, an expired storage link, a stall."""


class DeadlinePassed(Exception):
    """The whole fetch ran out of time during a try."""


def printable(text, limit: int = SERVER_TEXT) -> str:
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
    ``deadline_s``: the whole fetch gives up this long after ``started``; ``echo`` announces each retry;
    ``advice`` ends the message of a request that ran out of tries (what the user can do about it)."""

    retries: int = 5
    stall_s: float = STALL_S
    deadline_s: float = DEADLINE_S
    echo: Callable = print
    advice: str = "Check the network connection."
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
            raise _no_network(what, failures, err, self.advice)
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


class Watch:
    """One try's watchdog: a thread that shuts the try's connections down once fewer than MIN_PROGRESS bytes
    arrived in ``stall_s`` seconds, or the deadline passes, whatever the try is blocked in (headers, body).
    On leaving, such a cut replaces whatever error the try ran into: Retryable for a stall,
    DeadlinePassed for the deadline."""

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
            raise DeadlinePassed(self.reason) from None
        if self.reason:
            raise Retryable(self.reason) from None
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

    def __init__(self, *args, watch: Watch, **kwargs):
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
    def __init__(self, watch: Watch):
        super().__init__()
        self._watch = watch

    def http_open(self, req):
        return self.do_open(functools.partial(_WatchedHTTP, watch=self._watch), req)


class _WatchedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, watch: Watch):
        super().__init__()
        self._watch = watch

    def https_open(self, req):
        return self.do_open(functools.partial(_WatchedHTTPS, watch=self._watch), req, context=self._context)


def _user_agent() -> str:

    try:
        return f"melkit/{version('melkit')}"
    except PackageNotFoundError:
        return "melkit"


def _host(url: str) -> str:
    return printable(urllib.parse.urlsplit(url).netloc or url, 100)


def open_url(url: str, headers, patience: Patience, watch: Watch):
    """Open ``url`` with ``watch`` on its connections; failures sorted: Retryable for transient ones,
    HTTPError (4xx) for the caller to word."""
    req = urllib.request.Request(url, headers={"User-Agent": _user_agent(), **(headers or {})})
    opener = urllib.request.build_opener(_WatchedHTTPHandler(watch), _WatchedHTTPSHandler(watch))
    try:
        return opener.open(req, timeout=patience.socket_timeout())
    except urllib.error.HTTPError as e:
        e.close()
        if e.code in (408, 429) or e.code >= 500:
            raise Retryable(f"HTTP {e.code} {printable(e.reason)} from {_host(e.geturl() or url)}") from None
        if e.geturl() and e.geturl() != url and e.code in (400, 401, 403, 404, 410):
            # Refused by the storage a redirect led to: its signed link expired; the first URL mints a new one.
            raise Retryable(f"HTTP {e.code} from redirected storage {_host(e.geturl())}") from None
        raise
    except http.client.HTTPException as e:  # reached, but what came back is no HTTP answer
        raise Retryable(f"{_host(url)} sent no valid HTTP answer ({type(e).__name__}: {printable(e)})") from None
    except (urllib.error.URLError, OSError) as e:
        raise Retryable(f"cannot reach {_host(url)}: {printable(getattr(e, 'reason', e))}") from None


def read_body(resp, watch: Watch):
    """The body of ``resp`` as it arrives, each piece counted as progress; Retryable if it ends short."""
    announced = resp.headers.get("Content-Length")
    received = 0
    while True:
        try:
            chunk = resp.read1(_CHUNK)  # whatever has arrived: a slow server cannot hide in a long read
        except (http.client.HTTPException, OSError) as e:
            raise Retryable(f"connection lost: {type(e).__name__}: {printable(e)}") from None
        if not chunk:
            break
        received += len(chunk)
        watch.progress(len(chunk))
        yield chunk
    # http.client ends a short body without complaint when the connection drops early.
    if announced and announced.isdigit() and received < int(announced):
        raise Retryable(f"connection closed after {received} of {announced} bytes")


def _no_network(what: str, tries: int, err: Exception, advice: str) -> BadInputError:
    return BadInputError(f"{what} failed after {tries} tr{'y' if tries == 1 else 'ies'}: {err}. {advice}")


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


def download(url: str, dest: Path, f, patience: Patience | None = None) -> Path:
    """Download ``url`` to ``dest`` via ``dest.part``, resuming and retrying; verify the checksum; rename.
    ``f`` says what the file should be: ``size`` (bytes, or None if unknown), ``hash_name`` (hashlib's) and
    ``checksum`` (hex), e.g. a ``dataverse.RemoteFile``.

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
                    raise Retryable(f"the server sent {_size(part)} of {f.size} bytes")
            except Retryable as e:
                # A try that got somewhere is no failure; one that dribbled a few bytes is.
                failures = 0 if _size(part) - have >= MIN_PROGRESS else failures + 1
                last = e
                patience.retry(what, failures, e)
            except DeadlinePassed as e:
                raise patience.too_late(what, e) from None
            except urllib.error.HTTPError as e:
                raise BadInputError(f"{url}: HTTP {e.code} {printable(e.reason)} for {dest.name}") from None
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
    with Watch(patience) as watch:
        try:
            resp = open_url(url, headers, patience, watch)
        except urllib.error.HTTPError as e:
            if e.code == 416:  # our partial file is no prefix the server knows: start over
                part.unlink(missing_ok=True)
                raise Retryable("the server refused to resume; starting over") from None
            raise
        with resp:
            mode = "wb"
            if have and resp.status == 206:
                m = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range", ""))
                if not m or int(m.group(1)) != have:
                    part.unlink(missing_ok=True)
                    raise Retryable(f"the server resumed at the wrong offset "
                                     f"({printable(resp.headers.get('Content-Range'), 100)})")
                mode = "ab"
            elif have:
                bar.n = 0  # the server ignored the range and sends the whole file
            with open(part, mode) as out:
                for chunk in read_body(resp, watch):
                    out.write(chunk)
                    bar.update(len(chunk))
