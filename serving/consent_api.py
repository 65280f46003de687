"""Consent endpoints for rights holders, mirroring ``vfx consent enroll|authorize|grant|revoke|list|show``.

Holders sign on their side: ``vfx consent enroll|authorize|grant|revoke ... -o FILE`` writes a
signed document that is POSTed as is, so the service needs no holder's private key. A rights
holder's API key entry names their public key (``public_key``; ``vfx serve-key NAME --role
rights_holder --holder-key HOLDER.pub``) and every document they upload must be signed with it.
Convenience mode, explicit per holder: an entry with ``signing_key`` (a private key file on the
server) lets the service sign plain requests for that holder.

A holder sees and acts on their own subjects only: those their key is an authority of now.
Admin sees everything and verifies the ledger.
"""
from datetime import datetime, timezone
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from serving.auth import Principal, Role
from vfx.consent import documents
from vfx.consent.grants import list_grants, parse_operations, parse_when, subject_digest
from vfx.consent.home import trusted_keys
from vfx.consent.keys import key_id, load_private_key, load_public_key_text, public_key_text
from vfx.consent.records import read_state, record_authority, record_grant, record_revocation
from vfx.consent.state import ConsentState, view_of
from vfx.consent.store import ConsentStore
from vfx.consent.uploads import record_upload, upload_kind
from vfx.consent.verify import verify_store


class GrantRequest(BaseModel):
    """Convenience mode only: the service signs with the holder's server-held key."""
    model_config = ConfigDict(extra="forbid")
    subject: str = Field(max_length=200)
    project: str = Field(max_length=200)
    ops: list[str] | str
    until: str = Field(description="last valid day (YYYY-MM-DD) or ISO datetime")
    valid_from: str | None = Field(None, alias="from")


class RevokeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field("", max_length=1000)


class AuthorityRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    add: str | None = None
    remove: str | None = None


def _parse(model: type[BaseModel], body: dict[str, Any]) -> Any:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise HTTPException(422, exc.errors(include_url=False, include_context=False)) from None


def principal_public_key(request: Request, principal: Principal) -> str:
    """A rights holder's public key (keys file ``public_key``, or that of their server-held ``signing_key``)."""
    ring = request.app.state.keys.ring_now()
    if principal.name in ring.public_keys:
        return load_public_key_text(ring.public_keys[principal.name])
    if principal.name in ring.signing_keys:
        return public_key_text(load_private_key(ring.signing_keys[principal.name]).public_key())
    raise HTTPException(403, f"no public key is configured for {principal.name} (keys file: public_key)")


def subjects_of_principal(request: Request, principal: Principal, state: ConsentState) -> set[str] | None:
    """Names of the subjects this principal speaks for now; None for admin (all)."""
    if principal.role is Role.admin:
        return None
    return set(state.subjects_of(principal_public_key(request, principal)))


