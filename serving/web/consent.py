"""What the consent panel needs beyond /v1/consent: enrolment by clicking a face on frames of a
clip, and the ledger's entries (the API gives only its verification).

Thin on purpose: subjects, grants and revocation go through /v1/consent, and the identity,
enrolment and ledger code is vfx/consent's and vfx/face's, used as the CLI uses it.

No ``from __future__ import annotations``: see routes.py.
"""
import asyncio
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from serving.auth import Principal, Role
from serving.web.routes import clip_path, frame_cache, principal_of
from serving.web.clips import video_info
from vfx.consent.ledger import read_entries
from vfx.consent.store import ConsentStore
from vfx.consent.subjects import enroll
from vfx.consent.verify import verify_store
from vfx.errors import VfxError

LEDGER_KINDS = ("subject.", "grant.")  # jobs and per-shot gate decisions are the operators' business
FACE_MARGIN = 0.15  # a click this far (of the face's size) outside a detected face still picks it


class FaceClick(BaseModel):
    model_config = ConfigDict(extra="forbid")
    frame: int = Field(ge=0)
    x: float
    y: float


class EnrolRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)
    clip: str = Field(max_length=4096)
    clicks: list[FaceClick] = Field(min_length=1, max_length=32)


def holder(request: Request) -> Principal:
    return principal_of(request, Role.rights_holder)


Holder = Annotated[Principal, Depends(holder)]


def face_at(boxes: list[tuple[float, float, float, float]], x: float, y: float):
    """The detected face under the click (the smallest, if faces overlap), or None."""
    hits = [b for b in boxes if b[0] - FACE_MARGIN * b[2] <= x <= b[0] + (1 + FACE_MARGIN) * b[2]
            and b[1] - FACE_MARGIN * b[3] <= y <= b[1] + (1 + FACE_MARGIN) * b[3]]
    return min(hits, key=lambda b: b[2] * b[3]) if hits else None


def consent_web_router() -> APIRouter:
    router = APIRouter(prefix="/web/api/consent", include_in_schema=False)

    @router.post("/enrol", status_code=201)
    async def enrol(body: EnrolRequest, request: Request, principal: Holder) -> dict[str, Any]:
        """Enrol ``name`` from the faces clicked on frames of a clip: each click picks the face under it."""
        path = clip_path(request, body.clip)
        info = video_info(path)
        cache = frame_cache(request)

        def work() -> dict[str, Any]:
            from vfx.face.identity import detect_faces
            from vfx.face.identity_backends import identity_backend

            backend = identity_backend("dlib")
            embeddings, faces = [], []
            for click in body.clicks:
                rgb = cache.frame_rgb(path, click.frame, info)
                box = face_at(detect_faces(rgb), click.x, click.y)
                if box is None:
                    raise VfxError(f"no face found under the click at {click.x:.0f},{click.y:.0f} on frame {click.frame}")
                embeddings.append(backend.embed(rgb, [box])[0])
                faces.append({"frame": click.frame, "box": [round(v) for v in box]})
            frames = ",".join(str(c.frame) for c in body.clicks)
            entry = enroll(ConsentStore(request.app.state.consent_db), body.name, np.stack(embeddings),
                           f"{path.name} frames {frames} (clicked by {principal.name} in the web page)", backend.stored)
            return {"subject": body.name, "references": len(embeddings), "faces": faces, "ledger_seq": entry.seq}
        return await asyncio.to_thread(work)

    @router.get("/ledger")
    def ledger(request: Request, _: Holder) -> dict[str, Any]:
        """The ledger's subject and grant entries, newest first, and whether the whole chain verifies."""
        store = ConsentStore(request.app.state.consent_db)
        with store.session() as session:
            entries, head = read_entries(session)
        report = verify_store(store)
        shown = [{"seq": e.seq, "ts": e.ts, "kind": e.kind, "hash": e.hash, "about": about(e.kind, e.data)}
                 for e in reversed(entries) if e.kind.startswith(LEDGER_KINDS)]
        return {"ok": report.ok, "entries": report.entries, "head": report.head, "problems": report.problems,
                "shown": shown}

    return router


def about(kind: str, data: dict[str, Any]) -> str:
    """One line a rights holder can read for a ledger entry."""
    if kind == "grant.issued":
        grant = data.get("grant", {})
        return (f"{grant.get('subject')} granted {', '.join(grant.get('operations', []))} for project "
                f"{grant.get('project')} until {grant.get('valid_until')} (grant {grant.get('grant_id')})")
    if kind == "grant.revoked":
        revocation = data.get("revocation", {})
        reason = f": {revocation['reason']}" if revocation.get("reason") else ""
        return f"grant {revocation.get('grant_id')} revoked{reason}"
    if kind.startswith("subject."):
        return f"{data.get('subject')} {kind.split('.', 1)[1]}: {data.get('references', '?')} reference faces from {data.get('source', '?')}"
    return kind
