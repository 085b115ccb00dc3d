"""DTR ``$log-questionnaire-errors``: a client reports what went wrong with a form covreq gave it.

The input (dtr-log-errors-input-parameters) names the Questionnaire(s) by canonical and carries
OperationOutcome(s). The IG forbids PHI in them; covreq logs only the canonicals and each issue's
severity, code, expression and the first characters of its diagnostics (event
``dtr-questionnaire-errors``), so a payer can fix its rules, and answers an informational outcome.
"""
from __future__ import annotations

import logging
from typing import Any

from service.fhir import r4
from service.fhir.outcome import FhirError
from service.fhir.values import as_list

log = logging.getLogger("covreq.dtr")
#: Most issues logged from one call, and the characters of a diagnostics text kept.
MAX_ISSUES, MAX_TEXT = 50, 500


def log_errors(body: Any) -> dict[str, Any]:
    """Log the errors a client reports; the OperationOutcome answered. Raises FhirError (400)
    unless the body names at least one Questionnaire and carries at least one OperationOutcome."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters" \
            or not isinstance(body.get("parameter"), list):
        raise FhirError(400, "the body must be a FHIR Parameters resource", "Parameters")
    canonicals, issues = [], []
    for index, parameter in enumerate(body["parameter"]):
        name = parameter.get("name") if isinstance(parameter, dict) else None
        if name == "questionnaire" and isinstance(parameter.get("valueCanonical"), str):
            canonicals.append(parameter["valueCanonical"][:500])
        elif name == "operationOutcome" and isinstance(parameter.get("resource"), dict) \
                and parameter["resource"].get("resourceType") == "OperationOutcome":
            broken = r4.problems(parameter["resource"], f"Parameters.parameter[{index}].resource")
            if broken:
                raise FhirError(400, r4.describe(broken), broken[0].path)
            issues += parameter["resource"]["issue"]
        else:
            raise FhirError(400, "expected questionnaire (valueCanonical) and operationOutcome (an "
                                 "OperationOutcome) parameters", f"Parameters.parameter[{index}]")
    if not canonicals or not issues:
        raise FhirError(400, "name the Questionnaire (questionnaire) and say what went wrong (operationOutcome)",
                        "Parameters.parameter")
    for issue in issues[:MAX_ISSUES]:
        log.warning("a DTR client reports an error with a form", extra={
            "event": "dtr-questionnaire-errors", "questionnaire": canonicals,
            "severity": issue["severity"], "code": issue["code"],
            "expression": [_printable(e, 200) for e in as_list(issue.get("expression"))][:5],
            "diagnostics": _printable(issue.get("diagnostics"), MAX_TEXT)})
    return {"resourceType": "OperationOutcome", "issue": [{
        "severity": "information", "code": "informational",
        "diagnostics": f"{min(len(issues), MAX_ISSUES)} issue(s) about {', '.join(canonicals)} logged"}]}


def _printable(text: Any, most: int) -> str:
    """The first ``most`` characters of a client's text (none: empty), control characters (line
    breaks) as spaces."""
    return "".join(ch if ch.isprintable() else " " for ch in str(text or "")[:most])
