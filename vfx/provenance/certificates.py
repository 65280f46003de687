"""vfx's own signing identity, kept in ``VFX_HOME/keys``.

- ``provenance.key``: Ed25519, signs the sidecar manifests.
- ``c2pa-ca.pem`` / ``c2pa-ca.key``: a local self-signed root (ES256, P-256), made once.
- ``c2pa-signer.pem`` / ``c2pa-signer.key``: the end-entity certificate the C2PA manifests are
  signed with, issued by that root. C2PA rejects self-signed end-entity certificates, so the chain
  is leaf + root. A studio replaces these files with certificates from its own CA to have
  outputs show as trusted in C2PA validators.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from vfx.consent.home import vfx_home
from vfx.consent.keys import generate_key, load_private_key, write_private_atomic, write_text_atomic


@dataclass(frozen=True)
class SigningMaterial:
    ed25519_key: Path
    c2pa_chain_pem: bytes  # signer certificate then the root
    c2pa_key_pem: bytes


def keys_dir(home: Path | None = None) -> Path:
    directory = (home or vfx_home()) / "keys"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "vfx local"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _make_chain(directory: Path) -> None:
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = (x509.CertificateBuilder().subject_name(_name("vfx local provenance root")).issuer_name(_name("vfx local provenance root"))
            .public_key(root_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA256()))
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder().subject_name(_name("vfx provenance signer")).issuer_name(root.subject)
            .public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=825))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA256()))
    write_private_atomic(directory / "c2pa-ca.key", _pem_key(root_key))
    write_text_atomic(directory / "c2pa-ca.pem", root.public_bytes(serialization.Encoding.PEM).decode())
    write_private_atomic(directory / "c2pa-signer.key", _pem_key(leaf_key))
    write_text_atomic(directory / "c2pa-signer.pem", leaf.public_bytes(serialization.Encoding.PEM).decode())


def signing_material(home: Path | None = None) -> SigningMaterial:
    """Load vfx's signing keys, creating them on first use."""
    directory = keys_dir(home)
    ed_key = directory / "provenance.key"
    if not ed_key.exists():
        generate_key(ed_key)
    if not (directory / "c2pa-signer.pem").exists():
        _make_chain(directory)
    load_private_key(ed_key)
    chain = (directory / "c2pa-signer.pem").read_bytes() + (directory / "c2pa-ca.pem").read_bytes()
    return SigningMaterial(ed_key, chain, (directory / "c2pa-signer.key").read_bytes())
