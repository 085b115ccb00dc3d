"""An EHR's FHIR server, read over R4 REST with the bearer token a CDS Hooks call granted.

Reads and searches go only to the base URL the call named (``fhirServer``): paths are built from
checked resource types and ids, redirects are not followed, and next-page links are not read.
Each response is bounded in time and size, and the responses of one call together in size.
Bodies are decoded here, as they arrive, a bounded step at a time: the limits count decoded
bytes, so a compression bomb costs what the limit allows and no more; only one gzip or deflate
layer is taken, and any other content coding is refused. Failures are ``EhrError``; a resource
the server does not have (404, 410) is ``None``, which is an answer, not a failure.
"""
from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx
from starlette.concurrency import run_in_threadpool

from service import content_coding
from service.fhir.values import member, reference_key

#: a FHIR resource type and a FHIR id (R4 datatypes: id is [A-Za-z0-9\-\.]{1,64}), matched whole
#: (``fullmatch``: ``$`` would let a trailing newline through) and never a dot segment (``.``,
#: ``..``), which a URL resolves to the type's search or the server's base
_KEY = re.compile(r"(?P<type>[A-Z][A-Za-z]{1,63})/(?!\.\.?\Z)(?P<id>[A-Za-z0-9\-.]{1,64})")
_ABSENT = {404, 410}
#: most decoded bytes one decompression step writes, so that no step holds the event loop long
DECODE_STEP = 65_536
#: larger bodies are parsed in the threadpool, off the event loop
INLINE_JSON_BYTES = 65_536


class EhrError(Exception):
    """A query the EHR did not answer usably: what was asked and why it failed."""


@dataclass(frozen=True)
class EhrLimits:
    """Bounds on the queries of one hook call."""

    timeout: float = 3.0        # seconds per query (connect, read)
    max_bytes: int = 2_000_000  # per response body
    page_size: int = 50         # ``_count`` of a search; further pages are not read
    max_queries: int = 100      # reads per hook call; references beyond stay unread
    call_bytes: int = 4_000_000  # all the (decoded) responses of one hook call together


class EhrClient:
    """Reads from one FHIR server with one bearer token, for one hook call; use as ``async with``.
    ``held`` counts the decoded bytes of the responses read so far (at most ``limits.call_bytes``)."""

    def __init__(self, base_url: str, access_token: str, limits: EhrLimits,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base_url, self.limits, self.held = base_url.rstrip("/"), limits, 0
        self._http = httpx.AsyncClient(
            base_url=self.base_url + "/", transport=transport, follow_redirects=False, trust_env=False,
            timeout=httpx.Timeout(limits.timeout),
            headers={"Authorization": f"Bearer {access_token}", "Accept": "application/fhir+json",
                     "Accept-Encoding": "gzip, deflate"})

    async def __aenter__(self) -> "EhrClient":
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        trace: TracebackType | None) -> None:
        await self._http.aclose()

    def key_of(self, reference: str) -> str | None:
        """``Type/id`` of a reference, to be read from this server whatever base it was written
        with (as the prefetch is read), or None when it is no plain ``Type/id``."""
        key = reference_key(reference)
        return key if key and _KEY.fullmatch(key) else None

    async def read(self, key: str) -> dict[str, Any] | None:
        """The resource ``Type/id``, or None when the server has none."""
        match = _KEY.fullmatch(key)
        if match is None:
            raise EhrError(f"{key!r} is not a FHIR Type/id")
        resource = await self._get(key, {})
        if resource is not None and (resource.get("resourceType"), resource.get("id")) != match.group("type", "id"):
            raise EhrError(f"GET {key} answered with another resource")
        return resource

    async def search(self, resource_type: str, params: dict[str, str]) -> list[dict[str, Any]]:
        """The matching resources of the first page of a search (a searchset Bundle)."""
        if not re.fullmatch(r"[A-Z][A-Za-z]{1,63}", resource_type):
            raise EhrError(f"{resource_type!r} is not a FHIR resource type")
        bundle = await self._get(resource_type, {**params, "_count": str(self.limits.page_size)})
        if bundle is None or bundle.get("resourceType") != "Bundle":
            raise EhrError(f"GET {resource_type} did not answer with a Bundle")
        entries = bundle.get("entry") if isinstance(bundle.get("entry"), list) else []
        return [e["resource"] for e in entries if isinstance(e, dict) and isinstance(e.get("resource"), dict)
                and e["resource"].get("resourceType") == resource_type
                and member(e.get("search"), "mode") in (None, "match")]

    async def _get(self, path: str, params: dict[str, str]) -> dict[str, Any] | None:
        """The JSON resource at ``path``, within the time limit as a whole (a slow drip too)."""
        try:
            return await asyncio.wait_for(self._fetch(path, params), self.limits.timeout)
        except asyncio.TimeoutError as err:
            raise EhrError(f"GET {path}: no answer within {self.limits.timeout} s") from err

    async def _fetch(self, path: str, params: dict[str, str]) -> dict[str, Any] | None:
        what = f"GET {path}"
        try:
            async with self._http.stream("GET", path, params=params) as response:
                if response.status_code in _ABSENT:
                    return None
                if response.status_code != 200:
                    raise EhrError(f"{what}: HTTP {response.status_code}")
                body = await self._body(what, response)
        except httpx.TimeoutException as err:
            raise EhrError(f"{what}: no answer within {self.limits.timeout} s") from err
        except (httpx.HTTPError, httpx.InvalidURL) as err:
            raise EhrError(f"{what}: {type(err).__name__}") from err
        try:
            resource = json.loads(body) if len(body) <= INLINE_JSON_BYTES else \
                await run_in_threadpool(json.loads, body)
        except (ValueError, RecursionError) as err:
            raise EhrError(f"{what}: the response is not JSON") from err
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            raise EhrError(f"{what}: the response is not a FHIR resource")
        return resource

    async def _body(self, what: str, response: httpx.Response) -> bytearray:
        """The decoded body, counted in ``held`` while and once read; EhrError, and nothing held,
        past ``max_bytes`` (raw or decoded), past the call's ``call_bytes``, for content codings
        other than one layer of gzip or deflate, and for a compressed body cut short or followed
        by more data."""
        body, raw = bytearray(), 0
        try:
            decompressor = content_coding.decoder(response.headers.get_list("content-encoding"))
            async for chunk in response.aiter_raw():
                raw += len(chunk)
                if raw > self.limits.max_bytes:
                    raise EhrError(f"{what}: the response is larger than {self.limits.max_bytes} bytes")
                if decompressor is None:
                    self._keep(what, body, chunk)
                    continue
                for piece in content_coding.inflate(decompressor, chunk, DECODE_STEP):  # a bomb stops at the limit
                    self._keep(what, body, piece)
                    await asyncio.sleep(0)  # let the event loop serve others between steps
            if decompressor is not None:
                content_coding.finish(decompressor)
        except content_coding.CodingError as err:
            self.held -= len(body)
            raise EhrError(f"{what}: {err}") from err
        except BaseException:
            self.held -= len(body)
            raise
        return body

    def _keep(self, what: str, body: bytearray, piece: bytes) -> None:
        """Append ``piece`` to ``body`` and count it, or raise EhrError past either limit."""
        body += piece
        self.held += len(piece)
        if len(body) > self.limits.max_bytes:
            raise EhrError(f"{what}: the response is larger than {self.limits.max_bytes} bytes")
        if self.held > self.limits.call_bytes:
            raise EhrError(f"{what}: the EHR's responses to this call passed {self.limits.call_bytes} bytes "
                           "(COVREQ_EHR_CALL_MAX_BYTES)")
