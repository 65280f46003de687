"""The request guard, run again inside Ray's HTTP proxy: a refused request never reaches a replica.

Ray's proxy starts forwarding a request's body to the replica as soon as it arrives, so a guard in
the replica still costs the proxy and the replica a copy of whatever the client sends before its
401 (under a burst of unauthenticated uploads, several MB each, which slowed every other request
through the same proxy). Ray lets an operator wrap its proxy in ASGI middlewares named by
``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH``; this module's ``middlewares`` is that callback. It
applies the same checks as the app (a web session's cookie, the key and its role, the declared
body size) from the request's headers, and forwards the request exactly as it came. The replica's
own guard still runs: it adds the admission caps and stays in force if the proxy is not configured.

The proxy reads what the checks need from one environment variable (``proxy_environment`` writes
it; ``vfx serve`` sets it, the KubeRay manifest sets it on every Ray container).
"""
from __future__ import annotations

import json
import os
from types import SimpleNamespace
from typing import Any

from starlette.middleware import Middleware

from serving.auth import Keys
from serving.guard import RequestGuard
from serving.settings import ServeSettings, load_settings
from serving.web.session import SessionAuth
from vfx.errors import VfxError

SETTINGS_ENV = "VFX_PROXY_GUARD"
CALLBACK_ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
CALLBACK = "serving.proxy_guard:middlewares"


def proxy_environment(settings: ServeSettings) -> dict[str, str]:
    """Environment variables that make Ray's proxy run the guard with these settings."""
    guard_settings = {"state_dir": settings.state_dir, "keys_file": settings.keys_file,
                      "limits": {"max_bytes": settings.limits.max_bytes}}
    return {CALLBACK_ENV: CALLBACK, SETTINGS_ENV: json.dumps(guard_settings)}


def settings_from_environment() -> ServeSettings:
    raw = os.environ.get(SETTINGS_ENV)
    if not raw:
        raise VfxError(f"{CALLBACK_ENV} names the vfx proxy guard but {SETTINGS_ENV} is not set")
    try:
        return load_settings(json.loads(raw))
    except json.JSONDecodeError as exc:
        raise VfxError(f"{SETTINGS_ENV} is not JSON: {exc}") from None


class ProxyGuard:
    """SessionAuth and RequestGuard over the proxy's app, each reading its state from a stand-in for
    the FastAPI app they normally run in; the proxy forwards the original request, not the guards'
    view of it (SessionAuth's view carries the session's key as a header)."""

    def __init__(self, app: Any, settings: ServeSettings | None = None):
        self.app = app
        settings = settings or settings_from_environment()
        self.ingress = SimpleNamespace(state=SimpleNamespace(settings=settings, keys=Keys(settings.keys_file)))

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def forward(_guards_view: dict, guarded_receive: Any, guarded_send: Any) -> None:
            await self.app(scope, guarded_receive, guarded_send)

        await SessionAuth(RequestGuard(forward))({**scope, "app": self.ingress}, receive, send)


def middlewares() -> list[Middleware]:
    """Ray's proxy callback (``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH``)."""
    return [Middleware(ProxyGuard)]
