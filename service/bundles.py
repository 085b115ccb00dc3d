"""Serve rules from a bundle URL: download, poll with ETag, verify, swap atomically, keep the last good.

``covreq serve --bundle URL`` fetches the bundle (engine/loading/bundle.py) once before serving, then polls
the URL every ``poll_seconds`` with ``If-None-Match`` (the last ETag) and ``If-Modified-Since`` (the
last ``Last-Modified``, for servers that send no ETag). A new bundle is downloaded within a time and
size limit (on the bytes sent and, for a gzip ``Content-Encoding``, on the bytes decoded as they are
decoded; stacked or unknown encodings are refused, and redirects are followed without reading their
bodies), verified before anything is written (its signature when a public key is configured, its
digest always), unpacked to a fresh folder and loaded off to the side; only then is it swapped in.
Any failure (network, HTTP status, a slow server, a damaged, unsigned or badly signed bundle, a disk
that cannot hold it, rules that do not load, a bug) keeps the last good rule set serving, is
reported as a refused reload (``/readyz`` degraded, the ``reload-failed`` log line,
``covreq_reload_failures_total{source="bundle"}``) and counted by kind
(``covreq_bundle_poll_failures_total{reason}``), and the next poll waits longer. A reload
(``POST /admin/reload``, SIGHUP) fetches the bundle again: an unpacked folder is never trusted.
What ``/readyz`` and the logs show of the URL has no user, password or query. The operator's
headers (``Authorization`` for a private object store; their file is read again for each request,
so a rotated token is used from the next poll) go only to the URL's own origin (a redirect
elsewhere drops them) and are never shown.
"""
from __future__ import annotations

import functools
import logging
import re
from email.utils import parsedate_to_datetime
import shutil
import tempfile
import threading
import time
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import urlsplit, urlunsplit

import httpx

from engine.loading.bundle import BundleError, Opened, unpack
from engine.loading.yamlsource import YamlError, load_yaml
from service import content_coding
from service.holder import ReloadFailure, RuleSetHolder
from service.settings import Settings

log = logging.getLogger("covreq.bundle")

#: Most bytes of one bundle download, as sent and once its Content-Encoding is decoded.
MAX_DOWNLOAD_BYTES = 256 * 1024 * 1024
#: Most redirects followed to reach the bundle.
MAX_REDIRECTS = 5
#: After each failed poll in a row the wait before the next doubles, up to this many poll intervals.
MAX_BACKOFF = 8
_CHUNK = 64 * 1024
_UNASKED_304 = "HTTP 304 to a request that named no ETag or Last-Modified"
#: An ETag that is kept and sent back: visible ASCII, as HTTP has it (another is ignored, and the
#: bundle is downloaded whole at each poll, as from a server that sends none).
_ETAG = re.compile(r"[!-~]{1,256}")
#: A header name (an HTTP token) and value (printable ASCII, no line breaks) the operator may give.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}")
_HEADER_VALUE = re.compile(r"[\t -~]{0,8192}")
#: Headers covreq sets itself for a bundle request: an operator's header may not replace them.
_OWN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "te", "upgrade", "expect",
                          "accept-encoding", "if-none-match", "if-modified-since", "range", "if-range"})


class DownloadError(BundleError):
    """The URL gave no bundle: the network, an HTTP status, the time, the size or the encoding."""


class UnpackError(BundleError):
    """A verified bundle could not be written to disk (or read back)."""


