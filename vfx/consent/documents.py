"""The signed consent documents a rights holder produces: enrolment, authority change, grant, revocation.

Each is canonical JSON signed with the holder's Ed25519 key (``{"document": ..., "signature": ...}``).
A holder can make them on their own machine (``vfx consent sign-*``) and upload them, so the
server never needs their private key. Whoever signs an enrolment becomes the subject's first
authority; authorities add or remove others; grants and revocations count only when signed by
an authority of their subject at the point they enter the ledger (see ``vfx.consent.state``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vfx.consent.canonical import digest_of
from vfx.consent.ledger import utc_now
from vfx.consent.keys import load_public_key_text, public_key_text, sign_document, signature_is_valid
from vfx.errors import VfxError

ENROLMENT = "vfx.consent.enrolment/1"
AUTHORITY = "vfx.consent.authority/1"
GRANT = "vfx.consent.grant/1"
REVOCATION = "vfx.consent.revocation/1"
SIGNER_FIELD = {ENROLMENT: "signer", AUTHORITY: "signer", GRANT: "issuer", REVOCATION: "revoker"}
OPERATION_PATTERN = re.compile(r"[a-z][a-z0-9_-]{0,39}")
PROJECT_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


@dataclass(frozen=True)
class Signed:
    document: dict[str, Any]
    signature: str

    @property
    def kind(self) -> str:
        return str(self.document.get("type", ""))

    @property
    def signer(self) -> str:
        return str(self.document.get(SIGNER_FIELD.get(self.kind, "signer"), ""))

    def to_json(self) -> dict[str, Any]:
        return {"document": self.document, "signature": self.signature}


@dataclass(frozen=True)
class Grant:
    grant_id: str
    document: dict
    signature: str

    @property
    def subject(self) -> str:
        return self.document["subject"]

    @property
    def project(self) -> str:
        return self.document["project"]

    @property
    def operations(self) -> list[str]:
        return self.document["operations"]

    @property
    def issuer(self) -> str:
        return self.document["issuer"]

    @property
    def valid_from(self) -> datetime:
        return parse_instant(self.document["valid_from"])

    @property
    def valid_until(self) -> datetime:
        return parse_instant(self.document["valid_until"])


def parse_instant(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def format_instant(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def sign(key: Ed25519PrivateKey, document: dict[str, Any]) -> Signed:
    return Signed(document, sign_document(key, document))


def signed_from_json(data: Any, expected_type: str) -> Signed:
    """A ``{"document", "signature"}`` upload of the given type, signature checked."""
    if not isinstance(data, dict) or not isinstance(data.get("document"), dict) or not isinstance(data.get("signature"), str):
        raise VfxError('a signed document is {"document": {...}, "signature": "..."}')
    signed = Signed(data["document"], data["signature"])
    if signed.kind != expected_type:
        raise VfxError(f"expected a {expected_type} document, got {signed.kind or 'no type'!r}")
    problem = signature_problem(signed)
    if problem:
        raise VfxError(problem)
    return signed


def signature_problem(signed: Signed) -> str:
    if signed.kind not in SIGNER_FIELD:
        return f"unknown document type {signed.kind!r}"
    if not signature_is_valid(signed.signer, signed.document, signed.signature):
        return f"{signed.kind} signature does not verify"
    return ""


def check_operations(items: str | list[str]) -> list[str]:
    operations = sorted({item.strip() for item in (items.split(",") if isinstance(items, str) else items) if item.strip()})
    if not operations:
        raise VfxError("--ops: name at least one operation, for example rejuvenate,lipsync")
    for op in operations:
        if not OPERATION_PATTERN.fullmatch(op):
            raise VfxError(f"operation {op!r}: use lowercase letters, digits, '_' or '-'")
    return operations


def enrolment(key: Ed25519PrivateKey, subject: str, digest: str, backend: str, references: int, source: str) -> Signed:
    return sign(key, {"type": ENROLMENT, "subject": subject, "subject_digest": digest, "backend": backend,
                      "references": references, "source": source, "signer": public_key_text(key.public_key()),
                      "enrolled_at": utc_now()})


def authority(key: Ed25519PrivateKey, subject: str, action: Literal["add", "remove"], other: str) -> Signed:
    if action not in ("add", "remove"):
        raise VfxError(f"authority change {action!r}: expected add or remove")
    return sign(key, {"type": AUTHORITY, "subject": subject, "action": action, "key": load_public_key_text(other),
                      "signer": public_key_text(key.public_key()), "issued_at": utc_now()})


def grant_id_of(document: dict[str, Any]) -> str:
    """A grant's id is derived from everything it says, so two grants never share one."""
    return "g-" + digest_of({k: v for k, v in document.items() if k != "grant_id"})[:16]


def grant(key: Ed25519PrivateKey, subject: str, subject_digest: str, project: str, operations: list[str],
          valid_from: datetime, valid_until: datetime) -> Signed:
    if not PROJECT_PATTERN.fullmatch(project):
        raise VfxError(f"project {project!r}: use letters, digits, '.', '_' or '-'")
    if valid_until <= valid_from:
        raise VfxError(f"grant would end ({format_instant(valid_until)}) before it starts ({format_instant(valid_from)})")
    body = {"type": GRANT, "subject": subject, "subject_digest": subject_digest, "project": project,
            "operations": check_operations(operations), "valid_from": format_instant(valid_from),
            "valid_until": format_instant(valid_until), "issuer": public_key_text(key.public_key()), "issued_at": utc_now()}
    return sign(key, {**body, "grant_id": grant_id_of(body)})


def revocation(key: Ed25519PrivateKey, grant_id: str, subject: str, reason: str) -> Signed:
    return sign(key, {"type": REVOCATION, "grant_id": grant_id, "subject": subject, "revoked_at": utc_now(),
                      "revoker": public_key_text(key.public_key()), "reason": reason})


def grant_shape_problem(document: dict[str, Any]) -> str:
    """What is wrong with an uploaded grant's fields, or "" (signing checks none of this)."""
    try:
        if not PROJECT_PATTERN.fullmatch(str(document["project"])):
            return f"project {document['project']!r}: use letters, digits, '.', '_' or '-'"
        if check_operations(list(document["operations"])) != document["operations"]:
            return "operations must be sorted and unique"
        if parse_instant(document["valid_until"]) <= parse_instant(document["valid_from"]):
            return "grant ends before it starts"
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return f"grant document is incomplete or malformed ({exc})"
    except VfxError as exc:
        return str(exc)
    return ""
