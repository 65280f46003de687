"""API keys with roles. The keys file holds only SHA-256 digests of keys, never the keys."""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import yaml

from vfx.errors import VfxError


class Role(str, Enum):
    operator = "operator"
    rights_holder = "rights_holder"
    admin = "admin"


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role

    def may(self, *roles: Role) -> bool:
        return self.role is Role.admin or self.role in roles


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyRing:
    """Maps key digests to principals; loaded once per replica from the keys file."""

    def __init__(self, entries: dict[str, Principal], signing_keys: dict[str, str] | None = None,
                 public_keys: dict[str, str] | None = None):
        self.entries = entries
        self.signing_keys = signing_keys or {}  # rights holder name -> Ed25519 private key file (convenience mode)
        self.public_keys = public_keys or {}  # rights holder name -> their Ed25519 public key (base64 or .pub path)

    @classmethod
    def load(cls, path: str | Path) -> "KeyRing":
        path = Path(path).expanduser()
        if not path.is_file():
            raise VfxError(f"{path}: API keys file not found (create one with `vfx serve-key NAME --role ROLE`)")
        data = yaml.safe_load(path.read_text()) or {}
        entries: dict[str, Principal] = {}
        signing_keys: dict[str, str] = {}
        public_keys: dict[str, str] = {}
        for item in data.get("keys", []):
            try:
                entries[item["sha256"]] = Principal(name=str(item["name"]), role=Role(item["role"]))
            except (KeyError, ValueError, TypeError):
                raise VfxError(f"{path}: each key needs name, role (operator|rights_holder|admin) and sha256") from None
            if item.get("signing_key"):
                signing_keys[str(item["name"])] = str(Path(item["signing_key"]).expanduser())
            if item.get("public_key"):
                public_keys[str(item["name"])] = str(item["public_key"])
        return cls(entries, signing_keys, public_keys)

    def identify(self, key: str | None) -> Principal | None:
        if not key:
            return None
        digest = key_digest(key)
        for known, principal in self.entries.items():
            if hmac.compare_digest(known, digest):
                return principal
        return None


def key_from_headers(authorization: str | None, api_key: str | None) -> str | None:
    if api_key:
        return api_key.strip()
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None


def add_key(path: str | Path, name: str, role: Role, public_key: str | None = None) -> str:
    """Create a key for ``name``, append its digest to the keys file atomically, return the key."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (yaml.safe_load(path.read_text()) if path.is_file() else None) or {}
    keys = [k for k in data.get("keys", []) if k.get("name") != name]
    key = "vfx_" + secrets.token_urlsafe(32)
    keys.append({"name": name, "role": role.value, "sha256": key_digest(key), **({"public_key": public_key} if public_key else {})})
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(yaml.safe_dump({"keys": keys}, sort_keys=False))
    tmp.chmod(0o600)
    tmp.replace(path)
    return key


class Keys:
    """The keys file, re-read when it changes so keys can be rotated without a redeploy."""

    def __init__(self, path: str):
        self.path = Path(path).expanduser()
        self.mtime = -1.0
        self.ring = KeyRing({})

    def ring_now(self) -> KeyRing:
        mtime = self.path.stat().st_mtime if self.path.is_file() else -1.0
        if mtime != self.mtime:
            self.ring = KeyRing.load(self.path) if mtime >= 0 else KeyRing({})
            self.mtime = mtime
        return self.ring

    def signing_key_of(self, name: str) -> str | None:
        return self.ring_now().signing_keys.get(name)
