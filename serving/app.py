"""The vfx Ray Serve application: a FastAPI ingress over the job deployments (streams: serving/stream_app.py).

``build(args)`` is the import path for ``serve deploy configs/serve.yaml`` and for ``vfx serve``.
"""

import asyncio
import hashlib
import json
import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, Form, Header, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from prometheus_client import generate_latest
from ray import serve

from serving.auth import Keys, Principal, Role, key_from_headers
from serving.consent_api import consent_router
from serving.admission import Admission
from serving.guard import RequestGuard
from serving.intake import discard, incoming_size, new_job_dir, stage_shot, stage_side_inputs
from serving.jobspec import parse_job_config
from serving.jobs import ChunkWorker, JobManager, job_outputs
from serving.logs import job_logger, setup_logging
from serving.readiness import Readiness
import serving.metrics as metrics
from serving.settings import ServeSettings, load_settings
from serving.store import FINAL_STATES, JobStore
from serving.untrusted import Refused
from serving.web import mount_web
from vfx.config import PipelineConfig
from vfx.errors import VfxError
from serving.gates import check_config, load_backends
from vfx.provenance import sidecar_path
from vfx.video import parse_frame_range, probe
from fastapi import UploadFile

APPLICATIONS = ("vfx", "vfx-stream")  # Serve applications whose deployments readiness waits for
KICK_TIMEOUT_S = 2.0

api = FastAPI(title="vfx", version="0.1.0",
              description="Subject mattes, restyled surroundings and consent-gated face edits for real footage. "
                          "Send an API key as `Authorization: Bearer KEY` or `X-API-Key: KEY`.")


def authenticate(keys: Keys, authorization: str | None, api_key: str | None, roles: tuple[Role, ...]) -> Principal:
    principal = keys.ring_now().identify(key_from_headers(authorization, api_key))
    if principal is None:
        raise HTTPException(401, "missing or unknown API key", headers={"WWW-Authenticate": "Bearer"})
    if not principal.may(*roles):
        raise HTTPException(403, f"role {principal.role.value} may not do this; needs {' or '.join(r.value for r in roles)}")
    return principal


def require(*roles: Role):
    def dependency(request: Request, authorization: Annotated[str | None, Header()] = None,
                   x_api_key: Annotated[str | None, Header()] = None) -> Principal:
        return authenticate(request.app.state.keys, authorization, x_api_key, roles)
    return dependency


Operator = Annotated[Principal, Depends(require(Role.operator))]
api.include_router(consent_router(require))
Admin = Annotated[Principal, Depends(require(Role.admin))]
# Middleware added later runs first: the guard is added before the web page's SessionAuth so that
# SessionAuth turns a session cookie into X-API-Key before the guard checks the key.
api.add_middleware(RequestGuard)  # key, role and body size checked before a byte of the body is read
mount_web(api)  # the crew's page at /, its session cookies, and /docs served offline



@api.middleware("http")
async def measure(request: Request, call_next):
    started = time.perf_counter()
    response = await call_next(request)
    route = getattr(request.scope.get("route"), "path", "unmatched")
    metrics.REQUESTS.labels(route, str(response.status_code)).inc()
    metrics.REQUEST_SECONDS.labels(route).observe(time.perf_counter() - started)
    return response


@api.exception_handler(VfxError)
async def vfx_error(_: Request, exc: VfxError) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=422)


@api.exception_handler(Refused)
async def refused(_: Request, exc: Refused) -> JSONResponse:
    return JSONResponse({"detail": exc.reason}, status_code=exc.status, headers=exc.headers)


