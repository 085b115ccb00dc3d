"""Load a rule tree: read YAML files, validate them, compile policies, report every problem.

Problems are collected across the whole tree and raised together as one :class:`LoadError`, each
with its file, line, column and a stable code (see docs/authoring.md, "Error codes").
"""
from __future__ import annotations

import ctypes
import dataclasses
import datetime as dt
import difflib
import gc
import hashlib
import json
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property, lru_cache, partial
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import jsonschema
import jsonschema_rs
from jsonschema.exceptions import ValidationError, best_match

from . import ast
from .checker import Checker
from .codes import CPT, EXPAND_BUDGET, HCPCS, CodeError, CodeSet, join, parse_member
from .codegen import Lazy, compile_condition, compile_rules
from .errors import ConditionError, Problem, bad_date, did_you_mean
from .parallel import Read, read_texts
from .parser import parse_condition
from .policy import (AUTH_NEEDED, COMPLETE, COVERED, NO_AUTH, PROGRAMS, CodeGroup, DocItem, DocRef, Location, Outcome,
                     Pause, PayerInfo, Policy, Rule)
from .resources import schema_path
from .yamlsource import (KEY, MAX_FILE_BYTES, Locations, YamlError, check_size, load_yaml,
                         position_in_scalar)
from .vocab import PlansNamed, unknown_values, unlisted_plans

TESTS_SUFFIX = ".tests.yaml"
PAYER_FILE = "_payer.yaml"


@lru_cache(maxsize=None)
def _schema(name: str) -> dict[str, Any]:
    return json.loads(schema_path(name).read_text(encoding="utf-8"))  # type: ignore[no-any-return]


@lru_cache(maxsize=None)
def _validator(name: str) -> jsonschema.Draft202012Validator:
    schema = _schema(name)
    return jsonschema.Draft202012Validator(_inline_refs(schema, schema.get("$defs", {}), ()))


@lru_cache(maxsize=None)
def _gate(name: str) -> jsonschema_rs.Validator:
    """jsonschema-rs for the same schema: it only says whether a file is valid, about fifty times
    faster than jsonschema, which still words and locates every reported problem."""
    return jsonschema_rs.validator_for(_schema(name))


