"""Rule bundles: built from a valid tree, unpacked only when whole, signed and verified, and refused
when altered, unsigned, signed by another key or holding files outside the tree."""
from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

import engine
from engine.loading.bundle import MANIFEST, BundleError, build, covreq_version, tree_digest, unpack
from covreq.cli import main

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "rules"


def key_pair(kind: str = "ec") -> tuple[bytes, bytes]:
    """A fresh private key (PEM) and its public key (PEM)."""
    key = {"ec": lambda: ec.generate_private_key(ec.SECP256R1()),
           "rsa": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
           "ed25519": ed25519.Ed25519PrivateKey.generate}[kind]()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


def policy_file(root: Path) -> Path:
    """The first policy file of a tree (not a payer or test file)."""
    return next(p for p in sorted(root.rglob("*.yaml")) if not p.name.endswith(".tests.yaml") and not p.name.startswith("_"))


def rebuilt(data: bytes, change: dict[str, bytes | None]) -> bytes:
    """The bundle ``data`` with members replaced (bytes), dropped (None) or added."""
    members: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for member in archive:
            members[member.name] = archive.extractfile(member).read()  # type: ignore[union-attr]
    members.update(change)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, raw in members.items():
            if raw is not None:
                info = tarfile.TarInfo(name)
                info.size = len(raw)
                archive.addfile(info, io.BytesIO(raw))
    return buffer.getvalue()


def test_a_bundle_unpacks_to_a_tree_that_loads_to_the_digest_of_its_manifest(tmp_path: Path) -> None:
    data, manifest = build(RULES)
    opened = unpack(data, tmp_path)
    loaded = engine.load(tmp_path)
    assert opened.manifest == manifest and not opened.verified
    assert manifest.digest == tree_digest(RULES) and manifest.ruleset == engine.load(RULES).digest == loaded.digest
    assert manifest.covreq == covreq_version() and manifest.files == len(list(tmp_path.rglob("*.yaml")))
    assert not list(tmp_path.rglob("*.tests.yaml"))  # only what the loader reads travels
    assert build(RULES)[0] == data  # unsigned bundles of one tree are byte for byte the same


@pytest.mark.parametrize("kind", ["ec", "rsa", "ed25519"])
def test_a_signed_bundle_verifies_with_the_public_key_and_names_its_key_id(tmp_path: Path, kind: str) -> None:
    private, public = key_pair(kind)
    data, manifest = build(RULES, private, "ops-2026")
    opened = unpack(data, tmp_path, public)
    assert opened.verified and opened.key_id == "ops-2026" and opened.manifest == manifest


def test_a_required_signature_missing_or_made_by_another_key_is_refused(tmp_path: Path) -> None:
    private, public = key_pair()
    other_private, _ = key_pair()
    with pytest.raises(BundleError, match="not signed"):
        unpack(build(RULES)[0], tmp_path / "a", public)
    with pytest.raises(BundleError, match="signature does not verify"):
        unpack(build(RULES, other_private)[0], tmp_path / "b", public)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_file_changed_after_signing_is_refused_by_the_digest(tmp_path: Path) -> None:
    private, public = key_pair()
    data, _ = build(RULES, private)
    policy = policy_file(RULES)
    altered = rebuilt(data, {f"rules/{policy.relative_to(RULES).as_posix()}": policy.read_bytes() + b"# altered\n"})
    with pytest.raises(BundleError, match="altered or damaged"):
        unpack(altered, tmp_path, public)


def test_a_manifest_rewritten_for_the_altered_tree_no_longer_matches_its_signature(tmp_path: Path) -> None:
    private, public = key_pair()
    data, manifest = build(RULES, private)
    forged = json.dumps({"digest": "0" * 64, "covreq": manifest.covreq, "files": manifest.files, "format": 1}).encode()
    with pytest.raises(BundleError, match="signature is for another digest"):
        unpack(rebuilt(data, {MANIFEST: forged}), tmp_path, public)


