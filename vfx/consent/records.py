"""Recording signed documents: each is checked against the consent state replayed from the ledger,
under the ledger lock, then stored in its table and appended to the ledger in one transaction."""
from __future__ import annotations

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from vfx.consent import ledger
from vfx.consent.canonical import canonical_json, sha256_hex
from vfx.consent.documents import AUTHORITY, ENROLMENT, GRANT, REVOCATION, Grant, Signed, grant_shape_problem
from vfx.consent.keys import key_id
from vfx.consent.schema import GrantRow, LedgerHeadRow, RevocationRow, SubjectRow
from vfx.consent.state import ConsentState
from vfx.consent.store import ConsentStore
from vfx.errors import VfxError


def embeddings_digest(embeddings: np.ndarray) -> str:
    return sha256_hex(np.ascontiguousarray(embeddings, dtype="<f4").tobytes())


def state_in(session: Session) -> ConsentState:
    entries, _ = ledger.read_entries(session)
    return ConsentState.replay(entries)


def read_state(store: ConsentStore) -> ConsentState:
    with store.session() as session:
        return state_in(session)


def _locked_state(session: Session) -> ConsentState:
    """Take the ledger lock first, so no other writer changes authorities between check and append."""
    session.execute(select(LedgerHeadRow).where(LedgerHeadRow.id == 1).with_for_update()).scalar_one()
    return state_in(session)


def _payload(name: str, signed: Signed) -> dict:
    return {name: signed.document, "signature": signed.signature, "signer_key": key_id(signed.signer)}


def record_enrolment(store: ConsentStore, signed: Signed, embeddings: np.ndarray, sizes: dict[str, int]) -> ledger.LedgerEntry:
    doc = signed.document
    if signed.kind != ENROLMENT:
        raise VfxError(f"expected an enrolment document, got {signed.kind!r}")
    backend, name = str(doc.get("backend")), str(doc.get("subject"))
    size = sizes.get(backend)
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    if size is None:
        raise VfxError(f"enrolment names unknown identity backend {backend!r}")
    if embeddings.ndim != 2 or embeddings.shape[1] != size or len(embeddings) == 0:
        raise VfxError(f"enrolment with {backend} needs embeddings [N,{size}], got {embeddings.shape}")
    if doc.get("subject_digest") != embeddings_digest(embeddings) or doc.get("references") != len(embeddings):
        raise VfxError(f"enrolment of {name!r} was signed for other reference faces than the ones uploaded")
    with store.session() as session:
        state = _locked_state(session)
        if session.get(SubjectRow, name) is not None:
            raise VfxError(f"subject {name!r} is already enrolled")
        refusal = state.refusal(signed)
        if refusal:
            raise VfxError(f"enrolment refused: {refusal}")
        session.add(SubjectRow(name=name, enrolled_at=str(doc["enrolled_at"]), digest=str(doc["subject_digest"]),
                               embeddings=embeddings.astype("<f4").tobytes(), count=len(embeddings),
                               source=str(doc.get("source", "")), backend=backend))
        session.flush()
        return ledger.append(session, "subject.enrolled", _payload("enrolment", signed))


def record_authority(store: ConsentStore, signed: Signed) -> ledger.LedgerEntry:
    if signed.kind != AUTHORITY:
        raise VfxError(f"expected an authority document, got {signed.kind!r}")
    with store.session() as session:
        refusal = _locked_state(session).refusal(signed)
        if refusal:
            raise VfxError(f"authority change refused: {refusal}")
        return ledger.append(session, "authority.changed", _payload("authority", signed))


def record_grant(store: ConsentStore, signed: Signed) -> Grant:
    if signed.kind != GRANT:
        raise VfxError(f"expected a grant document, got {signed.kind!r}")
    problem = grant_shape_problem(signed.document)
    if problem:
        raise VfxError(f"grant refused: {problem}")
    doc = signed.document
    with store.session() as session:
        state = _locked_state(session)
        if str(doc.get("subject")) not in state.subjects:
            raise VfxError(f"no enrolled subject named {doc.get('subject')!r} (enrol first: vfx consent enroll)")
        refusal = state.refusal(signed)
        if refusal:
            raise VfxError(f"grant refused: {refusal}")
        session.add(GrantRow(grant_id=doc["grant_id"], subject=doc["subject"], project=doc["project"],
                             document=canonical_json(doc).decode("utf-8"), signature=signed.signature))
        session.flush()
        ledger.append(session, "grant.issued", _payload("grant", signed) | {"issuer_key": key_id(signed.signer)})
    return Grant(doc["grant_id"], doc, signed.signature)


def record_revocation(store: ConsentStore, signed: Signed) -> dict:
    if signed.kind != REVOCATION:
        raise VfxError(f"expected a revocation document, got {signed.kind!r}")
    grant_id = str(signed.document.get("grant_id"))
    with store.session() as session:
        state = _locked_state(session)
        if grant_id not in state.grants:
            raise VfxError(f"no grant {grant_id}")
        if grant_id in state.revocations:
            raise VfxError(f"grant {grant_id} is already revoked")
        if signed.document.get("subject") != state.grants[grant_id].grant.subject:
            raise VfxError(f"revocation names subject {signed.document.get('subject')!r}, but grant {grant_id} is for "
                           f"{state.grants[grant_id].grant.subject!r}")
        refusal = state.refusal(signed)
        if refusal:
            raise VfxError(f"revocation refused: {refusal}")
        session.add(RevocationRow(grant_id=grant_id, document=canonical_json(signed.document).decode("utf-8"),
                                  signature=signed.signature))
        session.flush()
        ledger.append(session, "grant.revoked", _payload("revocation", signed) | {"revoker_key": key_id(signed.signer)})
    return signed.document
