"""`covreq serve --bundle URL` against a real HTTP server on loopback that serves good, damaged,
unsigned, badly signed, slow and broken bundles: only a good bundle is ever put in service, every
failure keeps the last good rule set answering and shows in /readyz and /metrics."""
from __future__ import annotations

import re
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from engine.loading.bundle import BundleError, build
from service import Settings, create_app
from tests.service.hostile_bundle_server import BundleServer, Offer, server  # noqa: F401 (fixture)
from tests.service.test_metrics import value
from tests.service.test_service_reload import EYELID, REQUEST
from tests.test_bundle import key_pair

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture()
def keys(tmp_path: Path) -> tuple[bytes, Path]:
    """The operator's private key, and the path of its public key as the service is given it."""
    private, public = key_pair()
    (tmp_path / "bundle-key.pem").write_bytes(public)
    return private, tmp_path / "bundle-key.pem"


def trees(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Version 1 of the fixture rules, version 2 (a reason changed), and a tree that does not load."""
    one = Path(shutil.copytree(FIXTURES / "rules", tmp_path / "v1"))
    two = Path(shutil.copytree(one, tmp_path / "v2"))
    (two / EYELID).write_text((two / EYELID).read_text().replace("needs prior authorization", "needs PA (v2)"))
    broken = Path(shutil.copytree(one, tmp_path / "broken"))
    (broken / EYELID).write_text((broken / EYELID).read_text().replace("place_of_service", "place_of_sevice", 1))
    return one, two, broken


def service(server: BundleServer, tmp_path: Path, public: Path | None, poll_seconds: float = 3600,
            **overrides: Any) -> TestClient:
    """A client of a service on the server's bundle (polled by hand unless ``poll_seconds`` is short)."""
    settings = Settings(payers=FIXTURES / "payers.yaml", audit_path=tmp_path / "audit.jsonl", bundle_url=server.url,
                        bundle_public_key=public, bundle_dir=tmp_path / "bundles", bundle_poll_seconds=poll_seconds,
                        bundle_timeout_seconds=1.0, **overrides)
    return TestClient(create_app(None, settings))


def reasons(client: TestClient) -> list[str]:
    return [r for d in client.post("/v1/requirements", json=REQUEST).json()["decisions"] for r in d["reasons"]]


def test_every_bad_bundle_is_refused_and_the_last_good_one_keeps_serving(
        server: BundleServer, tmp_path: Path, keys: tuple[bytes, Path]) -> None:
    private, public = keys
    one, two, broken = trees(tmp_path)
    good_one, manifest_one = build(one, private)
    good_two, manifest_two = build(two, private)
    server.offer = Offer(good_one, '"v1"')
    client = service(server, tmp_path, public)
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["ruleset"] == manifest_one.ruleset
    assert ready["bundle"]["digest"] == manifest_one.digest and ready["bundle"]["verified"] is True
    before = reasons(client)
    assert not any("(v2)" in r for r in before)
    holder, bundles = client.app.state.holder, client.app.state.bundles  # type: ignore[attr-defined]

    bundles.poll(holder)  # unchanged: the server answers 304 to the ETag in service
    assert server.asked[-1] == '"v1"' and client.get("/readyz").json()["status"] == "ready"

    other_private, _ = key_pair()
    bad_offers = {
        "damaged": (Offer(good_two[: len(good_two) // 2], '"damaged"'), "not a readable bundle"),
        "unsigned": (Offer(build(two)[0], '"unsigned"'), "not signed"),
        "signed by another key": (Offer(build(two, other_private)[0], '"other-key"'), "signature does not verify"),
        "slow": (Offer(good_two, '"slow"', pause=0.2), "took longer than 1 s"),
        "server error": (Offer(b"oops", '"500"', status=500), "HTTP 500"),
        "rules that do not load": (Offer(build(broken, private)[0], '"broken"'), "E-unknown-fact"),
    }
    for failures, (label, (offer, message)) in enumerate(bad_offers.items(), start=1):
        server.offer = offer
        bundles.poll(holder)
        ready = client.get("/readyz").json()
        problems = " ".join(ready["last_reload_error"]["problems"]) if ready["last_reload_error"] else ""
        assert ready["status"] == "degraded" and message in problems, label
        assert ready["ruleset"] == manifest_one.ruleset and ready["bundle"]["digest"] == manifest_one.digest, label
        assert reasons(client) == before, label
        assert value(client.get("/metrics").text, "covreq_reload_failures_total", source="bundle") == failures
    assert [p.name for p in (tmp_path / "bundles").iterdir()] == [bundles.serving.folder.name]  # refused ones are gone

    bundles.poll(holder)  # the refused bundle is not fetched and refused again: the server says 304
    assert server.asked[-1] == '"broken"' and client.get("/readyz").json()["status"] == "degraded"

    server.offer = Offer(good_two, '"v2"')
    bundles.poll(holder)
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["ruleset"] == manifest_two.ruleset
    assert ready["bundle"] == {**ready["bundle"], "digest": manifest_two.digest, "etag": '"v2"', "verified": True}
    assert any("(v2)" in r for r in reasons(client))
    assert value(client.get("/metrics").text, "covreq_ruleset_info", digest=manifest_two.ruleset) == 1
    assert len(list((tmp_path / "bundles").iterdir())) == 1  # the folder of version 1 was removed


def test_a_failed_download_clears_once_the_url_serves_the_bundle_in_service_again(
        server: BundleServer, tmp_path: Path) -> None:
    one, _, _ = trees(tmp_path)
    server.offer = Offer(build(one)[0], '"v1"')
    client = service(server, tmp_path, None)
    assert client.get("/readyz").json()["bundle"]["verified"] is False  # no key configured: unsigned is accepted
    holder, bundles = client.app.state.holder, client.app.state.bundles  # type: ignore[attr-defined]
    server.offer = Offer(b"", '"gone"', status=503)
    bundles.poll(holder)
    assert client.get("/readyz").json()["status"] == "degraded"
    server.offer = Offer(build(one)[0], '"v1"')
    bundles.poll(holder)
    assert server.asked[-1] == '"v1"' and client.get("/readyz").json()["status"] == "ready"


def test_the_service_polls_by_itself_and_swaps_in_a_new_bundle(server: BundleServer, tmp_path: Path,
                                                               keys: tuple[bytes, Path]) -> None:
    private, public = keys
    one, two, _ = trees(tmp_path)
    server.offer = Offer(build(one, private)[0], '"v1"')
    with service(server, tmp_path, public, poll_seconds=0.1) as client:  # the lifespan starts the polling
        data_two, manifest_two = build(two, private)
        server.offer = Offer(data_two, '"v2"')
        deadline = time.monotonic() + 10
        while client.get("/readyz").json()["ruleset"] != manifest_two.ruleset:
            assert time.monotonic() < deadline, "the new bundle was not put in service"
            time.sleep(0.05)


def test_a_temporary_bundle_folder_is_removed_when_the_service_stops(
        server: BundleServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    one, _, _ = trees(tmp_path)
    server.offer = Offer(build(one)[0], '"v1"')
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    app = create_app(None, Settings(payers=FIXTURES / "payers.yaml", audit_path=tmp_path / "audit.jsonl",
                                    bundle_url=server.url))
    with TestClient(app) as client:
        assert client.get("/readyz").json()["status"] == "ready"
        assert list((tmp_path / "tmp").glob("covreq-bundles-*/bundle-*/acme/*.yaml"))
    assert not list((tmp_path / "tmp").iterdir())


def test_a_multi_worker_start_leaves_no_bundle_folder_of_its_start_up_check(
        server: BundleServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: with several workers, `covreq serve --bundle` builds one app to check the
    configuration before the workers start; its downloaded bundle stayed behind in a temporary folder."""
    from service import server as serving_module

    one, _, _ = trees(tmp_path)
    server.offer = Offer(build(one)[0], '"v1"')
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    for name, value in {"COVREQ_BUNDLE_URL": server.url, "COVREQ_PAYERS": str(FIXTURES / "payers.yaml"),
                        "COVREQ_AUDIT": str(tmp_path / "audit.jsonl"), "COVREQ_DATA_DIR": str(tmp_path / "data"),
                        "COVREQ_DATABASE_URL": ""}.items():  # run() names the workers' database here: undone after
        monkeypatch.setenv(name, value)
    monkeypatch.delenv(serving_module.RULES_ENV, raising=False)
    started: list[bool] = []
    monkeypatch.setattr(serving_module.ReloadingSupervisor, "run", lambda self: started.append(True))
    serving_module.run(None, port=0, workers=2)
    assert started == [True] and server.asked == [None]
    assert not list((tmp_path / "tmp").glob("covreq-bundles-*"))


def test_a_service_whose_first_bundle_is_refused_does_not_start(server: BundleServer, tmp_path: Path,
                                                                keys: tuple[bytes, Path]) -> None:
    one, _, _ = trees(tmp_path)
    server.offer = Offer(build(one)[0], '"v1"')
    with pytest.raises(BundleError, match="not signed"):
        service(server, tmp_path, keys[1])


@pytest.mark.parametrize(("overrides", "message"), [
    ({"bundle_url": "file:///srv/rules.tar.gz"}, "must start with http:// or https://"),
    ({"bundle_poll_seconds": 0}, "must be positive"),
    ({"bundle_public_key": Path("/nonexistent/key.pem")}, "cannot read the bundle public key"),
])
def test_an_unusable_bundle_configuration_stops_the_service_with_a_message(
        tmp_path: Path, overrides: dict[str, Any], message: str) -> None:
    settings = {"payers": FIXTURES / "payers.yaml", "audit_path": tmp_path / "audit.jsonl",
                "bundle_url": "http://127.0.0.1:9/rules.tar.gz", **overrides}
    with pytest.raises(BundleError, match=message):
        create_app(None, Settings(**settings))


SECRET = "Bearer s3cr3t-object-store-token"
MONDAY, TUESDAY = "Mon, 07 Dec 2026 09:00:00 GMT", "Tue, 08 Dec 2026 09:00:00 GMT"


def test_a_private_object_store_without_etags_is_asked_with_the_operators_headers_and_if_modified_since(
        server: BundleServer, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Regression (issue 26 item 4): a server without ETags had the whole bundle downloaded at every
    poll, and a private object store could not be reached (no way to give a bearer token)."""
    one, two, _ = trees(tmp_path)
    (tmp_path / "headers.json").write_text('{"X-Tenant": "acme-tenant-7"}')
    server.required = {"Authorization": SECRET, "X-Tenant": "acme-tenant-7"}
    server.offer = Offer(build(one)[0], None, last_modified=MONDAY)
    with caplog.at_level("INFO"):
        client = service(server, tmp_path, None, bundle_authorization=SECRET,
                         bundle_headers_file=tmp_path / "headers.json")
        holder, bundles = client.app.state.holder, client.app.state.bundles  # type: ignore[attr-defined]
        assert client.get("/readyz").json()["bundle"]["last_modified"] == MONDAY

        bundles.poll(holder)  # unchanged: 304 to If-Modified-Since, nothing downloaded
        assert server.requests[-1]["If-Modified-Since"] == MONDAY and "If-None-Match" not in server.requests[-1]
        assert server.requests[-1]["Authorization"] == SECRET
        assert client.get("/readyz").json()["status"] == "ready" and bundles.failures == 0

        data_two, manifest_two = build(two)
        server.offer = Offer(data_two, None, last_modified=TUESDAY)
        bundles.poll(holder)  # changed: downloaded and put in service
        ready = client.get("/readyz").json()
        assert ready["ruleset"] == manifest_two.ruleset and ready["bundle"]["last_modified"] == TUESDAY
        bundles.poll(holder)
        assert server.requests[-1]["If-Modified-Since"] == TUESDAY and client.get("/readyz").json()["status"] == "ready"

        server.required = {"Authorization": "Bearer the-rotated-token"}  # the store's token was rotated
        bundles.poll(holder)
        assert bundles.failures == 1 and bundles.next_wait() == 2 * bundles.poll_seconds  # backs off
        ready_text = client.get("/readyz").text
        assert "HTTP 401" in ready_text
        shown = ready_text + client.get("/metrics").text + caplog.text + repr(client.app.state.settings)  # type: ignore[attr-defined]
    assert "s3cr3t" not in shown and "acme-tenant-7" not in shown


def test_a_token_rotated_in_the_headers_file_is_used_from_the_next_poll(server: BundleServer, tmp_path: Path) -> None:
    one, _, _ = trees(tmp_path)
    headers = tmp_path / "headers.yaml"
    headers.write_text("Authorization: Bearer first-token\n")
    server.required, server.offer = {"Authorization": "Bearer first-token"}, Offer(build(one)[0], '"v1"')
    client = service(server, tmp_path, None, bundle_headers_file=headers)
    holder, bundles = client.app.state.holder, client.app.state.bundles  # type: ignore[attr-defined]
    server.required = {"Authorization": "Bearer second-token"}  # the store rotated it ...
    bundles.poll(holder)
    assert "HTTP 401" in client.get("/readyz").text
    headers.write_text("Authorization: Bearer second-token\n")  # ... and so did the mounted Secret
    bundles.poll(holder)
    assert server.requests[-1]["Authorization"] == "Bearer second-token"
    assert client.get("/readyz").json()["status"] == "ready"
    headers.write_text("Authorization: [second-token\n")  # half written: a failed poll, the rules kept
    bundles.poll(holder)
    ready = client.get("/readyz").text
    assert "not valid YAML or JSON" in ready and "second-token" not in ready
    assert value(client.get("/metrics").text, "covreq_bundle_poll_failures_total", reason="download") == 2


def test_the_operators_headers_do_not_follow_a_redirect_to_another_origin(server: BundleServer, tmp_path: Path) -> None:
    one, _, _ = trees(tmp_path)
    elsewhere = BundleServer()
    threading.Thread(target=elsewhere.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    try:
        elsewhere.offer = Offer(build(one)[0], '"v1"')
        server.offer = Offer(b"", None, status=302, headers={"Location": elsewhere.url})
        (tmp_path / "headers.yaml").write_text("X-Api-Key: k-123456\n")
        client = service(server, tmp_path, None, bundle_authorization=SECRET, bundle_headers_file=tmp_path / "headers.yaml")
        assert client.get("/readyz").json()["status"] == "ready"
    finally:
        elsewhere.shutdown()
        elsewhere.server_close()
    assert server.requests[0]["Authorization"] == SECRET and server.requests[0]["X-Api-Key"] == "k-123456"
    assert not {"Authorization", "X-Api-Key"} & set(elsewhere.requests[0])


@pytest.mark.parametrize(("text", "message"), [
    ("Host: evil.example.org\n", "'Host': covreq sets this header itself"),
    ('{"If-Modified-Since": "x"}', "'If-Modified-Since': covreq sets this header itself"),
    ('{"X-Token": "secret-value\\r\\nX-Injected: 1"}', "'X-Token': the value must be printable ASCII"),
    ("X Token: secret-value\n", "'X Token': not a header name"),
    ("- secret-value\n", "must be a mapping of header: value"),
    ("Authorization: Bearer secret-value\n", "Authorization is given twice"),
    ("a: [secret-value\n", "headers.yaml:2:1: the bundle headers file is not valid YAML or JSON"),
])
def test_unusable_bundle_headers_stop_the_service_without_showing_a_value(
        tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "headers.yaml").write_text(text)
    settings = Settings(payers=FIXTURES / "payers.yaml", audit_path=tmp_path / "audit.jsonl",
                        bundle_url="http://127.0.0.1:9/rules.tar.gz", bundle_headers_file=tmp_path / "headers.yaml",
                        bundle_authorization="Bearer secret-value")
    with pytest.raises(BundleError, match=re.escape(message)) as refused:
        create_app(None, settings)
    assert "secret-value" not in str(refused.value)
