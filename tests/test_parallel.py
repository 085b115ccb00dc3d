"""Reading a tree's YAML in a worker process (engine/loading/parallel.py) gives exactly what reading it here
gives: the same policies, problems (wording, place, code), files and digest, in the same order."""
from __future__ import annotations

import dataclasses
import os
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from engine.loading import parallel
from engine.language.codegen import Lazy
from engine.loading.loader import Tree, read_tree
from engine.loading.yamlsource import KEY, YamlError

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _plain(value: Any) -> Any:
    """A policy as comparable values (compiled programs are compiled anew by each load)."""
    if isinstance(value, Lazy):
        return "program"
    if dataclasses.is_dataclass(value):
        return (type(value).__name__, *((f.name, _plain(getattr(value, f.name))) for f in dataclasses.fields(value)))
    if isinstance(value, (list, tuple)):
        return tuple(_plain(v) for v in value)
    if isinstance(value, dict) or hasattr(value, "items"):
        return tuple((k, _plain(v)) for k, v in value.items())
    if isinstance(value, (set, frozenset)):
        return tuple(sorted(map(repr, value)))
    return value


def _summary(tree: Tree) -> tuple[Any, ...]:
    return (_plain(tree.policies), _plain(tree.payers), tree.digest, tree.files, [repr(p) for p in tree.problems])


def _mixed_tree(tmp_path: Path) -> Path:
    """The bundled rules, a tree of planted mistakes and files that cannot be read, side by side."""
    root = tmp_path / "tree"
    shutil.copytree(ROOT / "rules", root / "rules")
    shutil.copytree(FIXTURES / "ten_mistakes", root / "mistakes")
    (root / "broken").mkdir()
    (root / "broken" / "latin1.yaml").write_bytes("id: caf\xe9\n".encode("latin-1"))
    (root / "broken" / "tabs.yaml").write_text("id: x\n\tpayer: y\n", encoding="utf-8")
    (root / "broken" / "list.yaml").write_text("- a\n- b\n", encoding="utf-8")
    (root / "broken" / "dup.yaml").write_text("id: x\nid: y\n", encoding="utf-8")
    (root / "broken" / "bomb.yaml").write_text("a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{n}: &{n} [{', '.join([f'*{p}'] * 10)}]\n" for p, n in zip("abcdef", "bcdefg")), encoding="utf-8")
    (root / "broken" / "empty.yaml").write_text("", encoding="utf-8")
    (root / "broken" / "huge.yaml").write_bytes(b"notes: " + b"x" * 1_100_000 + b"\n")
    os.symlink("/etc/hostname", root / "broken" / "outside.yaml")
    return root


def _read_here_counted(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The texts this process reads itself from now on (a worker's reads are not counted here)."""
    read_here, counted = parallel._read_here, []
    monkeypatch.setattr(parallel, "_read_here", lambda text: counted.append(text) or read_here(text))
    return counted


def test_a_tree_read_in_a_worker_is_the_tree_read_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _mixed_tree(tmp_path)
    here = read_tree(root, workers=0)
    counted = _read_here_counted(monkeypatch)
    there = read_tree(root, workers=1)
    assert counted == []  # the worker read every text
    assert {p.code for p in here.problems} >= {"E-encoding", "E-yaml", "E-schema", "E-duplicate-key",
                                              "E-yaml-too-large", "E-file-too-large", "E-link", "E-syntax"}
    assert _summary(there) == _summary(here)


def _die(texts: list[str | None]) -> None:
    os._exit(3)  # as a worker killed for its memory would


def test_a_worker_that_dies_leaves_the_reading_to_this_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _mixed_tree(tmp_path)
    here = read_tree(root, workers=0)
    monkeypatch.setattr(parallel, "_start_method", lambda: parallel.multiprocessing.get_context("fork"))
    monkeypatch.setattr(parallel, "read_batch", _die)
    counted = _read_here_counted(monkeypatch)
    assert _summary(read_tree(root, workers=1)) == _summary(here)
    assert len(counted) == len(here.files)  # every file the tree reads, read here


def test_a_small_tree_starts_no_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a worker was started")
    monkeypatch.setattr(parallel, "ProcessPoolExecutor", refuse)
    assert read_tree(ROOT / "rules").policies
    items = [(i, "a: 1\n") for i in range(parallel.MIN_FILES - 1)]
    assert len(list(parallel.read_texts(items, len(items)))) == len(items)


_TEXT = st.one_of(st.none(), st.text(alphabet="ab1:-[]{},'\"&*#\n !|", max_size=40),
                  st.sampled_from(["rules:\n  - when: 'x'\n    n: 017\n", "a: &x [1, 2]\nb: *x\n", "{a: 1, a: 2}", "- [a\n"]))


@settings(max_examples=20, deadline=None)
@given(st.lists(_TEXT, min_size=1, max_size=70))
def test_any_text_read_in_a_worker_reads_and_is_located_as_here(texts: list[str | None]) -> None:
    items = [(i, text) for i, text in enumerate(texts)]
    there = list(parallel.read_texts(items, len(items), workers=1))
    assert [i for i, _ in there] == list(range(len(texts)))
    for (_, text), (_, read) in zip(items, there):
        expected = parallel._read_here(text)
        if expected is None or isinstance(expected, YamlError):
            assert type(read) is type(expected)
            assert getattr(read, "__dict__", None) == getattr(expected, "__dict__", None)
            continue
        assert isinstance(read, tuple) and read[0] == expected[0]
        for path in _paths(expected[0]):
            for asked in (path, (*path, KEY), (*path, "absent", 0)):
                assert read[1].get(asked) == expected[1].get(asked)
                assert read[1].find(asked) == expected[1].find(asked)


def _paths(value: Any, path: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    return [path, *(p for key, item in items for p in _paths(item, (*path, key)))]


def _read_in_daemon(root: str, answer: Any) -> None:
    answer.put(_summary(read_tree(root, workers=1)))


def test_a_daemon_process_reads_the_tree_itself(tmp_path: Path) -> None:
    """A daemon (a Dask or multiprocessing pool worker) may start no process of its own."""
    root = _mixed_tree(tmp_path)
    context = parallel.multiprocessing.get_context("fork")
    answer = context.Queue()
    daemon = context.Process(target=_read_in_daemon, args=(str(root), answer), daemon=True)
    daemon.start()
    got = answer.get(timeout=60)
    daemon.join()
    assert got == _summary(read_tree(root, workers=0))


def test_with_threads_running_the_worker_starts_afresh_and_reads_the_same(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A forked copy of a process with threads may wait for a lock another thread held: spawn."""
    root = _mixed_tree(tmp_path)
    counted = _read_here_counted(monkeypatch)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert parallel._start_method().get_start_method() == "spawn"
        there = read_tree(root, workers=1)
    finally:
        stop.set()
        other.join()
    assert counted == []  # the worker started afresh read every text
    assert _summary(there) == _summary(read_tree(root, workers=0))
