"""The generated forms of one rule set under one canonical base, built when first asked for."""
from __future__ import annotations

import datetime as dt
import threading
import weakref
from collections import OrderedDict
from typing import Any, Iterable, Mapping

from fastapi import Request

import engine
from engine.policy import Policy
from service.dtr.questionnaire import ADAPTIVE_SUFFIX, Form, adaptive_id, build_form, questionnaire_url, resource_id

#: Where the FHIR endpoints live.
PREFIX = "/fhir"
#: Catalogues kept per rule set, one per public base; past it the oldest is dropped (and built
#: again if its base comes back). Bases come from a closed set (``fhir_base``), so this is a backstop.
MAX_BASES = 16


class Catalogue:
    """Forms of the policy versions of ``ruleset``, with canonicals under ``base``."""

    def __init__(self, ruleset: engine.RuleSet, base: str) -> None:
        self.base = base
        self._versions: dict[str, list[Policy]] = {}
        for policy in ruleset.policy_versions():
            self._versions.setdefault(policy.id, []).append(policy)
        self._ids: dict[str, Policy] | None = None  # by resource id, built on the first read by id
        self._adaptive_ids: dict[str, Policy] = {}  # by the adaptive form's resource id, built with _ids
        self._forms: dict[int, Form] = {}
        self._canonicals: dict[tuple[str, str | None], str | None] = {}
        self._lock = threading.Lock()
        #: per payer, its plans' titles by id (the rule set itself is not kept: catalogues are per rule set)
        self._plans = {payer: {plan: ruleset.plan_title(payer, plan) for plan in sorted(ruleset.plans(payer))}
                       for payer in ruleset.payers()}

    def form(self, policy: Policy) -> Form:
        """The form of one policy version of this rule set."""
        found = self._forms.get(id(policy))
        if found is None:
            found = build_form(self.base, policy, self._plans.get(policy.payer))
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

    def _policy_of(self, url: str) -> tuple[str, bool] | None:
        """(policy id, adaptive?) of a Questionnaire url (without version) under this base, or None."""
        prefix = questionnaire_url(self.base, "")
        if not url.startswith(prefix):
            return None
        name = url[len(prefix):]
        if name in self._versions:
            return name, False
        if name.endswith(ADAPTIVE_SUFFIX) and name[:-len(ADAPTIVE_SUFFIX)] in self._versions:
            return name[:-len(ADAPTIVE_SUFFIX)], True
        return None

    def by_canonical(self, canonical: str) -> Form | None:
        """The form whose standard or adaptive Questionnaire ``url`` or ``url|version`` names, or None."""
        url, _, version = canonical.partition("|")
        named = self._policy_of(url)
        policy = self.version(named[0], version or None) if named else None
        return self.form(policy) if policy else None

    def questionnaire(self, canonical: str) -> dict[str, Any] | None:
        """The standard or adaptive Questionnaire ``url`` or ``url|version`` names, or None."""
        form = self.by_canonical(canonical)
        named = self._policy_of(canonical.partition("|")[0])
        return None if form is None or named is None else form.adaptive if named[1] else form.questionnaire

    def by_id(self, resource: str) -> dict[str, Any] | None:
        """The Questionnaire with a resource id (``policy.version``; ``policy-adaptive.version`` for the
        adaptive form), or the current version of a policy id."""
        form = self.form_by_id(resource)
        if form is not None:
            return form.questionnaire
        adaptive = self._adaptive_ids.get(resource)
        return self.form(adaptive).adaptive if adaptive else None

    def form_by_id(self, resource: str) -> Form | None:
        """The form of the policy version with a resource id (``policy.version``), or of the current
        version of a policy id."""
        if self._ids is None:
            ids = {resource_id(p.id, p.version): p for versions in self._versions.values() for p in versions}
            self._adaptive_ids = {adaptive_id(p.id, p.version): p for p in ids.values()}
            self._ids = ids
        policy = self._ids.get(resource) or self.version(resource)
        return self.form(policy) if policy is not None else None

    def forms(self, policy_id: str | None, version: str | None = None) -> list[Form]:
        """The forms of one policy's versions (only ``version``, when given); without a policy id,
        every policy's current form."""
        if policy_id is None:
            return [self.form(p) for p in (self.version(i) for i in sorted(self._versions)) if p is not None]
        return [self.form(p) for p in self._versions.get(policy_id, []) if version is None or p.version == version]

    def search(self, url: str | None, version: str | None) -> list[dict[str, Any]]:
        """Questionnaires whose url (and version, when given) match; every policy's current standard
        and adaptive form without a url."""
        if url is None:
            return [q for form in self.forms(None) for q in (form.questionnaire, form.adaptive)]
        if "|" in url and version is None:
            url, version = url.split("|", 1)
        named = self._policy_of(url)
        forms = self.forms(named[0], version) if named else []
        return [form.adaptive if named and named[1] else form.questionnaire for form in forms]

    def value_sets(self) -> Iterable[dict[str, Any]]:
        """Every ValueSet of every form of this rule set."""
        for versions in self._versions.values():
            for policy in versions:
                yield from self.form(policy).value_sets

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
    """The public base of ``/fhir``, never taken from a request header the operator did not list:
    ``COVREQ_FHIR_BASE`` when set; else, for a request whose ``Host`` is one of
    ``COVREQ_PUBLIC_HOSTS``, that host under the request's scheme and root path; else
    ``COVREQ_SERVICE_URL`` + ``/fhir``; else the address the connection reached (the listening
    socket's, plain http as covreq serves it, e.g. ``http://127.0.0.1:8000/fhir`` for ``covreq
    serve``). ``X-Forwarded-Host`` and ``Forwarded`` are never read; a listed host's scheme is
    uvicorn's, which takes ``X-Forwarded-Proto`` only from the proxies in ``FORWARDED_ALLOW_IPS``."""
    settings = request.app.state.settings
    if settings.fhir_base:
        return str(settings.fhir_base).rstrip("/")
    scope = request.scope
    root = scope.get("app_root_path", scope.get("root_path", ""))
    if settings.public_hosts:
        host = next((value for name, value in scope["headers"] if name == b"host"), b"").decode("latin-1").lower()
        if host in settings.public_hosts:
            scheme = "https" if scope.get("scheme") == "https" else "http"
            return f"{scheme}://{host}{root}{PREFIX}"
    if settings.service_url:
        return str(settings.service_url).rstrip("/") + PREFIX
    return f"{_reached(scope.get('server'))}{root}{PREFIX}"


def _reached(server: tuple[str, int | None] | None) -> str:
    """The http origin of the local address a connection reached (``localhost`` for a Unix socket)."""
    if not server or server[1] is None:
        return "http://localhost"
    host, port = server
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}" + ("" if port == 80 else f":{port}")


def forms_of(request: Request) -> Catalogue:
    """The forms of the rule set in service now, under this request's canonical base."""
    return catalogue(request.app.state.holder.current, fhir_base(request))


_catalogues: weakref.WeakKeyDictionary[engine.RuleSet, OrderedDict[str, Catalogue]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def catalogue(ruleset: engine.RuleSet, base: str) -> Catalogue:
    """The catalogue of ``ruleset`` under ``base``, kept as long as the rule set lives, at most
    :data:`MAX_BASES` per rule set (the oldest dropped first)."""
    found = _catalogues.get(ruleset, {}).get(base)  # the usual case, without taking the lock
    if found is not None:
        return found
    with _lock:
        per_base = _catalogues.setdefault(ruleset, OrderedDict())
        found = per_base.get(base)
        if found is None:
            found = per_base[base] = Catalogue(ruleset, base)
            while len(per_base) > MAX_BASES:
                per_base.popitem(last=False)
        return found
