"""Grants and revocations: canonical JSON documents signed with a rights holder's Ed25519 key."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from vfx.consent import ledger
from vfx.consent.canonical import canonical_json, digest_of
from vfx.consent.keys import key_id, public_key_text, sign_document, signature_is_valid
from vfx.consent.schema import GrantRow, RevocationRow, SubjectRow
from vfx.consent.store import ConsentStore
from vfx.consent.subjects import row_to_subject
from vfx.errors import VfxError

OPERATION_PATTERN = re.compile(r"[a-z][a-z0-9_-]{0,39}")
PROJECT_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


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


def parse_when(text: str, end_of_day: bool) -> datetime:
    """A date (``2026-12-31``) or ISO datetime; a bare date ends at 23:59:59 UTC when ``end_of_day``."""
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text.strip()):
            day = date.fromisoformat(text.strip())
            return datetime.combine(day, time(23, 59, 59) if end_of_day else time(0), tzinfo=timezone.utc)
        return parse_instant(text.strip())
    except ValueError as exc:
        raise VfxError(f"date {text!r}: expected YYYY-MM-DD or an ISO 8601 date and time") from exc


def parse_operations(text: str | list[str]) -> list[str]:
    items = text.split(",") if isinstance(text, str) else text
    operations = sorted({item.strip() for item in items if item.strip()})
    if not operations:
        raise VfxError("--ops: name at least one operation, for example rejuvenate,lipsync")
    for op in operations:
        if not OPERATION_PATTERN.fullmatch(op):
            raise VfxError(f"operation {op!r}: use lowercase letters, digits, '_' or '-'")
    return operations


def row_to_grant(row: GrantRow) -> Grant:
    return Grant(row.grant_id, json.loads(row.document), row.signature)


def issue_grant(store: ConsentStore, key: Ed25519PrivateKey, subject: str, project: str,
                operations: list[str], valid_from: datetime, valid_until: datetime) -> Grant:
    """Sign a grant with ``key``, store it and record it in the ledger."""
    if not PROJECT_PATTERN.fullmatch(project):
        raise VfxError(f"project {project!r}: use letters, digits, '.', '_' or '-'")
    if valid_until <= valid_from:
        raise VfxError(f"grant would end ({format_instant(valid_until)}) before it starts ({format_instant(valid_from)})")
    issuer = public_key_text(key.public_key())
    with store.session() as session:
        row = session.get(SubjectRow, subject)
        if row is None:
            raise VfxError(f"no enrolled subject named {subject!r} (enrol first: vfx consent enroll)")
        body = {
            "type": "vfx.consent.grant/1",
            "subject": subject,
            "subject_digest": row_to_subject(row).digest,
            "project": project,
            "operations": parse_operations(operations),
            "valid_from": format_instant(valid_from),
            "valid_until": format_instant(valid_until),
            "issuer": issuer,
            "issued_at": ledger.utc_now(),
        }
        grant_id = "g-" + digest_of(body)[:16]
        document = {**body, "grant_id": grant_id}
        signature = sign_document(key, document)
        session.add(GrantRow(grant_id=grant_id, subject=subject, project=project,
                             document=canonical_json(document).decode("utf-8"), signature=signature))
        session.flush()
        ledger.append(session, "grant.issued", {"grant": document, "signature": signature, "issuer_key": key_id(issuer)})
    return Grant(grant_id, document, signature)


def revoke_grant(store: ConsentStore, key: Ed25519PrivateKey, grant_id: str, reason: str,
                 trusted: dict[str, str]) -> dict:
    """Record a signed revocation. Only the grant's issuer or a trusted rights holder may revoke."""
    revoker = public_key_text(key.public_key())
    with store.session() as session:
        row = session.get(GrantRow, grant_id)
        if row is None:
            raise VfxError(f"no grant {grant_id}")
        grant = row_to_grant(row)
        if revoker != grant.issuer and key_id(revoker) not in trusted:
            raise VfxError(f"key {key_id(revoker)} neither issued grant {grant_id} nor is trusted; revocation refused")
        if session.get(RevocationRow, grant_id) is not None:
            raise VfxError(f"grant {grant_id} is already revoked")
        document = {"type": "vfx.consent.revocation/1", "grant_id": grant_id, "revoked_at": ledger.utc_now(),
                    "revoker": revoker, "reason": reason}
        signature = sign_document(key, document)
        session.add(RevocationRow(grant_id=grant_id, document=canonical_json(document).decode("utf-8"), signature=signature))
        session.flush()
        ledger.append(session, "grant.revoked", {"revocation": document, "signature": signature, "revoker_key": key_id(revoker)})
    return document


def grant_problem(grant: Grant, trusted: dict[str, str], subject_digest: str | None, now: datetime) -> str:
    """Why ``grant`` cannot be used now (ignoring revocation), or "" if it can."""
    if key_id(grant.issuer) not in trusted or trusted[key_id(grant.issuer)] != grant.issuer:
        return f"grant {grant.grant_id} signed by untrusted key {key_id(grant.issuer)}"
    if not signature_is_valid(grant.issuer, grant.document, grant.signature):
        return f"grant {grant.grant_id} has an invalid signature"
    if grant.document.get("grant_id") != grant.grant_id:
        return f"grant {grant.grant_id} document names another grant"
    if subject_digest is not None and grant.document.get("subject_digest") != subject_digest:
        return f"grant {grant.grant_id} was signed for different reference faces of {grant.subject!r}"
    if now < grant.valid_from:
        return f"grant {grant.grant_id} not valid before {grant.document['valid_from']}"
    if now > grant.valid_until:
        return f"grant {grant.grant_id} expired {grant.document['valid_until']}"
    return ""


def list_grants(store: ConsentStore, subject: str | None = None, project: str | None = None) -> list[tuple[Grant, dict | None]]:
    """Grants (optionally of one subject/project) with their revocation document, if revoked."""
    with store.session() as session:
        query = select(GrantRow).order_by(GrantRow.subject, GrantRow.grant_id)
        if subject:
            query = query.where(GrantRow.subject == subject)
        if project:
            query = query.where(GrantRow.project == project)
        rows = session.execute(query).scalars().all()
        revoked = {r.grant_id: json.loads(r.document) for r in session.execute(select(RevocationRow)).scalars()}
    return [(row_to_grant(row), revoked.get(row.grant_id)) for row in rows]
