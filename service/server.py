"""Run the service under uvicorn; ``covreq serve`` calls ``run``.

With a certificate configured (``COVREQ_SSL_CERTFILE``) the service speaks HTTPS only, from an
``ssl.SSLContext`` each serving process builds and keeps (:class:`Certificates`): SIGHUP builds a
context from the files again and new handshakes use it, with no restart (connections already open
keep theirs). The start-up log line ``listening`` names the address, scheme and rule
set; SIGTERM lets requests under way finish for ``COVREQ_SHUTDOWN_SECONDS`` before the ``stopped``
line (service/app.py).
"""
from __future__ import annotations

import functools
import logging
import math
import os
import shutil
import signal
import socket
import ssl
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import uvicorn
from fastapi import FastAPI
from uvicorn.supervisors import Multiprocess

from engine import LoadError
from engine.loading.bundle import BundleError
from service import logs
from service.app import create_app
from service.dtr.signing import Keyring
from service.hosts import is_loopback
from service.metrics import MULTIPROCESS_ENV
from service.protocol import guarded
from service.settings import Settings
from service.smart.tokens import AccessTokens
from service.store.database import share_between_workers

RULES_ENV = "COVREQ_RULES"
DTR_KEYS_ENV = "COVREQ_DTR_KEYS"
SMART_TOKEN_KEY_ENV = "COVREQ_SMART_TOKEN_KEY"
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
        tls = Tls.from_settings(settings)
        app = create_app(rules, settings)
        app.state.tls = tls
        if tls:
            app.state.hup_hooks.append(reload_certificates)
        return app
    except LoadError as exc:
        first, more = exc.problems[0], len(exc.problems) - 1
        raise StartupError(f"cannot load the rule tree {rules}: {first}"
                           + (f" (and {more} more: covreq validate {rules} lists them)" if more else "")) from None
    except BundleError as exc:
        raise StartupError(f"bundle refused: {exc}") from None
    except (ValueError, OSError) as exc:  # settings, payer mapping, credentials files, TLS files
        raise StartupError(f"cannot start: {' '.join(str(exc).split())}") from None


#: ``COVREQ_SSL_CLIENT_CERT``: whether a client certificate is asked for, and required.
CLIENT_CERT = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}


