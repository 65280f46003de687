"""Signed documents as uploaded by rights holders (JSON files from ``vfx consent ... -o``, API bodies).

An enrolment upload also carries the reference embeddings it was signed for (float32
little-endian, base64) so the server never sees the holder's images or key.
"""
from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np

from vfx.consent.documents import AUTHORITY, ENROLMENT, GRANT, REVOCATION, Signed, signed_from_json
from vfx.consent.keys import key_id
from vfx.consent.records import record_authority, record_grant, record_revocation
from vfx.consent.store import ConsentStore
from vfx.consent.subjects import submit_enrolment
from vfx.errors import VfxError

MAX_REFERENCE_FLOATS = 64 * 512


def enrolment_upload(signed: Signed, embeddings: np.ndarray) -> dict[str, Any]:
    embeddings = np.ascontiguousarray(embeddings, dtype="<f4")
    return {**signed.to_json(), "embeddings": base64.b64encode(embeddings.tobytes()).decode("ascii"),
            "shape": list(embeddings.shape)}


def upload_embeddings(data: dict[str, Any]) -> np.ndarray:
    try:
        rows, size = (int(v) for v in data["shape"])
        raw = base64.b64decode(data["embeddings"], validate=True)
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise VfxError("an enrolment upload needs embeddings (base64 float32) and shape [N, D]") from exc
    if rows < 1 or size < 1 or rows * size > MAX_REFERENCE_FLOATS or len(raw) != rows * size * 4:
        raise VfxError(f"enrolment upload: {len(raw)} bytes do not hold float32 embeddings of shape [{rows}, {size}]")
    embeddings = np.frombuffer(raw, dtype="<f4").reshape(rows, size).astype(np.float32)
    if not np.isfinite(embeddings).all():
        raise VfxError("enrolment upload: embeddings must be finite numbers")
    return embeddings


def upload_kind(data: Any) -> str:
    return str(data.get("document", {}).get("type", "")) if isinstance(data, dict) and isinstance(data.get("document"), dict) else ""


def record_upload(store: ConsentStore, data: Any, signer: str | None = None) -> str:
    """Record any signed upload; with ``signer`` (a base64 public key) it must be that holder's signature."""
    kind = upload_kind(data)
    if kind not in (ENROLMENT, AUTHORITY, GRANT, REVOCATION):
        raise VfxError(f"not a signed consent document (type {kind or 'missing'!r})")
    signed = signed_from_json(data, kind)
    if signer is not None and signed.signer != signer:
        raise VfxError(f"the document is signed by key {key_id(signed.signer)}, not by your key {key_id(signer)}")
    if kind == ENROLMENT:
        entry = submit_enrolment(store, signed, upload_embeddings(data))
        return f"enrolled {signed.document['subject']} (authority {key_id(signed.signer)}); ledger entry {entry.seq}"
    if kind == AUTHORITY:
        entry = record_authority(store, signed)
        return (f"{signed.document['action']} {key_id(signed.document['key'])} as authority of "
                f"{signed.document['subject']}; ledger entry {entry.seq}")
    if kind == GRANT:
        return record_grant(store, signed).grant_id
    document = record_revocation(store, signed)
    return f"revoked {document['grant_id']} at {document['revoked_at']}"