def consent_router(require_role) -> APIRouter:
    router = APIRouter(prefix="/v1/consent", tags=["consent"])
    Holder = Annotated[Principal, Depends(require_role(Role.rights_holder))]
    Admin = Annotated[Principal, Depends(require_role(Role.admin))]
    Document = Annotated[dict[str, Any], Body()]

    def store(request: Request) -> ConsentStore:
        return ConsentStore(request.app.state.consent_db)

    def server_key(request: Request, principal: Principal):
        path = request.app.state.keys.ring_now().signing_keys.get(principal.name)
        if path is None:
            raise HTTPException(403, f"the service holds no signing key for {principal.name}: sign on your side "
                                "(vfx consent ... --key HOLDER.key -o FILE) and POST the signed document")
        return load_private_key(path)

    holder_key = principal_public_key
    mine = subjects_of_principal

    def own_subject(request: Request, principal: Principal, state: ConsentState, subject: str) -> None:
        subjects = mine(request, principal, state)
        if subjects is not None and subject not in subjects:
            raise HTTPException(404, f"no subject {subject!r} of yours")

    def upload(request: Request, principal: Principal, body: dict[str, Any], kind: str) -> str:
        if upload_kind(body) != kind:
            raise HTTPException(422, f"expected a signed {kind} document")
        signer = None if principal.role is Role.admin else holder_key(request, principal)
        return record_upload(store(request), body, signer=signer)

    def grant_view(grant, revocation: dict | None, trusted: dict[str, str], problem: str = "") -> dict[str, Any]:
        now = datetime.now(timezone.utc)
        state = "revoked" if revocation else ("expired" if now > grant.valid_until else "active")
        return {"grant_id": grant.grant_id, "subject": grant.subject, "project": grant.project,
                "operations": grant.operations, "valid_from": grant.document["valid_from"],
                "valid_until": grant.document["valid_until"], "state": state,
                "issuer_key": key_id(grant.issuer), "trusted": key_id(grant.issuer) in trusted,
                "by_authority": not problem, "revocation": revocation}

    @router.get("/subjects")
    def subjects(request: Request, principal: Holder) -> list[dict[str, Any]]:
        state = read_state(store(request))
        names = mine(request, principal, state)
        return [{"subject": name, "references": record.enrolment.document.get("references")}
                for name, record in sorted(state.subjects.items()) if names is None or name in names]

    @router.post("/subjects", status_code=201)
    def enrol(body: Document, request: Request, principal: Holder) -> dict[str, Any]:
        """Upload a signed enrolment (``vfx consent enroll NAME --from ... --key HOLDER.key -o FILE``)."""
        message = upload(request, principal, body, documents.ENROLMENT)
        return {**view_of(read_state(store(request)).subjects[body["document"]["subject"]]), "message": message}

    @router.get("/subjects/{name}")
    def subject(name: str, request: Request, principal: Holder) -> dict[str, Any]:
        state = read_state(store(request))
        if name not in state.subjects:
            raise HTTPException(404, f"no subject {name!r} of yours")
        own_subject(request, principal, state, name)
        return {**view_of(state.subjects[name]), "grants": [g.grant_id for g in
                                                            (r.grant for r in state.grants.values()) if g.subject == name]}

    @router.post("/subjects/{name}/authorities")
    def authorities(name: str, body: Document, request: Request, principal: Holder) -> dict[str, Any]:
        """Add or remove an authority: a signed document, or ``{"add"|"remove": PUBLIC_KEY}`` in convenience mode."""
        if "document" in body:
            if body["document"].get("subject") != name:
                raise HTTPException(422, f"the document is for {body['document'].get('subject')!r}, not {name!r}")
            upload(request, principal, body, documents.AUTHORITY)
        else:
            change = _parse(AuthorityRequest, body)
            if (change.add is None) == (change.remove is None):
                raise HTTPException(422, "give exactly one of add or remove")
            action = "add" if change.add else "remove"
            record_authority(store(request), documents.authority(server_key(request, principal), name, action,
                                                                 change.add or change.remove))
        return view_of(read_state(store(request)).subjects[name])

    @router.post("/grants", status_code=201)
    def grant(body: Document, request: Request, principal: Holder) -> dict[str, Any]:
        """A signed grant (``vfx consent grant ... -o FILE``), or the plain fields in convenience mode."""
        if "document" in body:
            grant_id = upload(request, principal, body, documents.GRANT)
        else:
            plain = _parse(GrantRequest, body)
            start = parse_when(plain.valid_from, end_of_day=False) if plain.valid_from else datetime.now(timezone.utc)
            key = server_key(request, principal)
            signed = documents.grant(key, plain.subject, subject_digest(store(request), plain.subject), plain.project,
                                     parse_operations(plain.ops), start, parse_when(plain.until, end_of_day=True))
            grant_id = record_grant(store(request), signed).grant_id
        record = read_state(store(request)).grants[grant_id]
        return grant_view(record.grant, None, trusted_keys(), record.problem)

    @router.post("/grants/{grant_id}/revoke")
    def revoke(grant_id: str, body: Document, request: Request, principal: Holder) -> dict[str, Any]:
        """A signed revocation (``vfx consent revoke ID -o FILE``), or ``{"reason"}`` in convenience mode."""
        state = read_state(store(request))
        if grant_id not in state.grants:
            raise HTTPException(404, "no such grant of yours")
        own_subject(request, principal, state, state.grants[grant_id].grant.subject)
        if "document" in body:
            if body["document"].get("grant_id") != grant_id:
                raise HTTPException(422, "the revocation names another grant")
            upload(request, principal, body, documents.REVOCATION)
            document = body["document"]
        else:
            reason = _parse(RevokeRequest, body).reason
            document = record_revocation(store(request), documents.revocation(
                server_key(request, principal), grant_id, state.grants[grant_id].grant.subject, reason))
        return {"grant_id": grant_id, "revoked_at": document["revoked_at"]}

    @router.get("/grants")
    def grants(request: Request, principal: Holder, subject: str | None = None) -> list[dict[str, Any]]:
        state = read_state(store(request))
        names = mine(request, principal, state)
        trusted = trusted_keys()
        return [grant_view(g, r, trusted, state.grants[g.grant_id].problem) for g, r in list_grants(store(request), subject=subject)
                if names is None or g.subject in names]

    @router.get("/grants/{grant_id}")
    def show(grant_id: str, request: Request, principal: Holder) -> dict[str, Any]:
        state = read_state(store(request))
        record = state.grants.get(grant_id)
        if record is None:
            raise HTTPException(404, "no such grant of yours")
        own_subject(request, principal, state, record.grant.subject)
        revocation = state.revocations.get(grant_id)
        return {"grant": record.grant.document, "signature": record.grant.signature,
                "revocation": revocation[0].document if revocation else None, "problem": record.problem or None}

    @router.get("/verify")
    def verify(request: Request, principal: Admin) -> dict[str, Any]:
        report = verify_store(store(request))
        return {"ok": report.ok, "entries": report.entries, "head": report.head, "problems": report.problems}

    return router
