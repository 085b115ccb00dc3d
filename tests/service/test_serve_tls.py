"""`covreq serve` over HTTPS (issue 26 item 1): a real process (one worker, then two) on a free loopback
port, certificates made here with `cryptography` (a CA, the server's, a client's); mutual TLS
refuses a client without a certificate; SIGHUP puts a replaced certificate in service in every
worker without a restart, and a broken replacement is refused with the good one kept."""
from __future__ import annotations

import datetime
import ipaddress
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from serving import Served, free_port, wait_until

from tests.service.test_operations_doc import EXAMPLES

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGHUP")

FIXTURE_RULES = Path(__file__).resolve().parent / "fixtures" / "rules"
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


@dataclass
class Issued:
    """A certificate and its key, as PEM."""

    cert: bytes
    key: bytes

    def write(self, cert: Path, key: Path) -> None:
        key.write_bytes(self.key)
        cert.write_bytes(self.cert)

    @property
    def der(self) -> bytes:
        return x509.load_pem_x509_certificate(self.cert).public_bytes(serialization.Encoding.DER)


class Authority:
    """A CA on the fly: it issues server and client certificates."""

    def __init__(self, name: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = self._build(self.name, self.key.public_key(), [x509.BasicConstraints(ca=True, path_length=0)])

    def _build(self, subject: x509.Name, public: Any, extensions: list[x509.ExtensionType]) -> x509.Certificate:
        now = datetime.datetime.now(datetime.timezone.utc)
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(self.name).public_key(public)
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1)))
        for extension in extensions:
            builder = builder.add_extension(extension, critical=isinstance(extension, x509.BasicConstraints))
        return builder.sign(self.key, hashes.SHA256())

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, name: str, server: bool) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        extensions: list[x509.ExtensionType] = [x509.BasicConstraints(ca=False, path_length=None),
                                                x509.ExtendedKeyUsage([usage])]
        if server:
            extensions.append(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]))
        cert = self._build(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]), key.public_key(), extensions)
        return Issued(cert.public_bytes(serialization.Encoding.PEM),
                      key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()))


@contextmanager
def served_tls(folder: Path, *arguments: str) -> Iterator[Served]:
    """``covreq serve ARGUMENTS`` with HTTPS on a free port (its logs in ``folder``), once it listens;
    stopped after the block."""
    port = free_port()
    log = folder / "server.log"
    env = {**os.environ, "COVREQ_JSON_LOGS": "1", "COVREQ_AUDIT": str(folder / "audit.jsonl")}
    with open(log, "w") as log_file:
        process = subprocess.Popen([sys.executable, "-m", "covreq", "serve", "--port", str(port), *arguments],
                                   stdout=log_file, stderr=log_file, env=env)
    running = Served(f"https://127.0.0.1:{port}", port, process, log)
    try:
        wait_until(lambda: [e for e in running.events() if e.get("event") == "started"] or process.poll() is not None)
        assert process.poll() is None, log.read_text()
        yield running
    finally:
        process.terminate()
        process.wait(timeout=30)


def call(port: int, ca: Path, client: tuple[Path, Path] | None, server_name: str | None = None) -> tuple[bytes, bytes]:
    """``GET /healthz`` on a new TLS connection: the server's certificate (DER) and the answer. (An
    IP address is sent without SNI; ``server_name`` sends one, its certificate not checked for it.)"""
    context = ssl.create_default_context(cafile=str(ca))
    context.check_hostname = server_name is None
    if client:
        context.load_cert_chain(*client)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=server_name or "127.0.0.1") as tls:
        certificate = tls.getpeercert(binary_form=True)
        tls.sendall(HEALTHZ)
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
    assert certificate is not None
    return certificate, answer


def refused(port: int, ca: Path, client: tuple[Path, Path] | None) -> bool:
    """Whether a TLS connection with ``client`` (None: no certificate) gets no answer: the server
    ends it in the handshake (with TLS 1.3 the client learns at its first read, by an alert or the
    connection closed)."""
    try:
        return call(port, ca, client)[1] == b""
    except OSError:
        return True


def count(running: Served, event: str) -> int:
    return sum(1 for e in running.events() if e.get("event") == event)


