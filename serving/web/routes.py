"""The crew's web page: sign-in, clips and frames, previews, job progress. Everything else the
page does goes through the public API (/v1/...) with the session cookie (see session.py).

No ``from __future__ import annotations`` here: Serve pickles the app by value, and string
annotations of these route functions would not resolve in the replica (FastAPI then takes
``Request`` for a query parameter)."""

import asyncio
import base64
import hashlib
import json
import re
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, HTTPException, Query, Request, UploadFile, WebSocket
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from serving.auth import Principal, Role, key_from_headers
from serving.settings import ServeSettings
from serving.untrusted import Refused, probe_untrusted
from serving.web import preview
from serving.web.clips import FrameCache, clips_under, video_info
from serving.web.session import (clearing_cookie_headers, cookie_headers, is_tls, new_session, same_origin, seal,
                                 session_secret)
from vfx.errors import VfxError

STATIC = Path(__file__).parent / "static"
UPLOAD_BLOCK = 1 << 20
UPLOAD_NAME = re.compile(r"^[0-9a-f]{64}(\.[a-z0-9]{1,7})?$")
PAINTING_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
PROGRESS_EVERY_S = 0.5
MAX_AHEAD = 48


class SignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str = Field(min_length=1, max_length=500)


class FrameRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    clip: str = Field(max_length=4096)
    frame: int = Field(ge=0)
    subjects: list[preview.SubjectPrompts] = Field(default_factory=list, max_length=16)
    style: str | None = Field(None, max_length=100)
    painting: str | None = Field(None, max_length=100)


def settings_of(request: Request | WebSocket) -> ServeSettings:
    return request.app.state.settings


def principal_of(request: Request | WebSocket, *roles: Role) -> Principal:
    """Who sent the request (key header, or the session's key put there by SessionAuth)."""
    headers = request.headers
    found = request.app.state.keys.ring_now().identify(key_from_headers(headers.get("authorization"),
                                                                        headers.get("x-api-key")))
    if found is None:
        raise HTTPException(401, "sign in first")
    if not found.may(*roles):
        raise HTTPException(403, f"role {found.role.value} may not do this; needs {' or '.join(r.value for r in roles)}")
    return found


def operator(request: Request) -> Principal:
    return principal_of(request, Role.operator)


def viewer(request: Request) -> Principal:
    """Operators prompt shots; rights holders look at frames to click the faces they enrol."""
    return principal_of(request, Role.operator, Role.rights_holder)


Operator = Annotated[Principal, Depends(operator)]
Viewer = Annotated[Principal, Depends(viewer)]


def frame_cache(request: Request) -> FrameCache:
    state = request.app.state
    if getattr(state, "web_frames", None) is None:
        state.web_frames = FrameCache(settings_of(request).state_path / "web" / "frames")
    return state.web_frames


def clip_path(request: Request, clip: str) -> Path:
    """A clip reference from the page: ``upload:NAME`` (an upload of this service) or a path under an input root."""
    settings = settings_of(request)
    if clip.startswith("upload:"):
        name = clip.removeprefix("upload:")
        if not UPLOAD_NAME.match(name):
            raise HTTPException(422, "not an upload of this service")
        path = settings.state_path / "uploads" / name
    else:
        path = Path(clip).resolve()
        roots = [Path(r).expanduser().resolve() for r in settings.input_roots]
        if not any(path.is_relative_to(root) for root in roots):
            raise HTTPException(403, "path is outside the service's input roots")
    if not path.is_file():
        raise HTTPException(404, "no such clip")
    return path


def clip_view(clip: str, path: Path) -> dict[str, Any]:
    info = video_info(path)
    return {"clip": clip, "name": path.name, "first": info.first_frame, "last": info.last_frame,
            "fps": float(info.fps), "width": info.width, "height": info.height, "audio": info.audio_codec}


