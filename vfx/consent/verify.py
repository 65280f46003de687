"""``vfx consent verify``: the whole ledger chain, every signature in it, and the stored grants."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from sqlalchemy import select

from vfx.consent import ledger
from vfx.consent.keys import signature_is_valid
from vfx.consent.schema import GrantRow, RevocationRow
from vfx.consent.store import ConsentStore


@dataclass
class VerifyReport:
    entries: int
    head: str | None
    problems: list[str] = field(default_factory=list)
    broken_seq: int | None = None  # the first ledger entry at which the chain breaks

    @property
    def ok(self) -> bool:
        return not self.problems


def signature_problems(entries: list[ledger.LedgerEntry]) -> list[str]:
    problems = []
    for entry in entries:
        try:
            data = entry.data
        except ValueError:
            continue  # reported by the chain check
        if not isinstance(data, dict):
            continue
        if entry.kind == "grant.issued":
            document, signer = data.get("grant", {}), data.get("grant", {}).get("issuer", "")
        elif entry.kind == "grant.revoked":
            document, signer = data.get("revocation", {}), data.get("revocation", {}).get("revoker", "")
        else:
            continue
        if not signature_is_valid(signer, document, data.get("signature", "")):
            problems.append(f"entry {entry.seq} ({entry.kind}): signature does not verify")
    return problems


def stored_document_problems(store: ConsentStore, entries: list[ledger.LedgerEntry]) -> list[str]:
    """Every stored grant/revocation must be exactly the signed document recorded in the ledger."""
    recorded: dict[tuple[str, str], tuple[dict, str]] = {}
    problems = []
    for entry in entries:
        try:
            data = entry.data
            if entry.kind == "grant.issued":
                recorded[("grant", data["grant"]["grant_id"])] = (data["grant"], data["signature"])
            elif entry.kind == "grant.revoked":
                recorded[("revocation", data["revocation"]["grant_id"])] = (data["revocation"], data["signature"])
        except (KeyError, TypeError, ValueError):
            problems.append(f"entry {entry.seq} ({entry.kind}): malformed payload")
    with store.session() as session:
        stored = [("grant", row) for row in session.execute(select(GrantRow)).scalars()]
        stored += [("revocation", row) for row in session.execute(select(RevocationRow)).scalars()]
        for kind, row in stored:
            expected = recorded.get((kind, row.grant_id))
            if expected is None:
                problems.append(f"{kind} of {row.grant_id} is stored but was never recorded in the ledger")
            elif json.loads(row.document) != expected[0] or row.signature != expected[1]:
                problems.append(f"{kind} of {row.grant_id} differs from the signed document in the ledger")
    return problems


def verify_store(store: ConsentStore) -> VerifyReport:
    with store.session() as session:
        entries, head = ledger.read_entries(session)
    report = VerifyReport(entries=len(entries), head=head[1] if head[0] else None)
    problem = ledger.find_chain_problem(entries, head)
    if problem is not None:
        report.problems.append(problem.message)
        report.broken_seq = problem.seq
    report.problems += signature_problems(entries)
    report.problems += stored_document_problems(store, entries)
    return report