def job_view(job: dict[str, Any], store: JobStore) -> dict[str, Any]:
    chunks = store.chunks(job["id"])
    total = job["last_frame"] - job["first_frame"] + 1
    done = total if job["state"] == "done" else sum(c.written_so_far for c in chunks)
    end = job["finished_at"] or time.time()
    seconds = (end - job["started_at"]) if job["started_at"] else 0.0
    base = f"/v1/jobs/{job['id']}"
    return {
        "id": job["id"], "state": job["state"], "error": job["error"],
        "frames": {"first": job["first_frame"], "last": job["last_frame"], "done": done, "total": total},
        "frames_per_second": round(done / seconds, 3) if seconds > 0 else 0.0,
        "chunks": {"total": len(chunks), "done": sum(c.state == "done" for c in chunks),
                   "attempts": sum(c.attempts for c in chunks)},
        "concealed": {"packets": job.get("concealed_packets") or 0,
                      "frames": json.loads(job.get("concealed_frames") or "[]")},
        "created_at": job["created_at"], "started_at": job["started_at"], "finished_at": job["finished_at"],
        "links": {"self": base, "output": f"{base}/output", "manifest": f"{base}/manifest",
                  **({"matte": f"{base}/matte"} if job["want_matte"] else {})},
    }


@serve.deployment(name="Gateway")
@serve.ingress(api)
class Gateway:
    def __init__(self, settings: dict[str, Any], manager: Any):
        self.settings: ServeSettings = load_settings(settings)
        setup_logging(self.settings.log_level)
        for sub in ("uploads", "jobs"):
            (self.settings.state_path / sub).mkdir(parents=True, exist_ok=True)
        self.store = JobStore(self.settings.db_url)
        self.manager = manager
        # Serve pickles this class by value, so module-level objects used in its methods are copies;
        # shared state goes through the running app (request.app) and the metrics module.
        api.state.keys = Keys(self.settings.keys_file)
        api.state.settings = self.settings
        self.admission = api.state.admission = Admission(self.store, self.settings)
        api.state.consent_db = self.settings.consent_db
        self.readiness = Readiness(APPLICATIONS)
        load_backends()

    @api.get("/healthz", tags=["operations"], response_model=None)
    async def healthz(self) -> dict[str, Any] | JSONResponse:
        """Readiness: 200 once every deployment has a running replica, else 503 naming what is missing.
        The only route without a key (for load balancers and kubelets)."""
        waiting = await asyncio.to_thread(self.readiness.check)
        if waiting:
            return JSONResponse({"status": "starting", "waiting": waiting}, status_code=503)
        return {"status": "ok"}

    @api.get("/metrics", tags=["operations"], response_class=Response)
    async def metrics(self, _: Admin) -> Response:
        counts: dict[str, int] = {}
        fps = 0.0
        for job in self.store.jobs_of(None, limit=1000):
            counts[job["state"]] = counts.get(job["state"], 0) + 1
            if job["state"] == "running":
                fps += job_view(job, self.store)["frames_per_second"]
        for state in ("queued", "running", "assembling", *FINAL_STATES):
            metrics.JOBS.labels(state).set(counts.get(state, 0))
        metrics.JOB_FPS.set(fps)
        return Response(generate_latest(metrics.REGISTRY), media_type="text/plain; version=0.0.4")

    @api.post("/v1/jobs", tags=["jobs"], status_code=201)
    async def submit(self, principal: Operator, response: Response,
                     file: Annotated[UploadFile | None, File(description="the shot, uploaded")] = None,
                     path: Annotated[str | None, Form(description="or a file under one of the input roots")] = None,
                     config: Annotated[str, Form(description="PipelineConfig as JSON")] = "{}",
                     frames: Annotated[str | None, Form(description="FIRST-LAST, inclusive")] = None,
                     matte: Annotated[bool, Form()] = False,
                     style_picture: Annotated[UploadFile | None, File(description="a style picture (JPEG, PNG, WebP); "
                                                                       "or restyle.style_image under the input roots")] = None,
                     dub_audio: Annotated[UploadFile | None, File(description="dub audio for lipsync; "
                                                                   "or face.lipsync under the input roots")] = None,
                     idempotency_key: Annotated[str | None, Header(max_length=200)] = None) -> dict[str, Any]:
        """Submit a shot. The same Idempotency-Key again returns the first job instead of a new one."""
        pipeline = parse_job_config(config, self.settings.consent_db, self.settings.input_roots)
        if (file is None) == (path is None):
            raise HTTPException(422, "give exactly one of: an uploaded file, or a path")
        incoming = await asyncio.to_thread(incoming_size, file, path, self.settings)
        await asyncio.to_thread(self.admission.check, principal.name, incoming)
        job_dir = new_job_dir(self.settings)
        try:
            return await self._accept(principal, response, file, path, pipeline, frames, matte, idempotency_key, job_dir,
                                      {"style_image": style_picture, "lipsync": dub_audio})
        except BaseException:
            discard(job_dir)  # a refused or failed submission leaves no file behind
            raise

    async def _accept(self, principal: Principal, response: Response, file: UploadFile | None, path: str | None,
                      pipeline: PipelineConfig, frames: str | None, matte: bool, idempotency_key: str | None,
                      job_dir: Path, side_uploads: dict[str, UploadFile | None]) -> dict[str, Any]:
        staged, report = await stage_shot(file, path, job_dir, self.settings)
        pipeline, side_hashes = await stage_side_inputs(pipeline, job_dir, self.settings, side_uploads)
        # plans the job (a backend for every capability, no weights loaded): refuses a config with nothing to
        # do, an unknown style or a model not in the store; workers build and run the plan
        await asyncio.to_thread(check_config, pipeline)
        frame_range = parse_frame_range(frames, await asyncio.to_thread(probe, staged.path))
        request_digest = hashlib.sha256(json.dumps(
            [staged.sha256, side_hashes, pipeline.model_dump(exclude={"restyle": {"style_image"}, "face": {"lipsync"}}),
             frame_range.first, frame_range.last, matte]).encode()).hexdigest()
        if idempotency_key:
            existing = self.store.find_by_idempotency_key(principal.name, idempotency_key)
            if existing is not None:
                discard(job_dir)
                return self._replay(existing, request_digest, response)
        job, created = self.store.create_job({
            "owner": principal.name, "idempotency_key": idempotency_key, "request_digest": request_digest,
            "input_path": str(staged.path), "input_sha256": staged.sha256, "uploaded": file is not None,
            "config_json": pipeline.model_dump_json(), "first_frame": frame_range.first,
            "last_frame": frame_range.last, "want_matte": matte, "job_dir": str(job_dir),
            "concealed_packets": report.concealed_packets})
        if not created:
            discard(job_dir)
            return self._replay(job, request_digest, response)
        job_logger(job["id"]).info("job accepted from %s: frames %d-%d", principal.name, frame_range.first,
                                   frame_range.last, extra={"principal": principal.name})
        await self._kick_manager(job["id"])
        return job_view(job, self.store)

    def _replay(self, job: dict[str, Any], request_digest: str, response: Response) -> dict[str, Any]:
        if job["request_digest"] != request_digest:
            raise HTTPException(409, "this Idempotency-Key was already used for a different request")
        response.status_code = 200
        return job_view(job, self.store)

    async def _kick_manager(self, job_id: str) -> None:
        try:
            await asyncio.wait_for(self.manager.kick.remote(), KICK_TIMEOUT_S)
        except Exception:  # the job is stored: the manager's next poll picks it up (it may be restarting)
            job_logger(job_id).warning("could not wake the job manager; its next poll starts the job", exc_info=True)

    def _owned_job(self, job_id: str, principal: Principal) -> dict[str, Any]:
        job = self.store.job(job_id)
        if job is None or (job["owner"] != principal.name and principal.role is not Role.admin):
            raise HTTPException(404, "no such job")
        return job

    @api.get("/v1/jobs", tags=["jobs"])
    async def list_jobs(self, principal: Operator) -> list[dict[str, Any]]:
        owner = None if principal.role is Role.admin else principal.name
        return [job_view(job, self.store) for job in self.store.jobs_of(owner)]

    @api.get("/v1/jobs/{job_id}", tags=["jobs"])
    async def get_job(self, job_id: str, principal: Operator) -> dict[str, Any]:
        return job_view(self._owned_job(job_id, principal), self.store)

    @api.get("/v1/jobs/{job_id}/{what}", tags=["jobs"], response_class=FileResponse)
    async def job_file(self, job_id: str, what: str, principal: Operator) -> FileResponse:
        job = self._owned_job(job_id, principal)
        output, matte, manifest = job_outputs(job)
        files = {"output": (output, "video/mp4"), "manifest": (manifest, "application/json"),
                 "provenance": (sidecar_path(output), "application/json"),  # signed sidecar: vfx provenance verify
                 **({"matte": (matte, "video/mp4")} if matte else {})}
        if what not in files:
            raise HTTPException(404, f"no {what} for this job; there is {', '.join(files)}")
        if job["state"] != "done":
            raise HTTPException(409, f"job is {job['state']}; files exist once it is done")
        if job.get("files_deleted_at"):
            raise HTTPException(410, "this job's files were deleted by the retention policy")
        target, media = files[what]
        if not target.is_file():
            raise HTTPException(404, f"no {what} was written for this job")
        return FileResponse(target, media_type=media, filename=f"{job_id}-{target.name}")

    @api.delete("/v1/jobs/{job_id}", tags=["jobs"])
    async def cancel(self, job_id: str, principal: Operator) -> dict[str, Any]:
        job = self._owned_job(job_id, principal)
        if not self.store.set_state(job_id, "cancelled", finished_at=time.time()):
            raise HTTPException(409, f"job is already {job['state']}")
        job_logger(job_id).info("job cancelled by %s", principal.name)
        return job_view(self.store.job(job_id), self.store)


