"""Grants and revocations: canonical JSON documents signed with a rights holder's Ed25519 key."""
from __future__ import annotations

import json
import re
from datetime import date, datetime, time, timezone

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from vfx.consent import documents
from vfx.consent.documents import Grant, check_operations, format_instant, parse_instant  # noqa: F401 (re-exported)
from vfx.consent.keys import key_id, signature_is_valid
from vfx.consent.records import read_state, record_grant, record_revocation
from vfx.consent.schema import GrantRow
from vfx.consent.store import ConsentStore
from vfx.errors import VfxError


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
    return check_operations(text)


def row_to_grant(row: GrantRow) -> Grant:
    return Grant(row.grant_id, json.loads(row.document), row.signature)


def subject_digest(store: ConsentStore, subject: str) -> str:
    """The reference digest of ``subject``'s signed enrolment, which a grant must name."""
    record = read_state(store).subjects.get(subject)
    if record is None:
        raise VfxError(f"no enrolled subject named {subject!r} (enrol first: vfx consent enroll)")
    return record.digest


def issue_grant(store: ConsentStore, key: Ed25519PrivateKey, subject: str, project: str,
                operations: list[str], valid_from: datetime, valid_until: datetime) -> Grant:
    """Sign a grant with ``key`` (which must be an authority of ``subject``), store it and record it in the ledger."""
    signed = documents.grant(key, subject, subject_digest(store, subject), project, operations, valid_from, valid_until)
    return record_grant(store, signed)


def grant_subject(store: ConsentStore, grant_id: str) -> str:
    record = read_state(store).grants.get(grant_id)
    if record is None:
        raise VfxError(f"no grant {grant_id}")
    return record.grant.subject


def revoke_grant(store: ConsentStore, key: Ed25519PrivateKey, grant_id: str, reason: str) -> dict:
    """Record a signed revocation. Only an authority of the grant's subject (or its issuer) may revoke."""
    return record_revocation(store, documents.revocation(key, grant_id, grant_subject(store, grant_id), reason))


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
    """Grants recorded in the ledger (optionally of one subject/project, by their signed documents),
    with their revocation document if revoked."""
    state = read_state(store)
    items = sorted(state.grants.values(), key=lambda r: (r.grant.subject, r.grant.grant_id))
    revoked = {grant_id: signed.document for grant_id, (signed, _) in state.revocations.items()}
    return [(r.grant, revoked.get(r.grant.grant_id)) for r in items
            if (not subject or r.grant.subject == subject) and (not project or r.grant.project == project)]
