"""Who may speak for whom, rebuilt from the signed documents in the ledger, in ledger order.

The hash-chained ledger is the record of consent; the subject/grant/revocation tables are
indexes for listing. Replaying the ledger gives, at every entry, each subject's authorities
(the enrolment's signer, then signed additions and removals); a grant or revocation counts only
if an authority of its subject signed it and was one at the point it entered the ledger. Its
own claimed time is not trusted for this, so a removed authority cannot back-date a grant.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from vfx.consent.documents import AUTHORITY, ENROLMENT, GRANT, REVOCATION, Grant, Signed, grant_id_of, signature_problem
from vfx.consent.keys import key_id
from vfx.consent.ledger import LedgerEntry

PAYLOAD_FIELD = {"subject.enrolled": ("enrolment", ENROLMENT), "authority.changed": ("authority", AUTHORITY),
                 "grant.issued": ("grant", GRANT), "grant.revoked": ("revocation", REVOCATION)}


@dataclass
class SubjectAuthority:
    name: str
    digest: str  # sha256 of the reference embeddings the enrolment was signed for
    backend: str
    enrolment: Signed
    authorities: list[str]  # base64 public keys, in the order they were added
    last_change: str  # issued_at of the latest authority document: older ones are replays
    seq: int


@dataclass(frozen=True)
class GrantRecord:
    grant: Grant
    seq: int
    problem: str  # "" when an authority of its subject signed it; else why it never counted


@dataclass
class ConsentState:
    subjects: dict[str, SubjectAuthority] = field(default_factory=dict)
    grants: dict[str, GrantRecord] = field(default_factory=dict)
    revocations: dict[str, tuple[Signed, int]] = field(default_factory=dict)  # grant id -> accepted revocation
    problems: list[tuple[int, str]] = field(default_factory=list)  # (entry seq, why its document does not count)
    entries: dict[tuple[str, str], int] = field(default_factory=dict)  # (kind, id) -> seq, for verify

    @classmethod
    def replay(cls, entries: list[LedgerEntry]) -> "ConsentState":
        state = cls()
        for entry in entries:
            state.apply(entry)
        return state

    def apply(self, entry: LedgerEntry) -> None:
        if entry.kind not in PAYLOAD_FIELD:
            return
        name, expected = PAYLOAD_FIELD[entry.kind]
        try:
            data = entry.data
            signed = Signed(dict(data[name]), str(data["signature"]))
        except (KeyError, TypeError, ValueError):
            what = "enrolment is not signed by a rights holder" if entry.kind == "subject.enrolled" else "malformed payload"
            self.problems.append((entry.seq, f"entry {entry.seq} ({entry.kind}): {what}"))
            return
        problem = signature_problem(signed) if signed.kind == expected else f"not a {expected} document"
        if not problem:
            problem = {ENROLMENT: self._enrol, AUTHORITY: self._authority, GRANT: self._grant,
                       REVOCATION: self._revoke}[expected](signed, entry.seq)
        if problem:
            self.problems.append((entry.seq, f"entry {entry.seq} ({entry.kind}): {problem}"))

    def authorities_of(self, subject: str) -> list[str]:
        record = self.subjects.get(subject)
        return list(record.authorities) if record else []

    def subjects_of(self, public_key: str) -> list[str]:
        """Subjects for which ``public_key`` is an authority now."""
        return sorted(name for name, record in self.subjects.items() if public_key in record.authorities)

    def refusal(self, signed: Signed) -> str:
        """Why ``signed`` would not count if appended now, or "" (the state itself is not changed)."""
        problem = signature_problem(signed)
        if problem:
            return problem
        trial = copy.deepcopy(self)
        return {ENROLMENT: trial._enrol, AUTHORITY: trial._authority, GRANT: trial._grant,
                REVOCATION: trial._revoke}[signed.kind](signed, 0)

    # -- the four document kinds; each returns why it does not count, or "" ----------------------------
    def _enrol(self, signed: Signed, seq: int) -> str:
        doc = signed.document
        subject = str(doc.get("subject", ""))
        if subject in self.subjects:
            return f"{subject!r} is already enrolled (entry {self.subjects[subject].seq})"
        self.subjects[subject] = SubjectAuthority(subject, str(doc.get("subject_digest", "")), str(doc.get("backend", "")),
                                                  signed, [signed.signer], str(doc.get("enrolled_at", "")), seq)
        self.entries[("subject", subject)] = seq
        return ""

    def _authority(self, signed: Signed, seq: int) -> str:
        doc = signed.document
        record = self.subjects.get(str(doc.get("subject", "")))
        if record is None:
            return f"authority change for {doc.get('subject')!r}, which is not enrolled"
        if signed.signer not in record.authorities:
            return f"key {key_id(signed.signer)} is not an authority of {record.name!r}"
        if str(doc.get("issued_at", "")) <= record.last_change:
            return f"authority change for {record.name!r} is older than the one before it (a replay)"
        other = str(doc.get("key", ""))
        if doc.get("action") == "add" and other not in record.authorities:
            record.authorities.append(other)
        elif doc.get("action") == "remove" and other in record.authorities and len(record.authorities) > 1:
            record.authorities.remove(other)
        else:
            return f"authority change {doc.get('action')!r} of {key_id(other)} for {record.name!r} does not apply"
        record.last_change = str(doc["issued_at"])
        self.entries[("authority", f"{record.name}@{seq}")] = seq
        return ""

    def _grant(self, signed: Signed, seq: int) -> str:
        doc = signed.document
        grant_id = str(doc.get("grant_id", ""))
        if grant_id != grant_id_of(doc):
            return f"grant {grant_id} does not carry its own id"
        if grant_id in self.grants:
            return f"grant {grant_id} recorded twice (first at entry {self.grants[grant_id].seq})"
        record = self.subjects.get(str(doc.get("subject", "")))
        problem = ""
        if record is None:
            problem = f"grant {grant_id} for {doc.get('subject')!r}, which is not enrolled"
        elif signed.signer not in record.authorities:
            problem = (f"grant {grant_id} signed by key {key_id(signed.signer)}, which was not an authority of "
                       f"{record.name!r} when it was recorded")
        elif doc.get("subject_digest") != record.digest:
            problem = f"grant {grant_id} was signed for different reference faces of {record.name!r}"
        self.grants[grant_id] = GrantRecord(Grant(grant_id, signed.document, signed.signature), seq, problem)
        self.entries[("grant", grant_id)] = seq
        return problem

    def _revoke(self, signed: Signed, seq: int) -> str:
        grant_id = str(signed.document.get("grant_id", ""))
        record = self.grants.get(grant_id)
        if record is None:
            return f"revocation of {grant_id}, which was never granted"
        if grant_id in self.revocations:
            return f"grant {grant_id} revoked twice (first at entry {self.revocations[grant_id][1]})"
        may = self.authorities_of(record.grant.subject) + [record.grant.issuer]
        if signed.signer not in may:
            return (f"revocation of {grant_id} signed by key {key_id(signed.signer)}, which is neither an authority of "
                    f"{record.grant.subject!r} nor the grant's issuer")
        self.revocations[grant_id] = (signed, seq)
        self.entries[("revocation", grant_id)] = seq
        return ""


def view_of(record: SubjectAuthority) -> dict[str, Any]:
    return {"subject": record.name, "digest": record.digest, "backend": record.backend,
            "authorities": [key_id(k) for k in record.authorities], "enrolled_at": record.enrolment.document.get("enrolled_at")}
