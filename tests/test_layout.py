"""The house's layout holds: the library imports nothing above it, modules stay readable, the
import graph has no cycles, and the command line runs from its own package."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIBRARY_AND_SERVICE = ("engine", "service", "covreq", "dask_batch")
MAX_MODULE_LINES = 500


def _modules() -> dict[str, Path]:
    """Every module of the project's packages, by dotted name."""
    found = {}
    for package in LIBRARY_AND_SERVICE:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports_at_load(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """The project modules ``path`` imports when it is loaded (module level, outside TYPE_CHECKING)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for inner in ast.walk(node) if isinstance(node, (ast.Import, ast.ImportFrom, ast.If, ast.Try)) else ():
            if isinstance(inner, ast.Import):
                targets = [alias.name for alias in inner.names]
            elif isinstance(inner, ast.ImportFrom):
                base = inner.module or ""
                if inner.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - inner.level + 1] + ([base] if base else []))
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in inner.names]
            else:
                continue
            found |= {t for t in targets if t in modules and t != name}
    return found


def test_engine_imports_nothing_above_it() -> None:
    modules = _modules()
    above = [(name, target) for name, path in modules.items() if name.split(".")[0] == "engine"
             for target in _imports_at_load(path, name, modules) if target.split(".")[0] != "engine"]
    lazy = [(name, line.strip()) for name, path in modules.items() if name.split(".")[0] == "engine"
            for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip().startswith(("import service", "from service", "import dask_batch", "from dask_batch",
                                        "import covreq", "from covreq"))]
    assert above == [] and lazy == []


def test_no_module_is_longer_than_the_limit() -> None:
    long = {name: n for name, path in _modules().items() if name.split(".")[0] in ("engine", "service", "covreq")
            and (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert long == {}


def test_the_import_graph_has_no_cycles() -> None:
    modules = _modules()
    graph = {name: _imports_at_load(path, name, modules) for name, path in modules.items()}
    # a package importing its own submodules (an __init__ re-exporting) is not a cycle of concern
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if node.startswith(target + "."):  # a module reaching its parent package, loaded first
                continue
            if state.get(target) == 1:
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target, [*stack, target])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_python_m_covreq_runs_the_command_line() -> None:
    result = subprocess.run([sys.executable, "-m", "covreq", "validate", str(ROOT / "rules")], capture_output=True,
                            text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("ok: ")


def test_the_library_api_is_the_documented_one() -> None:
    import engine
    assert set(engine.__all__) == {"ConditionError", "CovreqError", "LoadError", "Problem", "RequestError",
                                   "RuleSet", "load"}
    rules = engine.load(ROOT / "rules")
    answer = rules.evaluate({"payer": "medicare", "date_of_service": "2024-03-14", "place_of_service": "22",
                             "services": [{"code": "15823"}]})
    assert answer["decisions"][0]["pa_needed"] == "auth-needed"


def test_docs_architecture_names_every_module() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    unnamed = sorted(str(path.relative_to(ROOT)) for name, path in _modules().items()
                     if path.name != "__init__.py" and f"`{path.relative_to(ROOT)}`" not in text)
    assert unnamed == []
