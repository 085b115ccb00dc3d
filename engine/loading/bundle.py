"""Rule bundles: a rule tree in one gzip'd tar, with a manifest and an optional signature.

A bundle holds ``manifest.json`` (the tree's SHA-256 digest, the covreq version that built it, the
number of files), ``rules/`` (the policy and payer files the loader reads) and, when signed,
``signature.jwt``: a JWS whose claims repeat the digest, signed with a private key the operator
holds (RSA, EC or Ed25519). Opening a bundle checks every member before anything is written, the
signature when a public key is given, and that the unpacked tree has the manifest's digest.
The first 16 characters of that digest are the rule set's digest once it is loaded.

Opening reads the archive twice from memory and writes nothing until the second time. The first
reading checks every header before a byte it announces is decompressed (kinds, places, sizes, GNU
long-name and pax headers included), judges the manifest and the signature before a rule file is
read (``covreq bundle`` writes them first), and hashes the rule files as they come (in the loader's
order, as ``covreq bundle`` writes them) against the signed digest. Only a bundle found whole and
authentic is written, and the written tree is checked once more.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import tarfile
import zlib
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Iterator

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from engine.errors import CovreqError
from engine.loading.files import digest_entry, iter_rule_files, named_digest_entry
from engine.loading.yamlsource import MAX_FILE_BYTES

MANIFEST = "manifest.json"
SIGNATURE = "signature.jwt"
TREE = "rules"
#: Bundle format written by this version.
FORMAT = 1
#: Most bytes a bundle's tar may hold once decompressed: its files, their headers and padding.
MAX_UNPACKED_BYTES = 512 * 1024 * 1024
#: Most files a bundle may hold.
MAX_FILES = 200_000
#: Most bytes of the manifest, of the signature, and of one GNU long-name or pax header. A rule file
#: may hold ``engine.loading.yamlsource.MAX_FILE_BYTES`` (the loader reads no larger file).
MAX_HEADER_BYTES = 64 * 1024
_BLOCK = tarfile.BLOCKSIZE
_FILE_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE)
_EXTENDED_TYPES = (tarfile.GNUTYPE_LONGNAME, tarfile.XHDTYPE, tarfile.XGLTYPE)
_PAX_RECORD = re.compile(rb"([0-9]{1,9}) ")
_UNREADABLE = "not a readable bundle (gzip'd tar)"
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
    """The full SHA-256 digest of the rule files under ``root``, as the loader computes it (one file
    in memory at a time)."""
    return _digest(root, ((path, path.read_bytes()) for path in iter_rule_files(root)))


def _read(root: Path) -> list[tuple[Path, bytes]]:
    """Every rule file under ``root`` with its bytes, read once."""
    return [(path, path.read_bytes()) for path in iter_rule_files(root)]


def _digest(root: Path, files: Iterable[tuple[Path, bytes]]) -> str:
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


def _unreadable(detail: object) -> BundleError:
    return BundleError(f"{_UNREADABLE}: {detail}")


def _shown(name: str) -> str:
    """A member's name as an error message may show it: cut, control characters escaped."""
    return repr(name[:200])[1:-1]


def _pax(raw: bytes) -> dict[str, str]:
    """The records of a pax extended header (``"<length> <key>=<value>\\n"`` each)."""
    found: dict[str, str] = {}
    position = 0
    while position < len(raw):
        match = _PAX_RECORD.match(raw, position)
        end = position + int(match[1]) if match else 0
        if not match or not match.end() < end <= len(raw) or raw[end - 1] != 0x0A:
            raise _unreadable("a damaged pax header")
        key, equals, value = raw[match.end():end - 1].partition(b"=")
        if not equals:
            raise _unreadable("a damaged pax header")
        found[key.decode()] = value.decode()
        position = end
    if not re.fullmatch(r"[0-9]{1,20}", found.get("size", "0")):
        raise _unreadable("a pax header with a size that is not a number")
    return found