def _inline_refs(node: Any, defs: dict[str, Any], stack: tuple[str, ...]) -> Any:
    """The schema with each lone local ``{"$ref": "#/$defs/x"}`` replaced by ``x`` itself: the same
    checks, without a reference lookup per validated value (which halves validation time).
    Recursive references stay as they are; ``$defs`` is kept for them."""
    if isinstance(node, list):
        return [_inline_refs(item, defs, stack) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    name = ref.removeprefix("#/$defs/") if isinstance(ref, str) else None
    if len(node) == 1 and name in defs and name not in stack:
        return _inline_refs(defs[name], defs, (*stack, name))
    return {key: _inline_refs(value, defs, stack) for key, value in node.items()}


@lru_cache(maxsize=65536)
def _parse(text: str) -> tuple[ast.Expr, tuple[str, ...]]:
    """The condition's syntax tree and the names of the value sets it refers to."""
    expr = parse_condition(text)
    return expr, ast.value_sets_of(expr)


#: A checked condition: its program (compiled on first use) and the facts whose absence can make it unknown.
Compiled = tuple[Lazy, frozenset[str]]
V = TypeVar("V")


#: Most code groups of one policy with different dates (``effective``/``end``); entries with the
#: same dates form one group.
MAX_CODE_GROUPS = 1000


class _Shared:
    """What the policy versions of one load share. Versions and plan overrides repeat most of their
    content, so equal immutable values are made once: conditions compiled for the same value sets
    (a closure holds no state), parsed code items, outcomes, catalogues, value sets and texts."""

    def __init__(self) -> None:
        self.conditions: dict[tuple[object, ...], Compiled] = {}
        self.programs: dict[tuple[object, ...], Lazy] = {}
        self.code_items: dict[str, CodeSet] = {}
        self.values: dict[object, Any] = {}

    def value(self, value: V) -> V:
        """``value``, or the equal value met first in this load."""
        return self.values.setdefault(value, value)  # type: ignore[no-any-return]

    def mapping(self, mapping: dict[str, V]) -> dict[str, V]:
        """``mapping``, or the equal mapping met first in this load (shared, so never to be changed)."""
        return self.values.setdefault((dict, *mapping.items()), mapping)  # type: ignore[no-any-return]

    def program(self, conditions: tuple[str, ...], documentation: tuple[tuple[str, ...], ...],
                value_sets: dict[str, tuple[str, ...]]) -> Lazy:
        """The rules ``conditions`` as one program answering also the values of each outcome's
        documentation conditions (``documentation``: the rules' outcomes', then the default's);
        versions with the same rules, documentation conditions and value sets share it."""
        key = (conditions, documentation, id(value_sets))  # equal value sets are one shared mapping
        if key not in self.programs:
            self.programs[key] = Lazy(partial(compile_rules, conditions, value_sets, documentation))
        return self.programs[key]

    def code_item(self, text: str) -> CodeSet:
        """The CPT/HCPCS code, range or group member ``text`` as written; raise :class:`CodeError`."""
        if text not in self.code_items:
            self.code_items[text] = parse_member(text, (CPT, HCPCS))
        return self.code_items[text]


class _Conditions:
    """Checks the conditions of one policy version. A condition whose text and referenced value
    sets another version has checked gets the same program and facts."""

    def __init__(self, value_sets: dict[str, tuple[str, ...]], shared: _Shared) -> None:
        self.checker = Checker(value_sets)
        self.shared = shared

    def compile(self, text: str) -> Compiled:
        """Parse and check ``text`` (raise :class:`ConditionError`); its program compiles on first use."""
        expr, named = _parse(text)
        key = (text, *((name, self.checker.value_sets.get(name)) for name in named))
        compiled = self.shared.conditions
        if key not in compiled:
            self.checker.check(expr)
            compiled[key] = Lazy(partial(compile_condition, text, self.checker.value_sets)), ast.facts_of(expr)
        return compiled[key]


@dataclass
class Source:
    """One parsed YAML file with its locations."""

    path: str
    data: Any
    locations: Locations
    text: str

    @cached_property
    def lines(self) -> list[str]:
        """The file's lines (needed only to place a problem inside a condition)."""
        return self.text.splitlines()

    def at(self, *keys: object) -> Location:
        """Location of the value at ``keys`` (or its nearest located parent)."""
        spot = self.locations.find(keys)
        return Location(self.path, spot.line, spot.column)

    def raw(self, *keys: object) -> str:
        """The value at ``keys`` as text, spelled as written (so ``01234`` keeps its zero)."""
        return self._spelled(self.value_at(keys), keys)

    def texts(self, *keys: object) -> tuple[str, ...]:
        """The items of the list at ``keys``, each as :meth:`raw` gives it."""
        return tuple(item if item.__class__ is str else self._spelled(item, (*keys, i))
                     for i, item in enumerate(self.value_at(keys)))

    def _spelled(self, value: Any, keys: tuple[object, ...]) -> str:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and (spot := self.locations.get(keys)) and spot.raw:
            return spot.raw
        return str(value)

    def value_at(self, keys: tuple[object, ...]) -> Any:
        """The value at ``keys``."""
        value = self.data
        for key in keys:
            value = value[key]  # type: ignore[index]
        return value


@dataclass
class Draft:
    """A policy version before compilation; pieces keep the source they came from."""

    source: Source
    data: dict[str, Any]
    rules: list[tuple[Source, tuple[object, ...]]] = field(default_factory=list)
    documentation: dict[str, tuple[Source, tuple[object, ...]]] = field(default_factory=dict)
    value_sets: dict[str, tuple[Source, tuple[object, ...]]] = field(default_factory=dict)
    codes: list[tuple[Source, tuple[object, ...]]] = field(default_factory=list)
    #: a plan override's rules tried after its base's
    rules_after: list[tuple[Source, tuple[object, ...]]] = field(default_factory=list)
    #: the source of each top-level key a plan override takes from its base
    inherited: dict[str, Source] = field(default_factory=dict)
    #: problem codes not to report: a file's own catalogue was left out for a schema problem, so its
    #: references to it would only repeat that problem
    follow_ons: frozenset[str] = frozenset()

    def at(self, key: str) -> Location:
        """Location of the top-level ``key``, in the file it comes from."""
        return self.inherited.get(key, self.source).at(key)

    @classmethod
    def of(cls, source: Source, left_out: frozenset[tuple[object, ...]] = frozenset()) -> "Draft":
        """A draft made of one file's own content, without the top-level keys and the entries of
        ``rules``, ``codes``, ``documentation`` and ``value_sets`` named in ``left_out``."""
        data = {k: v for k, v in source.data.items() if (k,) not in left_out}

        def keys(name: str) -> list[tuple[object, ...]]:
            entries = data.get(name, {})
            return [key for k in (range(len(entries)) if isinstance(entries, list) else entries)
                    if (key := (name, k)) not in left_out]

        return cls(source, data, [(source, key) for key in keys("rules")],
                   {str(key[1]): (source, key) for key in keys("documentation")},
                   {str(key[1]): (source, key) for key in keys("value_sets")},
                   [(source, key) for key in keys("codes")], [(source, key) for key in keys("rules_after")])

    def plain(self) -> dict[str, Any]:
        """The draft's own data as the schema sees it (left-out entries removed)."""
        src = self.source
        return {**self.data,
                **{name: [src.value_at(key) for _, key in entries]
                   for name, entries in (("rules", self.rules), ("codes", self.codes), ("rules_after", self.rules_after))
                   if name in self.data},
                **{name: {k: src.value_at(key) for k, (_, key) in entries.items()}
                   for name, entries in (("documentation", self.documentation), ("value_sets", self.value_sets))
                   if name in self.data}}


class Problems(list[Problem]):
    """Collects problems."""

    def add(self, where: Location, code: str, message: str) -> None:
        """Record one problem at ``where``."""
        self.append(Problem(where.path, where.line, where.column, code, message))


@dataclass
class Tree:
    """Everything read from a rule tree."""

    policies: list[Policy]
    payers: dict[str, PayerInfo]
    digest: str
    files: list[str]
    problems: list[Problem]


@contextmanager
def loading() -> Iterator[None]:
    """Around the loading of a tree. The cyclic garbage collector is paused: loading makes millions
    of objects that live on, and each collection on the way walks them all again (a third of the
    load time); loading makes next to no reference cycles, so reference counting frees its garbage
    all the same. Then the memory the load freed is given back to the system (see
    :func:`release_freed_memory`). Only the outermost of nested loads does either."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
            release_freed_memory()


def release_freed_memory() -> None:
    """Give the memory this process has freed back to the system, where the C library allows it
    (glibc's ``malloc_trim``; elsewhere nothing is done). A load frees about as much as it keeps,
    interleaved with what it keeps, and the C allocator holds freed blocks for reuse: after loading
    100,000 rules they were 40 MB of the process's resident memory."""
    try:
        trim = getattr(ctypes.CDLL(None), "malloc_trim", None)
    except (OSError, TypeError):  # no C library to ask (Windows names none by default)
        return
    if trim is not None:
        trim(0)


def leaves_tree(path: Path, real_root: Path) -> bool:
    """Whether ``path`` is a symbolic link whose target lies outside ``real_root`` (resolved).
    Links to folders are never followed, so only a file can lead out of the tree."""
    return path.is_symlink() and not path.resolve().is_relative_to(real_root)


def iter_rule_files(root: Path) -> Iterator[Path]:
    """Policy and payer files under ``root`` (a folder or one file), in a stable order."""
    if root.is_file():
        yield root
        return
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.suffix not in (".yaml", ".yml") or path.name.endswith(TESTS_SUFFIX):
            continue
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        if path.name.startswith("_") and path.name != PAYER_FILE:
            continue
        yield path


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, no more than it takes to see that it is too large; raise OSError."""
    with path.open("rb") as handle:
        return handle.read(MAX_FILE_BYTES + 1)


def digest_entry(root: Path, path: Path, raw: bytes) -> bytes:
    """What one file adds to its tree's SHA-256 digest: its path relative to the tree, and its bytes."""
    return named_digest_entry(str(path.relative_to(root) if root.is_dir() else path.name), raw)


def named_digest_entry(name: str, raw: bytes) -> bytes:
    """What a file named ``name`` (its path relative to the tree) with bytes ``raw`` adds to the
    tree's digest; a bundle's files are checked with it before any is written."""
    return name.encode() + b"\0" + raw + b"\0"


@loading()
def read_tree(root: str | Path, workers: int | None = None) -> Tree:
    """Read, validate and compile every file under ``root``; problems are returned, not raised.
    ``workers`` read YAML besides this process (see :func:`engine.parallel.read_texts`; None: one
    for a large tree when a core is spare, 0: none); the result is the same however many there are."""
    root = Path(root)
    problems = Problems()
    if not root.exists():
        problems.add(Location(str(root), 1, 1), "E-io", "no such file or folder")
        return Tree([], {}, "", [], problems)
    digest = hashlib.sha256()
    payers: dict[str, PayerInfo] = {}
    files: list[str] = []
    shared = _Shared()
    # Each policy file is compiled as soon as it is read, so that only one file's data and locations
    # are alive at a time; plan overrides wait for the whole tree, since their base may come later.
    slots: list[list[Policy]] = []  # the compiled versions of each policy file, in file order
    by_id: dict[str, list[Draft | _Kept]] = {}
    overrides: dict[str, list[tuple[list[Policy], Draft | _Kept]]] = {}  # by the id they extend, in file order
    unread: set[str | None] = set()  # ids of policy files that could not be read (None: id unknown)
    named: list[PlansNamed] = []  # the plans each policy file names, checked against its payer's list
    paths = list(iter_rule_files(root))
    for (path, shown, raw, text), read in read_texts(_texts(root, paths, files, digest, problems), len(paths), workers):
        source = _read_source(shown, text, read, problems)
        if path.name == PAYER_FILE:
            payer = _payer(source, problems) if source else None
            if payer:
                payers[payer.id] = payer
            continue
        draft, valid = _policy_draft(source, problems) if source else (None, False)
        if draft is None:
            unread.add(_written_id(source.data.get("id") if source else raw))
            continue
        if draft.data.get("plans"):
            named.append(PlansNamed(draft.data.get("payer"), draft.data.get("extends"),
                                     tuple(draft.data["plans"]), draft.at("plans")))
        slot: list[Policy] = []
        if valid:  # an invalid file is compiled for its other problems, and gives no policy
            slots.append(slot)
        kept = _Kept(shown, raw) if valid else draft  # a valid file's draft is read again when needed
        if draft.data.get("extends") is None:
            if (policy := _compile(draft, problems, shared)) and valid:
                slot.append(policy)
        else:
            overrides.setdefault(draft.data["extends"], []).append((slot, kept))
        by_id.setdefault(draft.data["id"], []).append(kept)
    for base_id, children in overrides.items():  # one base's drafts alive at a time
        found = [_Kept.drafted(b, problems) for b in by_id.get(base_id, [])]
        bases = [b for b in found if b]
        if len(bases) < len(found) or not bases and unread & {base_id, None}:
            continue  # a base could not be read (again): its own problem says why
        for slot, kept in children:
            if child := _Kept.drafted(kept, problems):
                slot.extend(p for d in _extend(child, bases, problems) if (p := _compile(d, problems, shared)))
    policies = [p for slot in slots for p in slot]
    _check_versions(policies, problems)
    problems.extend(unlisted_plans(named, payers, {p.id: p.payer for p in policies}))
    problems.extend(unknown_values(policies, payers))
    # A base's problem is found again in every plan override merged with it: report it once.
    return Tree(policies, payers, digest.hexdigest()[:16], files, sorted(set(problems)))


_ID_LINE = re.compile(rb"^id:[ \t]*[\"']?([a-z0-9][a-z0-9-]*)[\"']?[ \t]*(#.*)?$", re.MULTILINE)


def _written_id(value: object) -> str | None:
    """The policy id of a file that could not be read: its ``id`` value, or the ``id:`` line of its
    raw bytes; None when there is none."""
    if isinstance(value, bytes):
        match = _ID_LINE.search(value)
        return match.group(1).decode() if match else None
    return value if isinstance(value, str) else None


def _texts(root: Path, paths: list[Path], files: list[str], digest: Any,
           problems: Problems) -> Iterator[tuple[tuple[Path, str, bytes, str | None], str | None]]:
    """Each file of ``paths`` that can be read, with its text (None when it is too large or not
    UTF-8); records the files read, their digest and the problems of those that cannot be read."""
    inside = root.resolve() if root.is_dir() else None
    for path in paths:
        shown = str(path)
        if inside is not None and leaves_tree(path, inside):
            problems.add(Location(shown, 1, 1), "E-link", "a symbolic link to a file outside the rule tree; not read")
            continue
        files.append(shown)
        try:
            raw = _read_bytes(path)
        except OSError as exc:
            problems.add(Location(shown, 1, 1), "E-io", exc.strerror or str(exc))
            continue
        digest.update(digest_entry(root, path, raw))
        text = _decoded(shown, raw, problems)
        yield (path, shown, raw, text), text


def _decoded(shown: str, raw: bytes, problems: Problems) -> str | None:
    try:
        check_size(len(raw))
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        problems.add(Location(shown, 1, exc.start + 1), "E-encoding", "file is not valid UTF-8")
    except YamlError as exc:
        problems.add(Location(shown, exc.line, exc.column), exc.code, exc.message)
    return None


def _read_source(shown: str, text: str | None, read: Read, problems: Problems) -> Source | None:
    if isinstance(read, YamlError):
        problems.add(Location(shown, read.line, read.column), read.code, read.message)
        return None
    if read is None or text is None:
        return None
    data, locations = read
    if not isinstance(data, dict):
        problems.add(Location(shown, 1, 1), "E-schema", "a rule file must be a YAML mapping")
        return None
    return Source(shown, data, locations, text)


def check_schema(source: Source, schema: str, problems: Problems) -> list[ValidationError]:
    """Validate ``source`` against the shipped JSON Schema ``schema``: record each problem (unknown
    keys with a "did you mean") and return the errors, none when the file is valid."""
    # A file is rejected only on jsonschema's word: where the two were found to differ, jsonschema is
    # the more lenient (Python's ``$`` also matches before a final newline, its ``\d`` any digit).
    if _gate(schema).is_valid(source.data):
        return []
    errors = sorted(_validator(schema).iter_errors(source.data), key=lambda e: list(map(str, e.absolute_path)))
    for error in errors:
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            _unknown_keys(source, error, problems)
            continue
        alternatives = _required_alternatives(error)
        detail = error if alternatives or not error.context else best_match(error.context)
        path = list(detail.absolute_path)  # a context error's path starts at the top, like its parent's
        field_name = ".".join(str(p) for p in path) or "(top level)"
        message = f"needs {' or '.join(alternatives)}" if alternatives else _schema_message(detail)
        problems.add(source.at(*path), "E-schema", f"{field_name}: {message}")
    return errors


_ENTRIES = ("rules", "rules_after", "codes", "documentation", "value_sets")


def _policy_draft(source: Source, problems: Problems) -> tuple[Draft | None, bool]:
    """The draft of a policy file and whether the file is valid. When a file's schema problems lie
    only in unknown top-level keys and in single entries of ``rules``, ``codes``, ``documentation``
    or ``value_sets``, the draft of its other parts is returned too, so that their problems (dates,
    conditions, codes) are reported with the schema's; otherwise the draft is None."""
    errors = check_schema(source, "policy.schema.json", problems)
    if not errors:
        return Draft.of(source), True
    left_out: set[tuple[object, ...]] = set()
    for error in errors:
        path = tuple(error.absolute_path)
        if not path and error.validator == "additionalProperties":
            left_out |= {(key,) for key in error.instance if key not in error.schema.get("properties", {})}
        elif len(path) >= 2 and path[0] in _ENTRIES:
            left_out.add(path[:2])
        else:
            return None, False
    draft = Draft.of(source, frozenset(left_out))
    draft.follow_ons = frozenset(code for catalogue, code in _CATALOGUES.items()
                                 if any(difflib.get_close_matches(str(key[0]), [catalogue], n=1) for key in left_out))
    return (draft if _gate("policy.schema.json").is_valid(draft.plain()) else None), False


#: The catalogues of a policy and the problem raised by a reference to an entry missing from them.
_CATALOGUES = {"documentation": "E-unknown-doc", "value_sets": "E-unknown-value-set"}


def _unknown_keys(source: Source, error: ValidationError, problems: Problems) -> None:
    known = list(error.schema.get("properties", {}))
    for key in error.instance:
        if key not in known:
            hint = did_you_mean(str(key), known) or f"; expected one of {', '.join(known)}"
            problems.add(source.at(*error.absolute_path, key, KEY), "E-schema", f"unknown key '{key}'{hint}")


def _required_alternatives(error: ValidationError) -> list[str]:
    """For an ``anyOf`` of ``required`` keys (a tests case needs ``expect`` or ``error``), the keys."""
    options = error.validator_value if error.validator == "anyOf" else None
    if not options or any(set(option) != {"required"} for option in options):
        return []
    return [f"'{key}'" for option in options for key in option["required"]]


def _schema_message(error: ValidationError) -> str:
    if error.validator == "pattern":
        return f"{error.instance!r} does not have the expected form ({error.schema.get('description') or error.validator_value})"
    if error.validator == "not" and isinstance(error.validator_value, dict) and "description" in error.validator_value:
        return str(error.validator_value["description"])  # a forbidden combination, worded by the schema
    return error.message


def _payer(source: Source, problems: Problems) -> PayerInfo | None:
    if check_schema(source, "payer.schema.json", problems):
        return None
    data = source.data
    default = data.get("default")
    scope = data.get("scope", PROGRAMS)
    plans = {plan: entry if isinstance(entry, str) else entry.get("title", plan)
             for plan, entry in data.get("plans", {}).items()}
    plan_scopes = {plan: entry["scope"] for plan, entry in data.get("plans", {}).items()
                   if isinstance(entry, dict) and "scope" in entry}
    claimed = [key for key in ("pa_needed", "covered") if key in (default or {})]
    if claimed and COMPLETE not in (scope, *plan_scopes.values()):
        for key in claimed:
            problems.add(source.at("default", key), "E-scope",
                         f"default.{key} answers every code no policy lists, which is true only when these "
                         "rules are the payer's whole prior-authorization list: add `scope: complete` if "
                         f"they are, else remove default.{key} (codes no policy lists are then answered "
                         "'unknown', with default.reason)")
        return None
    return PayerInfo(data["payer"], data.get("title", ""),
                     Outcome(default.get("pa_needed", NO_AUTH), default.get("covered", COVERED), (),
                             default.get("reason", "")) if default else None,
                     plans, scope, plan_scopes, "plans" in data)


class _Kept:
    """A valid policy file remembered by its path and a hash of its bytes until the plan overrides
    are merged, and read again only when one extends it or is it: no file's text is held through
    the whole read (the texts of 100,000 rules are 38 MB)."""

    def __init__(self, shown: str, raw: bytes) -> None:
        self.shown, self.hash = shown, hashlib.blake2b(raw, digest_size=16).digest()

    def draft(self, problems: Problems) -> Draft | None:
        """The file's draft, read again; None, with an ``E-io`` problem, when it cannot be read any
        more or its bytes are no longer those read first."""
        try:
            raw = _read_bytes(Path(self.shown))
        except OSError as exc:
            problems.add(Location(self.shown, 1, 1), "E-io", exc.strerror or str(exc))
            return None
        if hashlib.blake2b(raw, digest_size=16).digest() != self.hash:
            problems.add(Location(self.shown, 1, 1), "E-io", "the file changed while the tree was being read; "
                                                             "load the tree again")
            return None
        text = raw.decode("utf-8")
        data, locations = load_yaml(text)
        return Draft.of(Source(self.shown, data, locations, text))

    @staticmethod
    def drafted(kept: "Draft | _Kept", problems: Problems) -> Draft | None:
        """The draft of a file kept either way (see :meth:`draft`)."""
        return kept if isinstance(kept, Draft) else kept.draft(problems)


def _extend(child: Draft, bases: list[Draft], problems: Problems) -> list[Draft]:
    """The plan-specific policy ``child`` merged with every version of its base; ``bases`` are the
    drafts whose id it extends, in file order."""
    base_id = child.data["extends"]
    where = child.source.at("extends")
    if not bases:
        problems.add(where, "E-extends", f"base policy '{base_id}' is not defined in this tree")
    elif any(b.data.get("extends") for b in bases):
        problems.add(where, "E-extends", f"base policy '{base_id}' itself extends another policy")
    elif base_id == child.data["id"]:
        problems.add(where, "E-extends", "a policy cannot extend itself")
    elif child.data.get("payer", bases[0].data["payer"]) != bases[0].data["payer"]:
        problems.add(child.source.at("payer"), "E-extends",
                     f"a policy must have its base's payer '{bases[0].data['payer']}'")
    else:
        return [m for base in bases if (m := _merge(child, base))]
    return []


def _merge(child: Draft, base: Draft) -> Draft | None:
    """The child laid over one base version, limited to the dates both are in force."""
    start = max(child.data.get("effective", base.data["effective"]), base.data["effective"])
    ends = [d for d in (child.data.get("end"), base.data.get("end")) if d]
    end = min(ends) if ends else None
    if end is not None and end < start:
        return None
    data = {**base.data, **child.data, "effective": start, "end": end}
    version = f"{child.data.get('version', '')}+{base.data.get('version', '')}".strip("+")
    data["version"] = version
    rules = child.rules + (base.rules if child.data.get("inherit_rules", True) else []) + child.rules_after
    inherited = {key: base.source for key in base.data if key not in child.data}
    if start != child.data.get("effective"):
        inherited["effective"] = base.source
    if end is not None and end != child.data.get("end"):
        inherited["end"] = base.source
    return Draft(child.source, data, rules, {**base.documentation, **child.documentation},
                 {**base.value_sets, **child.value_sets}, child.codes if "codes" in child.data else base.codes,
                 [], inherited, child.follow_ons | base.follow_ons)


def _date(value: Any, where: Callable[[], Location], problems: Problems) -> dt.date | None:
    """The date ``value``, or None with an ``E-date`` problem at ``where()`` (located only then)."""
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        problems.add(where(), "E-date", bad_date(str(value)))
        return None


def _compile(draft: Draft, problems: Problems, shared: _Shared) -> Policy | None:
    """Compile one draft; record problems and return None when it cannot be used."""
    before = len(problems)
    src, data, text = draft.source, draft.data, shared.value
    effective = _date(data["effective"], partial(draft.at, "effective"), problems)
    end = _date(data["end"], partial(draft.at, "end"), problems) if data.get("end") else None
    if effective and end and end < effective:
        problems.add(draft.at("end"), "E-date", f"end {end} is before effective {effective}")
    value_sets = shared.mapping({name: shared.value(s.texts(*_values_key(s, key)))
                                 for name, (s, key) in draft.value_sets.items()})
    titles = shared.mapping({name: text(s.value_at(key)["title"]) for name, (s, key) in draft.value_sets.items()
                             if isinstance(s.value_at(key), dict) and "title" in s.value_at(key)})
    conditions = _Conditions(value_sets, shared)
    catalogue = shared.mapping({doc_id: shared.value(DocItem(doc_id, s.value_at(key)["text"], s.value_at(key).get("kind", "clinical")))
                                for doc_id, (s, key) in draft.documentation.items()})
    groups = shared.value(_code_groups(draft.codes, shared, problems))
    rules: list[Rule] = []
    seen_ids: dict[str, Location] = {}
    for index, (s, key) in enumerate(draft.rules):
        rule = _rule(s, key, index, conditions, catalogue, problems)
        if rule is None:
            continue
        if rule.id in seen_ids:
            problems.add(rule.location, "E-duplicate-id", f"rule id '{rule.id}' is already used at {seen_ids[rule.id]}")
        seen_ids.setdefault(rule.id, rule.location)
        rules.append(rule)
    default = _outcome(draft.inherited.get("default", src), ("default",), data.get("default", {}), conditions,
                       catalogue, problems)
    if "add_documentation" in data:
        added = _doc_refs(src, ("add_documentation",), conditions, catalogue, problems)
        rules = [dataclasses.replace(r, outcome=_with_documentation(r.outcome, added, conditions.shared)) for r in rules]
        default = _with_documentation(default, added, conditions.shared)
    pauses = _pauses(draft.inherited.get("pauses", src), data.get("pauses", []), problems)
    auto_affirm = _auto_affirm(draft, data.get("authorization", {}), problems)
    problems[before:] = [p for p in problems[before:] if p.code not in draft.follow_ons]
    if len(problems) > before or effective is None:
        return None
    return Policy(
        id=text(data["id"]), title=text(data["title"]), payer=text(data["payer"]),
        version=text(str(data.get("version", data["effective"]))), effective=effective, end=end,
        url=text(data["source"]["url"]), citation=text(data["source"].get("citation", "")),
        notes=text(data.get("notes", "")), plans=text(frozenset(data["plans"])) if data.get("plans") else None,
        extends=data.get("extends"), code_groups=groups, rules=tuple(rules), default=default,
        documentation=catalogue, value_sets=value_sets, value_set_titles=titles,
        auth_validity=_validity(data.get("authorization", {})),
        auto_affirm=auto_affirm,
        questionnaire=data.get("questionnaire"), location=src.at("id"),
        program=shared.program(tuple(r.when for r in rules), tuple(
            tuple(ref.when for ref in outcome.documentation if ref.test is not None and ref.when)
            for outcome in (*(r.outcome for r in rules), default)), value_sets),
        files=tuple(dict.fromkeys(s.path for s, _ in [(src, ()), *draft.rules])),
        pauses=shared.value(pauses),
    )


def _values_key(source: Source, key: tuple[object, ...]) -> tuple[object, ...]:
    """Where the members of the value set at ``key`` are: its list, or the ``values`` of a titled set."""
    return (*key, "values") if isinstance(source.value_at(key), dict) else key


def _with_documentation(outcome: Outcome, added: tuple[DocRef, ...], shared: _Shared) -> Outcome:
    """``outcome`` with the items ``added`` when it needs prior authorization (each item once)."""
    if outcome.pa_needed != AUTH_NEEDED:
        return outcome
    ids = {ref.id for ref in outcome.documentation}
    extra = tuple(ref for ref in added if ref.id not in ids)
    return shared.value(dataclasses.replace(outcome, documentation=outcome.documentation + extra)) if extra else outcome


def _pauses(src: Source, entries: list[dict[str, Any]], problems: Problems) -> tuple[Pause, ...]:
    """The policy's pauses; an end before its start is an ``E-date`` problem."""
    pauses = []
    for i, entry in enumerate(entries):
        start = _date(entry["start"], partial(src.at, "pauses", i, "start"), problems)
        end = _date(entry["end"], partial(src.at, "pauses", i, "end"), problems) if "end" in entry else None
        if start and end and end < start:
            problems.add(src.at("pauses", i, "end"), "E-date", f"pause end {end} is before its start {start}")
        elif start:
            pauses.append(Pause(start, end, entry["reason"], entry.get("url", "")))
    return tuple(pauses)


def _auto_affirm(draft: Draft, authorization: dict[str, Any], problems: Problems) -> bool:
    """``authorization.automatic_affirmation``; true without a validity period is an ``E-affirmation``
    problem (an automatic affirmation must state how long it holds)."""
    wanted = authorization.get("automatic_affirmation", False) is True
    if wanted and _validity(authorization) is None:
        src = draft.inherited.get("authorization", draft.source)
        problems.add(src.at("authorization", "automatic_affirmation"), "E-affirmation",
                     "automatic_affirmation needs valid_days or valid_months: an affirmation states how long it holds")
        return False
    return wanted


def _validity(authorization: dict[str, Any]) -> tuple[int, str] | None:
    if "valid_months" in authorization:
        return authorization["valid_months"], "month"
    if "valid_days" in authorization:
        return authorization["valid_days"], "day"
    return None


def _code_groups(entries: list[tuple[Source, tuple[object, ...]]], shared: _Shared,
                 problems: Problems) -> tuple[CodeGroup, ...]:
    """The policy's code groups. Entries in force over the same dates (every plain code, range or
    list) are joined into one group, so that many entries cost no more than their codes."""
    members: dict[tuple[dt.date | None, dt.date | None], list[CodeSet]] = {}
    for src, key in entries:
        entry = src.value_at(key)
        if isinstance(entry, dict):
            listed, texts = key + ("codes",), src.texts(*key, "codes")
            effective = _date(entry["effective"], partial(src.at, *key, "effective"), problems) if "effective" in entry else None
            end = _date(entry["end"], partial(src.at, *key, "end"), problems) if "end" in entry else None
        else:
            listed, texts, effective, end = None, (src.raw(*key),), None, None
        if (effective, end) not in members and len(members) == MAX_CODE_GROUPS:
            problems.add(src.at(*key), "E-code-groups", f"codes are listed under more than {MAX_CODE_GROUPS} "
                                                        "different pairs of dates; join the groups")
            break
        found = members.setdefault((effective, end), [])
        for i, text in enumerate(texts):
            try:
                found.append(shared.code_item(text))
            except CodeError as exc:
                problems.add(src.at(*key) if listed is None else src.at(*listed, i), "E-code", str(exc))
    groups, budget = [], EXPAND_BUDGET  # exact codes the policy's groups may hold, ranges expanded
    for (effective, end), sets in members.items():
        codes = join(sets, budget)
        budget = max(0, budget - len(codes.exact))
        groups.append(shared.value(CodeGroup(codes, effective, end)))
    return tuple(groups)


def _condition(src: Source, key: tuple[object, ...], conditions: _Conditions,
               problems: Problems) -> tuple[str, Lazy, frozenset[str]] | None:
    """Parse and check the condition at ``key``; returns (text, program, facts)."""
    value = src.value_at(key)
    text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    try:
        test, facts = conditions.compile(text)
    except ConditionError as exc:
        spot = src.locations.find(key)
        line, column = position_in_scalar(spot, exc.line, exc.column, src.lines)
        problems.add(Location(src.path, line, column), exc.code, exc.message)
        return None
    return conditions.shared.value(text), test, facts


def _doc_refs(src: Source, key: tuple[object, ...], conditions: _Conditions, catalogue: dict[str, DocItem],
              problems: Problems) -> tuple[DocRef, ...]:
    refs = []
    for i, ref in enumerate(src.value_at(key)):
        doc_id = ref["id"] if isinstance(ref, dict) else ref
        if doc_id not in catalogue:
            problems.add(src.at(*key, i), "E-unknown-doc",
                         f"documentation item '{doc_id}' is not in the policy's documentation catalogue")
            continue
        if isinstance(ref, dict) and "when" in ref:
            compiled = _condition(src, key + (i, "when"), conditions, problems)
            if compiled:
                refs.append(DocRef(doc_id, compiled[1], compiled[0]))
        else:
            refs.append(DocRef(doc_id))
    return tuple(refs)


def _outcome(src: Source, key: tuple[object, ...], data: dict[str, Any], conditions: _Conditions,
             catalogue: dict[str, DocItem], problems: Problems) -> Outcome:
    docs = _doc_refs(src, key + ("documentation",), conditions, catalogue, problems) if "documentation" in data else ()
    return conditions.shared.value(Outcome(data.get("pa_needed", NO_AUTH), data.get("covered", COVERED), docs,
                                           data.get("reason", "")))


def _rule(src: Source, key: tuple[object, ...], index: int, conditions: _Conditions, catalogue: dict[str, DocItem],
          problems: Problems) -> Rule | None:
    data = src.value_at(key)
    compiled = _condition(src, key + ("when",), conditions, problems)
    outcome = _outcome(src, key, data, conditions, catalogue, problems)
    if compiled is None:
        return None
    text, _, facts = compiled
    return Rule(conditions.shared.value(data.get("id", f"rule-{index + 1}")), index, text, facts, outcome,
                src.at(*key))


def _check_versions(policies: list[Policy], problems: Problems) -> None:
    """Versions of one policy id (for one plan set) must not overlap in time."""
    by_key: dict[tuple[str, str | None], list[Policy]] = {}
    for policy in policies:
        by_key.setdefault((policy.id, policy.extends), []).append(policy)
    for versions in by_key.values():
        versions.sort(key=lambda p: p.effective)
        for earlier, later in zip(versions, versions[1:]):
            if earlier.end is None or later.effective <= earlier.end:
                if earlier.location.path == later.location.path:
                    continue  # one child file merged with consecutive base versions
                problems.add(later.location, "E-version-overlap",
                             f"policy '{later.id}' version from {later.effective} overlaps the version at "
                             f"{earlier.location} ({earlier.effective} to {earlier.end or 'open'})")
