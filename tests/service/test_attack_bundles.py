"""`covreq serve --bundle URL` against a hostile bundle server (tests/service/hostile_bundle_server.py):
encoding and tar bombs are refused in bounded memory before anything is written, the poller survives
every failure and says so in /readyz and /metrics, backs off, and recovers when a good bundle appears;
`POST /admin/reload` never serves an unpacked folder that was changed after it was checked."""
from __future__ import annotations

import json
import logging
import sys
import tarfile
import time
import tracemalloc
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from engine.loading.bundle import build
from tests.service.hostile_bundle_server import (MIB, BundleServer, Offer, forged, huge_header, huge_member,
                                                 server, stacked, zeros_gz)  # noqa: F401 (fixture)
from admin import ADMIN, ADMIN_TOKEN
from service import Settings, create_app
from tests.service.test_bundle_serving import FIXTURES, keys, reasons, trees  # noqa: F401 (fixture)
from tests.service.test_metrics import value
from tests.service.test_service_reload import EYELID

#: The download limit of the service under attack: the good fixture bundles are a few KB.
LIMIT = 1 * MIB
#: What each bomb would decode to (the red team's were 500 MiB to 4 GiB; the mechanism is the same).
BOMB = 64 * MIB
#: Most memory one refused bomb may take, Python allocations traced (a good poll takes well under 2 MiB).
PEAK = 8 * MIB
#: Files opened for writing under a watched folder (an audit hook sees every open).
_WRITES: list[str] = []
_WATCHED: list[str] = []
_HOOKED: list[bool] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "open" and _WATCHED and isinstance(args[0], (str, Path)):
        mode, flags = args[1], args[2]
        writing = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(flags & 0o3 or flags & 0o100)
        if writing and str(args[0]).startswith(_WATCHED[0]):
            _WRITES.append(str(args[0]))


@contextmanager
def watched(folder: Path) -> Iterator[list[str]]:
    """The files opened for writing under ``folder`` while the block runs."""
    if not _HOOKED:  # an audit hook stays for the life of the process: one, and only once needed
        sys.addaudithook(_audit)
        _HOOKED.append(True)
    _WRITES.clear()
    _WATCHED[:] = [str(folder)]
    try:
        yield _WRITES
    finally:
        _WATCHED.clear()


def peak(action: Callable[[], object]) -> int:
    """The most memory Python allocated, over what it held before, while ``action`` ran."""
    tracemalloc.start()
    try:
        action()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def attacked(server: BundleServer, tmp_path: Path, public: Path | None = None, poll_seconds: float = 3600,
             url: str | None = None) -> TestClient:
    """A service on the server's first (good) bundle, downloading at most :data:`LIMIT` bytes."""
    settings = Settings(payers=FIXTURES / "payers.yaml", audit_path=tmp_path / "audit.jsonl",
                        bundle_url=url or server.url, bundle_public_key=public, bundle_dir=tmp_path / "bundles",
                        bundle_poll_seconds=poll_seconds, bundle_timeout_seconds=5.0, admin_token=ADMIN_TOKEN)
    client = TestClient(create_app(None, settings))
    client.app.state.bundles.max_bytes = LIMIT  # type: ignore[attr-defined]
    return client


def problems(client: TestClient) -> str:
    ready = client.get("/readyz").json()
    return ready["status"] + ": " + " ".join((ready["last_reload_error"] or {}).get("problems", []))


BOMBS: dict[str, tuple[Callable[[], Offer], str]] = {
    "gzip, gzip": (lambda: Offer(stacked(BOMB), '"stacked"', headers={"Content-Encoding": "gzip, gzip"}),
                   "Content-Encoding"),
    "gzip bomb": (lambda: Offer(zeros_gz(BOMB), '"bomb"', headers={"Content-Encoding": "gzip"}),
                  f"larger than {LIMIT} bytes"),
    "unknown encoding": (lambda: Offer(zeros_gz(BOMB), '"br"', headers={"Content-Encoding": "x-unknown"}),
                         "Content-Encoding"),
    "a redirect with a gzip, gzip body": (lambda: Offer(stacked(BOMB), '"302"', status=302, headers={
        "Location": "/elsewhere", "Content-Encoding": "gzip, gzip"}), "redirects"),
    "a member of 64 MiB": (lambda: Offer(huge_member(BOMB), '"member"'), "bytes"),
    "a GNU long name of 256 MiB": (lambda: Offer(huge_header(tarfile.GNUTYPE_LONGNAME, 256 * MIB, BOMB),
                                                 '"longname"'), "header"),
    "a pax header of 256 MiB": (lambda: Offer(huge_header(tarfile.XHDTYPE, 256 * MIB, BOMB), '"pax"'), "header"),
}


