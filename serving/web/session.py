"""Browser sessions: an API key exchanged for an encrypted, HttpOnly session cookie, with CSRF.

The cookie holds the key sealed with AES-GCM under a secret in the service's state folder, so
every gateway replica can open it and each request is still checked against the keys file as
it is now (a key removed from the file ends its sessions at once). Script in the page never
sees the key: the cookie is HttpOnly. Mutating requests must repeat the session's CSRF token in
``X-CSRF-Token`` (the token also sits in a readable cookie: double submit, bound to the session).
WebSockets cannot carry that header, so their Origin must be the page's own.
"""
from __future__ import annotations

import base64
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SESSION_COOKIE = "vfx_session"
CSRF_COOKIE = "vfx_csrf"
CSRF_HEADER = "x-csrf-token"
SESSION_SECONDS = 8 * 3600
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
_AAD = b"vfx-web-session-v1"


@dataclass(frozen=True)
class Session:
    key: str
    csrf: str
    expires_at: float


def session_secret(state_dir: Path) -> bytes:
    """The 32-byte sealing secret, created once (O_EXCL) and shared by replicas through the state folder."""
    path = state_dir / "web-session.secret"
    if not path.is_file():
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another replica made it first
        else:
            with os.fdopen(fd, "wb") as out:
                out.write(secrets.token_bytes(32))
                out.flush()
                os.fsync(out.fileno())
    secret = path.read_bytes()
    if len(secret) != 32:  # a replica is mid-write; its bytes are the ones that count
        time.sleep(0.05)
        secret = path.read_bytes()
    return secret


def seal(secret: bytes, session: Session) -> str:
    nonce = secrets.token_bytes(12)
    plain = json.dumps({"k": session.key, "c": session.csrf, "e": session.expires_at}).encode()
    return base64.urlsafe_b64encode(nonce + AESGCM(secret).encrypt(nonce, plain, _AAD)).decode().rstrip("=")


def unseal(secret: bytes, token: str, now: float | None = None) -> Session | None:
    """The session in ``token``; None if it was not sealed with ``secret``, was altered, or has expired."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(AESGCM(secret).decrypt(raw[:12], raw[12:], _AAD))
        session = Session(key=str(data["k"]), csrf=str(data["c"]), expires_at=float(data["e"]))
    except (ValueError, InvalidTag, KeyError, TypeError):
        return None
    return session if session.expires_at > (time.time() if now is None else now) else None


def new_session(key: str, seconds: float = SESSION_SECONDS) -> Session:
    return Session(key=key, csrf=secrets.token_urlsafe(24), expires_at=time.time() + seconds)


def cookies_of(headers: dict[str, str]) -> dict[str, str]:
    jar = SimpleCookie()
    try:
        jar.load(headers.get("cookie", ""))
    except Exception:
        return {}
    return {name: morsel.value for name, morsel in jar.items()}


def same_origin(headers: dict[str, str]) -> bool:
    """True when the request comes from a page of this host (or names no origin: not a browser)."""
    origin = headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc == headers.get("host", "")


def is_tls(scope: dict[str, Any], headers: dict[str, str]) -> bool:
    return scope.get("scheme") in ("https", "wss") or headers.get("x-forwarded-proto", "") == "https"


def cookie_headers(session: Session, sealed: str, secure: bool) -> list[str]:
    max_age = max(0, int(session.expires_at - time.time()))
    flags = f"Path=/; Max-Age={max_age}; SameSite=Strict" + ("; Secure" if secure else "")
    return [f"{SESSION_COOKIE}={sealed}; {flags}; HttpOnly", f"{CSRF_COOKIE}={session.csrf}; {flags}"]


def clearing_cookie_headers(secure: bool) -> list[str]:
    flags = "Path=/; Max-Age=0; SameSite=Strict" + ("; Secure" if secure else "")
    return [f"{SESSION_COOKIE}=; {flags}; HttpOnly", f"{CSRF_COOKIE}=; {flags}"]


class SessionAuth:
    """ASGI middleware: a request with a valid session cookie reaches the routes as if it had sent
    the session's key in ``X-API-Key``; one with a stale cookie or without its CSRF token is refused.
    Requests that bring their own key header are left alone (API clients)."""

    GUARDED = ("/v1/", "/web/api/")
    SIGN_IN = "/web/session"  # carries its own key (and checks Origin); an old cookie must not stand in its way

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        token = cookies_of(headers).get(SESSION_COOKIE)
        if not token or "authorization" in headers or "x-api-key" in headers or scope["path"] == self.SIGN_IN:
            return await self.app(scope, receive, send)
        guarded = scope["path"].startswith(self.GUARDED)
        settings = getattr(scope["app"].state, "settings", None) if "app" in scope else None
        session = unseal(session_secret(settings.state_path), token) if settings is not None else None
        if session is None:
            if guarded:
                return await _refuse(scope, receive, send, 401, "session expired or invalid; sign in again")
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket" and not same_origin(headers):
            return await _refuse(scope, receive, send, 403, "WebSocket from another origin")
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS:
            if not hmac.compare_digest(headers.get(CSRF_HEADER, ""), session.csrf):
                return await _refuse(scope, receive, send, 403, "missing or wrong CSRF token (X-CSRF-Token)")
        injected = [(k, v) for k, v in scope["headers"] if k.lower() != b"x-api-key"]
        injected.append((b"x-api-key", session.key.encode("latin-1")))
        return await self.app({**scope, "headers": injected}, receive, send)


async def _refuse(scope, receive, send, status: int, detail: str) -> None:
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.close", "code": 4000 + status, "reason": detail})
        return
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
