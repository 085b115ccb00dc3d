"""Rule bundles: a rule tree in one gzip'd tar, with a manifest and an optional signature.

A bundle holds ``manifest.json`` (the tree's SHA-256 digest, the covreq version that built it, the
number of files), ``rules/`` (the policy and payer files the loader reads) and, when signed,
``signature.jwt``: a JWS whose claims repeat the digest, signed with a private key the operator
holds (RSA, EC or Ed25519). Opening a bundle checks every member before anything is written, the
signature when a public key is given, and that the unpacked tree has the manifest's digest.
The first 16 characters of that digest are the rule set's digest once it is loaded.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import tarfile
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from .errors import CovreqError
from .loader import digest_entry, iter_rule_files

MANIFEST = "manifest.json"
SIGNATURE = "signature.jwt"
TREE = "rules"
#: Bundle format written by this version.
FORMAT = 1
#: Most bytes the files of a bundle may hold once unpacked.
MAX_UNPACKED_BYTES = 512 * 1024 * 1024
#: Most files a bundle may hold.
MAX_FILES = 200_000
#: Signature algorithms accepted: public-key ones only (never ``none`` or a shared secret).
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")
_EC_ALGORITHMS = {256: "ES256", 384: "ES384", 521: "ES512"}


class BundleError(CovreqError):
    """A bundle cannot be built, or is refused: unreadable, altered, unsigned or badly signed."""


@dataclass(frozen=True)
class Manifest:
    """What a bundle says about itself."""

    digest: str
    covreq: str
    files: int
    format: int = FORMAT

    @property
    def ruleset(self) -> str:
        """The digest of the rule set the bundle loads to (as every answer names it)."""
        return self.digest[:16]


@dataclass(frozen=True)
class Opened:
    """A bundle unpacked and checked: its manifest, whether a signature was verified, and its key id."""

    manifest: Manifest
    verified: bool
    key_id: str | None = None


def covreq_version() -> str:
    """The installed covreq's version."""
    try:
        return metadata.version("covreq")
    except metadata.PackageNotFoundError:
        return "unknown"


def tree_digest(root: Path) -> str:
    """The full SHA-256 digest of the rule files under ``root``, as the loader computes it."""
    return _digest(root, _read(root))


def _read(root: Path) -> list[tuple[Path, bytes]]:
    """Every rule file under ``root`` with its bytes, read once."""
    return [(path, path.read_bytes()) for path in iter_rule_files(root)]


def _digest(root: Path, files: list[tuple[Path, bytes]]) -> str:
    digest = hashlib.sha256()
    for path, raw in files:
        digest.update(digest_entry(root, path, raw))
    return digest.hexdigest()


def _signing_algorithm(key: Any) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size in _EC_ALGORITHMS:
        return _EC_ALGORITHMS[key.curve.key_size]
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
        return "EdDSA"
    raise BundleError("the signing key must be an RSA, EC (P-256, P-384, P-521) or Ed25519 private key")


def _sign(manifest: Manifest, private_pem: bytes, key_id: str | None) -> str:
    try:
        key = serialization.load_pem_private_key(private_pem, password=None)
    except (ValueError, TypeError) as err:
        raise BundleError(f"the signing key is not an unencrypted PEM private key: {err}") from None
    claims = {"digest": manifest.digest, "covreq": manifest.covreq, "iat": int(datetime.now(timezone.utc).timestamp())}
    return jwt.encode(claims, key, algorithm=_signing_algorithm(key), headers={"kid": key_id} if key_id else None)


def _add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    """Add a file with fixed owner, mode and time, so the same tree gives the same bytes."""
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    archive.addfile(info, io.BytesIO(data))