@pytest.mark.parametrize("bomb", list(BOMBS))
def test_a_bomb_is_refused_in_bounded_memory_before_anything_is_written(
        server: BundleServer, tmp_path: Path, bomb: str) -> None:
    one, two, _ = trees(tmp_path)
    server.offer = Offer(build(one)[0], '"v1"')
    client = attacked(server, tmp_path)
    holder, bundles = client.app.state.holder, client.app.state.bundles  # type: ignore[attr-defined]
    before = reasons(client)
    make, message = BOMBS[bomb]
    server.offer = make()
    with watched(tmp_path / "bundles") as written:
        used = peak(lambda: bundles.poll(holder))
    assert used < PEAK, f"{bomb}: {used / MIB:.1f} MiB"
    assert written == []
    assert message in problems(client) and problems(client).startswith("degraded"), problems(client)
    assert reasons(client) == before
    server.offer = Offer(build(two)[0], '"v2"')
    bundles.poll(holder)
    assert problems(client) == "ready: " and any("(v2)" in r for r in reasons(client))


def test_a_bomb_after_the_manifest_is_judged_by_the_signature_first(
        server: BundleServer, tmp_path: Path, keys: tuple[bytes, Path]) -> None:
    private, public = keys
    one, _, _ = trees(tmp_path)
    server.offer = Offer(build(one, private)[0], '"v1"')
    client = attacked(server, tmp_path, public)
    holder, bundles = client.app.state.holder, client.app.state.bundles  # type: ignore[attr-defined]
    server.offer = Offer(forged([("acme/a.yaml", b"id: a\n")]), '"unsigned"')
    with watched(tmp_path / "bundles") as written:
        bundles.poll(holder)
    assert written == [] and "not signed" in problems(client)
    server.offer = Offer(huge_member(BOMB), '"member"')
    with watched(tmp_path / "bundles") as written:
        used = peak(lambda: bundles.poll(holder))
    assert used < PEAK and written == [] and problems(client).startswith("degraded")


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_a_non_ascii_etag_does_not_stop_the_polling(server: BundleServer, tmp_path: Path) -> None:
    one, two, _ = trees(tmp_path)
    server.offer = Offer(build(one)[0], '"\u00e9t\u00e9"')  # sent as Latin-1 bytes
    with attacked(server, tmp_path, poll_seconds=0.05) as client:
        wait_for(lambda: len(server.asked) >= 3, "the poller stopped")
        assert client.get("/readyz").json()["status"] == "ready"
        data, manifest = build(two)
        server.offer = Offer(data, '"v2"')
        wait_for(lambda: client.get("/readyz").json()["ruleset"] == manifest.ruleset, "v2 was never fetched")