def painting_path(request: Request, painting: str | None) -> str | None:
    if painting is None:
        return None
    if not UPLOAD_NAME.match(painting):
        raise HTTPException(422, "not a painting of this service")
    path = settings_of(request).state_path / "web" / "paintings" / painting
    if not path.is_file():
        raise HTTPException(404, "no such painting")
    return str(path)


async def receive_file(file: UploadFile, folder: Path, limit: int) -> Path:
    """Stream an upload to ``folder/<sha256><suffix>`` (the naming job uploads use), refusing oversize."""
    folder.mkdir(parents=True, exist_ok=True)
    suffix = Path(file.filename or "upload").suffix.lower()[:8]
    suffix = suffix if suffix[1:].isalnum() else ""
    staging = folder / f".incoming-{uuid.uuid4().hex}{suffix}"
    digest = hashlib.sha256()
    size = 0
    try:
        with open(staging, "wb") as out:
            while block := await file.read(UPLOAD_BLOCK):
                size += len(block)
                if size > limit:
                    raise Refused(413, f"upload is larger than the limit of {limit} bytes")
                digest.update(block)
                out.write(block)
        final = folder / f"{digest.hexdigest()}{suffix}"
        staging.replace(final)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    return final


def web_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @router.post("/web/session")
    def sign_in(body: SignIn, request: Request) -> JSONResponse:
        """Exchange an API key for the session cookies; the key is checked exactly as the API checks it."""
        if not same_origin(dict(request.headers)):
            raise HTTPException(403, "sign-in from another origin")
        found = request.app.state.keys.ring_now().identify(body.key.strip())
        if found is None:
            raise HTTPException(401, "unknown API key")
        session = new_session(body.key.strip())
        response = JSONResponse({"name": found.name, "role": found.role.value, "expires_at": session.expires_at})
        secure = is_tls(request.scope, dict(request.headers))
        for header in cookie_headers(session, seal(session_secret(settings_of(request).state_path), session), secure):
            response.headers.append("set-cookie", header)
        return response

    @router.delete("/web/session")
    def sign_out(request: Request) -> Response:
        response = Response(status_code=204)
        for header in clearing_cookie_headers(is_tls(request.scope, dict(request.headers))):
            response.headers.append("set-cookie", header)
        return response

    @router.get("/web/api/me")
    def me(request: Request) -> dict[str, Any]:
        found = principal_of(request, Role.operator, Role.rights_holder)
        return {"name": found.name, "role": found.role.value}

    @router.get("/web/api/clips")
    def clips(request: Request, _: Viewer) -> list[dict[str, Any]]:
        roots = [Path(r).expanduser().resolve() for r in settings_of(request).input_roots]
        return [{"clip": str(path), "name": path.name, "root": str(root)}
                for root in roots for path in clips_under([root])]

    @router.post("/web/api/clips")
    async def upload_clip(request: Request, _: Operator, file: Annotated[UploadFile, File()]) -> dict[str, Any]:
        settings = settings_of(request)
        path = await receive_file(file, settings.state_path / "uploads", settings.limits.max_bytes)
        await asyncio.to_thread(probe_untrusted, path, settings.limits)
        return {**clip_view(f"upload:{path.name}", path), "name": file.filename or path.name}

    @router.get("/web/api/clip")
    def clip_info(request: Request, _: Viewer, clip: str) -> dict[str, Any]:
        return clip_view(clip, clip_path(request, clip))

    @router.get("/web/api/frame")
    async def frame(request: Request, _: Viewer, clip: str, n: Annotated[int, Query(ge=0)]) -> FileResponse:
        path = clip_path(request, clip)
        jpeg = await asyncio.to_thread(frame_cache(request).frame_jpeg, path, n, video_info(path))
        return FileResponse(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    @router.post("/web/api/preview/matte")
    async def matte_preview(body: FrameRequest, request: Request, _: Operator) -> Response:
        """The subject matte of this frame from its prompts: an RGBA PNG to lay over the frame."""
        rgb = await frame_rgb(request, body.clip, body.frame)
        started = time.perf_counter()
        matte = await asyncio.to_thread(preview.subject_matte, rgb, body.frame, body.subjects)
        png = preview.matte_png(matte)
        return Response(png, media_type="image/png", headers={
            "X-Matte-Coverage": f"{float((matte > 0.5).mean()):.4f}",
            "X-Seconds": f"{time.perf_counter() - started:.3f}"})

    @router.post("/web/api/preview/ahead")
    async def matte_ahead(body: FrameRequest, request: Request, _: Operator,
                          count: Annotated[int, Query(ge=2, le=MAX_AHEAD)] = 12) -> dict[str, Any]:
        """The subjects prompted on this frame tracked over the next frames: one overlay PNG per frame."""
        path = clip_path(request, body.clip)
        info = video_info(path)
        last = min(info.last_frame, body.frame + count - 1)
        cache = frame_cache(request)

        def track() -> dict[str, Any]:
            started = time.perf_counter()
            frames = [cache.frame_rgb(path, n, info) for n in range(body.frame, last + 1)]
            mattes = preview.tracked_mattes(frames, body.frame, body.subjects)
            pngs = {str(body.frame + i): "data:image/png;base64," + base64.b64encode(preview.matte_png(m)).decode()
                    for i, m in enumerate(mattes)}
            coverage = [round(float((m > 0.5).mean()), 4) for m in mattes]
            return {"first": body.frame, "last": last, "overlays": pngs, "coverage": coverage,
                    "seconds": round(time.perf_counter() - started, 2)}
        return await asyncio.to_thread(track)

    @router.get("/web/api/styles")
    def styles(_: Operator) -> list[dict[str, str]]:
        return preview.styles()

    @router.get("/web/api/preview/thumb")
    async def style_thumb(request: Request, _: Operator, clip: str, n: Annotated[int, Query(ge=0)],
                          style: str | None = None, painting: str | None = None) -> Response:
        """A style on the user's own frame (the render's restyle step at full size: painterly styles
        depend on the pixel scale), shrunk to a thumbnail."""
        rgb = await frame_rgb(request, clip, n)
        image = await asyncio.to_thread(preview.restyled, rgb, n, style, painting_path(request, painting))
        return Response(preview.encode(".jpg", preview.thumbnail(image)), media_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=3600"})

    @router.post("/web/api/preview/look")
    async def look_preview(body: FrameRequest, request: Request, _: Operator) -> Response:
        """The frame as the render would make it: restyled around the prompted subject."""
        rgb = await frame_rgb(request, body.clip, body.frame)
        style_image = painting_path(request, body.painting)

        def render() -> bytes:
            matte = preview.subject_matte(rgb, body.frame, body.subjects) if body.subjects else None
            return preview.encode(".jpg", preview.restyled(rgb, body.frame, body.style, style_image, matte), 90)
        return Response(await asyncio.to_thread(render), media_type="image/jpeg")

    @router.post("/web/api/paintings")
    async def upload_painting(request: Request, _: Operator, file: Annotated[UploadFile, File()]) -> dict[str, Any]:
        if Path(file.filename or "").suffix.lower() not in PAINTING_SUFFIXES:
            raise HTTPException(415, f"a painting is one of {', '.join(sorted(PAINTING_SUFFIXES))}")
        path = await receive_file(file, settings_of(request).state_path / "web" / "paintings", 50 * 1024**2)
        from vfx.video.sequence import read_image_rgb
        try:
            await asyncio.to_thread(read_image_rgb, path)
        except VfxError:
            path.unlink(missing_ok=True)
            raise HTTPException(422, "not a readable picture") from None
        return {"painting": path.name, "path": str(path)}

    @router.get("/web/api/jobs/{job_id}/frame")
    async def job_frame(job_id: str, request: Request, principal: Operator, n: Annotated[int, Query(ge=0)],
                        which: str = "output") -> FileResponse:
        """A frame of a job's output or matte (numbered like the source), or of its source."""
        job = owned_job(request, job_id, principal)
        from serving.jobs import job_outputs

        output, matte, _ = job_outputs(job)
        path = {"output": output, "matte": matte, "source": Path(job["input_path"])}.get(which)
        if path is None or not path.is_file():
            raise HTTPException(404, f"no {which} for this job (yet)")
        number = n if which == "source" else n - job["first_frame"]
        jpeg = await asyncio.to_thread(frame_cache(request).frame_jpeg, path, number, video_info(path))
        return FileResponse(jpeg, media_type="image/jpeg")

    @router.get("/web/api/jobs/{job_id}/review.mp4")
    async def job_review_copy(job_id: str, request: Request, principal: Operator) -> FileResponse:
        """The output as the page's player can play it: the output itself, or (when its audio is a
        stream-copied AC-3, which Chromium does not play) a copy with AAC audio, made once."""
        job = owned_job(request, job_id, principal)
        if job["state"] != "done":
            raise HTTPException(409, f"job is {job['state']}; files exist once it is done")
        from serving.jobs import job_outputs
        from vfx.video.writer import browser_review_copy

        output = job_outputs(job)[0]
        review = output.with_name("review.mp4")
        if not review.is_file() and not await asyncio.to_thread(browser_review_copy, str(output), str(review)):
            review = output
        return FileResponse(review, media_type="video/mp4")

    @router.get("/web/api/jobs/{job_id}/provenance")
    async def job_provenance(job_id: str, request: Request, principal: Operator) -> dict[str, Any]:
        """The output's signed provenance (steps, backends, model hashes, grants, ledger head) and
        whether its signature and embedded C2PA manifest verify against these exact bytes."""
        job = owned_job(request, job_id, principal)
        if job["state"] != "done":
            raise HTTPException(409, f"job is {job['state']}; files exist once it is done")
        from serving.jobs import job_outputs
        from vfx.provenance.manifest import verify_provenance

        report = await asyncio.to_thread(verify_provenance, job_outputs(job)[0])
        manifest = report.manifest or {}
        return {"ok": report.ok, "problems": report.problems, "signer_key": report.signer_key,
                "c2pa_state": report.c2pa_state, "c2pa_actions": report.c2pa_actions,
                **{k: manifest.get(k) for k in ("steps", "backends", "model_hashes", "grant_ids", "ledger_head", "created_at")}}

    @router.websocket("/web/api/jobs/{job_id}/progress")
    async def job_progress(websocket: WebSocket, job_id: str) -> None:
        """The job's view (frames done, frames/s, state) pushed every half second until it ends."""
        await websocket.accept()
        try:
            job = owned_job(websocket, job_id, principal_of(websocket, Role.operator))
        except HTTPException as exc:
            await websocket.close(code=4000 + exc.status_code, reason=str(exc.detail)[:120])
            return
        from serving.app import job_view
        from serving.store import FINAL_STATES

        store = job_store(websocket)
        try:
            while True:
                job = store.job(job_id)
                await websocket.send_text(json.dumps(job_view(job, store)))
                if job["state"] in FINAL_STATES:
                    break
                await asyncio.sleep(PROGRESS_EVERY_S)
            await websocket.close()
        except Exception:
            pass  # the page went away

    return router


def job_store(request: Request | WebSocket):
    from serving.store import JobStore

    state = request.app.state
    if getattr(state, "web_jobs", None) is None:
        state.web_jobs = JobStore(settings_of(request).db_url)
    return state.web_jobs


def owned_job(request: Request | WebSocket, job_id: str, principal: Principal) -> dict[str, Any]:
    job = job_store(request).job(job_id)
    if job is None or (job["owner"] != principal.name and principal.role is not Role.admin):
        raise HTTPException(404, "no such job")
    return job


async def frame_rgb(request: Request, clip: str, number: int):
    path = clip_path(request, clip)
    return await asyncio.to_thread(frame_cache(request).frame_rgb, path, number, video_info(path))
