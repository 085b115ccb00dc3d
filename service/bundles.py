"""Serve rules from a bundle URL: download, poll with ETag, verify, swap atomically, keep the last good.

``covreq serve --bundle URL`` fetches the bundle (engine/bundle.py) once before serving, then polls
the URL every ``poll_seconds`` with ``If-None-Match``. A new bundle is downloaded within a time and
size limit (on the bytes sent and, for a gzip ``Content-Encoding``, on the bytes decoded as they are
decoded; stacked or unknown encodings are refused, and redirects are followed without reading their
bodies), verified (its signature when a public key is configured, its digest always), unpacked to
a fresh folder and loaded off to the side; only then is it swapped in. Any failure (network, HTTP
status, a slow server, a damaged, unsigned or badly signed bundle, rules that do not load) keeps the
last good rule set serving and is reported as a refused reload (``/readyz`` degraded, the
``reload-failed`` log line, ``covreq_reload_failures_total{source="bundle"}``).
"""
from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
import zlib
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import httpx

from engine.bundle import BundleError, Opened, unpack
from service.holder import RuleSetHolder
from service.settings import Settings

log = logging.getLogger("covreq.bundle")

#: Most bytes of one bundle download, as sent and once its Content-Encoding is decoded.
MAX_DOWNLOAD_BYTES = 256 * 1024 * 1024
#: Most redirects followed to reach the bundle.
MAX_REDIRECTS = 5
_CHUNK = 64 * 1024


class DownloadError(BundleError):
    """The URL gave no bundle: the network, an HTTP status, the time, the size or the encoding."""


def _gunzip(raw: Iterable[bytes]) -> Iterator[bytes]:
    """A ``Content-Encoding: gzip`` body decoded as it comes, never more than 64 KiB at a time."""
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        for data in raw:
            while True:
                piece = decoder.decompress(data, _CHUNK)
                data = decoder.unconsumed_tail
                yield piece
                if not data and len(piece) < _CHUNK:  # all the output of this input is out
                    break
    except zlib.error as err:
        raise DownloadError(f"the gzip Content-Encoding is damaged: {err}") from None
    if not decoder.eof or decoder.unused_data:
        raise DownloadError("the gzip Content-Encoding is damaged: it ends early or has data after its end")


def _decoding(value: str) -> Callable[[Iterable[bytes]], Iterator[bytes]]:
    """The decoder of a ``Content-Encoding`` header: none, or one gzip; anything else is refused."""
    codings = [c for c in (c.strip().lower() for c in value.split(",")) if c and c != "identity"]
    if not codings:
        return iter
    if codings in (["gzip"], ["x-gzip"]):
        return _gunzip
    raise DownloadError(f"Content-Encoding {value[:64]!r} refused: a bundle is sent as it is, or gzip'd once")


@dataclass(frozen=True)
class Fetched:
    """A bundle downloaded, verified and unpacked, not yet in service."""

    folder: Path
    opened: Opened
    etag: str | None


