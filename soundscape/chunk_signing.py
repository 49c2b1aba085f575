"""Signed chunks: a station's Ed25519 signature binds its id to what it recorded.

Kafka authenticates the connection, not the message key, so an enrolled station could
still put another station's id in its envelope. Each station therefore signs the
envelope fields that identify and place a chunk, the payload's sha256 included (the
worker checks the payload against that hash), with a key of its own; the worker checks
the signature against the public key registered for the station the chunk claims.

Two extra headers carry it (unknown headers are passed on untouched by every reader):
`signer` (whose key: the station id, or `archive:<name>` for replays) and `signature`
(base64 of the 64-byte Ed25519 signature). `published_at` is not signed: it is stamped
when the spool sends the chunk, after the signature was made.

A station that scores its own chunks (edge results, `station.edge_bundle`) signs each
result's whole message value with the same key and the same two headers, under a
context of its own (`verify_result`); the sink checks them by the chunk rules.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass, replace

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from soundscape.envelope import ChunkEnvelope

SIGNER_HEADER = "signer"
SIGNATURE_HEADER = "signature"
ARCHIVE_PREFIX = "archive:"
_CONTEXT = b"soundscape chunk signature v1\n"
_RESULT_CONTEXT = b"soundscape edge result signature v1\n"

#: Reasons a worker refuses a chunk on its signature (DLQ `dlq_reason`, metric label).
SIGNATURE_REASONS = ("unsigned", "bad_signature", "unknown_signer", "revoked_signer",
                     "wrong_signer")


@dataclass(frozen=True)
class SignatureCheck:
    """What a worker checks chunks with: the registered keys, and whether every chunk
    must be signed (`intake.signatures = require`) or only those of stations with a key."""

    lookup: Callable[[str], SignerKey | None]
    require: bool = False


@dataclass(frozen=True)
class SignerKey:
    """A registered public key: whose it is and whether it was revoked."""

    signer: str
    public_key: Ed25519PublicKey
    revoked: bool = False


def signed_bytes(envelope: ChunkEnvelope, signer: str) -> bytes:
    fields = (
        ("signer", signer), ("station_id", envelope.station_id),
        ("chunk_start", envelope.chunk_start), ("seq", envelope.seq),
        ("sample_rate", envelope.sample_rate), ("channels", envelope.channels),
        ("codec", envelope.codec), ("sha256", envelope.sha256),
        ("captured_at", envelope.captured_at), ("source", envelope.source),
        ("gap_ns", envelope.gap_ns), ("schema_version", envelope.schema_version),
    )
    return _CONTEXT + "".join(f"{name}={value}\n" for name, value in fields).encode()


class ChunkSigner:
    def __init__(self, key: Ed25519PrivateKey, signer: str) -> None:
        self.key = key
        self.signer = signer

    @classmethod
    def from_text(cls, private_key: str, signer: str) -> ChunkSigner:
        return cls(private_key_from_text(private_key), signer)

    def sign(self, envelope: ChunkEnvelope) -> ChunkEnvelope:
        """The envelope with this signer's signature (any earlier one replaced)."""
        signature = self.key.sign(signed_bytes(envelope, self.signer))
        extra = tuple((k, v) for k, v in envelope.extra
                      if k not in (SIGNER_HEADER, SIGNATURE_HEADER))
        return replace(envelope, extra=extra + (
            (SIGNER_HEADER, self.signer.encode()),
            (SIGNATURE_HEADER, base64.b64encode(signature)),
        ))


def verify(envelope: ChunkEnvelope, lookup: Callable[[str], SignerKey | None],
           require: bool) -> tuple[str, str] | None:
    """None if the chunk may be scored, else (reason, detail).

    A chunk claiming a station with a registered key must carry that station's valid
    signature (or an archive key's, for replays); with `require`, every chunk must be
    signed by a registered key.
    """
    return _check(dict(envelope.extra), envelope.station_id, "chunk",
                  lambda signer: signed_bytes(envelope, signer), lookup, require,
                  archive_source=envelope.source)


