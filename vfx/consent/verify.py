"""``vfx consent verify``: the ledger chain, every signed document against its subject's authorities, and the tables."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from sqlalchemy import select

from vfx.consent import ledger
from vfx.consent.schema import GrantRow, RevocationRow, SubjectRow
from vfx.consent.state import ConsentState
from vfx.consent.store import ConsentStore
from vfx.consent.subjects import row_to_subject


@dataclass
class VerifyReport:
    entries: int
    head: str | None
    problems: list[str] = field(default_factory=list)
    broken_seq: int | None = None  # the first ledger entry at which the chain breaks

    @property
    def ok(self) -> bool:
        return not self.problems


def stored_document_problems(store: ConsentStore, state: ConsentState) -> list[str]:
    """Every stored subject, grant and revocation must be exactly what the ledger's signed documents say."""
    problems = []
    with store.session() as session:
        for row in session.execute(select(SubjectRow)).scalars():
            record = state.subjects.get(row.name)
            if record is None:
                problems.append(f"subject {row.name!r} is stored but has no signed enrolment in the ledger")
            elif row_to_subject(row).digest != record.digest:
                problems.append(f"subject {row.name!r}: stored reference faces differ from its signed enrolment "
                                f"(entry {record.seq})")
        for row in session.execute(select(GrantRow)).scalars():
            record = state.grants.get(row.grant_id)
            if record is None:
                problems.append(f"grant {row.grant_id} is stored but was never recorded in the ledger")
                continue
            where = f"grant {row.grant_id} (ledger entry {record.seq})"
            if row.subject != record.grant.subject or row.project != record.grant.project:
                problems.append(f"{where}: stored as subject {row.subject!r} project {row.project!r}, but its signed "
                                f"document says subject {record.grant.subject!r} project {record.grant.project!r}")
            elif json.loads(row.document) != record.grant.document or row.signature != record.grant.signature:
                problems.append(f"{where}: stored document differs from the signed one in the ledger")
        stored_revocations = {row.grant_id: row for row in session.execute(select(RevocationRow)).scalars()}
    for grant_id, (signed, seq) in state.revocations.items():
        row = stored_revocations.pop(grant_id, None)
        if row is None:
            problems.append(f"revocation of {grant_id} (ledger entry {seq}) is missing from the revocations table")
        elif json.loads(row.document) != signed.document or row.signature != signed.signature:
            problems.append(f"revocation of {grant_id} (ledger entry {seq}): stored document differs from the ledger")
    problems += [f"revocation of {grant_id} is stored but no valid revocation is in the ledger" for grant_id in stored_revocations]
    return problems


def verify_store(store: ConsentStore) -> VerifyReport:
    """The chain, every signed document replayed against its subject's authorities, and the tables."""
    with store.session() as session:
        entries, head = ledger.read_entries(session)
    report = VerifyReport(entries=len(entries), head=head[1] if head[0] else None)
    problem = ledger.find_chain_problem(entries, head)
    if problem is not None:
        report.problems.append(problem.message)
        report.broken_seq = problem.seq
    state = ConsentState.replay(entries)
    report.problems += [message for _, message in state.problems]
    report.problems += stored_document_problems(store, state)
    return report
