"""Ed25519 keys of rights holders (and of vfx itself): files, ids, signing and verifying.

A private key is a PKCS#8 PEM file readable only by its owner; the public key beside it
(``NAME.pub``) is one line, the base64 of the 32 raw bytes. A key id is ``k-`` plus the first
16 hex digits of the sha256 of those raw bytes.
"""
from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from vfx.consent.canonical import canonical_json, sha256_hex
from vfx.errors import VfxError


def public_key_text(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def key_id(public_text: str) -> str:
    return "k-" + sha256_hex(base64.b64decode(public_text))[:16]


def parse_public_key(text: str) -> Ed25519PublicKey:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, binascii.Error) as exc:
        raise VfxError(f"not an Ed25519 public key (base64 of 32 bytes): {text.strip()[:60]!r}") from exc


def write_private_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # also when a stale temp file existed with wider permissions
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def generate_key(path: Path, overwrite: bool = False) -> tuple[Path, str]:
    """Write a new private key to ``path`` and its public key to ``path.pub``; return (pub path, key id)."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise VfxError(f"{path} already exists; refusing to overwrite a key")
    if not path.parent.is_dir():
        raise VfxError(f"{path}: directory {path.parent} does not exist")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    write_private_atomic(path, pem)
    public_text = public_key_text(key.public_key())
    pub_path = path.with_name(path.name + ".pub")
    write_text_atomic(pub_path, public_text + "\n")
    return pub_path, key_id(public_text)


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise VfxError(f"cannot read key {path}: {exc.strerror}") from exc
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise VfxError(f"{path}: not an unencrypted PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise VfxError(f"{path}: not an Ed25519 key")
    return key


def load_public_key_text(source: str) -> str:
    """A public key given as a .pub file path or as the base64 text itself; returns the base64 text."""
    candidate = Path(source).expanduser()
    text = candidate.read_text(encoding="utf-8").strip() if candidate.is_file() else source.strip()
    parse_public_key(text)
    return text


def sign_document(key: Ed25519PrivateKey, document: dict) -> str:
    return base64.b64encode(key.sign(canonical_json(document))).decode("ascii")


def signature_is_valid(public_text: str, document: dict, signature: str) -> bool:
    try:
        parse_public_key(public_text).verify(base64.b64decode(signature), canonical_json(document))
        return True
    except (InvalidSignature, VfxError, ValueError, binascii.Error):
        return False
