"""Where consent data lives: ``VFX_HOME`` (default ~/.vfx), its database and trusted keys."""
from __future__ import annotations

import os
from pathlib import Path

from vfx.consent.keys import key_id, load_public_key_text, write_text_atomic
from vfx.errors import VfxError


def vfx_home() -> Path:
    return Path(os.environ.get("VFX_HOME") or Path.home() / ".vfx").expanduser()


def ensure_home() -> Path:
    home = vfx_home()
    home.mkdir(parents=True, exist_ok=True)
    return home


def default_db_url() -> str:
    """``VFX_CONSENT_DB`` if set, else the SQLite file ``VFX_HOME/consent.db``."""
    configured = os.environ.get("VFX_CONSENT_DB")
    if configured:
        return configured
    return f"sqlite:///{ensure_home() / 'consent.db'}"


def trusted_keys_dir() -> Path:
    """``VFX_TRUSTED_KEYS`` if set, else ``VFX_HOME/trusted_keys``: one ``*.pub`` file per rights holder."""
    configured = os.environ.get("VFX_TRUSTED_KEYS")
    return Path(configured).expanduser() if configured else vfx_home() / "trusted_keys"


def trusted_keys(directory: Path | None = None) -> dict[str, str]:
    """key id -> base64 public key, for every ``*.pub`` in the trusted-keys directory."""
    directory = directory or trusted_keys_dir()
    if not directory.is_dir():
        return {}
    keys: dict[str, str] = {}
    for path in sorted(directory.glob("*.pub")):
        try:
            text = load_public_key_text(str(path))
        except VfxError as exc:
            raise VfxError(f"trusted key {path}: {exc}") from exc
        keys[key_id(text)] = text
    return keys


def trust_key(source: str, directory: Path | None = None) -> tuple[str, Path]:
    """Add a rights holder's public key (a .pub path or base64 text) to the trusted keys."""
    text = load_public_key_text(source)
    directory = directory or trusted_keys_dir()
    directory.mkdir(parents=True, exist_ok=True)
    kid = key_id(text)
    path = directory / f"{kid}.pub"
    write_text_atomic(path, text + "\n")
    return kid, path