DEFAULT_OPTIONS: dict[str, dict[str, Any]] = {
    "Gateway": {"num_replicas": 1, "max_ongoing_requests": 256, "ray_actor_options": {"num_cpus": 0.1}},
    "JobManager": {"num_replicas": 1, "max_ongoing_requests": 100, "ray_actor_options": {"num_cpus": 0.05}},
    "ChunkWorker": {"num_replicas": 2, "max_ongoing_requests": 1, "ray_actor_options": {"num_cpus": 1, "num_gpus": 0}},
    # the stream application (serving.stream_app): each open stream holds one StreamGateway request
    "StreamGateway": {"num_replicas": 1, "max_ongoing_requests": 64, "ray_actor_options": {"num_cpus": 0.1}},
    "Frames": {"num_replicas": 1, "max_ongoing_requests": 32, "ray_actor_options": {"num_cpus": 1, "num_gpus": 0}},
}


def deployment_options(overrides: dict[str, dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    merged = {name: {**options} for name, options in DEFAULT_OPTIONS.items()}
    for name, options in (overrides or {}).items():
        if name not in merged:
            raise VfxError(f"serve config: unknown deployment {name!r}; known: {', '.join(merged)}")
        merged[name].update(options)
    return merged


def build(args: dict[str, Any]) -> Any:
    """Application builder. ``args``: ServeSettings fields, plus ``deployments`` (per-deployment options)
    when started by ``vfx serve``; ``serve deploy`` applies the config's own ``deployments`` section."""
    args = dict(args or {})
    options = deployment_options(args.pop("deployments", None))
    settings = load_settings(args).model_dump()
    workers = serve.deployment(ChunkWorker, name="ChunkWorker").options(**options["ChunkWorker"]).bind(settings)
    manager = serve.deployment(JobManager, name="JobManager").options(**options["JobManager"]).bind(settings, workers)
    return Gateway.options(**options["Gateway"]).bind(settings, manager)


def run_applications(args: dict[str, Any], wait: bool = True) -> None:
    """Deploy both applications of the service on the running Serve instance (``vfx serve``, tests):
    REST at /, streams at /v1/stream, as configs/serve.yaml declares them for ``serve deploy``."""
    from serving.stream_app import APP_NAME, ROUTE_PREFIX, build_stream

    serve.run_many([serve.RunTarget(target=build(args), name="vfx", route_prefix="/"),
                    serve.RunTarget(target=build_stream(args), name=APP_NAME, route_prefix=ROUTE_PREFIX)],
                   wait_for_applications_running=wait)
