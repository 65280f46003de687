"""vfx's signing identity: an X.509 chain that signs both the C2PA manifest and the sidecar.

Where it lives is the deployment's choice: ``VFX_SIGNING_KEYS`` (a directory, e.g. a Kubernetes
secret mounted read-only; never written to, so every replica signs as the same identity), else
``VFX_HOME/keys`` (made on first use; private keys 0600, directory 0700).

- ``c2pa-signer.pem`` / ``c2pa-signer.key``: the end-entity certificate (ES256, P-256) outputs are
  signed with. C2PA rejects self-signed end-entity certificates, so it is issued by a root.
- ``c2pa-ca.pem``: that root, the certificate verifiers pin (``vfx provenance verify --trust``).
  ``c2pa-ca.key`` exists only where vfx made the root itself (``vfx provenance keygen DIR``);
  keep it off the serving machines. A studio can use certificates from its own CA instead.
"""
from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from vfx.consent.home import vfx_home
from vfx.consent.keys import write_private_atomic, write_text_atomic
from vfx.errors import VfxError


SIGNER_CERT, SIGNER_KEY, ROOT_CERT, ROOT_KEY = "c2pa-signer.pem", "c2pa-signer.key", "c2pa-ca.pem", "c2pa-ca.key"


@dataclass(frozen=True)
class SigningMaterial:
    c2pa_chain_pem: bytes  # signer certificate then the root
    c2pa_key_pem: bytes

    @property
    def certificates(self) -> list[x509.Certificate]:
        return x509.load_pem_x509_certificates(self.c2pa_chain_pem)

    def sign(self, data: bytes) -> bytes:
        key = serialization.load_pem_private_key(self.c2pa_key_pem, password=None)
        return key.sign(data, ec.ECDSA(hashes.SHA256()))


def deployed_keys_dir() -> Path | None:
    configured = os.environ.get("VFX_SIGNING_KEYS")
    return Path(configured).expanduser() if configured else None


def keys_dir(home: Path | None = None) -> Path:
    """Where the signing chain is read from (and, outside a deployment, created)."""
    deployed = None if home else deployed_keys_dir()
    if deployed is not None:
        return deployed
    directory = (home or vfx_home()) / "keys"
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
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
    write_private_atomic(directory / ROOT_KEY, _pem_key(root_key))
    write_text_atomic(directory / ROOT_CERT, root.public_bytes(serialization.Encoding.PEM).decode())
    write_private_atomic(directory / SIGNER_KEY, _pem_key(leaf_key))
    write_text_atomic(directory / SIGNER_CERT, leaf.public_bytes(serialization.Encoding.PEM).decode())


def make_signing_keys(directory: Path) -> Path:
    """A new root and signer in ``directory`` (for a deployment's secret); returns the root to pin."""
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / SIGNER_CERT).exists():
        raise VfxError(f"{directory / SIGNER_CERT} already exists; refusing to replace a signing identity")
    _make_chain(directory)
    return directory / ROOT_CERT


def signing_material(home: Path | None = None) -> SigningMaterial:
    """Load the signing chain; outside a deployment (no VFX_SIGNING_KEYS) create it on first use."""
    directory = keys_dir(home)
    missing = [name for name in (SIGNER_CERT, SIGNER_KEY, ROOT_CERT) if not (directory / name).is_file()]
    if missing and deployed_keys_dir() is not None and home is None:
        raise VfxError(f"VFX_SIGNING_KEYS={directory}: missing {', '.join(missing)} "
                       "(make them with `vfx provenance keygen DIR` and mount them as a secret)")
    if missing:
        _make_chain(directory)
    try:
        chain = (directory / SIGNER_CERT).read_bytes() + (directory / ROOT_CERT).read_bytes()
        return SigningMaterial(chain, (directory / SIGNER_KEY).read_bytes())
    except OSError as exc:
        raise VfxError(f"cannot read signing keys in {directory}: {exc.strerror}") from exc


def trusted_root_path() -> Path | None:
    """This machine's root certificate, the default pin of ``vfx provenance verify``."""
    directory = deployed_keys_dir() or vfx_home() / "keys"
    path = directory / ROOT_CERT
    return path if path.is_file() else None
