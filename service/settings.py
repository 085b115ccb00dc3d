"""Service settings: defaults, overridable from the environment (``COVREQ_*``)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from engine.loading.yamlsource import Locations, YamlError, load_yaml

DEFAULT_PAYERS = Path(__file__).with_name("payers.yaml")


def read_config(path: Path) -> Any:
    """The data of a YAML configuration file (payer mapping, issuers, API keys); raises ValueError
    naming the file, and the line and column of a YAML mistake."""
    return read_config_located(path)[0]


def read_config_located(path: Path) -> tuple[Any, Locations]:
    """:func:`read_config`, with where each value is written (for errors naming file:line)."""
    try:
        return load_yaml(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text") from None
    except YamlError as exc:
        raise ValueError(f"{path}:{exc.line}:{exc.column}: {exc.message}") from None


def _hosts(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """The ``host`` or ``host:port`` names in environment variable ``name`` (spaces or commas between),
    lower-cased; raises ValueError naming the variable for anything that is not a bare host."""
    hosts = tuple(env.get(name, "").replace(",", " ").lower().split())
    for host in hosts:
        if any(c in host for c in "/@?#\\") or host.startswith(":") or host.endswith(":"):
            raise ValueError(f"{name} lists host names (host or host:port, no scheme or path), not {host!r}")
    return hosts


def _whole(env: Mapping[str, str], name: str, default: int) -> int:
    """The whole number in environment variable ``name``; raises ValueError naming the variable."""
    text = env.get(name)
    try:
        return default if text is None else int(text)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, not {text!r}") from None


def _path(env: Mapping[str, str], name: str) -> Path | None:
    """The path in environment variable ``name``; None when it is unset or empty."""
    return Path(env[name]) if env.get(name) else None


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    """The number of seconds (0 or more) in environment variable ``name``; raises ValueError naming it."""
    text = env.get(name)
    try:
        value = default if text is None else float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise ValueError(f"{name} must be a number of seconds, not {text!r}")
    return value


@dataclass(frozen=True)
class Settings:
    """Knobs of one running service.

    ``max_body_bytes`` caps request bodies (413 above it); ``payers`` is the CRD payer mapping
    file; ``admin_token`` must be sent as ``Authorization: Bearer <token>`` to
    ``POST /admin/reload`` (refused while it is unset); ``json_logs`` switches the log format to one JSON object per line.
    ``auth_issuers`` (trusted JWT issuers, with ``service_url`` as the audience) turns on JWTs for
    the CDS Hooks calls; ``api_keys`` (a key file) and ``v1_jwt`` turn on credentials for
    ``/v1/*`` (service/auth.py). An issuer's ``jwks_uri`` is fetched at most once per
    ``jwks_refresh_seconds``, again after ``jwks_max_age_seconds``, each fetch within
    ``jwks_timeout_seconds``; ``jwks_allow_http`` permits http:// beyond loopback (service/jwks.py). ``audit_path`` is the JSON Lines audit file (service/audit.py).
    ``bundle_url`` serves rules from a bundle (service/bundles.py), polled every
    ``bundle_poll_seconds``, each download allowed ``bundle_timeout_seconds``, signatures verified
    with ``bundle_public_key`` (required when set), unpacked under ``bundle_dir`` (default: a
    temporary folder).
    ``subscription_endpoints`` are the URLs (or URL prefixes ending in ``/``) PAS subscriptions may
    have covreq notify (``*``: any https URL whose host has only public addresses); each
    notification gets ``subscription_timeout_seconds`` per attempt and ``subscription_attempts``
    attempts (service/pas/notifier.py). ``reviewer_keys`` is the key file of the payer's reviewers
    (``name: sha256:<hex>``, as ``covreq hash-key`` prints): unset, the reviewers' API is refused.
    ``fhir_servers`` are the EHR FHIR base URLs a CDS Hooks call may have covreq query (``*``: any
    https server), each query allowed ``ehr_timeout_seconds`` and ``ehr_max_bytes``, and all the
    queries of one call together, with their R4 checks, ``ehr_call_seconds`` and
    ``ehr_call_max_bytes`` (decoded bytes);
    ``crd_max_orders``, ``crd_max_coverages``, ``crd_max_billing_codes`` (per order) and
    ``crd_max_lines`` (billing codes of all orders) bound the work of one CDS Hooks call (413 above them).
    ``max_response_bytes`` caps the answer of a v1 or CDS Hooks call (413 above it).
    ``strict_audit`` refuses (503) a decision whose audit record cannot be written.
    ``max_connections`` caps the open connections of a process (a new one past it closes the
    oldest waiting for a request; with none waiting, its request gets 503), ``request_timeout``
    the seconds a connection has to deliver a whole request, ``keep_alive_timeout`` the seconds an
    idle connection stays open, and
    ``max_header_bytes`` the size of a request line with its headers (service/protocol.py).
    ``dtr_max_orders``, ``dtr_max_forms`` and ``dtr_max_response_bytes`` bound the work and the
    answer of one DTR call (service/dtr/limits.py; 413 above them).

    Trust at the edge (docs/operations.md, "What covreq refuses at the edge"): ``POST /admin/reload``
    is refused (403) unless ``admin_token`` is set; ``metrics_token``, when set, must be sent as
    ``Authorization: Bearer <token>`` to ``GET /metrics``; ``public_hosts`` are the ``Host`` header
    values whose requests may name the service in the URLs it hands out (Questionnaire canonicals,
    the adaptive-form URL) when ``fhir_base`` is not set (service/dtr/catalogue.py ``fhir_base``).
    ``dtr_keys`` is the key file that signs the context of DTR adaptive forms (service/dtr/signing.py;
    unset: a random key per process); ``dtr_version`` the DTR version answered when a request names
    none (service/dtr/versions.py; 2.0.1, the one CMS-0057-F names, unless set).

    SMART Backend Services on ``/fhir`` (service/smart/): ``smart_clients`` is the client registration
    file (turns it on), ``smart_token_key`` the file holding the secret that signs access tokens
    (unset: a random key per process), ``smart_token_seconds`` their lifetime, and
    ``smart_loopback_http`` lets a client's ``jwks_uri`` be plain http on a loopback address (tests).
    ``crd_version`` is the CRD version a CDS Hooks call without ``davinci-crd.requestedVersion`` is
    answered in (service/crd/discovery.py; default 2.0.1, the version CMS-0057-F names).

    Observability and load (issue 26 items 2 and 7): ``rate_limit`` (``"100/60s"``) turns on a token
    bucket per client, ``rate_limit_burst`` its size (default: the rate's count; service/ratelimit.py);
    ``otlp_endpoint`` sends a span per request by OTLP/HTTP to that collector base URL (the standard
    ``OTEL_EXPORTER_OTLP_*`` variables also do; service/tracing.py).
    unset: a random key per process).

    ``database_url`` is the database shared by workers and replicas (service/store/; the JWT
    ``jti`` replay store): unset, one worker keeps used ``jti`` values in memory, and ``covreq serve
    --workers N`` uses a SQLite file in ``data_dir``. ``decision_log_url`` ships the audit records
    to an HTTP sink (service/decision_log.py), with the bearer token in ``decision_log_token_file``,
    holding at most ``decision_log_max_records`` records and ``decision_log_max_bytes`` bytes while
    the sink is away, and trying ``decision_log_shutdown_seconds`` to deliver the rest at shutdown.
    """

    max_body_bytes: int = 1_048_576
    payers: Path = DEFAULT_PAYERS
    admin_token: str | None = None
    json_logs: bool = True
    log_level: str = "INFO"
    auth_issuers: Path | None = None
    service_url: str | None = None
    api_keys: Path | None = None
    v1_jwt: bool = False
    audit_path: Path = Path("covreq-audit.jsonl")
    fhir_base: str | None = None
    bundle_url: str | None = None
    bundle_public_key: Path | None = None
    bundle_poll_seconds: float = 30.0
    bundle_timeout_seconds: float = 30.0
    bundle_dir: Path | None = None
    fhir_servers: tuple[str, ...] = ()
    ehr_timeout_seconds: float = 3.0
    ehr_max_bytes: int = 2_000_000
    # -- the EHR phase of one CDS Hooks call, as a whole (service/crd/gather.py) --
    ehr_call_seconds: float = 4.0
    ehr_call_max_bytes: int = 4_000_000
    # --
    crd_max_orders: int = 100
    crd_max_coverages: int = 20
    crd_max_billing_codes: int = 50
    crd_max_lines: int = 1000
    max_response_bytes: int = 4_194_304
    strict_audit: bool = False
    max_connections: int = 1000
    request_timeout: float = 30.0
    keep_alive_timeout: float = 5.0
    max_header_bytes: int = 16_384
    # trust at the edge (issue 22 items 4 and 9)
    metrics_token: str | None = None
    public_hosts: tuple[str, ...] = ()
    dtr_keys: Path | None = None
    # keys fetched from an issuer's jwks_uri (issue 26 item 5)
    jwks_refresh_seconds: float = 60.0
    jwks_max_age_seconds: float = 3600.0
    jwks_timeout_seconds: float = 5.0
    jwks_allow_http: bool = False
    # DTR: the work of one $questionnaire-package / $next-question call (service/dtr/limits.py)
    dtr_max_orders: int = 20
    dtr_max_forms: int = 20
    dtr_max_response_bytes: int = 1_048_576
    # SMART Backend Services (service/smart/)
    smart_clients: Path | None = None
    smart_token_key: Path | None = None
    smart_token_seconds: int = 300
    smart_loopback_http: bool = False
    # -- CRD versions (issue 23): the version a CDS Hooks call that asks for none is answered in --
    crd_version: str = "2.0.1"  # COVREQ_CRD_VERSION: 2.0, 2.1 or 2.2 (a patch part is ignored)
    # --
    # -- observability and load (issue 26 items 2 and 7): rate limiting, traces --
    rate_limit: str | None = None
    rate_limit_burst: int | None = None
    otlp_endpoint: str | None = None
    # --
    dtr_version: str = "2.0.1"  # service/dtr/versions.py: the DTR version answered when a request names none
    # -- production operations (issue 26 items 1, 3 and 4): TLS, shutdown, bundle URL headers --
    #: ``ssl_certfile`` (PEM chain) and ``ssl_keyfile`` turn on HTTPS; ``ssl_ca_certs`` verifies client
    #: certificates, which ``ssl_client_cert`` (``none``, ``optional``, ``required``) asks for (server.py).
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_ca_certs: Path | None = None
    ssl_client_cert: str | None = None
    #: Most seconds SIGTERM waits for requests under way before cutting them.
    shutdown_seconds: float = 20.0
    #: Headers sent with each bundle request: a YAML/JSON mapping file, and/or an Authorization value
    #: (secrets: never shown, hence out of ``repr``).
    bundle_headers_file: Path | None = None
    bundle_authorization: str | None = field(default=None, repr=False)
    # --
    # the shared database and the decision-log sink (issue 26 items 6 and 8; docs/operations.md)
    database_url: str | None = None
    data_dir: Path = Path("covreq-data")
    decision_log_url: str | None = None
    decision_log_token_file: Path | None = None
    decision_log_max_records: int = 10_000
    decision_log_max_bytes: int = 16_777_216
    decision_log_shutdown_seconds: float = 5.0
    # -- PAS subscriptions: where notifications may go, and how hard covreq tries (service/pas/notifier.py) --
    subscription_endpoints: tuple[str, ...] = ()
    subscription_timeout_seconds: float = 5.0
    subscription_attempts: int = 3
    # -- PAS reviewers: the key file of the payer's reviewers (service/pas/reviewers.py); unset, their API is refused --
    reviewer_keys: Path | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        """Settings from ``COVREQ_MAX_BODY_BYTES``, ``COVREQ_PAYERS``, ``COVREQ_ADMIN_TOKEN``,
        ``COVREQ_JSON_LOGS`` (``0`` for plain text), ``COVREQ_LOG_LEVEL``, ``COVREQ_AUTH_ISSUERS``,
        ``COVREQ_SERVICE_URL``, ``COVREQ_API_KEYS``, ``COVREQ_V1_JWT`` (``1`` for on),
        ``COVREQ_AUDIT``, ``COVREQ_FHIR_BASE``, ``COVREQ_BUNDLE_URL``, ``COVREQ_BUNDLE_PUBLIC_KEY``,
        ``COVREQ_BUNDLE_POLL_SECONDS``, ``COVREQ_BUNDLE_TIMEOUT_SECONDS``, ``COVREQ_BUNDLE_DIR``,
        ``COVREQ_FHIR_SERVERS`` (base URLs separated by spaces or commas), ``COVREQ_EHR_TIMEOUT_SECONDS``,
        ``COVREQ_EHR_MAX_BYTES``, ``COVREQ_EHR_CALL_SECONDS``, ``COVREQ_EHR_CALL_MAX_BYTES``,
        ``COVREQ_CRD_MAX_ORDERS``, ``COVREQ_CRD_MAX_COVERAGES``,
        ``COVREQ_CRD_MAX_BILLING_CODES``, ``COVREQ_CRD_MAX_LINES``,
        ``COVREQ_MAX_RESPONSE_BYTES``, ``COVREQ_STRICT_AUDIT`` (``1`` for on),
        ``COVREQ_MAX_CONNECTIONS``, ``COVREQ_REQUEST_TIMEOUT``, ``COVREQ_KEEP_ALIVE_TIMEOUT``,
        ``COVREQ_MAX_HEADER_BYTES``, ``COVREQ_METRICS_TOKEN``, ``COVREQ_PUBLIC_HOSTS`` (host names
        separated by spaces or commas), ``COVREQ_DTR_KEYS``, ``COVREQ_JWKS_REFRESH_SECONDS``,
        ``COVREQ_JWKS_MAX_AGE_SECONDS``, ``COVREQ_JWKS_TIMEOUT_SECONDS``, ``COVREQ_JWKS_ALLOW_HTTP``
        (``1`` for on), ``COVREQ_DTR_MAX_ORDERS``, ``COVREQ_DTR_MAX_FORMS``,
        ``COVREQ_DTR_MAX_RESPONSE_BYTES``, ``COVREQ_SMART_CLIENTS``, ``COVREQ_SMART_TOKEN_KEY``,
        ``COVREQ_SMART_TOKEN_SECONDS``, ``COVREQ_SMART_LOOPBACK_HTTP`` (``1`` for on),
        ``COVREQ_CRD_VERSION``, ``COVREQ_RATE_LIMIT``, ``COVREQ_RATE_LIMIT_BURST``,
        ``COVREQ_OTLP_ENDPOINT``, ``COVREQ_DTR_VERSION``, ``COVREQ_SSL_CERTFILE``, ``COVREQ_SSL_KEYFILE``,
        ``COVREQ_SSL_CA_CERTS``, ``COVREQ_SSL_CLIENT_CERT``, ``COVREQ_SHUTDOWN_SECONDS``,
        ``COVREQ_BUNDLE_HEADERS_FILE``, ``COVREQ_BUNDLE_AUTHORIZATION``,
        ``COVREQ_DATABASE_URL``, ``COVREQ_DATA_DIR``, ``COVREQ_DECISION_LOG_URL``, ``COVREQ_DECISION_LOG_TOKEN_FILE``, ``COVREQ_DECISION_LOG_MAX_RECORDS``, ``COVREQ_DECISION_LOG_MAX_BYTES``, ``COVREQ_DECISION_LOG_SHUTDOWN_SECONDS``, ``COVREQ_REVIEWER_KEYS``; absent variables keep the defaults."""
        env = os.environ if env is None else env
        defaults = cls()
        return cls(
            max_body_bytes=_whole(env, "COVREQ_MAX_BODY_BYTES", defaults.max_body_bytes),
            payers=Path(env.get("COVREQ_PAYERS", str(defaults.payers))),
            admin_token=env.get("COVREQ_ADMIN_TOKEN") or None,
            json_logs=env.get("COVREQ_JSON_LOGS", "1") != "0",
            log_level=env.get("COVREQ_LOG_LEVEL", defaults.log_level).upper(),
            auth_issuers=Path(env["COVREQ_AUTH_ISSUERS"]) if env.get("COVREQ_AUTH_ISSUERS") else None,
            service_url=env.get("COVREQ_SERVICE_URL") or None,
            api_keys=Path(env["COVREQ_API_KEYS"]) if env.get("COVREQ_API_KEYS") else None,
            v1_jwt=env.get("COVREQ_V1_JWT", "0") == "1",
            audit_path=Path(env.get("COVREQ_AUDIT") or defaults.audit_path),
            fhir_base=env.get("COVREQ_FHIR_BASE") or None,
            bundle_url=env.get("COVREQ_BUNDLE_URL") or None,
            bundle_public_key=Path(env["COVREQ_BUNDLE_PUBLIC_KEY"]) if env.get("COVREQ_BUNDLE_PUBLIC_KEY") else None,
            bundle_poll_seconds=float(env.get("COVREQ_BUNDLE_POLL_SECONDS", defaults.bundle_poll_seconds)),
            bundle_timeout_seconds=float(env.get("COVREQ_BUNDLE_TIMEOUT_SECONDS", defaults.bundle_timeout_seconds)),
            bundle_dir=Path(env["COVREQ_BUNDLE_DIR"]) if env.get("COVREQ_BUNDLE_DIR") else None,
            fhir_servers=tuple(env.get("COVREQ_FHIR_SERVERS", "").replace(",", " ").split()),
            ehr_timeout_seconds=float(env.get("COVREQ_EHR_TIMEOUT_SECONDS", defaults.ehr_timeout_seconds)),
            ehr_max_bytes=_whole(env, "COVREQ_EHR_MAX_BYTES", defaults.ehr_max_bytes),
            ehr_call_seconds=float(env.get("COVREQ_EHR_CALL_SECONDS", defaults.ehr_call_seconds)),
            ehr_call_max_bytes=_whole(env, "COVREQ_EHR_CALL_MAX_BYTES", defaults.ehr_call_max_bytes),
            crd_max_orders=_whole(env, "COVREQ_CRD_MAX_ORDERS", defaults.crd_max_orders),
            crd_max_coverages=_whole(env, "COVREQ_CRD_MAX_COVERAGES", defaults.crd_max_coverages),
            crd_max_billing_codes=_whole(env, "COVREQ_CRD_MAX_BILLING_CODES", defaults.crd_max_billing_codes),
            crd_max_lines=_whole(env, "COVREQ_CRD_MAX_LINES", defaults.crd_max_lines),
            max_response_bytes=_whole(env, "COVREQ_MAX_RESPONSE_BYTES", defaults.max_response_bytes),
            strict_audit=env.get("COVREQ_STRICT_AUDIT", "0") == "1",
            max_connections=_whole(env, "COVREQ_MAX_CONNECTIONS", defaults.max_connections),
            request_timeout=float(env.get("COVREQ_REQUEST_TIMEOUT", defaults.request_timeout)),
            keep_alive_timeout=float(env.get("COVREQ_KEEP_ALIVE_TIMEOUT", defaults.keep_alive_timeout)),
            max_header_bytes=_whole(env, "COVREQ_MAX_HEADER_BYTES", defaults.max_header_bytes),
            # trust at the edge (issue 22 items 4 and 9)
            metrics_token=env.get("COVREQ_METRICS_TOKEN") or None,
            public_hosts=_hosts(env, "COVREQ_PUBLIC_HOSTS"),
            dtr_keys=Path(env["COVREQ_DTR_KEYS"]) if env.get("COVREQ_DTR_KEYS") else None,
            # keys fetched from an issuer's jwks_uri (issue 26 item 5)
            jwks_refresh_seconds=float(env.get("COVREQ_JWKS_REFRESH_SECONDS", defaults.jwks_refresh_seconds)),
            jwks_max_age_seconds=float(env.get("COVREQ_JWKS_MAX_AGE_SECONDS", defaults.jwks_max_age_seconds)),
            jwks_timeout_seconds=float(env.get("COVREQ_JWKS_TIMEOUT_SECONDS", defaults.jwks_timeout_seconds)),
            jwks_allow_http=env.get("COVREQ_JWKS_ALLOW_HTTP", "0") == "1",
            # DTR
            dtr_max_orders=_whole(env, "COVREQ_DTR_MAX_ORDERS", defaults.dtr_max_orders),
            dtr_max_forms=_whole(env, "COVREQ_DTR_MAX_FORMS", defaults.dtr_max_forms),
            dtr_max_response_bytes=_whole(env, "COVREQ_DTR_MAX_RESPONSE_BYTES", defaults.dtr_max_response_bytes),
            # SMART Backend Services (service/smart/)
            smart_clients=Path(env["COVREQ_SMART_CLIENTS"]) if env.get("COVREQ_SMART_CLIENTS") else None,
            smart_token_key=Path(env["COVREQ_SMART_TOKEN_KEY"]) if env.get("COVREQ_SMART_TOKEN_KEY") else None,
            smart_token_seconds=_whole(env, "COVREQ_SMART_TOKEN_SECONDS", defaults.smart_token_seconds),
            smart_loopback_http=env.get("COVREQ_SMART_LOOPBACK_HTTP", "0") == "1",
            # CRD versions (issue 23)
            crd_version=env.get("COVREQ_CRD_VERSION") or defaults.crd_version,
            # observability and load (issue 26 items 2 and 7)
            rate_limit=env.get("COVREQ_RATE_LIMIT") or None,
            rate_limit_burst=(_whole(env, "COVREQ_RATE_LIMIT_BURST", 0) if env.get("COVREQ_RATE_LIMIT_BURST")
                              else None),
            otlp_endpoint=env.get("COVREQ_OTLP_ENDPOINT") or None,
            dtr_version=env.get("COVREQ_DTR_VERSION") or defaults.dtr_version,
            # production operations (issue 26 items 1, 3 and 4)
            ssl_certfile=_path(env, "COVREQ_SSL_CERTFILE"),
            ssl_keyfile=_path(env, "COVREQ_SSL_KEYFILE"),
            ssl_ca_certs=_path(env, "COVREQ_SSL_CA_CERTS"),
            ssl_client_cert=env.get("COVREQ_SSL_CLIENT_CERT") or None,
            shutdown_seconds=_seconds(env, "COVREQ_SHUTDOWN_SECONDS", defaults.shutdown_seconds),
            bundle_headers_file=_path(env, "COVREQ_BUNDLE_HEADERS_FILE"),
            bundle_authorization=env.get("COVREQ_BUNDLE_AUTHORIZATION") or None,
            # the shared database and the decision-log sink (issue 26 items 6 and 8)
            database_url=env.get("COVREQ_DATABASE_URL") or None,
            data_dir=Path(env.get("COVREQ_DATA_DIR") or defaults.data_dir),
            decision_log_url=env.get("COVREQ_DECISION_LOG_URL") or None,
            decision_log_token_file=(Path(env["COVREQ_DECISION_LOG_TOKEN_FILE"])
                                     if env.get("COVREQ_DECISION_LOG_TOKEN_FILE") else None),
            decision_log_max_records=_whole(env, "COVREQ_DECISION_LOG_MAX_RECORDS", defaults.decision_log_max_records),
            decision_log_max_bytes=_whole(env, "COVREQ_DECISION_LOG_MAX_BYTES", defaults.decision_log_max_bytes),
            decision_log_shutdown_seconds=float(env.get("COVREQ_DECISION_LOG_SHUTDOWN_SECONDS",
                                                        defaults.decision_log_shutdown_seconds)),
            # PAS subscriptions (service/pas/notifier.py)
            subscription_endpoints=tuple(env.get("COVREQ_SUBSCRIPTION_ENDPOINTS", "").replace(",", " ").split()),
            subscription_timeout_seconds=_seconds(env, "COVREQ_SUBSCRIPTION_TIMEOUT_SECONDS",
                                                  defaults.subscription_timeout_seconds),
            subscription_attempts=_whole(env, "COVREQ_SUBSCRIPTION_ATTEMPTS", defaults.subscription_attempts),
            reviewer_keys=_path(env, "COVREQ_REVIEWER_KEYS"),
        )