def test_a_bundle_that_cannot_be_unpacked_leaves_the_poller_alive_and_readyz_degraded(
        server: BundleServer, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    one, two, _ = trees(tmp_path)
    server.offer = Offer(build(one)[0], '"v1"')
    # a file, then a file inside it as if it were a folder: the digest matches, writing fails (OSError)
    server_bundle = forged([("acme/a.yaml", b"id: a\n"), ("acme/a.yaml/b.yaml", b"id: b\n")])
    with caplog.at_level(logging.ERROR, logger="covreq"), attacked(server, tmp_path, poll_seconds=0.05) as client:
        server.offer = Offer(server_bundle, '"unpackable"')
        wait_for(lambda: "E-io" in problems(client), "the failure never showed in /readyz")
        assert problems(client).startswith("degraded")
        metrics = client.get("/metrics").text
        assert value(metrics, "covreq_bundle_poll_failures_total", reason="unpack") >= 1
        assert any(getattr(r, "event", "") == "reload-failed" and "E-io" in r.getMessage() for r in caplog.records)
        data, manifest = build(two)
        server.offer = Offer(data, '"v2"')
        wait_for(lambda: client.get("/readyz").json()["ruleset"] == manifest.ruleset, "v2 was never fetched")
        assert client.get("/readyz").json()["status"] == "ready"


def test_an_unexpected_error_is_reported_without_its_message_and_the_poller_backs_off(
        server: BundleServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from service import bundles as module

    one, _, _ = trees(tmp_path)
    server.offer = Offer(build(one)[0], '"v1"')
    client = attacked(server, tmp_path, poll_seconds=2)
    holder, bundles = client.app.state.holder, client.app.state.bundles  # type: ignore[attr-defined]

    def crash(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(module, "unpack", crash)
    server.offer = Offer(build(one)[0], '"v1-again"')
    waits = []
    for _ in range(6):
        bundles.poll(holder)  # never raises
        waits.append(bundles.next_wait())
    said = client.get("/readyz").text
    assert "E-internal" in said and "secret detail" not in said and "degraded" in said
    assert value(client.get("/metrics").text, "covreq_bundle_poll_failures_total", reason="internal") == 6
    assert waits == [4, 8, 16, 16, 16, 16]  # doubled from the poll interval, at most 8 of them
    monkeypatch.undo()
    bundles.poll(holder)
    assert bundles.next_wait() == 2 and client.get("/readyz").json()["status"] == "ready"


def test_readyz_never_shows_the_credentials_of_the_bundle_url(server: BundleServer, tmp_path: Path) -> None:
    one, _, _ = trees(tmp_path)
    server.offer = Offer(build(one)[0], '"v1"')
    secret = server.url.replace("http://", "http://ops:hunter2@") + "?X-Amz-Signature=0badc0de"
    client = attacked(server, tmp_path, url=secret)
    server.offer = Offer(b"", '"gone"', status=503)
    client.app.state.bundles.poll(client.app.state.holder)  # type: ignore[attr-defined]
    said = client.get("/readyz").text
    assert "HTTP 503" in said and "127.0.0.1" in said
    assert "hunter2" not in said and "0badc0de" not in said


def test_admin_reload_in_bundle_mode_never_serves_an_edited_folder(
        server: BundleServer, tmp_path: Path, keys: tuple[bytes, Path]) -> None:
    private, public = keys
    one, _, _ = trees(tmp_path)
    data, manifest = build(one, private)
    server.offer = Offer(data, '"v1"')
    client = attacked(server, tmp_path, public)
    before = reasons(client)
    folder = client.app.state.bundles.serving.folder  # type: ignore[attr-defined]
    (folder / EYELID).write_text((folder / EYELID).read_text().replace("needs prior authorization", "EDITED"))
    answer = client.post("/admin/reload", headers=ADMIN)
    assert answer.status_code == 200 and answer.json()["ruleset"] == manifest.ruleset
    assert reasons(client) == before and not any("EDITED" in r for r in reasons(client))
    ready = client.get("/readyz").json()
    assert ready["ruleset"] == manifest.ruleset == ready["bundle"]["digest"][:16] and ready["status"] == "ready"

    server.offer = Offer(b"", '"down"', status=503)  # the URL is down: the reload is refused, nothing changes
    answer = client.post("/admin/reload", headers=ADMIN)
    assert answer.status_code == 422 and "HTTP 503" in str(answer.json()["error"])
    assert reasons(client) == before and client.get("/readyz").json()["ruleset"] == manifest.ruleset


def test_the_holder_refuses_a_tree_whose_digest_is_not_the_bundle_s() -> None:
    from service.holder import RuleSetHolder

    holder = RuleSetHolder(str(FIXTURES / "rules"))
    before = holder.current
    failure = holder.reload(str(FIXTURES / "rules"), "bundle", expected="0" * 16)
    assert failure is not None and failure.places == [f"{FIXTURES / 'rules'}: E-digest"]
    assert holder.current is before and holder.reload(str(FIXTURES / "rules"), "bundle",
                                                      expected=before.digest) is None


def test_the_operations_doc_states_the_limits_and_what_a_failed_poll_shows(server: BundleServer,
                                                                           tmp_path: Path) -> None:
    from engine.loading.bundle import MAX_FILES, MAX_HEADER_BYTES, MAX_UNPACKED_BYTES
    from engine.loading.yamlsource import MAX_FILE_BYTES
    from service.bundles import MAX_BACKOFF, MAX_DOWNLOAD_BYTES, MAX_REDIRECTS
    from tests.service.test_operations_doc import DOC, EXAMPLES, _shape

    doc = " ".join(DOC.split())
    for stated in (f"(at most `service.bundles.MAX_REDIRECTS`, {MAX_REDIRECTS})",
                   f"at most {MAX_HEADER_BYTES // 1024} KiB (`engine.loading.bundle.MAX_HEADER_BYTES`)",
                   f"at most {MAX_FILE_BYTES:,} bytes (`engine.loading.yamlsource.MAX_FILE_BYTES`",
                   f"at most {MAX_FILES:,} files and {MAX_UNPACKED_BYTES // MIB} MiB decompressed",
                   f"the {MAX_DOWNLOAD_BYTES // MIB} MiB limit applies", f"up to {MAX_BACKOFF} poll intervals"):
        assert stated in doc
    one, _, _ = trees(tmp_path)
    server.offer = Offer(build(one)[0], '"v1"')
    client = attacked(server, tmp_path)
    server.offer = BOMBS["gzip, gzip"][0]()
    client.app.state.bundles.poll(client.app.state.holder)  # type: ignore[attr-defined]
    ready, documented = client.get("/readyz").json(), json.loads(EXAMPLES["readyz-bundle-failed"])
    assert _shape(ready) == _shape(documented) and ready["status"] == documented["status"]
    (problem,), (example,) = ready["last_reload_error"]["problems"], documented["last_reload_error"]["problems"]
    assert problem.removeprefix(server.url) == example.removeprefix(documented["bundle"]["url"])
