"""``covreq serve`` that cannot start says why in one line and exits 1, never with a traceback."""
from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from serving import free_port

ROOT = Path(__file__).resolve().parents[2]
BROKEN = ROOT / "docs" / "examples" / "mistakes"


def serve(args: list[str], env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``covreq serve ARGS`` run to its end, on a free port unless ``ARGS`` name one (port 8000 may
    be taken: by README command 1's service, say, which a newcomer runs before the tests)."""
    port = [] if "--port" in args else ["--port", str(free_port())]
    return subprocess.run([sys.executable, "-m", "covreq", "serve", *args, *port], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **env})


@pytest.mark.parametrize("args, env, line", [
    (["--rules", "nope"], {}, "covreq serve: cannot load the rule tree nope: nope:1:1: E-io: no such file or folder"),
    (["--rules", str(BROKEN)], {}, f"covreq serve: cannot load the rule tree {BROKEN}: {BROKEN}/acme/mri.yaml:5:12: "
                                   "E-date: '2025-02-30' is not a real calendar date (and 2 more: covreq validate"),
    (["--rules", str(ROOT / "rules")], {"COVREQ_AUTH_ISSUERS": "issuers.yaml"},
     "covreq serve: cannot start: trusted JWT issuers need the service URL (the JWT audience)"),
    (["--rules", str(ROOT / "rules")], {"COVREQ_API_KEYS": "keys.yaml"},
     "covreq serve: cannot start: keys.yaml: No such file or directory"),
    (["--rules", str(ROOT / "rules")], {"COVREQ_PAYERS": str(ROOT / "README.md")},
     f"covreq serve: cannot start: {ROOT / 'README.md'}:3:1: a value cannot start with '`'; quote the value"),
    (["--rules", str(ROOT / "rules")], {"COVREQ_MAX_BODY_BYTES": "lots"},
     "covreq serve: cannot start: COVREQ_MAX_BODY_BYTES must be a whole number, not 'lots'"),
    (["--rules", str(ROOT / "rules")], {"COVREQ_DTR_KEYS": str(ROOT / "README.md")},
     f"covreq serve: cannot start: {ROOT / 'README.md'}:3:1: a value cannot start with '`'; quote the value"),
    (["--rules", str(ROOT / "rules")], {"COVREQ_DTR_KEYS": str(ROOT / "rules" / "cigna" / "_payer.yaml")},
     f"covreq serve: cannot start: {ROOT / 'rules' / 'cigna' / '_payer.yaml'}: expected a mapping with 'active' and 'keys'"),
    (["--rules", str(ROOT / "rules")], {"COVREQ_SMART_CLIENTS": str(ROOT / "rules" / "cigna" / "_payer.yaml")},
     f"covreq serve: cannot start: {ROOT / 'rules' / 'cigna' / '_payer.yaml'}: expected a mapping with a list of "
     "clients under 'clients'"),
])
def test_serve_that_cannot_start_prints_one_clear_line_and_exits_one(
        args: list[str], env: dict[str, str], line: str, tmp_path: Path) -> None:
    """Regression (issue 15, item 6): `covreq serve` printed a traceback when it could not start."""
    done = serve(args, env, tmp_path)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(line), done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_serve_on_a_port_in_use_says_so_before_loading_anything(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = serve(["--rules", "nope", "--port", str(port)], {}, tmp_path)
    assert done.returncode == 1
    assert done.stderr == f"covreq serve: cannot listen on 127.0.0.1:{port}: Address already in use\n"


@pytest.mark.skipif(sys.platform == "win32" or sys.implementation.name != "cpython",
                    reason="uvloop is a dependency only on CPython outside Windows")
def test_served_requests_run_on_uvloop() -> None:
    """uvicorn's automatic choice of event loop (``covreq serve`` sets none) is uvloop: a dependency
    of the service, which serves about twice the requests per second of asyncio's own loop."""
    import uvloop
    from uvicorn.loops.auto import auto_loop_factory

    loop = auto_loop_factory()()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()
