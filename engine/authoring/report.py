"""Print findings for people (text), programs (json) and CI (GitHub annotations, JUnit XML).

A :class:`Finding` is a located :class:`Problem` with a severity (``error``, ``warning`` or
``notice``) and optional detail lines such as an expected-versus-actual diff. JUnit output needs
to know what was checked, not only what failed: callers pass :class:`Check` entries (a file, a test
case), each a ``<testcase>`` that fails when it has findings of severity error or warning.
"""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Sequence, TextIO
from xml.etree import ElementTree as ET

from engine.errors import Problem

FORMATS = ("text", "json", "github", "junit")
SEVERITIES = ("error", "warning", "notice")


@dataclass(frozen=True)
class Finding:
    """One located problem, its severity, and extra lines shown under it."""

    problem: Problem
    severity: str = "error"
    detail: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        """The finding as a JSON-ready mapping."""
        out: dict[str, object] = {**self.problem.as_dict(), "severity": self.severity}
        if self.detail:
            out["detail"] = list(self.detail)
        return out


@dataclass(frozen=True)
class Check:
    """Something that was checked (a file, a test case): one JUnit ``<testcase>``."""

    name: str
    classname: str
    findings: tuple[Finding, ...] = ()


def _github_escape(text: str, property_: bool = False) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if property_ else text


def checks_by_file(files: Iterable[str], findings: Iterable[Finding], classname: str) -> list[Check]:
    """One check per file (files without findings pass); findings elsewhere get their own check."""
    grouped: dict[str, list[Finding]] = defaultdict(list)
    for finding in findings:
        grouped[finding.problem.path].append(finding)
    names = list(dict.fromkeys([*files, *grouped]))
    return [Check(name, classname, tuple(grouped.get(name, ()))) for name in names]


def _junit(checks: Sequence[Check], suite: str) -> str:
    failing = [c for c in checks if any(f.severity != "notice" for f in c.findings)]
    root = ET.Element("testsuites", name="covreq", tests=str(len(checks)), failures=str(len(failing)))
    node = ET.SubElement(root, "testsuite", name=suite, tests=str(len(checks)), failures=str(len(failing)),
                         errors="0", skipped="0")
    for check in checks:
        case = ET.SubElement(node, "testcase", name=check.name, classname=check.classname)
        notices = []
        for finding in check.findings:
            p = finding.problem
            text = "\n".join([f"{p.path}:{p.line}:{p.column}: {p.message}", *finding.detail])
            if finding.severity == "notice":
                notices.append(text)
                continue
            failure = ET.SubElement(case, "failure", type=p.code, message=f"{finding.severity}: {p.message}")
            failure.text = text
        if notices:
            ET.SubElement(case, "system-out").text = "\n".join(notices)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_findings(findings: Iterable[Finding], fmt: str, out: TextIO, suite: str = "covreq",
                   checks: Sequence[Check] | None = None) -> None:
    """Write ``findings`` to ``out`` in ``fmt`` (one of :data:`FORMATS`); JUnit reports ``checks``."""
    findings = list(findings)
    if fmt == "json":
        json.dump([f.as_dict() for f in findings], out, indent=2)
        out.write("\n")
    elif fmt == "github":
        for f in findings:
            p = f.problem
            message = "\n".join([p.message, *f.detail])
            out.write(f"::{f.severity} file={_github_escape(p.path, True)},line={p.line},col={p.column},"
                      f"title={_github_escape(p.code, True)}::{_github_escape(message)}\n")
    elif fmt == "junit":
        out.write(_junit(checks if checks is not None else checks_by_file((), findings, suite), suite))
    else:
        for f in findings:
            out.write(f"{f.problem}" + ("" if f.severity == "error" else f" [{f.severity}]") + "\n")
            out.writelines(f"    {line}\n" for line in f.detail)


def write_problems(problems: Iterable[Problem], fmt: str, out: TextIO, severity: str = "error") -> None:
    """Write plain problems, all of one ``severity``, in format ``fmt``."""
    write_findings([Finding(p, severity) for p in problems], fmt, out)
