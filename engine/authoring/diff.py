"""Impact analysis: run the same v1 requests through two rule trees and list the answers that change.

The trees are folders, or two git revisions of one folder extracted with ``git archive``. Changes
are grouped by policy (the policies that decide the line before or after) and code, and printed
as text, JSON or Markdown (for a pull-request comment).

Exit codes of ``covreq diff``: 0 no answer changes; 1 some answers change; 2 the comparison could
not be made (bad arguments, a tree that does not load, an unreadable requests file).
"""
from __future__ import annotations

import io
import json
import subprocess
import tarfile
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, TextIO

from engine.errors import CovreqError, RequestError
from engine.evaluation.ruleset import RuleSet, load

#: Decision fields compared, and how a value is shown. Reasons are text and are not compared.
FIELDS = ("pa_needed", "covered", "documentation", "info_needed", "possible", "policies", "authorization",
          "questionnaire")
EXIT_SAME, EXIT_CHANGED, EXIT_ERROR = 0, 1, 2


class DiffError(CovreqError):
    """The comparison cannot be made; the message says why."""


@dataclass(frozen=True)
class Change:
    """One service line whose answer differs between the trees."""

    source: str  # "requests.jsonl:3"
    line: int  # 1-based service line in the request
    code: str
    policies: tuple[str, ...]
    fields: tuple[tuple[str, Any, Any], ...]  # (field, before, after)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"request": self.source, "service": self.line, "code": self.code, "policies": list(self.policies),
                "changes": {name: {"before": old, "after": new} for name, old, new in self.fields}}


@dataclass(frozen=True)
class PayerChange:
    """Requests for a payer only one tree knows: one summary instead of a refusal on every line."""

    payer: str
    status: str  # "new" (only the new tree knows it) or "removed" (only the old tree does)
    requests: int
    lines: int
    #: how the tree that knows the payer answers its lines: (pa_needed, lines), most first
    answers: tuple[tuple[str, int], ...]

    def __str__(self) -> str:
        tree = "new in this tree" if self.status == "new" else "no longer in this tree"
        answers = ", ".join(f"{count} {value}" for value, count in self.answers)
        return f"payer '{self.payer}' {tree}: {self.requests} request(s), {self.lines} service line(s) ({answers})"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"payer": self.payer, "status": self.status, "requests": self.requests, "lines": self.lines,
                "answers": dict(self.answers)}


@dataclass(frozen=True)
class Result:
    """All changes, with the totals they are out of."""

    requests: int
    lines: int
    changes: tuple[Change, ...]
    #: requests both trees refused, and the first of them as ``file:line: message``
    refused: int = 0
    first_refusal: str = ""
    payers: tuple[PayerChange, ...] = ()

    def grouped(self) -> dict[str, dict[str, list[Change]]]:
        """Changes by policy ids (joined) and then by code, both sorted."""
        groups: dict[str, dict[str, list[Change]]] = defaultdict(lambda: defaultdict(list))
        for change in self.changes:
            groups[", ".join(change.policies) or "(no policy)"][change.code].append(change)
        return {p: dict(sorted(codes.items())) for p, codes in sorted(groups.items())}