@pytest.mark.parametrize("name", ["../escaped.yaml", "/etc/covreq.yaml", "elsewhere/x.yaml", "rules/../../x.yaml"])
def test_members_outside_the_tree_are_refused_before_anything_is_written(tmp_path: Path, name: str) -> None:
    target = tmp_path / "unpacked"
    target.mkdir()
    with pytest.raises(BundleError, match="not a place a bundle may hold a file"):
        unpack(rebuilt(build(RULES)[0], {name: b"id: x\n"}), target)
    assert not list(tmp_path.rglob("*.yaml")) and not list(tmp_path.parent.glob("escaped.yaml"))


def test_links_and_damaged_archives_are_refused(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        link = tarfile.TarInfo("rules/passwd.yaml")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(link)
    with pytest.raises(BundleError, match="only regular files"):
        unpack(buffer.getvalue(), tmp_path)
    data, _ = build(RULES)
    for damaged in (data[: len(data) // 2], b"not a bundle at all", b""):
        with pytest.raises(BundleError, match="not a readable bundle"):
            unpack(damaged, tmp_path)
    with pytest.raises(BundleError, match="has no manifest.json"):
        unpack(rebuilt(data, {MANIFEST: None}), tmp_path)
    for manifest in (b'{"digest": "abc"}', b"[" * 60_000):
        with pytest.raises(BundleError, match="not a covreq manifest"):
            unpack(rebuilt(data, {MANIFEST: manifest}), tmp_path)


def test_covreq_bundle_writes_a_verifiable_bundle_and_prints_its_digest(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    private, public = key_pair()
    (tmp_path / "key.pem").write_bytes(private)
    target = tmp_path / "rules.tar.gz"
    code = main(["bundle", str(RULES), "-o", str(target), "--signing-key", str(tmp_path / "key.pem"),
                 "--key-id", "ops-1"])
    out = capsys.readouterr().out
    digest = tree_digest(RULES)
    assert code == 0 and f"sha256 {digest} (rule set {digest[:16]})" in out and "signed (kid ops-1)" in out
    assert unpack(target.read_bytes(), tmp_path / "unpacked", public).verified


def test_covreq_bundle_refuses_a_broken_tree_and_an_unusable_key(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    broken = Path(shutil.copytree(RULES, tmp_path / "rules"))
    policy_file(broken).write_text("id: [broken\n")
    assert main(["bundle", str(broken), "-o", str(tmp_path / "out.tar.gz")]) == 1
    assert "E-yaml" in capsys.readouterr().err and not (tmp_path / "out.tar.gz").exists()
    (tmp_path / "key.pem").write_text("not a key")
    assert main(["bundle", str(RULES), "-o", str(tmp_path / "out.tar.gz"), "--signing-key",
                 str(tmp_path / "key.pem")]) == 2
    assert "not an unencrypted PEM private key" in capsys.readouterr().err


def test_sizes_are_checked_at_each_header_before_its_bytes_are_read(tmp_path: Path) -> None:
    from engine.loading.yamlsource import MAX_FILE_BYTES
    from tests.service.hostile_bundle_server import MIB, huge_header, huge_member

    bombs = {"a rule file larger than a rule file may be": huge_member(MAX_FILE_BYTES + 1),
             "a GNU long name of 256 MiB": huge_header(tarfile.GNUTYPE_LONGNAME, 256 * MIB, 4 * MIB),
             "a pax header of 256 MiB": huge_header(tarfile.XHDTYPE, 256 * MIB, 4 * MIB)}
    for label, data in bombs.items():
        with pytest.raises(BundleError, match="bytes"):
            unpack(data, tmp_path)
        assert not list(tmp_path.iterdir()), label


def test_the_decompressed_archive_is_bounded_as_a_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.loading import bundle
    from tests.service.hostile_bundle_server import forged

    data = forged([(f"acme/{n:03}.yaml", b"id: x\n" * 100) for n in range(40)])
    monkeypatch.setattr(bundle, "MAX_UNPACKED_BYTES", 16 * 1024)
    with pytest.raises(BundleError, match="more than 16384 bytes"):
        unpack(data, tmp_path)
    monkeypatch.setattr(bundle, "MAX_UNPACKED_BYTES", 10**9)
    monkeypatch.setattr(bundle, "MAX_FILES", 10)
    with pytest.raises(BundleError, match="more than 10 files"):
        unpack(data, tmp_path)
    assert not list(tmp_path.iterdir())


def test_the_rules_are_checked_against_the_digest_before_one_is_written(tmp_path: Path) -> None:
    from tests.service.hostile_bundle_server import forged

    data, _ = build(RULES)
    policy = f"rules/{policy_file(RULES).relative_to(RULES).as_posix()}"
    written: list[str] = []
    for altered in (rebuilt(data, {policy: b"# altered\n"}),  # the last file of the tree
                    forged([("b.yaml", b"id: b\n"), ("a.yaml", b"id: a\n")]),  # not in the loader's order
                    rebuilt(data, {"rules/README.md": b"not a rule file\n"})):
        with pytest.raises(BundleError, match="altered or damaged|order"):
            unpack(altered, tmp_path)
        written += [str(p) for p in tmp_path.rglob("*")]
    assert written == []


def test_the_manifest_and_signature_come_before_the_rules(tmp_path: Path) -> None:
    data, _ = build(RULES)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        names = archive.getnames()
    manifest_last = rebuilt(rebuilt(data, {MANIFEST: None}), {MANIFEST: _member(data, MANIFEST)})
    assert names[0] == MANIFEST
    with pytest.raises(BundleError, match="before"):
        unpack(manifest_last, tmp_path)
    for nameless in ("", "rules/", "rules"):
        with pytest.raises(BundleError, match="not a place a bundle may hold a file|only regular files"):
            unpack(rebuilt(data, {nameless: b"x"}), tmp_path / "x")
    with pytest.raises(BundleError, match="not a place") as refused:  # a pax name: long, with escapes
        unpack(rebuilt(data, {"evil\n\x1b[31m" + "x" * 5000: b"x"}), tmp_path / "x")
    assert "\n" not in str(refused.value) and "\x1b" not in str(refused.value) and len(str(refused.value)) < 400


def _member(data: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        return archive.extractfile(name).read()  # type: ignore[union-attr]


def test_a_tar_without_its_end_blocks_is_read_as_tarfile_reads_it(tmp_path: Path) -> None:
    import gzip

    from tests.service.hostile_bundle_server import forged

    files = [("acme/a.yaml", b"id: a\n")]
    whole = gzip.decompress(forged(files))
    unpack(gzip.compress(whole.rstrip(b"\0") + bytes(-len(whole.rstrip(b"\0")) % 512)), tmp_path)
    assert (tmp_path / "acme" / "a.yaml").read_bytes() == b"id: a\n"


def test_gzip_members_and_padding_are_read_as_gzip_has_them_and_a_long_file_name_costs_no_python_loop(
        tmp_path: Path) -> None:
    import gzip
    import struct
    import time
    import zlib

    from tests.service.hostile_bundle_server import forged

    whole = gzip.decompress(forged([("acme/a.yaml", b"id: a\n"), ("acme/b.yaml", b"id: b\n")]))
    halves = gzip.compress(whole[:1536]) + bytes(700) + gzip.compress(whole[1536:]) + bytes(100)
    unpack(halves, tmp_path / "halves")
    assert sorted(p.name for p in (tmp_path / "halves" / "acme").iterdir()) == ["a.yaml", "b.yaml"]
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    named = (b"\x1f\x8b\x08\x08\0\0\0\0\0\xff" + b"n" * (32 * 1024 * 1024) + b"\0" + deflate.compress(whole)
             + deflate.flush() + struct.pack("<II", zlib.crc32(whole), len(whole)))
    began = time.process_time()  # this process's CPU time: a busy machine does not make the guard miss
    unpack(named, tmp_path / "named")
    assert time.process_time() - began < 3  # gzip.GzipFile: about 6 s, one read(1) per byte of the name