@dataclass(frozen=True)
class Tls:
    """HTTPS: the certificate chain and its key (loaded again on SIGHUP), and the CA that signs the
    clients' certificates (mutual TLS) with whether one is ``required`` or ``optional``."""

    certfile: Path
    keyfile: Path | None = None
    ca_certs: Path | None = None
    client_cert: str = "none"

    @classmethod
    def from_settings(cls, settings: Settings) -> Tls | None:
        """The TLS configuration of ``settings`` (None: plain HTTP), its files checked; raises
        ValueError naming the setting or file that is unusable."""
        if settings.ssl_certfile is None:
            if settings.ssl_keyfile or settings.ssl_ca_certs or settings.ssl_client_cert:
                raise ValueError("COVREQ_SSL_KEYFILE, COVREQ_SSL_CA_CERTS and COVREQ_SSL_CLIENT_CERT need "
                                 "COVREQ_SSL_CERTFILE (--ssl-certfile)")
            return None
        client_cert = (settings.ssl_client_cert or ("required" if settings.ssl_ca_certs else "none")).lower()
        if client_cert not in CLIENT_CERT:
            raise ValueError(f"COVREQ_SSL_CLIENT_CERT is none, optional or required, not {client_cert[:32]!r}")
        if client_cert != "none" and settings.ssl_ca_certs is None:
            raise ValueError("COVREQ_SSL_CLIENT_CERT needs COVREQ_SSL_CA_CERTS (--ssl-ca-certs): the CA that "
                             "signs the clients' certificates")
        tls = cls(settings.ssl_certfile, settings.ssl_keyfile, settings.ssl_ca_certs, client_cert)
        tls.context()
        return tls

    def context(self) -> ssl.SSLContext:
        """A server context with these files (TLS 1.2 or later); raises ValueError saying which file
        is unusable and why."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.verify_mode = CLIENT_CERT[self.client_cert]
        self.load(context)
        return context

    def load(self, context: ssl.SSLContext) -> None:
        """Load the files into ``context``; raises ValueError."""
        for path in (self.certfile, self.keyfile, self.ca_certs):
            if path is not None and not os.access(path, os.R_OK):
                raise ValueError(f"TLS file {path}: {'cannot be read' if path.exists() else 'no such file'}")
        try:
            context.load_cert_chain(self.certfile, self.keyfile, password=_no_password)
        except ssl.SSLError as exc:
            raise ValueError(f"TLS certificate {self.certfile}" + (f" with key {self.keyfile}" if self.keyfile else "")
                             + (": the private key is not the certificate's" if exc.reason == "KEY_VALUES_MISMATCH"
                                else ": not a PEM certificate chain with its private key (unencrypted)")) from None
        if self.ca_certs is not None:
            try:
                context.load_verify_locations(self.ca_certs)
            except ssl.SSLError:
                raise ValueError(f"TLS client CA file {self.ca_certs}: not PEM CA certificates") from None


def _no_password() -> bytes:
    """The password of an encrypted key: none (OpenSSL would otherwise prompt on the terminal)."""
    return b""


class Certificates:
    """The TLS context uvicorn serves with, whose certificate can be replaced while it serves: each
    handshake is switched (by its SNI callback, called with or without a server name) to the
    context built last, so a reload is one reference assignment, and a new pair that does not
    load leaves nothing half-replaced."""

    def __init__(self, tls: Tls) -> None:
        self.tls = tls
        self.serving = tls.context()  # uvicorn's: the listener keeps it for good
        self.current = self.serving
        self.serving.sni_callback = self._switch

    def _switch(self, connection: ssl.SSLObject, server_name: str | None, context: ssl.SSLContext) -> None:
        if self.current is not self.serving:
            connection.context = self.current

    def reload(self) -> None:
        """Build a context from the files as they are now and put it in service for new handshakes;
        raises ValueError (the one in service kept) when they do not load."""
        self.current = self.tls.context()


#: The certificates of the TLS context this process serves with (None before it serves, or without TLS).
_SERVING: list[Certificates] = []


def serving_context(tls: Tls, config: uvicorn.Config, default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
    """uvicorn's ``ssl_context_factory``: the context is built here, in the serving process, and
    kept for :func:`reload_certificates`."""
    certificates = Certificates(tls)
    _SERVING.append(certificates)
    return certificates.serving


def reload_certificates() -> None:
    """SIGHUP: put the certificate files in service again in each context this process serves
    with; a pair that does not load is refused (logged) and the one in service kept."""
    for certificates in _SERVING:
        try:
            certificates.reload()
        except ValueError as exc:
            log.error("TLS certificate not reloaded, the one in service is kept: %s", exc,
                      extra={"event": "tls-reload-failed", "pid": os.getpid()})
            continue
        log.info("TLS certificate reloaded", extra={"event": "tls-reloaded", "pid": os.getpid(),
                                                    **certificate_facts(certificates.tls.certfile)})


def certificate_facts(certfile: Path) -> dict[str, str]:
    """The serial number and expiry of the first certificate in ``certfile``, for the logs; empty
    when it cannot be read."""
    from cryptography import x509

    try:
        certificate = x509.load_pem_x509_certificate(certfile.read_bytes())
    except (OSError, ValueError):
        return {}
    return {"certificate_serial": format(certificate.serial_number, "x"),
            "certificate_expires": certificate.not_valid_after_utc.isoformat()}


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
    """Without ``COVREQ_DTR_KEYS`` (or ``COVREQ_SMART_TOKEN_KEY``), one random DTR signing key (SMART
    access-token key) shared by the workers of this replica (each would otherwise make its own and
    refuse the forms, or tokens, the others signed), in a private file removed afterwards."""
    wanted = ((DTR_KEYS_ENV, "keys.yaml", Keyring.write_random),
              (SMART_TOKEN_KEY_ENV, "smart-token.key", AccessTokens.write_random))
    unset = [(env, name, write) for env, name, write in wanted if not os.environ.get(env)]
    if not unset:
        yield
        return
    folder = Path(tempfile.mkdtemp(prefix="covreq-dtr-keys-"))
    for env, name, write in unset:
        write(folder / name)
        os.environ[env] = str(folder / name)
    try:
        yield
    finally:
        for env, _, _ in unset:
            del os.environ[env]
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
    settings: Settings = app.state.settings
    warn_without_public_url(settings, host)
    tls: Tls | None = app.state.tls
    options = {"host": host, "port": port, "log_config": None, **_connection_limits(settings),
               "timeout_graceful_shutdown": None if math.isinf(settings.shutdown_seconds) else settings.shutdown_seconds,
               "ssl_context_factory": functools.partial(serving_context, tls) if tls else None}
    serving = _serving(app.state, rules)
    if workers > 1:  # the app was only a check: each worker builds its own
        if app.state.bundles:
            app.state.bundles.stop()  # removes the check's downloaded copy of the bundle
        del app
        config = uvicorn.Config("service.server:app_from_env", factory=True, workers=workers, **options)
    else:
        config = uvicorn.Config(app, **options)
    listener = config.bind_socket()
    # uvicorn binds the listener without IPPROTO_TCP, so asyncio leaves Nagle on for the connections
    # it accepts and each keep-alive response waits ~40 ms for a delayed ACK (Kludex/uvicorn#3149);
    # accepted sockets inherit TCP_NODELAY from the listener.
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    _log_listening(listener, tls, workers, serving)
    if workers > 1:
        with _metrics_folder(), _replica_key():
            ReloadingSupervisor(config, sockets=[listener]).run()
    else:
        uvicorn.Server(config).run(sockets=[listener])


def _serving(state: Any, rules: str | None) -> dict[str, str]:
    """The rule set a service serves and where it comes from, as the start-up line names them: the
    tree's folder, or the bundle URL without its credentials."""
    facts = {"ruleset": state.holder.current.digest}
    if state.bundles:
        return {**facts, "bundle": state.bundles.public_url, "bundle_digest": state.bundles.status()["digest"]}
    return {**facts, "rules": os.environ.get(RULES_ENV, rules or "")}


def _log_listening(listener: socket.socket, tls: Tls | None, workers: int, serving: dict[str, str]) -> None:
    """The start-up line: the address, port and scheme listened on, and the rule set served."""
    host, port = listener.getsockname()[:2]
    scheme = "https" if tls else "http"
    url = f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"
    facts: dict[str, Any] = {"event": "listening", "scheme": scheme, "host": host, "port": port, "url": url,
                             "workers": workers, **serving}
    if tls:
        facts.update(client_cert=tls.client_cert, **certificate_facts(tls.certfile))
    log.info("listening on %s, serving rule set %s from %s", url, serving["ruleset"],
             serving.get("bundle") or serving.get("rules"), extra=facts)


def warn_without_public_url(settings: Settings, host: str) -> bool:
    """Warn (and return True) when the service listens beyond loopback with no public URL configured:
    the forms it hands out are then named after whichever local address a connection reached."""
    if is_loopback(host) or settings.fhir_base or settings.service_url or settings.public_hosts:
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