def read_requests(path: str | Path) -> Iterator[tuple[str, Any]]:
    """(``file:line``, parsed request) for every non-blank line of a JSON Lines file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DiffError(f"cannot read {path}: {exc}") from None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield f"{path}:{number}", json.loads(line)
        except json.JSONDecodeError as exc:
            raise DiffError(f"{path}:{number}:{exc.colno}: invalid JSON: {exc.msg}") from None


def _view(decision: dict[str, Any]) -> dict[str, Any]:
    """The compared fields of a decision, as plain comparable values."""
    view = {name: decision.get(name) for name in FIELDS}
    view["documentation"] = sorted(d["id"] for d in decision.get("documentation", []))
    view["policies"] = [p["id"] for p in decision.get("policies", [])]  # a new version alone is no change
    return view


def _answer(rules: RuleSet, body: Any) -> list[dict[str, Any]]:
    try:
        return [_view(d) for d in rules.evaluate(body)["decisions"]]
    except RequestError as exc:
        return [{"error": str(exc)}]


def compare(old: RuleSet, new: RuleSet, requests: Iterator[tuple[str, Any]]) -> Result:
    """Evaluate every request in both rule sets and collect the lines whose answers differ; the
    requests for a payer only one tree knows are counted per payer, not listed line by line."""
    changes: list[Change] = []
    count = lines = refused = 0
    first_refusal = ""
    known = {"old": set(old.payers()), "new": set(new.payers())}
    tallies: dict[tuple[str, str], list[Any]] = {}  # (payer, status) -> [requests, lines, Counter]
    for source, body in requests:
        count += 1
        before, after = _answer(old, body), _answer(new, body)
        if "error" in before[0] and "error" in after[0]:
            refused += 1
            first_refusal = first_refusal or f"{source}: {after[0]['error']}"
        lines += max(len(before), len(after))
        if status := _payer_status(body, known):
            answered = after if status == "new" else before
            tally = tallies.setdefault((body["payer"], status), [0, 0, Counter()])
            tally[0] += 1
            tally[1] += len(answered)
            tally[2].update(str(line.get("pa_needed") or "refused") for line in answered)
            continue
        services = body.get("services") if isinstance(body, dict) and isinstance(body.get("services"), list) else []
        for index in range(max(len(before), len(after))):
            was = before[index] if index < len(before) else {}
            now = after[index] if index < len(after) else {}
            fields = tuple((k, was.get(k), now.get(k)) for k in dict.fromkeys([*was, *now]) if was.get(k) != now.get(k))
            if not fields:
                continue
            service = services[index] if index < len(services) and isinstance(services[index], dict) else {}
            ids = sorted({*(was.get("policies") or []), *(now.get("policies") or [])})
            changes.append(Change(source, index + 1, str(service.get("code", "*")), tuple(ids), fields))
    payers = tuple(PayerChange(payer, status, requests_, lines_, tuple(answers.most_common()))
                   for (payer, status), (requests_, lines_, answers) in sorted(tallies.items()))
    return Result(count, lines, tuple(changes), refused, first_refusal, payers)


def _payer_status(body: Any, known: dict[str, set[str]]) -> str | None:
    """"new" or "removed" when the request names a payer only one tree knows, else None."""
    payer = body.get("payer") if isinstance(body, dict) else None
    if not isinstance(payer, str) or (payer in known["old"]) == (payer in known["new"]):
        return None
    return "new" if payer in known["new"] else "removed"


def _show(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value)) + "]"
    return "-" if value is None else str(value)


def _headline(result: Result) -> str:
    """The totals: lines that change out of those compared (a payer only one tree knows is summed up apart)."""
    changed = len(result.changes)
    lines = result.lines - sum(p.lines for p in result.payers)
    requests = result.requests - sum(p.requests for p in result.payers)
    refused = f"; {result.refused} request(s) refused by both trees" if result.refused else ""
    if changed:
        return f"{changed} of {lines} service line(s) in {requests} request(s) answer differently{refused}"
    others = " for the payers both trees know" if result.payers else ""
    return f"no answer changes{others} ({lines} service line(s) in {requests} request(s){refused})"


def _grouped_fields(changes: list[Change]) -> list[tuple[tuple[tuple[str, Any, Any], ...], list[Change]]]:
    """The changes of one code grouped by what changes, in order of first appearance."""
    groups: dict[str, tuple[tuple[tuple[str, Any, Any], ...], list[Change]]] = {}
    for change in changes:
        key = json.dumps(change.fields, sort_keys=True, default=str)
        groups.setdefault(key, (change.fields, []))[1].append(change)
    return list(groups.values())


def _where(changes: list[Change], most: int = 3) -> str:
    """Up to ``most`` of the service lines changed, as ``file:line #service``, and how many more."""
    shown = ", ".join(f"`{c.source}` #{c.line}" for c in changes[:most])
    return shown + (f" and {len(changes) - most} more" if len(changes) > most else "")


