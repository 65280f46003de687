"""The live-stream application: its own ingress at /v1/stream and the Frames deployment.
(No ``from __future__ import annotations`` here: Serve re-signs the route methods, and FastAPI
must see real types, not strings, to know the WebSocket parameter.)

Streams are long-lived requests. In their own application (``route_prefix: /v1/stream``) they
hold the StreamGateway's request slots, never the REST Gateway's: with every stream slot
taken, jobs and consent still answer. Open streams are capped per replica and per API key,
and each stream's duration is capped (serving.settings.StreamSettings).
"""

import asyncio
import json
import logging
from typing import Annotated, Any, Callable

from fastapi import Depends, FastAPI, HTTPException, WebSocket, WebSocketDisconnect
from fastapi.responses import Response
from prometheus_client import generate_latest
from pydantic import ValidationError
from ray import serve

import serving.metrics as metrics
from serving.app import authenticate, deployment_options, require
from serving.auth import Keys, Principal, Role
from serving.capabilities import MAX_CONCURRENT_BATCHES, Frames
from serving.logs import setup_logging
from serving.settings import ServeSettings, load_settings
from serving.stream import StreamOptions, StreamSession, stream_config_problem
from vfx.errors import VfxError

APP_NAME = "vfx-stream"
ROUTE_PREFIX = "/v1/stream"
log = logging.getLogger("vfx.serving.stream")

stream_api = FastAPI(title="vfx streams", version="0.1.0")


class PrefixIsRoot:
    """``/v1/stream`` itself is this app's root: Serve passes it as root_path with an empty route
    path, which FastAPI cannot name; route it to ``/``."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket") and scope.get("root_path") and scope.get("path") == scope["root_path"]:
            scope = {**scope, "path": scope["path"] + "/"}
        await self.app(scope, receive, send)


stream_api.add_middleware(PrefixIsRoot)


@serve.deployment(name="StreamGateway")
@serve.ingress(stream_api)
class StreamGateway:
    def __init__(self, settings: dict[str, Any], frames: Any):
        self.settings: ServeSettings = load_settings(settings)
        setup_logging(self.settings.log_level)
        self.frames = frames
        self.open: dict[str, int] = {}  # API key name -> open streams on this replica
        stream_api.state.keys = Keys(self.settings.keys_file)

    @stream_api.get("/metrics", response_class=Response)
    async def metrics(self, _: Annotated[Principal, Depends(require(Role.admin))]) -> Response:
        """Prometheus metrics of the stream gateway (frames, latency, queue, batch sizes)."""
        return Response(generate_latest(metrics.REGISTRY), media_type="text/plain; version=0.0.4")

    @stream_api.websocket("/")
    async def stream(self, websocket: WebSocket) -> None:
        """Live frames; see serving/stream.py for the protocol."""
        await websocket.accept()
        try:
            principal = authenticate(websocket.app.state.keys, websocket.headers.get("authorization"),
                                     websocket.headers.get("x-api-key"), (Role.operator,))
        except HTTPException as exc:
            await websocket.close(code=4000 + exc.status_code, reason=exc.detail[:120])
            return
        limits = self.settings.stream
        if sum(self.open.values()) >= limits.max_streams:
            await websocket.close(code=4429, reason=f"all {limits.max_streams} stream slots are busy; retry later")
            return
        if self.open.get(principal.name, 0) >= limits.max_streams_per_key:
            await websocket.close(code=4429, reason=f"this key has {limits.max_streams_per_key} open streams, the limit")
            return
        self.open[principal.name] = self.open.get(principal.name, 0) + 1
        released = False

        def release() -> None:
            """Give the slot back once the server is done with the stream: before its summary goes out,
            so a client that reconnects on reading its summary is never refused its own slot."""
            nonlocal released
            if not released:
                released = True
                self.open[principal.name] -= 1

        try:
            await self._serve(websocket, principal, release)
        finally:
            release()

    async def _serve(self, websocket: WebSocket, principal: Principal, release: Callable[[], None]) -> None:
        limits = self.settings.stream
        try:
            options = StreamOptions.model_validate_json(await asyncio.wait_for(websocket.receive_text(),
                                                                               limits.idle_timeout_s))
            config = options.pipeline_config()
        except (ValidationError, ValueError, asyncio.TimeoutError, KeyError) as exc:
            reason = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc) or type(exc).__name__
            await websocket.close(code=4422, reason=f"first message must be the stream options: {reason}"[:120])
            return
        if (problem := stream_config_problem(config)) is not None:
            await websocket.close(code=4422, reason=problem[:120])
            return
        session = StreamSession(websocket, options, config, limits, self.frames)
        extra = {"stream_id": session.stream_id, "principal": principal.name}
        log.info("stream opened", extra=extra)
        await websocket.send_text(json.dumps({"type": "ready", "stream_id": session.stream_id,
                                              "queue_frames": limits.queue_frames}))
        metrics.STREAMS_OPEN.inc()
        counts = None
        try:
            counts = await session.run()
        except Exception:
            log.exception("stream failed", extra=extra)
        finally:
            metrics.STREAMS_OPEN.dec()
            closed = await self._finish(session, extra)
            release()
        if counts is None:
            await websocket.close(code=1011, reason="the stream failed on the server")
            return
        try:
            await websocket.send_text(json.dumps({
                "type": "summary", "received": counts.received, "processed": counts.processed,
                "dropped": counts.dropped, "rejected": counts.rejected, "ended": session.end_reason,
                "grant_ids": closed.get("grant_ids", [])}))
            await websocket.close()
        except (WebSocketDisconnect, RuntimeError):  # the client left first; nothing more is owed to it
            log.info("client left before the summary", extra=extra)
        log.info("stream closed (%s): %d frames processed", session.end_reason, counts.processed, extra=extra)

    async def _finish(self, session: StreamSession, extra: dict[str, Any]) -> dict[str, Any]:
        try:
            return await session.finish()
        except Exception:
            log.exception("closing the stream's steps failed", extra=extra)
            return {}


def build_stream(args: dict[str, Any]) -> Any:
    """Application builder of the stream application (``serving.stream_app:build_stream``)."""
    args = dict(args or {})
    options = deployment_options(args.pop("deployments", None))
    settings = load_settings(args).model_dump()
    if settings["stream"]["max_batch_size"] * MAX_CONCURRENT_BATCHES > options["Frames"].get("max_ongoing_requests", 5):
        raise VfxError(f"serve config: max_ongoing_requests of Frames must be at least {MAX_CONCURRENT_BATCHES} x "
                       "stream.max_batch_size, or batches stay small")
    frames = serve.deployment(Frames, name="Frames").options(**options["Frames"]).bind(settings)
    return StreamGateway.options(**options["StreamGateway"]).bind(settings, frames)