def _check(headers: dict[str, bytes], station_id: str, what: str,
           signed: Callable[[str], bytes], lookup: Callable[[str], SignerKey | None],
           require: bool, archive_source: str | None = None) -> tuple[str, str] | None:
    """The rules of both kinds of signed message; `archive_source` is the chunk's source
    where archive keys may sign (replays), None where only the station's key may."""
    signer_raw, signature_raw = headers.get(SIGNER_HEADER), headers.get(SIGNATURE_HEADER)
    if signer_raw is None or signature_raw is None:
        own = lookup(station_id)
        if own is not None and not own.revoked:
            return "unsigned", f"station {station_id} has a key; this {what} is unsigned"
        if own is not None:
            return "revoked_signer", f"station {station_id}'s key is revoked"
        if require:
            return "unsigned", f"every {what} must be signed (intake.signatures = require)"
        return None
    signer = signer_raw.decode("utf-8", "replace")
    if signer.startswith(ARCHIVE_PREFIX):
        if archive_source is None:
            return "wrong_signer", f"archive key {signer} does not sign a station's {what}s"
        if archive_source != "replay":
            return "wrong_signer", f"archive key {signer} signs replays only, not {archive_source}"
    elif signer != station_id:
        return "wrong_signer", f"signed by station {signer}, claims station {station_id}"
    key = lookup(signer)
    if key is None:
        return "unknown_signer", f"no key registered for {signer}"
    if key.revoked:
        return "revoked_signer", f"the key of {signer} is revoked"
    try:
        signature = base64.b64decode(signature_raw, validate=True)
        key.public_key.verify(signature, signed(signer))
    except (InvalidSignature, binascii.Error, ValueError):
        return "bad_signature", f"the signature does not match {signer}'s key"
    return None


# ---- results a station scored itself (edge results) ------------------------------------
def result_signed_bytes(value: bytes, signer: str) -> bytes:
    """What a station signs of a result it scored: the whole message value (the JSON,
    which names the station, chunk, version and scores), under a context of its own so
    that no chunk signature can pass for a result's or the other way round."""
    return _RESULT_CONTEXT + f"signer={signer}\n".encode() + value


def result_headers(signer: ChunkSigner | None, value: bytes) -> list[tuple[str, bytes]]:
    """`signer` and `signature` headers for a result value (none when unsigned)."""
    if signer is None:
        return []
    signature = signer.key.sign(result_signed_bytes(value, signer.signer))
    return [(SIGNER_HEADER, signer.signer.encode()), (SIGNATURE_HEADER, base64.b64encode(signature))]


def verify_result(headers: list[tuple[str, bytes]] | None, value: bytes, station_id: str,
                  lookup: Callable[[str], SignerKey | None],
                  require: bool) -> tuple[str, str] | None:
    """None if the result may be stored, else (reason, detail): the chunk rules
    (`verify`), where only the station's own key signs its results."""
    found: dict[str, bytes] = {}
    for name, raw in headers or []:
        if name in (SIGNER_HEADER, SIGNATURE_HEADER) and name in found:
            return "bad_signature", f"the result carries more than one {name} header"
        found[name] = raw
    return _check(found, station_id, "result", lambda signer: result_signed_bytes(value, signer),
                  lookup, require)


# ---- keys as text (config files, the database) -----------------------------------------
def new_private_key_text() -> str:
    return private_key_text(Ed25519PrivateKey.generate())


def private_key_text(key: Ed25519PrivateKey) -> str:
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                            serialization.NoEncryption())
    return base64.b64encode(raw).decode()


def private_key_from_text(text: str) -> Ed25519PrivateKey:
    try:
        return Ed25519PrivateKey.from_private_bytes(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not an Ed25519 private key (base64 of 32 bytes): {exc}") from None


def public_key_text(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return base64.b64encode(public.public_bytes(serialization.Encoding.Raw,
                                                serialization.PublicFormat.Raw)).decode()


def public_key_from_text(text: str) -> Ed25519PublicKey:
    try:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not an Ed25519 public key (base64 of 32 bytes): {exc}") from None
