"""Consent endpoints for rights holders, mirroring ``vfx consent grant|revoke|list|show|verify``.

A rights holder's API key entry names their Ed25519 signing key (``signing_key`` in the keys
file); the service signs grants and revocations with it, so the ledger shows who consented.
Each rights holder sees and revokes only the grants their key issued (admin sees all).
Enrolment (reference faces) stays on the command line: it reads images the operator holds.
"""
from datetime import datetime, timezone
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from serving.auth import Principal, Role
from vfx.consent.grants import issue_grant, list_grants, parse_operations, parse_when, revoke_grant
from vfx.consent.home import trusted_keys
from vfx.consent.keys import key_id, load_private_key, public_key_text
from vfx.consent.store import ConsentStore
from vfx.consent.subjects import load_subjects
from vfx.consent.verify import verify_store


class GrantRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subject: str = Field(max_length=200)
    project: str = Field(max_length=200)
    ops: list[str] | str
    until: str = Field(description="last valid day (YYYY-MM-DD) or ISO datetime")
    valid_from: str | None = Field(None, alias="from")


class RevokeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field("", max_length=1000)


def consent_router(require_role) -> APIRouter:
    router = APIRouter(prefix="/v1/consent", tags=["consent"])
    Holder = Annotated[Principal, Depends(require_role(Role.rights_holder))]

    def store(request: Request) -> ConsentStore:
        return ConsentStore(request.app.state.consent_db)

    def signing_key(request: Request, principal: Principal):
        path = request.app.state.keys.signing_key_of(principal.name)
        if path is None:
            raise HTTPException(403, f"no signing key is configured for {principal.name}; grants cannot be signed")
        return load_private_key(path)

    def mine(request: Request, principal: Principal) -> str | None:
        """The key id whose grants this principal sees; None for admin (all)."""
        if principal.role is Role.admin:
            return None
        return key_id(public_key_text(signing_key(request, principal).public_key()))

    def grant_view(grant, revocation: dict | None, trusted: dict[str, str]) -> dict[str, Any]:
        now = datetime.now(timezone.utc)
        state = "revoked" if revocation else ("expired" if now > grant.valid_until else "active")
        return {"grant_id": grant.grant_id, "subject": grant.subject, "project": grant.project,
                "operations": grant.operations, "valid_from": grant.document["valid_from"],
                "valid_until": grant.document["valid_until"], "state": state,
                "issuer_key": key_id(grant.issuer), "trusted": key_id(grant.issuer) in trusted,
                "revocation": revocation}

    @router.post("/grants", status_code=201)
    def grant(body: GrantRequest, request: Request, principal: Holder) -> dict[str, Any]:
        start = parse_when(body.valid_from, end_of_day=False) if body.valid_from else datetime.now(timezone.utc)
        issued = issue_grant(store(request), signing_key(request, principal), body.subject, body.project,
                             parse_operations(body.ops), start, parse_when(body.until, end_of_day=True))
        return grant_view(issued, None, trusted_keys())

    @router.post("/grants/{grant_id}/revoke")
    def revoke(grant_id: str, body: RevokeRequest, request: Request, principal: Holder) -> dict[str, Any]:
        document = revoke_grant(store(request), signing_key(request, principal), grant_id, body.reason, trusted_keys())
        return {"grant_id": grant_id, "revoked_at": document["revoked_at"]}

    @router.get("/grants")
    def grants(request: Request, principal: Holder, subject: str | None = None) -> list[dict[str, Any]]:
        issuer = mine(request, principal)
        trusted = trusted_keys()
        return [grant_view(g, r, trusted) for g, r in list_grants(store(request), subject=subject)
                if issuer is None or key_id(g.issuer) == issuer]

    @router.get("/grants/{grant_id}")
    def show(grant_id: str, request: Request, principal: Holder) -> dict[str, Any]:
        issuer = mine(request, principal)
        for g, revocation in list_grants(store(request)):
            if g.grant_id == grant_id and (issuer is None or key_id(g.issuer) == issuer):
                return {"grant": g.document, "signature": g.signature, "revocation": revocation}
        raise HTTPException(404, "no such grant of yours")

    @router.get("/subjects")
    def subjects(request: Request, principal: Holder) -> list[dict[str, Any]]:
        with store(request).session() as session:
            return [{"subject": s.name, "references": len(s.embeddings)} for s in load_subjects(session)]

    @router.get("/verify")
    def verify(request: Request, principal: Holder) -> dict[str, Any]:
        report = verify_store(store(request))
        return {"ok": report.ok, "entries": report.entries, "head": report.head, "problems": report.problems}

    return router
