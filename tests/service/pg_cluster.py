"""A throwaway PostgreSQL cluster for the tests that need the fleet's database (issue 26 item 6).

``postgres_url`` is session-scoped: ``initdb`` in a temporary folder, ``pg_ctl start`` with its unix
socket in that folder and a free loopback port, one database made, the cluster stopped and removed
at the end. PostgreSQL refuses to run as root, so as root (CI) the cluster runs as ``nobody``
through ``runuser``. Skipped, saying why, when ``initdb`` is not installed (.ci/run installs it).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest
from sqlalchemy import create_engine, text

from serving import free_port

USER = "covreq"
DATABASE = "covreq_test"


def _as_cluster_owner(command: list[str], folder: Path) -> list[str]:
    """``command`` as the cluster's owner: as is, or, for root, as ``nobody`` (who then owns ``folder``)."""
    if os.geteuid() != 0:
        return command
    shutil.chown(folder, "nobody")
    return [shutil.which("runuser") or "runuser", "-u", "nobody", "--", *command]


def _binary(name: str) -> str | None:
    """A PostgreSQL server program: on PATH, else in Debian's ``/usr/lib/postgresql/<version>/bin``."""
    installed = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=lambda p: p.parts[-3])
    return shutil.which(name) or (str(installed[-1]) if installed else None)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The URL of an empty database in a PostgreSQL cluster started for this test session."""
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL's initdb and pg_ctl are not installed (PostgreSQL 15 server binaries)")
    folder = Path(tempfile.mkdtemp(prefix="covreq-pg-"))
    data, port = folder / "data", free_port()
    run = {"cwd": folder, "stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "timeout": 120, "check": True}
    try:
        subprocess.run(_as_cluster_owner([initdb, "-D", str(data), "-U", USER, "--auth=trust", "-E", "UTF8",
                                          "--no-sync"], folder), **run)
        subprocess.run(_as_cluster_owner([pg_ctl, "-D", str(data), "-l", str(folder / "postgres.log"), "-w",
                                          "-t", "60", "-o", f"-k {folder} -p {port} -h 127.0.0.1 -F", "start"],
                                         folder), **run)
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise AssertionError(f"the test PostgreSQL cluster did not start: {exc.stdout.decode()[-2000:]}") from None
    try:
        admin = create_engine(f"postgresql+psycopg://{USER}@127.0.0.1:{port}/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f"CREATE DATABASE {DATABASE}"))
        admin.dispose()
        yield f"postgresql://{USER}@127.0.0.1:{port}/{DATABASE}"
    finally:
        subprocess.run(_as_cluster_owner([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"], folder),
                       cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)