@pytest.mark.parametrize("workers", [1, 2])
def test_https_with_client_certificates_and_a_certificate_replaced_on_sighup_in_every_worker(
        tmp_path: Path, workers: int) -> None:
    """Regression (issue 26 item 1): covreq served plain HTTP only."""
    authority, other = Authority("covreq test CA"), Authority("someone else's CA")
    (tmp_path / "ca.pem").write_bytes(authority.pem)
    first, second = authority.issue("covreq one", server=True), authority.issue("covreq two", server=True)
    first.write(tmp_path / "cert.pem", tmp_path / "key.pem")
    authority.issue("ehr", server=False).write(tmp_path / "ehr.pem", tmp_path / "ehr-key.pem")
    other.issue("intruder", server=False).write(tmp_path / "intruder.pem", tmp_path / "intruder-key.pem")
    ca, client = tmp_path / "ca.pem", (tmp_path / "ehr.pem", tmp_path / "ehr-key.pem")

    with served_tls(tmp_path, "--rules", str(FIXTURE_RULES), "--workers", str(workers), "--ssl-certfile",
                    str(tmp_path / "cert.pem"), "--ssl-keyfile", str(tmp_path / "key.pem"),
                    "--ssl-ca-certs", str(ca)) as running:
        wait_until(lambda: call(running.port, ca, client)[1].startswith(b"HTTP/1.1 200"))
        (listening,) = [e for e in running.events() if e.get("event") == "listening"]
        assert listening["url"] == f"https://127.0.0.1:{running.port}" and listening["scheme"] == "https"
        assert listening["client_cert"] == "required" and listening["rules"] == str(FIXTURE_RULES)
        assert listening["workers"] == workers and len(listening["ruleset"]) == 16
        assert set(listening) == set(json.loads(EXAMPLES["listening-log"]))  # docs/operations.md shows this line
        answer = httpx.get(f"{running.base}/healthz", verify=_client_context(ca, client))
        assert answer.status_code == 200 and answer.url.scheme == "https"

        for stranger in (None, (tmp_path / "intruder.pem", tmp_path / "intruder-key.pem")):
            assert refused(running.port, ca, stranger)
        with socket.create_connection(("127.0.0.1", running.port), timeout=5) as plain:
            plain.sendall(HEALTHZ)
            assert not plain.recv(100).startswith(b"HTTP/1.1 200")  # no plain HTTP on the port

        assert {call(running.port, ca, client)[0] for _ in range(8)} == {first.der}
        second.write(tmp_path / "cert.pem", tmp_path / "key.pem")
        assert call(running.port, ca, client)[0] == first.der  # nothing changes before SIGHUP
        running.process.send_signal(signal.SIGHUP)
        wait_until(lambda: count(running, "tls-reloaded") == workers)  # one line per worker
        assert {call(running.port, ca, client)[0] for _ in range(12)} == {second.der}
        assert {call(running.port, ca, client, "covreq.example.org")[0] for _ in range(6)} == {second.der}
        reloaded = [e for e in running.events() if e.get("event") == "tls-reloaded"]
        assert len({e["pid"] for e in reloaded}) == workers
        assert refused(running.port, ca, None)  # client certificates are still required
        serial = format(x509.load_pem_x509_certificate(second.cert).serial_number, "x")
        assert {e["certificate_serial"] for e in reloaded} == {serial}

        (tmp_path / "key.pem").write_bytes(first.key)  # a key that is not the certificate's
        running.process.send_signal(signal.SIGHUP)
        wait_until(lambda: count(running, "tls-reload-failed") == workers)
        assert {call(running.port, ca, client)[0] for _ in range(6)} == {second.der}  # the good pair kept
        failed = [e for e in running.events() if e.get("event") == "tls-reload-failed"]
        assert all("the private key is not the certificate's" in e["message"] for e in failed)
    assert count(running, "stopped") == workers  # SIGTERM: each worker drained and stopped


def _client_context(ca: Path, client: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    context.load_cert_chain(*client)
    return context


@pytest.mark.parametrize(("options", "message"), [
    (["--ssl-certfile", "missing.pem"], "TLS file missing.pem: no such file"),
    (["--ssl-certfile", "cert.pem", "--ssl-keyfile", "other-key.pem"], "the private key is not the certificate's"),
    (["--ssl-certfile", "ca.pem"], "not a PEM certificate chain with its private key"),
    (["--ssl-certfile", "cert.pem", "--ssl-keyfile", "key.pem", "--ssl-client-cert", "required"],
     "COVREQ_SSL_CLIENT_CERT needs COVREQ_SSL_CA_CERTS"),
    (["--ssl-keyfile", "key.pem"], "need COVREQ_SSL_CERTFILE"),
])
def test_unusable_tls_settings_stop_the_service_with_one_line(tmp_path: Path, options: list[str], message: str) -> None:
    authority = Authority("covreq test CA")
    (tmp_path / "ca.pem").write_bytes(authority.pem)
    authority.issue("covreq", server=True).write(tmp_path / "cert.pem", tmp_path / "key.pem")
    authority.issue("another", server=True).write(tmp_path / "other.pem", tmp_path / "other-key.pem")
    done = subprocess.run([sys.executable, "-m", "covreq", "serve", "--rules", str(FIXTURE_RULES),
                           "--port", str(free_port()), *options], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path, env={**os.environ, "COVREQ_AUDIT": str(tmp_path / "audit.jsonl")})
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("covreq serve: cannot start: ") and message in done.stderr, done.stderr
