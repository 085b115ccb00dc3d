"""The generated forms of one rule set under one canonical base, built when first asked for."""
from __future__ import annotations

import datetime as dt
import threading
import weakref
from typing import Any, Mapping

from fastapi import Request

import engine
from engine.policy import Policy
from service.dtr.questionnaire import Form, build_form, questionnaire_url, resource_id

#: Where the FHIR endpoints live.
PREFIX = "/fhir"
#: Public bases of ``/fhir`` worked out from requests, at most :data:`_BASES_KEPT` of them.
_bases: dict[tuple[Any, ...], str] = {}
_BASES_KEPT = 1024


class Catalogue:
    """Forms of the policy versions of ``ruleset``, with canonicals under ``base``."""

    def __init__(self, ruleset: engine.RuleSet, base: str) -> None:
        self.base = base
        self._versions: dict[str, list[Policy]] = {}
        for policy in ruleset.policy_versions():
            self._versions.setdefault(policy.id, []).append(policy)
        self._ids: dict[str, Policy] | None = None  # by resource id, built on the first read by id
        self._forms: dict[int, Form] = {}
        self._canonicals: dict[tuple[str, str | None], str | None] = {}
        self._lock = threading.Lock()

    def form(self, policy: Policy) -> Form:
        """The form of one policy version of this rule set."""
        found = self._forms.get(id(policy))
        if found is None:
            found = build_form(self.base, policy)
            with self._lock:
                found = self._forms.setdefault(id(policy), found)
        return found

    def version(self, policy_id: str, version: str | None = None) -> Policy | None:
        """One version of a policy; without ``version`` the one in force today, else the latest."""
        versions = self._versions.get(policy_id, [])
        if version is not None:
            return next((p for p in versions if p.version == version), None)
        today = dt.date.today()
        current = [p for p in versions if p.in_force(today)] or versions
        return max(current, key=lambda p: p.effective, default=None)

    def by_canonical(self, canonical: str) -> Form | None:
        """The form named by ``url`` or ``url|version``, or None when no policy version matches."""
        url, _, version = canonical.partition("|")
        prefix = questionnaire_url(self.base, "")
        if not url.startswith(prefix):
            return None
        policy = self.version(url[len(prefix):], version or None)
        return self.form(policy) if policy else None

    def by_id(self, resource: str) -> Form | None:
        """The form with a resource id (``policy.version``), or the current version of a policy id."""
        if self._ids is None:
            self._ids = {resource_id(p.id, p.version): p for versions in self._versions.values() for p in versions}
        policy = self._ids.get(resource) or self.version(resource)
        return self.form(policy) if policy else None

    def search(self, url: str | None, version: str | None) -> list[Form]:
        """Forms whose url (and version, when given) match; every policy's current form without a url."""
        if url is None:
            ids: list[str] = sorted(self._versions)
            return [self.form(p) for p in (self.version(i) for i in ids) if p is not None]
        if "|" in url and version is None:
            url, version = url.split("|", 1)
        prefix = questionnaire_url(self.base, "")
        versions = self._versions.get(url[len(prefix):], []) if url.startswith(prefix) else []
        return [self.form(p) for p in versions if version is None or p.version == version]

    def find(self, policy_summary: dict[str, Any]) -> Form | None:
        """The form of the policy version a decision cites (``{"id", "version", ...}``)."""
        policy = self.version(policy_summary["id"], policy_summary.get("version"))
        return self.form(policy) if policy else None

    def canonical(self, policy_summary: dict[str, Any]) -> str | None:
        """``url|version`` of the form of the policy version a decision cites, without building it."""
        key = (policy_summary["id"], policy_summary.get("version"))
        if key not in self._canonicals:
            policy = self.version(*key)
            self._canonicals[key] = f"{questionnaire_url(self.base, policy.id)}|{policy.version}" if policy else None
        return self._canonicals[key]

    def link(self, answer: dict[str, Any]) -> dict[str, Any]:
        """A v1 answer whose decisions that need a form name it in ``questionnaire`` (beside any
        questionnaire a policy names itself)."""
        for decision in answer["decisions"]:
            if needs_form(decision):
                found = [c for c in map(self.canonical, decision["policies"]) if c]
                if found:
                    decision["questionnaire"] = sorted({*decision.get("questionnaire", []), *found})
        return answer


def needs_form(decision: Mapping[str, Any]) -> bool:
    """Whether a decision owes documentation or waits for facts (so a form has something to ask)."""
    conditional = "conditional" in (decision["pa_needed"], decision["covered"])
    return bool(decision.get("documentation")) or (conditional and bool(decision.get("info_needed")))


def fhir_base(request: Request) -> str:
    """The public base of ``/fhir``: ``COVREQ_FHIR_BASE`` when set, else this request's own,
    remembered by what decides it (scheme, server, ``Host`` header, root path): working out a base
    URL costs starlette more than the rest of linking a v1 answer's forms."""
    configured = request.app.state.settings.fhir_base
    if configured:
        return configured.rstrip("/")
    scope = request.scope
    server = scope.get("server")
    key = (scope.get("scheme", "http"), tuple(server) if server else None,
           next((value for name, value in scope["headers"] if name == b"host"), None),
           scope.get("app_root_path", scope.get("root_path", "")))
    found = _bases.get(key)
    if found is None:
        if len(_bases) >= _BASES_KEPT:  # many Host headers: start again rather than grow
            _bases.clear()
        found = _bases[key] = str(request.base_url).rstrip("/") + PREFIX
    return found


def forms_of(request: Request) -> Catalogue:
    """The forms of the rule set in service now, under this request's canonical base."""
    return catalogue(request.app.state.holder.current, fhir_base(request))


_catalogues: weakref.WeakKeyDictionary[engine.RuleSet, dict[str, Catalogue]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def catalogue(ruleset: engine.RuleSet, base: str) -> Catalogue:
    """The catalogue of ``ruleset`` under ``base``, kept as long as the rule set lives."""
    found = _catalogues.get(ruleset, {}).get(base)  # the usual case, without taking the lock
    if found is not None:
        return found
    with _lock:
        per_base = _catalogues.setdefault(ruleset, {})
        found = per_base.get(base)
        if found is None:
            found = per_base[base] = Catalogue(ruleset, base)
        return found