class _Inflated:
    """The decompressed bytes of gzip ``data`` (one member or several, as gzip allows), read in
    pieces. zlib reads the gzip headers, in C: a file name of many MiB in a header costs no Python
    loop over its bytes (``gzip.GzipFile`` reads it one byte at a time, holding the GIL)."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._fed = 0  # bytes of ``data`` given to zlib
        self._tail = b""  # of those, what zlib has not consumed yet
        self._zip = zlib.decompressobj(16 + zlib.MAX_WBITS)

    def _feed(self) -> bytes:
        piece = self._data[self._fed:self._fed + 64 * 1024].tobytes()
        self._fed += len(piece)
        return piece

    def _next_member(self) -> bool:
        """After a member's end: start the next one, unless only zero padding follows (as gzip allows)."""
        rest = self._zip.unused_data.lstrip(b"\0")
        while not rest and self._fed < len(self._data):
            rest = self._feed().lstrip(b"\0")
        if not rest:
            return False
        self._zip, self._tail = zlib.decompressobj(16 + zlib.MAX_WBITS), rest
        return True

    def read(self, size: int) -> bytes:
        """The next ``size`` bytes, or fewer at the end; raises ``zlib.error`` for a damaged stream."""
        out = bytearray()
        while len(out) < size:
            if self._zip.eof and not self._next_member():
                break
            if not self._tail and self._fed < len(self._data):
                self._tail = self._feed()
            piece = self._zip.decompress(self._tail, size - len(out))
            self._tail = self._zip.unconsumed_tail
            out += piece
            if not piece and not self._tail and self._fed >= len(self._data) and not self._zip.eof:
                break  # the data ends inside a member
        return bytes(out)