def build(root: Path, private_pem: bytes | None = None, key_id: str | None = None) -> tuple[bytes, Manifest]:
    """The bundle of the rule tree at ``root`` (a folder), signed when ``private_pem`` is given.

    Unsigned, the same tree always gives the same bytes (a signature carries its time)."""
    if not root.is_dir():
        raise BundleError(f"{root}: a bundle is made of a rule folder")
    files = _read(root)  # read once, so the manifest's digest is of the very bytes packed
    manifest = Manifest(_digest(root, files), covreq_version(), len(files))
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as zipped, \
            tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as archive:
        _add(archive, MANIFEST, json.dumps(asdict(manifest), indent=1).encode())
        if private_pem is not None:
            _add(archive, SIGNATURE, _sign(manifest, private_pem, key_id).encode())
        for path, raw in files:
            _add(archive, f"{TREE}/{path.relative_to(root).as_posix()}", raw)
    return buffer.getvalue(), manifest


def _members(data: bytes) -> dict[str, bytes]:
    """Every file of the archive by name, after checking names, kinds, count and sizes."""
    found: dict[str, bytes] = {}
    total = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            for member in archive:
                name = PurePosixPath(member.name)
                if not member.isfile():
                    raise BundleError(f"{member.name}: only regular files may be in a bundle")
                if name.is_absolute() or ".." in name.parts or member.name in found or not (
                        member.name in (MANIFEST, SIGNATURE) or (name.parts[0] == TREE and len(name.parts) > 1)):
                    raise BundleError(f"{member.name}: not a place a bundle may hold a file")
                total += member.size
                if total > MAX_UNPACKED_BYTES or len(found) >= MAX_FILES:
                    raise BundleError(f"the bundle holds more than {MAX_UNPACKED_BYTES} bytes or {MAX_FILES} files")
                found[member.name] = archive.extractfile(member).read()  # type: ignore[union-attr]
    except (tarfile.TarError, OSError, EOFError, gzip.BadGzipFile) as err:
        raise BundleError(f"not a readable bundle (gzip'd tar): {err}") from None
    return found


def _manifest(raw: bytes | None) -> Manifest:
    if raw is None:
        raise BundleError(f"the bundle has no {MANIFEST}")
    try:
        data = json.loads(raw)
        manifest = Manifest(**data)
    except (ValueError, TypeError) as err:
        raise BundleError(f"{MANIFEST} is not a covreq manifest: {err}") from None
    if manifest.format != FORMAT or not isinstance(manifest.digest, str) or not _HEX_DIGEST.fullmatch(manifest.digest):
        raise BundleError(f"{MANIFEST} is not a covreq manifest of format {FORMAT} with a SHA-256 digest")
    return manifest


def _verify(token: bytes | None, manifest: Manifest, public_pem: bytes) -> str | None:
    """Check the signature; return its key id."""
    if token is None:
        raise BundleError("the bundle is not signed, and this service requires a signature")
    try:
        key = serialization.load_pem_public_key(public_pem)
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, key, algorithms=list(ALGORITHMS), options={"require": ["digest"]})  # type: ignore[arg-type]
    except (ValueError, TypeError, jwt.PyJWTError) as err:
        raise BundleError(f"the bundle's signature does not verify: {err}") from None
    if claims["digest"] != manifest.digest:
        raise BundleError("the bundle's signature is for another digest than its manifest's")
    kid = header.get("kid")
    return kid if isinstance(kid, str) else None


def unpack(data: bytes, target: Path, public_pem: bytes | None = None) -> Opened:
    """Verify the bundle ``data`` and unpack its tree into ``target`` (an empty folder).

    With ``public_pem``, a signature by the matching private key is required. Raises
    :class:`BundleError` for anything amiss; the tree is written only after the archive was read.
    """
    members = _members(data)
    manifest = _manifest(members.pop(MANIFEST, None))
    token = members.pop(SIGNATURE, None)
    key_id = _verify(token, manifest, public_pem) if public_pem is not None else None
    for name, raw in members.items():
        path = target.joinpath(*PurePosixPath(name).parts[1:])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(raw)
    found = tree_digest(target)
    if found != manifest.digest:
        raise BundleError(f"the unpacked tree has digest {found}, the manifest says {manifest.digest}: "
                          "the bundle was altered or damaged")
    return Opened(manifest, token is not None and public_pem is not None, key_id)
