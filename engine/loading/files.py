"""The files of a rule tree: which are read, in what order, their bytes, their tree digest and their
located YAML values, with the problems of those that cannot be read."""
from __future__ import annotations

import ctypes
import gc
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from engine.loading.parallel import Read
from engine.loading.source import Problems, Source
from engine.loading.yamlsource import MAX_FILE_BYTES, YamlError, check_size
from engine.policy import Location


TESTS_SUFFIX = ".tests.yaml"


PAYER_FILE = "_payer.yaml"


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


def read_bytes(path: Path) -> bytes:
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


_ID_LINE = re.compile(rb"^id:[ \t]*[\"']?([a-z0-9][a-z0-9-]*)[\"']?[ \t]*(#.*)?$", re.MULTILINE)


def written_id(value: object) -> str | None:
    """The policy id of a file that could not be read: its ``id`` value, or the ``id:`` line of its
    raw bytes; None when there is none."""
    if isinstance(value, bytes):
        match = _ID_LINE.search(value)
        return match.group(1).decode() if match else None
    return value if isinstance(value, str) else None


def file_texts(root: Path, paths: list[Path], files: list[str], digest: Any,
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
            raw = read_bytes(path)
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


def read_source(shown: str, text: str | None, read: Read, problems: Problems) -> Source | None:
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