def write(result: Result, fmt: str, out: TextIO) -> None:
    """Write the result as ``text``, ``json`` or ``markdown``."""
    if fmt == "json":
        json.dump({"requests": result.requests, "lines": result.lines,
                   "changes": [c.as_dict() for c in result.changes],
                   "payers": [p.as_dict() for p in result.payers]}, out, indent=2)
        out.write("\n")
        return
    if fmt == "markdown":
        out.write(f"### covreq diff: {_headline(result)}\n")
        out.write("".join(f"\n- {payer}" for payer in result.payers) + ("\n" if result.payers else ""))
        for policy, codes in result.grouped().items():
            out.write(f"\n#### `{policy}`\n\n| code | lines | what changes | where |\n|---|---|---|---|\n")
            for code, changes in codes.items():
                for fields, alike in _grouped_fields(changes):
                    what = "<br>".join(f"{name}: {_show(old)} → {_show(new)}" for name, old, new in fields)
                    out.write(f"| {code} | {len(alike)} | {what} | {_where(alike)} |\n")
        return
    out.write(_headline(result) + "\n")
    out.write("".join(f"{payer}\n" for payer in result.payers))
    for policy, codes in result.grouped().items():
        out.write(f"\n{policy}\n")
        for code, changes in codes.items():
            out.write(f"  {code}\n")
            for c in changes:
                parts = "; ".join(f"{name} {_show(old)} -> {_show(new)}" for name, old, new in c.fields)
                out.write(f"    {c.source} line {c.line}: {parts}\n")


def _git(args: list[str], cwd: str) -> bytes:
    try:
        return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, timeout=120).stdout
    except subprocess.CalledProcessError as exc:
        raise DiffError(f"git {' '.join(args)}: {exc.stderr.decode(errors='replace').strip()}") from None
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DiffError(f"git {' '.join(args)}: {exc}") from None


def extract(revision: str, path: str, into: Path, repo: str = ".") -> Path:
    """Write the tree ``path`` of git ``revision`` under ``into``; returns the extracted ``path``."""
    if revision.startswith("-") or not revision:
        raise DiffError(f"not a git revision: {revision!r}")
    top = Path(_git(["rev-parse", "--show-toplevel"], repo).decode().strip())
    inside = (Path(repo) / path).resolve()
    if not inside.is_relative_to(top.resolve()):
        raise DiffError(f"{path} is not inside the git repository at {top}")
    inside_text = inside.relative_to(top.resolve()).as_posix()
    archive = _git(["archive", "--format=tar", revision, "--", inside_text], str(top))
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / inside_text


def _load(path: str | Path) -> RuleSet:
    try:
        return load(path)
    except CovreqError as exc:
        raise DiffError(f"{path} does not load:\n{exc}") from None


def run(old: str | None, new: str | None, requests: str, fmt: str, out: TextIO, err: TextIO,
        git: str | None = None, path: str = "rules") -> int:
    """The ``covreq diff`` command; returns its exit code."""
    try:
        with tempfile.TemporaryDirectory(prefix="covreq-diff-") as tmp:
            if git:
                first, sep, second = git.partition("..")
                if not sep or not first or not second:
                    raise DiffError(f"--git needs REV1..REV2, not {git!r}")
                old_tree, new_tree = (extract(rev, path, Path(tmp, side)) for rev, side in ((first, "old"), (second, "new")))
            elif old and new:
                old_tree, new_tree = Path(old), Path(new)
            else:
                raise DiffError("give OLD and NEW rule trees, or --git REV1..REV2")
            result = compare(_load(old_tree), _load(new_tree), read_requests(requests))
            if not result.requests:
                raise DiffError(f"{requests} holds no request")
            if result.refused == result.requests:
                raise DiffError(f"both trees refused every request, so nothing was compared; the first: "
                                f"{result.first_refusal}")
    except DiffError as exc:
        print(f"covreq diff: {exc}", file=err)
        return EXIT_ERROR
    write(result, fmt, out)
    return EXIT_CHANGED if result.changes or result.payers else EXIT_SAME
