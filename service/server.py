"""Run the service under uvicorn; ``covreq serve`` calls ``run``."""
from __future__ import annotations

import ipaddress
import logging
import os
import shutil
import signal
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import uvicorn
from fastapi import FastAPI
from uvicorn.supervisors import Multiprocess

from engine import LoadError
from engine.bundle import BundleError
from service import logs
from service.app import create_app
from service.dtr.signing import Keyring
from service.metrics import MULTIPROCESS_ENV
from service.protocol import guarded
from service.settings import Settings
from service.store.database import share_between_workers

RULES_ENV = "COVREQ_RULES"
DTR_KEYS_ENV = "COVREQ_DTR_KEYS"
log = logging.getLogger("covreq.service")


class StartupError(Exception):
    """The service cannot start; the message is one line for the operator."""


def app_from_env() -> FastAPI:
    """App factory (also of worker processes): the rule tree comes from ``COVREQ_RULES`` (or the bundle
    at ``COVREQ_BUNDLE_URL``), the settings from the environment; raises :class:`StartupError` when
    either is unusable."""
    rules = os.environ.get(RULES_ENV)
    try:
        settings = Settings.from_env()
        logs.configure(settings.json_logs, settings.log_level)
        return create_app(rules, settings)
    except LoadError as exc:
        first, more = exc.problems[0], len(exc.problems) - 1
        raise StartupError(f"cannot load the rule tree {rules}: {first}"
                           + (f" (and {more} more: covreq validate {rules} lists them)" if more else "")) from None
    except BundleError as exc:
        raise StartupError(f"bundle refused: {exc}") from None
    except (ValueError, OSError) as exc:  # settings, payer mapping, credentials files
        raise StartupError(f"cannot start: {' '.join(str(exc).split())}") from None


class ReloadingSupervisor(Multiprocess):
    """uvicorn's worker supervisor, except that SIGHUP is passed on to every worker, which reloads
    its rule tree in place and keeps its last good rule set when the new tree is broken. (uvicorn
    itself restarts the workers on SIGHUP: with a broken tree they would fail to start.)"""

    def handle_hup(self) -> None:
        """Forward SIGHUP to each live worker."""
        for process in self.processes:
            if process.pid is not None and process.exitcode is None:
                os.kill(process.pid, signal.SIGHUP)


@contextmanager
def _metrics_folder() -> Iterator[None]:
    """Give the workers a folder for prometheus-client's multiprocess mode while they run: the
    operator's ``PROMETHEUS_MULTIPROC_DIR``, emptied of an earlier run's files, or a fresh one that
    is removed afterwards."""
    folder = os.environ.get(MULTIPROCESS_ENV)
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        for stale in Path(folder).glob("*.db"):
            stale.unlink()
        yield
        return
    os.environ[MULTIPROCESS_ENV] = created = tempfile.mkdtemp(prefix="covreq-metrics-")
    try:
        yield
    finally:
        del os.environ[MULTIPROCESS_ENV]
        shutil.rmtree(created, ignore_errors=True)


@contextmanager
def _replica_key() -> Iterator[None]:
    """Without ``COVREQ_DTR_KEYS``, one random DTR signing key shared by the workers of this replica
    (each would otherwise make its own and refuse the forms the others signed), in a private file
    removed afterwards."""
    if os.environ.get(DTR_KEYS_ENV):
        yield
        return
    folder = Path(tempfile.mkdtemp(prefix="covreq-dtr-keys-"))
    Keyring.write_random(folder / "keys.yaml")
    os.environ[DTR_KEYS_ENV] = str(folder / "keys.yaml")
    try:
        yield
    finally:
        del os.environ[DTR_KEYS_ENV]
        shutil.rmtree(folder, ignore_errors=True)


def run(rules: str | None, host: str = "127.0.0.1", port: int = 8000, workers: int = 1) -> None:
    """Serve the rule tree at ``rules`` (or, when None, the bundle at ``COVREQ_BUNDLE_URL``); with
    ``workers > 1`` each worker loads it itself. Raises :class:`StartupError` before anything
    listens when the tree or the configuration is unusable."""
    try:  # fail before loading anything when the address is taken
        socket.create_server((host, port)).close()
    except OSError as exc:
        raise StartupError(f"cannot listen on {host}:{port}: {os.strerror(exc.errno) if exc.errno else exc}") from None
    if rules is not None:
        os.environ[RULES_ENV] = rules
    if workers > 1:  # issue 26 item 6: one replay store for the workers (service/store/database.py)
        share_between_workers()
    app = app_from_env()
    warn_without_public_url(app.state.settings, host)
    limits = _connection_limits(app.state.settings)
    if workers > 1:  # the app was only a check: each worker builds its own
        if app.state.bundles:
            app.state.bundles.stop()  # removes the check's downloaded copy of the bundle
        del app
        config = uvicorn.Config("service.server:app_from_env", factory=True, host=host, port=port,
                                workers=workers, log_config=None, **limits)
        listener = config.bind_socket()
        # uvicorn binds the shared listener without IPPROTO_TCP, so asyncio leaves Nagle on for the
        # connections it accepts and each keep-alive response waits ~40 ms for a delayed ACK
        # (Kludex/uvicorn#3149); accepted sockets inherit TCP_NODELAY from the listener.
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with _metrics_folder(), _replica_key():
            ReloadingSupervisor(config, sockets=[listener]).run()
    else:
        uvicorn.run(app, host=host, port=port, log_config=None, **limits)


def warn_without_public_url(settings: Settings, host: str) -> bool:
    """Warn (and return True) when the service listens beyond loopback with no public URL configured:
    the forms it hands out are then named after whichever local address a connection reached."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback or settings.fhir_base or settings.service_url or settings.public_hosts:
        return False
    log.warning("listening on %s without COVREQ_FHIR_BASE, COVREQ_SERVICE_URL or COVREQ_PUBLIC_HOSTS: "
                "Questionnaire canonicals are named after the local address each connection reached", host,
                extra={"event": "no-public-url"})
    return True


def _connection_limits(settings: Settings) -> dict[str, Any]:
    """uvicorn's options for the connection limits of ``settings`` (docs/operations.md, "Limits")."""
    return {"http": guarded(settings.request_timeout, settings.max_connections, settings.max_header_bytes),
            "timeout_keep_alive": settings.keep_alive_timeout,
            "h11_max_incomplete_event_size": settings.max_header_bytes}
