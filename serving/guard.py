"""Refuse a request before its body is read: wrong key, wrong role or too many bytes.

FastAPI parses a form (and spools an upload) before route dependencies run, so a 401 from a
dependency comes after the whole body was received. This pure ASGI middleware runs first: it
knows, from the method and path alone, which role a route needs and how many bytes it may send,
answers 401/403/413 without calling ``receive`` at all, and cuts off a body that goes past its
cap while streaming (chunked requests carry no Content-Length).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

import anyio

from serving.auth import Principal, Role, key_from_headers
from serving.untrusted import Refused

SMALL_BODY = 64 * 1024  # JSON bodies (consent grants, revocations) and forms without a file
FORM_OVERHEAD = 256 * 1024  # multipart boundaries and the form fields around an uploaded file


@dataclass(frozen=True)
class Rule:
    method: str  # "*" for any
    prefix: str
    roles: tuple[Role, ...] | None  # None: no key needed
    max_body: int
    admit: bool = False  # ask app.state.admission (job caps, disk space) before the body is read


def rules_for(max_upload_bytes: int) -> list[Rule]:
    """First match wins. Routes not listed need no key here (docs, the web page); their own
    dependencies still apply, and their bodies are capped at SMALL_BODY."""
    return [
        Rule("GET", "/healthz", None, 0),
        Rule("POST", "/v1/jobs", (Role.operator,), max_upload_bytes + FORM_OVERHEAD, admit=True),
        Rule("*", "/v1/jobs", (Role.operator,), SMALL_BODY),
        Rule("*", "/v1/consent/", (Role.rights_holder,), SMALL_BODY),
        Rule("*", "/metrics", (Role.admin,), 0),
        # the web page's clip upload (serving/web/routes.py): as big as a job upload
        Rule("POST", "/web/api/clips", (Role.operator,), max_upload_bytes + FORM_OVERHEAD),
    ]


class BodyTooLarge(Exception):
    pass


def ring_of(app: Any) -> Any:
    """The app's current KeyRing (``app.state.keys`` is serving.auth.Keys, re-read when the file changes)."""
    keys = getattr(getattr(app, "state", None), "keys", None)
    return keys.ring_now() if keys is not None else None


def upload_limit_of(app: Any) -> int:
    settings = getattr(getattr(app, "state", None), "settings", None)
    return settings.limits.max_bytes if settings is not None else 0


class RequestGuard:
    """``keys``: returns the current KeyRing (None before the app is configured: every keyed route
    is refused); ``max_upload_bytes``: returns the upload limit. Both are read per request, so a
    rotated keys file applies at once."""

    def __init__(self, app: Any, keys: Callable[[Any], Any] = ring_of, max_upload_bytes: Callable[[Any], int] = upload_limit_of):
        self.app = app
        self.keys = keys
        self.max_upload_bytes = max_upload_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        app = scope.get("app")
        rule = _match(rules_for(self.max_upload_bytes(app)), scope["method"], scope["path"])
        cap = rule.max_body if rule else SMALL_BODY
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if rule is not None and rule.roles is not None:
            ring = self.keys(app)
            principal: Principal | None = ring.identify(key_from_headers(headers.get("authorization"),
                                                                         headers.get("x-api-key"))) if ring else None
            if principal is None:
                return await _refuse(send, 401, "missing or unknown API key", [(b"www-authenticate", b"Bearer")])
            if not principal.may(*rule.roles):
                return await _refuse(send, 403, f"role {principal.role.value} may not do this; "
                                                f"needs {' or '.join(r.value for r in rule.roles)}")
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                return await _refuse(send, 400, "Content-Length is not a number")
            if int(declared) > cap:
                return await _refuse(send, 413, f"request body of {declared} bytes is over the limit of {cap} bytes")
        admission = getattr(getattr(app, "state", None), "admission", None)
        if rule is not None and rule.admit and admission is not None:
            try:
                await anyio.to_thread.run_sync(admission.check, principal.name, int(declared or 0))
            except Refused as refused:
                return await _refuse(send, refused.status, refused.reason,
                                     [(k.lower().encode(), v.encode()) for k, v in refused.headers.items()])
        await self._capped(scope, receive, send, cap)

    async def _capped(self, scope, receive, send, cap: int) -> None:
        """Count body bytes as the app reads them; past the cap, stop the app and answer 413."""
        received = 0
        over = False
        started = False

        async def counting_receive():
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    over = True
                    raise BodyTooLarge()
            return message

        async def guarded_send(message):
            nonlocal started
            if over:
                return  # whatever the app makes of the cut-off body, the answer is the 413 below
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except BodyTooLarge:
            pass
        except Exception:
            if not over:
                raise
        if over and not started:
            await _refuse(send, 413, f"request body is over the limit of {cap} bytes")


def _match(rules: list[Rule], method: str, path: str) -> Rule | None:
    for rule in rules:
        if rule.method in ("*", method) and (path == rule.prefix.rstrip("/") or path.startswith(rule.prefix)):
            return rule
    return None


async def _refuse(send, status: int, detail: str, extra_headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), *(extra_headers or [])]})
    await send({"type": "http.response.body", "body": body})
