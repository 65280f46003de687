"""The SHA-256 hash-chained ledger of every consent event.

Entry ``n`` stores ``prev_hash`` = hash of entry ``n-1`` (64 zeros for entry 1) and
``hash`` = sha256(canonical JSON of {seq, ts, kind, payload, prev}). The head row holds the last
seq and hash; appenders lock it inside their transaction, so concurrent replicas produce one
linear chain, and truncating the tail is detected as well as any edited, deleted, reordered or
inserted entry.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vfx.consent.canonical import canonical_json, sha256_hex
from vfx.consent.schema import LedgerHeadRow, LedgerRow
from vfx.consent.store import GENESIS_HASH


@dataclass(frozen=True)
class LedgerEntry:
    seq: int
    ts: str
    kind: str
    payload: str  # canonical JSON text
    prev_hash: str
    hash: str

    @property
    def data(self) -> dict[str, Any]:
        return json.loads(self.payload)


@dataclass(frozen=True)
class ChainProblem:
    position: int  # 0-based index into the entries as stored (by seq)
    seq: int | None
    message: str


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def entry_hash(seq: int, ts: str, kind: str, payload_text: str, prev_hash: str) -> str:
    """sha256 of the canonical JSON of {seq, ts, kind, payload, prev}. The stored payload is already
    canonical JSON, so it is spliced in as is rather than parsed and re-serialised (the gate hashes
    the whole ledger when it opens); a payload stored in any other form no longer matches its hash."""
    text = encode_basestring  # json.dumps(value, ensure_ascii=False) of a str, without its overhead
    wrapper = f'{{"kind":{text(kind)},"payload":{payload_text},"prev":{text(prev_hash)},"seq":{int(seq)},"ts":{text(ts)}}}'
    return sha256_hex(wrapper.encode("utf-8"))


def append(session: Session, kind: str, payload: dict[str, Any]) -> LedgerEntry:
    """Append one entry in the caller's transaction (locks the head row until commit)."""
    head = session.execute(select(LedgerHeadRow).where(LedgerHeadRow.id == 1).with_for_update()).scalar_one()
    seq, prev_hash = head.seq + 1, head.hash
    ts = utc_now()
    payload_text = canonical_json(payload).decode("utf-8")
    digest = entry_hash(seq, ts, kind, payload_text, prev_hash)
    session.add(LedgerRow(seq=seq, ts=ts, kind=kind, payload=payload_text, prev_hash=prev_hash, hash=digest))
    head.seq, head.hash = seq, digest
    session.flush()
    return LedgerEntry(seq, ts, kind, payload_text, prev_hash, digest)


_COLUMNS = (LedgerRow.seq, LedgerRow.ts, LedgerRow.kind, LedgerRow.payload, LedgerRow.prev_hash, LedgerRow.hash)


def read_entries(session: Session) -> tuple[list[LedgerEntry], tuple[int, str]]:
    """All entries ordered by seq, and the head (seq, hash). Plain rows, not ORM objects: the gate
    reads the whole ledger when it opens."""
    rows = session.connection().execute(select(*_COLUMNS).order_by(LedgerRow.seq))
    entries = [LedgerEntry(*row) for row in rows]
    head = session.get(LedgerHeadRow, 1)
    return entries, ((head.seq, head.hash) if head else (0, GENESIS_HASH))


def read_entries_after(session: Session, seq: int) -> list[LedgerEntry]:
    rows = session.connection().execute(select(*_COLUMNS).where(LedgerRow.seq > seq).order_by(LedgerRow.seq))
    return [LedgerEntry(*row) for row in rows]


def continuation_problem(entries: list[LedgerEntry], seq: int, prev_hash: str) -> ChainProblem | None:
    """Do ``entries`` continue a verified chain that ends at entry ``seq`` with hash ``prev_hash``?"""
    for position, entry in enumerate(entries):
        problem = _entry_problem(position, entry, seq + position + 1, prev_hash)
        if problem is not None:
            return problem
        prev_hash = entry.hash
    return None


def _entry_problem(position: int, entry: LedgerEntry, expected_seq: int, prev: str) -> ChainProblem | None:
    if entry.seq != expected_seq:
        what = f"entry {expected_seq} is missing" if entry.seq > expected_seq else "entries out of order or duplicated"
        return ChainProblem(position, entry.seq, f"entry {entry.seq} found where entry {expected_seq} belongs ({what})")
    if entry.prev_hash != prev:
        return ChainProblem(position, entry.seq, f"entry {entry.seq} does not link to the entry before it (prev_hash mismatch)")
    if entry_hash(entry.seq, entry.ts, entry.kind, entry.payload, entry.prev_hash) != entry.hash:
        return ChainProblem(position, entry.seq, f"entry {entry.seq} was altered (content does not match its hash)")
    return None


def head_hash(session: Session) -> str | None:
    head = session.get(LedgerHeadRow, 1)
    return None if head is None or head.seq == 0 else head.hash


def find_chain_problem(entries: list[LedgerEntry], head: tuple[int, str]) -> ChainProblem | None:
    """The first entry at which the chain does not hold, or None if it is intact."""
    prev = GENESIS_HASH
    for position, entry in enumerate(entries):
        problem = _entry_problem(position, entry, position + 1, prev)
        if problem is not None:
            return problem
        prev = entry.hash
    head_seq, head_digest = head
    if head_seq != len(entries) or head_digest != prev:
        last = len(entries)
        if head_seq > last:
            return ChainProblem(last, last + 1, f"ledger ends at entry {last} but its head says {head_seq}: entries after {last} were removed")
        return ChainProblem(max(head_seq, 0), head_seq + 1, f"ledger head says entry {head_seq} is last, but the chain does not end there")
    return None
