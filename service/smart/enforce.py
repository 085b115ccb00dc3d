"""Scopes enforced on ``/fhir`` for callers with a SMART access token: each request needs one
permission (a letter of ``cruds``) on one resource type, and a token whose scopes do not grant it
gets 403 with ``error="insufficient_scope"``. Callers authenticated otherwise (a CDS Hooks JWT, or
nobody while authentication is off) are not limited here.

- ``GET /fhir/<Type>`` (search) needs ``s``; ``GET /fhir/<Type>/<id>`` needs ``r``; create, update
  and delete need ``c``, ``u``, ``d``.
- Operations need what :data:`OPERATIONS` says. ``$questionnaire-package`` and ``$next-question``
  are invoked on Questionnaire, hand out forms and store nothing on the server (covreq keeps no
  state between calls): they read forms, so they need ``r`` on Questionnaire
  (``system/Questionnaire.read`` or ``system/Questionnaire.rs``). PAS ``Claim/$submit`` stores a
  request, so it needs ``c`` on Claim (``system/Claim.write``, ``system/Claim.c``); ``Claim/$inquire``
  reads one back, ``r`` on Claim. An operation not listed is refused.
"""
from __future__ import annotations

import re
from typing import Callable

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from service.dtr.catalogue import PREFIX
from service.smart import PUBLIC_PATHS
from service.smart.scopes import permits
from service.smart.tokens import SmartCaller

#: Operation name: (the resource type, the permission) its caller needs.
OPERATIONS = {
    "questionnaire-package": ("Questionnaire", "r"),
    "next-question": ("Questionnaire", "r"),
    "log-questionnaire-errors": ("Questionnaire", "r"),
    "expand": ("ValueSet", "r"),
    "status": ("Subscription", "r"),  # R4 Subscriptions Backport (service/pas/subscription_routes.py)
    "submit": ("Claim", "c"),  # PAS: a prior-authorization request is created (service/pas/)
    "inquire": ("Claim", "r"),  # PAS: a request's response is read back
}
#: What a plain REST interaction needs: (method, whether an id is named) -> permission.
_INTERACTIONS = {("GET", False): "s", ("HEAD", False): "s", ("POST", False): "c", ("GET", True): "r",
                 ("HEAD", True): "r", ("PUT", True): "u", ("PATCH", True): "u", ("DELETE", True): "d"}
_TYPE = re.compile(r"[A-Z][A-Za-z]{1,63}")
_UNOPENED = {PREFIX + "/metadata", PREFIX, PREFIX + "/"} | PUBLIC_PATHS


def needed(method: str, path: str) -> tuple[str, str] | None:
    """The (resource type, permission) a request needs, ``("", "")`` when no scope can grant it, or
    None for the open paths (``/fhir/metadata``, discovery, the token endpoint)."""
    if path in _UNOPENED:
        return None
    segments = path[len(PREFIX):].strip("/").split("/")
    if segments[-1].startswith("$"):
        return OPERATIONS.get(segments[-1][1:], ("", ""))
    if not _TYPE.fullmatch(segments[0]):
        return ("", "")
    if segments[1:2] == ["_search"]:
        return (segments[0], "s")
    permission = _INTERACTIONS.get((method.upper(), len(segments) > 1))
    return (segments[0], permission) if permission else ("", "")


class ScopeCheck:
    """ASGI middleware, inside :class:`service.auth.Authenticate`: a SMART caller's request its
    scopes do not grant gets ``refuse(path, 403, message)`` with an ``insufficient_scope`` challenge."""

    def __init__(self, app: ASGIApp, refuse: Callable[[str, int, str], Response]) -> None:
        self.app, self.refuse = app, refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        caller = scope.get("state", {}).get("caller") if scope["type"] == "http" else None
        need = needed(scope["method"], scope["path"]) if isinstance(caller, SmartCaller) else None
        if need is None or permits(caller.granted(), *need):
            await self.app(scope, receive, send)
            return
        resource, permission = need
        if resource:
            example = f"system/{resource}.{'read' if permission in 'rs' else permission}"
            message = (f"the access token's scopes ({' '.join(caller.scopes)}) do not grant this request: "
                       f"it needs '{permission}' on {resource}, e.g. {example}")
            wanted = f', scope="system/{resource}.{permission}"'
        else:
            message, wanted = f"no SMART scope grants {scope['method']} {scope['path'][:80]}", ""
        response = self.refuse(scope["path"], 403, message)
        response.headers["WWW-Authenticate"] = f'Bearer realm="covreq", error="insufficient_scope"{wanted}'
        await response(scope, receive, send)