class BundleSource:
    """One bundle URL and the bundle from it in service (see the module's docstring)."""

    def __init__(self, url: str, folder: Path, public_pem: bytes | None = None, poll_seconds: float = 30.0,
                 timeout_seconds: float = 30.0, max_bytes: int = MAX_DOWNLOAD_BYTES) -> None:
        self.url, self.public_pem = url, public_pem
        self.poll_seconds, self.timeout_seconds, self.max_bytes = poll_seconds, timeout_seconds, max_bytes
        self.folder = folder
        self.owns_folder = False  # a temporary folder made for this source is removed by stop()
        self.serving: Fetched | None = None
        self.checked_at: datetime | None = None
        self._seen_etag: str | None = None  # the last bundle downloaded whole, good or refused
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> BundleSource:
        """The source ``settings.bundle_url`` names, with its key, timings and folder."""
        if not str(settings.bundle_url).startswith(("http://", "https://")):
            raise BundleError(f"the bundle URL must start with http:// or https://, not {settings.bundle_url!r}")
        if min(settings.bundle_poll_seconds, settings.bundle_timeout_seconds) <= 0:
            raise BundleError("the bundle poll interval and download timeout must be positive numbers of seconds")
        try:
            public_pem = settings.bundle_public_key.read_bytes() if settings.bundle_public_key else None
        except OSError as err:
            raise BundleError(f"cannot read the bundle public key {settings.bundle_public_key}: {err}") from None
        source = cls(settings.bundle_url, settings.bundle_dir or Path(tempfile.mkdtemp(prefix="covreq-bundles-")),
                     public_pem, settings.bundle_poll_seconds, settings.bundle_timeout_seconds)
        source.owns_folder = settings.bundle_dir is None
        return source

    def first(self) -> Path:
        """Fetch the bundle to serve at start; raises :class:`BundleError` when that fails."""
        fetched = self._fetch(etag=None)
        if fetched is None:
            raise BundleError(f"{self.url}: HTTP 304 to a request that named no ETag")
        self.serving = fetched
        return fetched.folder

    def _download(self, etag: str | None) -> tuple[bytes, str | None] | None:
        """The bundle's bytes and ETag, or None when the server says it has not changed."""
        deadline = time.monotonic() + self.timeout_seconds
        headers = {"Accept-Encoding": "identity", **({"If-None-Match": etag} if etag else {})}
        try:
            with httpx.Client(timeout=self.timeout_seconds, headers=headers) as client:
                request = client.build_request("GET", self.url)
                for _ in range(MAX_REDIRECTS + 1):
                    with closing(client.send(request, stream=True)) as response:  # a redirect's body is never read
                        if response.next_request is None:
                            return self._body(response, deadline)
                        request = response.next_request
                raise DownloadError(f"more than {MAX_REDIRECTS} redirects")
        except httpx.HTTPError as err:
            raise DownloadError(f"{type(err).__name__}: {err or 'no detail'}") from None

    def _body(self, response: httpx.Response, deadline: float) -> tuple[bytes, str | None] | None:
        """The body of the final response, decoded as it comes, within the size and time limits."""
        if response.status_code == 304:
            return None
        if response.status_code != 200:
            raise DownloadError(f"HTTP {response.status_code}")
        too_large = DownloadError(f"the bundle is larger than {self.max_bytes} bytes")

        def sent() -> Iterator[bytes]:
            size = 0
            for chunk in response.iter_raw(_CHUNK):
                size += len(chunk)
                if size > self.max_bytes:
                    raise too_large
                if time.monotonic() > deadline:
                    raise DownloadError(f"the download took longer than {self.timeout_seconds:g} s")
                yield chunk

        body = bytearray()
        for piece in _decoding(response.headers.get("content-encoding", ""))(sent()):
            body += piece
            if len(body) > self.max_bytes:
                raise too_large
        return bytes(body), response.headers.get("etag")

    def _fetch(self, etag: str | None) -> Fetched | None:
        """Download and unpack a changed bundle into a fresh folder; None when unchanged."""
        try:
            downloaded = self._download(etag)
        except DownloadError as err:
            raise DownloadError(f"{self.url}: {err}") from None
        self.checked_at = datetime.now(timezone.utc)
        if downloaded is None:
            return None
        data, self._seen_etag = downloaded
        self.folder.mkdir(parents=True, exist_ok=True)
        target = Path(tempfile.mkdtemp(prefix="bundle-", dir=self.folder))
        try:
            return Fetched(target, unpack(data, target, self.public_pem), self._seen_etag)
        except BundleError as err:
            shutil.rmtree(target, ignore_errors=True)
            raise BundleError(f"{self.url}: {err}") from None

    def poll(self, holder: RuleSetHolder) -> None:
        """Check the URL once; put a new, good bundle in service, or report why not."""
        try:
            fetched = self._fetch(self._seen_etag)
        except BundleError as err:
            holder.refuse([str(err)], "bundle")
            return
        if fetched is None:
            if self.serving and self._seen_etag == self.serving.etag:
                holder.settled()  # what the URL serves is in service: an earlier failure is over
            return
        if self.serving and fetched.opened.manifest.digest == self.serving.opened.manifest.digest:
            shutil.rmtree(fetched.folder, ignore_errors=True)
            self.serving = Fetched(self.serving.folder, self.serving.opened, fetched.etag)
            holder.settled()
            return
        if holder.reload(str(fetched.folder), "bundle") is not None:
            shutil.rmtree(fetched.folder, ignore_errors=True)
            return
        previous, self.serving = self.serving, fetched
        if previous:
            shutil.rmtree(previous.folder, ignore_errors=True)
        log.info("bundle in service", extra={"event": "bundle", "digest": fetched.opened.manifest.digest,
                                             "etag": fetched.etag, "verified": fetched.opened.verified})

    def start(self, holder: RuleSetHolder) -> None:
        """Poll in a background thread until :meth:`stop`."""
        def loop() -> None:
            while not self._stop.wait(self.poll_seconds):
                self.poll(holder)
        self._thread = threading.Thread(target=loop, name="covreq-bundle-poll", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling (a poll under way gets a second to finish; the thread dies with the process),
        and remove the temporary folder made for this source."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=1.0)
        if self.owns_folder:
            shutil.rmtree(self.folder, ignore_errors=True)

    def status(self) -> dict[str, Any]:
        """The bundle in service, as ``/readyz`` shows it."""
        serving = self.serving
        return {"url": self.url, "digest": serving.opened.manifest.digest if serving else None,
                "verified": serving.opened.verified if serving else False, "etag": serving.etag if serving else None,
                "checked_at": self.checked_at.isoformat(timespec="seconds") if self.checked_at else None}
