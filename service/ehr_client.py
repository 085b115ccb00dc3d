"""An EHR's FHIR server, read over R4 REST with the bearer token a CDS Hooks call granted.

Reads and searches go only to the base URL the call named (``fhirServer``): paths are built from
checked resource types and ids, redirects are not followed, and next-page links are not read.
Each response is bounded in time and size. Failures are ``EhrError``; a resource the server does
not have (404, 410) is ``None``, which is an answer, not a failure.
"""
from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx

from service.fhir.values import member, reference_key

#: a FHIR resource type and a FHIR id (R4 datatypes: id is [A-Za-z0-9\-\.]{1,64}), matched whole
#: (``fullmatch``: ``$`` would let a trailing newline through) and never a dot segment (``.``,
#: ``..``), which a URL resolves to the type's search or the server's base
_KEY = re.compile(r"(?P<type>[A-Z][A-Za-z]{1,63})/(?!\.\.?\Z)(?P<id>[A-Za-z0-9\-.]{1,64})")
_ABSENT = {404, 410}


class EhrError(Exception):
    """A query the EHR did not answer usably: what was asked and why it failed."""


@dataclass(frozen=True)
class EhrLimits:
    """Bounds on the queries of one hook call."""

    timeout: float = 3.0        # seconds per query (connect, read)
    max_bytes: int = 2_000_000  # per response body
    page_size: int = 50         # ``_count`` of a search; further pages are not read
    max_queries: int = 100      # reads per hook call; references beyond stay unread


class EhrClient:
    """Reads from one FHIR server with one bearer token; use as ``async with``."""

    def __init__(self, base_url: str, access_token: str, limits: EhrLimits,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base_url, self.limits = base_url.rstrip("/"), limits
        self._http = httpx.AsyncClient(
            base_url=self.base_url + "/", transport=transport, follow_redirects=False, trust_env=False,
            timeout=httpx.Timeout(limits.timeout),
            headers={"Authorization": f"Bearer {access_token}", "Accept": "application/fhir+json"})

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
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > self.limits.max_bytes:
                        raise EhrError(f"{what}: the response is larger than {self.limits.max_bytes} bytes")
        except httpx.TimeoutException as err:
            raise EhrError(f"{what}: no answer within {self.limits.timeout} s") from err
        except httpx.HTTPError as err:
            raise EhrError(f"{what}: {type(err).__name__}") from err
        try:
            resource = json.loads(body)
        except ValueError as err:
            raise EhrError(f"{what}: the response is not JSON") from err
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            raise EhrError(f"{what}: the response is not a FHIR resource")
        return resource