class _Tar:
    """The regular files of a gzip'd tar held in memory, read once in order, in pieces.

    Every header is checked before the bytes it announces are decompressed: its kind, its place,
    its size (:data:`MAX_HEADER_BYTES` for the manifest, the signature and GNU long-name or pax
    headers, ``MAX_FILE_BYTES`` for a rule file), the number of files and the order
    ``covreq bundle`` writes (manifest and signature first, then the rule files sorted by path as
    the loader reads them); no more than :data:`MAX_UNPACKED_BYTES` are decompressed in all.
    """

    def __init__(self, data: bytes) -> None:
        self._stream = _Inflated(data)
        self._taken = 0
        self._unread = 0  # padded bytes of the current file not read by the caller

    def _take(self, size: int, may_end: bool = False) -> bytes:
        """The next ``size`` decompressed bytes (or none, when ``may_end`` and the tar ends there)."""
        self._taken += size
        if self._taken > MAX_UNPACKED_BYTES:
            raise BundleError(f"the bundle holds more than {MAX_UNPACKED_BYTES} bytes")
        try:
            piece = self._stream.read(size)
        except (OSError, EOFError, zlib.error) as err:
            raise _unreadable(err) from None
        if len(piece) != size and not (may_end and not piece):
            raise _unreadable("it ends inside a member")
        return piece

    def _content(self, size: int) -> bytes:
        """The next ``size`` bytes and their padding to a whole block, without the padding."""
        return self._take(-(-size // _BLOCK) * _BLOCK)[:size]

    def read(self) -> bytes:
        """The bytes of the file :meth:`files` has just given."""
        size, self._unread = self._unread, 0
        return self._content(size)

    def files(self) -> Iterator[tuple[str, str | None]]:
        """Each file's name, and its path inside ``rules/`` (None for the manifest and the signature)."""
        count, meta, previous = 0, set(), None
        long_name: str | None = None
        pax: dict[str, str] | None = None
        while True:
            if self._unread:
                self.read()  # a file the caller did not read
            block = self._take(_BLOCK, may_end=count > 0 and long_name is None and pax is None)
            if not block or block == bytes(_BLOCK):  # the end (tarfile, too, reads a tar without its end blocks)
                return
            try:
                info = tarfile.TarInfo.frombuf(block, "utf-8", "strict")
            except (tarfile.HeaderError, UnicodeDecodeError, ValueError) as err:
                raise _unreadable(err) from None
            if info.type in _EXTENDED_TYPES:
                if not 0 <= info.size <= MAX_HEADER_BYTES:
                    raise BundleError(f"a tar header of {info.size} bytes (at most {MAX_HEADER_BYTES} bytes)")
                raw = self._content(info.size)
                if (info.type == tarfile.GNUTYPE_LONGNAME and long_name) or (info.type == tarfile.XHDTYPE and pax):
                    raise _unreadable("two extended headers of one kind for one member")
                try:
                    if info.type == tarfile.GNUTYPE_LONGNAME:
                        long_name = raw.split(b"\0", 1)[0].decode()
                    elif info.type == tarfile.XHDTYPE:
                        pax = _pax(raw)
                except UnicodeDecodeError as err:
                    raise _unreadable(err) from None
                continue  # global pax headers (XGLTYPE) change nothing covreq reads
            name = (pax or {}).get("path") or long_name or info.name
            size = int(pax["size"]) if pax and "size" in pax else info.size
            long_name = pax = None
            if info.type not in _FILE_TYPES:
                raise BundleError(f"{_shown(name)}: only regular files may be in a bundle")
            path = PurePosixPath(name)
            in_tree = len(path.parts) > 1 and path.parts[0] == TREE
            if "\0" in name or path.is_absolute() or ".." in path.parts or name in meta or not (
                    name in (MANIFEST, SIGNATURE) or in_tree):
                raise BundleError(f"{_shown(name)}: not a place a bundle may hold a file")
            most = MAX_FILE_BYTES if in_tree else MAX_HEADER_BYTES
            if not 0 <= size <= most:
                raise BundleError(f"{_shown(name)}: {size} bytes, more than such a file may hold ({most} bytes)")
            count += 1
            if count > MAX_FILES:
                raise BundleError(f"the bundle holds more than {MAX_FILES} files")
            if not in_tree and previous is not None:
                raise BundleError(f"{_shown(name)} comes after rule files: covreq bundle writes it before them")
            if in_tree and previous is not None and path.parts <= previous:
                raise BundleError(f"{_shown(name)}: the rule files are not in the order covreq bundle writes them "
                                  "(sorted by path), or one is there twice")
            if in_tree:
                previous = path.parts
            else:
                meta.add(name)
            self._unread = size
            yield name, "/".join(path.parts[1:]) if in_tree else None


def _manifest(raw: bytes | None) -> Manifest:
    if raw is None:
        raise BundleError(f"the bundle has no {MANIFEST} before its rule files")
    try:
        data = json.loads(raw)
        manifest = Manifest(**data)
    except (ValueError, TypeError, RecursionError) as err:
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


def _judge(meta: dict[str, bytes], public_pem: bytes | None) -> Opened:
    """The manifest, checked, and the signature verified when ``public_pem`` is given."""
    manifest = _manifest(meta.get(MANIFEST))
    token = meta.get(SIGNATURE)
    key_id = _verify(token, manifest, public_pem) if public_pem is not None else None
    return Opened(manifest, token is not None and public_pem is not None, key_id)


def _check(data: bytes, public_pem: bytes | None) -> Opened:
    """Read the whole bundle without writing anything: judge the manifest and signature before the
    first rule file is read, then hash the rule files against the manifest's digest."""
    archive, meta, digest = _Tar(data), {}, hashlib.sha256()
    opened: Opened | None = None
    for name, relative in archive.files():
        if relative is None:
            meta[name] = archive.read()
            continue
        opened = opened or _judge(meta, public_pem)
        digest.update(named_digest_entry(relative, archive.read()))
    opened = opened or _judge(meta, public_pem)
    if digest.hexdigest() != opened.manifest.digest:
        raise BundleError(f"the bundle's rule files have digest {digest.hexdigest()}, the manifest says "
                          f"{opened.manifest.digest}: the bundle was altered or damaged")
    return opened


def unpack(data: bytes, target: Path, public_pem: bytes | None = None) -> Opened:
    """Verify the bundle ``data`` and unpack its tree into ``target`` (an empty folder).

    With ``public_pem``, a signature by the matching private key is required. Raises
    :class:`BundleError` for anything amiss, before anything is written (see the module's
    docstring); an ``OSError`` when writing the checked files fails.
    """
    opened = _check(data, public_pem)
    archive = _Tar(data)
    for _, relative in archive.files():
        if relative is not None:
            path = target.joinpath(*relative.split("/"))
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("xb") as handle:
                handle.write(archive.read())
    found = tree_digest(target)
    if found != opened.manifest.digest:
        raise BundleError(f"the unpacked tree has digest {found}, the manifest says {opened.manifest.digest}: "
                          "the bundle was altered or damaged")
    return opened