def public_url(url: str) -> str:
    """``url`` without user, password, query and fragment (a signed URL's secrets): what is shown."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def _decoded(coding: str, raw: Iterable[bytes]) -> Iterator[bytes]:
    """A body as its ``Content-Encoding`` says, none or gzip once, decoded as it comes, at most
    64 KiB a step (service/content_coding.py); DownloadError for any other coding, or damaged data."""
    try:
        decompressor = content_coding.decoder([coding], ("gzip", "x-gzip"))
        if decompressor is None:
            yield from raw
            return
        for data in raw:
            yield from content_coding.inflate(decompressor, data, _CHUNK)
        content_coding.finish(decompressor)
    except content_coding.CodingError as err:
        raise DownloadError(f"Content-Encoding {coding[:64]!r}: {err}; a bundle is sent as it is, or gzip'd once") \
            from None


def operator_headers(settings: Settings) -> dict[str, str]:
    """The headers to send with each bundle request: ``bundle_headers_file`` (a YAML or JSON mapping
    of header: value) and ``bundle_authorization``. Raises :class:`BundleError` naming the file and
    header, never a value (they are secrets)."""
    headers: dict[str, str] = {}
    path = settings.bundle_headers_file
    if path is not None:
        try:
            data = load_yaml(path.read_text(encoding="utf-8"))[0]
        except (OSError, UnicodeDecodeError) as err:
            raise BundleError(f"cannot read the bundle headers file {path}: "
                              f"{getattr(err, 'strerror', None) or 'not UTF-8 text'}") from None
        except YamlError as err:  # its message may quote the file: not shown
            raise BundleError(f"{path}:{err.line}:{err.column}: the bundle headers file is not valid YAML or JSON") from None
        if not isinstance(data, dict):
            raise BundleError(f"{path}: the bundle headers file must be a mapping of header: value")
        headers.update(data)
    if settings.bundle_authorization:
        if any(str(name).lower() == "authorization" for name in headers):
            raise BundleError(f"Authorization is given twice: in {path} and in COVREQ_BUNDLE_AUTHORIZATION")
        headers["Authorization"] = settings.bundle_authorization
    for name, value in headers.items():
        where = f"bundle header {str(name)[:128]!r}"
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise BundleError(f"{where}: not a header name")
        if name.lower() in _OWN_HEADERS:
            raise BundleError(f"{where}: covreq sets this header itself")
        if not isinstance(value, (str, int)) or isinstance(value, bool) or not _HEADER_VALUE.fullmatch(str(value)):
            raise BundleError(f"{where}: the value must be printable ASCII text on one line (not shown here)")
    return {name: str(value) for name, value in headers.items()}


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port


@dataclass(frozen=True)
class Version:
    """What the server said of a bundle's version: its ETag and ``Last-Modified`` (each kept only when
    well-formed), sent back as ``If-None-Match`` and ``If-Modified-Since``."""

    etag: str | None = None
    modified: str | None = None

    @classmethod
    def of(cls, response: httpx.Response) -> Version:
        """The version a 200 response names."""
        etag, modified = response.headers.get("etag"), response.headers.get("last-modified")
        try:
            if modified is not None and (not _ETAG.fullmatch(modified.replace(" ", "")) or
                                         parsedate_to_datetime(modified).tzinfo is None):
                modified = None
        except (TypeError, ValueError):
            modified = None
        return cls(etag if etag and _ETAG.fullmatch(etag) else None, modified)

    def conditions(self) -> dict[str, str]:
        """The conditional request headers: empty when the server named no version."""
        return {**({"If-None-Match": self.etag} if self.etag else {}),
                **({"If-Modified-Since": self.modified} if self.modified else {})}


@dataclass(frozen=True)
class Fetched:
    """A bundle downloaded, verified and unpacked, not yet in service."""

    folder: Path
    opened: Opened
    version: Version

    @property
    def etag(self) -> str | None:
        return self.version.etag


class BundleSource:
    """One bundle URL and the bundle from it in service (see the module's docstring)."""

    def __init__(self, url: str, folder: Path, public_pem: bytes | None = None, poll_seconds: float = 30.0,
                 timeout_seconds: float = 30.0, max_bytes: int = MAX_DOWNLOAD_BYTES,
                 headers: Callable[[], dict[str, str]] = dict) -> None:
        self.url, self.public_url, self.public_pem = url, public_url(url), public_pem
        self._headers = headers  # the operator's, read for each request (a rotated token): secrets, never shown
        self.poll_seconds, self.timeout_seconds, self.max_bytes = poll_seconds, timeout_seconds, max_bytes
        self.folder = folder
        self.owns_folder = False  # a temporary folder made for this source is removed by stop()
        self.serving: Fetched | None = None
        self.checked_at: datetime | None = None
        self.failures = 0  # polls failed in a row
        self._seen = Version()  # the last bundle judged on what it holds, good or refused
        self._lock = threading.Lock()  # one poll or reload at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> BundleSource:
        """The source ``settings.bundle_url`` names, with its key, timings and folder."""
        if not str(settings.bundle_url).startswith(("http://", "https://")):
            raise BundleError(f"the bundle URL must start with http:// or https://, not "
                              f"{public_url(str(settings.bundle_url))!r}")
        if min(settings.bundle_poll_seconds, settings.bundle_timeout_seconds) <= 0:
            raise BundleError("the bundle poll interval and download timeout must be positive numbers of seconds")
        try:
            public_pem = settings.bundle_public_key.read_bytes() if settings.bundle_public_key else None
        except OSError as err:
            raise BundleError(f"cannot read the bundle public key {settings.bundle_public_key}: {err}") from None
        operator_headers(settings)  # unusable headers stop the start
        source = cls(settings.bundle_url, settings.bundle_dir or Path(tempfile.mkdtemp(prefix="covreq-bundles-")),
                     public_pem, settings.bundle_poll_seconds, settings.bundle_timeout_seconds,
                     headers=functools.partial(operator_headers, settings))
        source.owns_folder = settings.bundle_dir is None
        return source

    def first(self) -> Path:
        """Fetch the bundle to serve at start; raises :class:`BundleError` when that fails."""
        fetched = self._fetch(Version())
        if fetched is None:
            raise BundleError(f"{self.public_url}: {_UNASKED_304}")
        self.serving = fetched
        return fetched.folder

    def _download(self, seen: Version) -> tuple[bytes, Version] | None:
        """The bundle's bytes and version, or None when the server says it has not changed since ``seen``."""
        deadline = time.monotonic() + self.timeout_seconds
        try:
            own = self._headers()
        except BundleError as err:  # the headers file, changed since the start
            raise DownloadError(str(err)) from None
        headers = {**own, "Accept-Encoding": "identity", **seen.conditions()}
        try:
            with httpx.Client(timeout=self.timeout_seconds, headers=headers) as client:
                request = client.build_request("GET", self.url)
                home = _origin(request.url)
                for _ in range(MAX_REDIRECTS + 1):
                    with closing(client.send(request, stream=True)) as response:  # a redirect's body is never read
                        if response.next_request is None:
                            return self._body(response, deadline)
                        request = response.next_request
                    if _origin(request.url) != home:  # the operator's headers go to the URL's origin only
                        for name in own:
                            request.headers.pop(name, None)
                raise DownloadError(f"more than {MAX_REDIRECTS} redirects")
        except httpx.HTTPError as err:
            raise DownloadError(f"{type(err).__name__}: {err or 'no detail'}") from None

    def _body(self, response: httpx.Response, deadline: float) -> tuple[bytes, Version] | None:
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
        for piece in _decoded(response.headers.get("content-encoding", ""), sent()):
            body += piece
            if len(body) > self.max_bytes:
                raise too_large
        return bytes(body), Version.of(response)

    def _fetch(self, seen: Version) -> Fetched | None:
        """Download and unpack a bundle changed since ``seen`` into a fresh folder; None when
        unchanged. Errors name the URL as it may be shown."""
        try:
            return self._fetch_unnamed(seen)
        except BundleError as err:
            raise type(err)(f"{self.public_url}: {err}") from None

    def _fetch_unnamed(self, seen: Version) -> Fetched | None:
        try:
            downloaded = self._download(seen)
        finally:
            self.checked_at = datetime.now(timezone.utc)
        if downloaded is None:
            return None
        data, version = downloaded
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            target = Path(tempfile.mkdtemp(prefix="bundle-", dir=self.folder))
        except OSError as err:
            raise UnpackError(f"E-io: no folder for the bundle: {err.strerror or type(err).__name__}") from None
        try:
            opened = unpack(data, target, self.public_pem)
        except OSError as err:  # the disk, not the bundle: the same ETag is tried again
            shutil.rmtree(target, ignore_errors=True)
            raise UnpackError(f"E-io: the bundle could not be unpacked: {err.strerror or type(err).__name__}") from None
        except BaseException as err:
            shutil.rmtree(target, ignore_errors=True)
            if isinstance(err, BundleError):
                self._seen = version  # refused for what it holds: not fetched again while its version stays
            raise
        self._seen = version
        return Fetched(target, opened, version)

    def _update(self, holder: RuleSetHolder, seen: Version, force: bool = False) -> ReloadFailure | None:
        """Fetch (if changed since ``seen``) and put a new bundle in service, or the same one again
        when ``force``; the failure, or None."""
        try:
            fetched = self._fetch(seen)
        except BundleError as err:
            kind = "download" if isinstance(err, DownloadError) else "unpack" if isinstance(err, UnpackError) \
                else "refused"
            return self._refuse(holder, kind, str(err))
        if fetched is None and not seen.conditions():
            return self._refuse(holder, "download", f"{self.public_url}: {_UNASKED_304}")
        if fetched is None:
            if self.serving and self._seen == self.serving.version:
                holder.settled()  # what the URL serves is in service: an earlier failure is over
            return None
        serving, manifest = self.serving, fetched.opened.manifest
        if serving and manifest.digest == serving.opened.manifest.digest and not force:
            shutil.rmtree(fetched.folder, ignore_errors=True)
            self.serving = Fetched(serving.folder, serving.opened, fetched.version)
            holder.settled()
            return None
        failure = holder.reload(str(fetched.folder), "bundle", expected=manifest.ruleset)
        if failure is not None:
            shutil.rmtree(fetched.folder, ignore_errors=True)
            holder.metrics.bundle_poll_failed("rules")
            return failure
        self.serving = fetched
        if serving:
            shutil.rmtree(serving.folder, ignore_errors=True)
        log.info("bundle in service", extra={"event": "bundle", "digest": manifest.digest, "etag": fetched.etag,
                                             "last_modified": fetched.version.modified,
                                             "verified": fetched.opened.verified})
        return None

    def _refuse(self, holder: RuleSetHolder, kind: str, problem: str) -> ReloadFailure:
        holder.metrics.bundle_poll_failed(kind)
        return holder.refuse([problem], "bundle")

    def _guarded(self, holder: RuleSetHolder, seen: Version, force: bool) -> ReloadFailure | None:
        """:meth:`_update`, one at a time, that never raises: a bug is logged with its traceback and
        reported without its message; failures in a row are counted for the back-off."""
        with self._lock:
            try:
                failure = self._update(holder, seen, force)
            except Exception as err:  # noqa: BLE001 - the poller outlives every error
                log.exception("bundle poll crashed", extra={"event": "bundle-poll-crashed", "url": self.public_url})
                failure = self._refuse(holder, "internal", f"{self.public_url}: E-internal: the bundle poll failed "
                                                           f"({type(err).__name__}); the log has the traceback")
            self.failures = self.failures + 1 if failure else 0
            return failure

    def poll(self, holder: RuleSetHolder) -> None:
        """Check the URL once; put a new, good bundle in service, or report why not. Never raises."""
        self._guarded(holder, self._seen, force=False)

    def reload(self, holder: RuleSetHolder) -> ReloadFailure | None:
        """Fetch the bundle again, whatever its ETag, verify it, and put it in service in a fresh
        folder (``POST /admin/reload``, SIGHUP): the folder in service may have been changed."""
        return self._guarded(holder, Version(), force=True)

    def next_wait(self) -> float:
        """Seconds until the next poll: the interval, doubled for each failed poll in a row up to
        :data:`MAX_BACKOFF` intervals."""
        return self.poll_seconds * min(2 ** min(self.failures, 16), MAX_BACKOFF)

    def start(self, holder: RuleSetHolder) -> None:
        """Poll in a background thread until :meth:`stop`."""
        def loop() -> None:
            while not self._stop.wait(self.next_wait()):
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
        return {"url": self.public_url, "digest": serving.opened.manifest.digest if serving else None,
                "verified": serving.opened.verified if serving else False, "etag": serving.etag if serving else None,
                "last_modified": serving.version.modified if serving else None,
                "checked_at": self.checked_at.isoformat(timespec="seconds") if self.checked_at else None}
