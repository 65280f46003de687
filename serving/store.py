"""Job records in SQLite (one node) or PostgreSQL (a cluster): they outlive replicas and restarts of the app."""
from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (Boolean, Float, Integer, String, Text, UniqueConstraint, create_engine, event, func,
                        inspect, or_, select, text, update)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from vfx.consent.store import normalise_url

ACTIVE_STATES = ("queued", "running", "assembling")
FINAL_STATES = ("done", "failed", "cancelled")
SCHEMA_LOCK_KEY = 0x766678  # "vfx": a PostgreSQL advisory lock held while creating the tables


class Base(DeclarativeBase):
    pass


class JobRow(Base):
    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("owner", "idempotency_key"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    owner: Mapped[str] = mapped_column(String(200))
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    request_digest: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), index=True)
    input_path: Mapped[str] = mapped_column(Text)
    input_sha256: Mapped[str] = mapped_column(String(64))
    uploaded: Mapped[bool] = mapped_column(Boolean)
    config_json: Mapped[str] = mapped_column(Text)
    first_frame: Mapped[int] = mapped_column(Integer)
    last_frame: Mapped[int] = mapped_column(Integer)
    want_matte: Mapped[bool] = mapped_column(Boolean)
    job_dir: Mapped[str] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    concealed_packets: Mapped[int] = mapped_column(Integer, default=0)  # damaged video packets the probe found
    concealed_frames: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of frames the reader concealed
    files_deleted_at: Mapped[float | None] = mapped_column(Float, nullable=True)  # retention removed the job's files


class ChunkRow(Base):
    __tablename__ = "chunks"
    job_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    index: Mapped[int] = mapped_column(Integer, primary_key=True)
    process_first: Mapped[int] = mapped_column(Integer)  # decoded and processed from here (overlap)
    write_first: Mapped[int] = mapped_column(Integer)  # kept in the output from here
    last: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    frames_done: Mapped[int] = mapped_column(Integer, default=0)  # processed, overlap included
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    lease_holder: Mapped[str | None] = mapped_column(String(80), nullable=True)
    lease_until: Mapped[float | None] = mapped_column(Float, nullable=True)
    renders: Mapped[int] = mapped_column(Integer, default=0)  # renders that finished and were kept
    concealed: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of written frames the reader concealed


@dataclass(frozen=True)
class Chunk:
    job_id: str
    index: int
    process_first: int
    write_first: int
    last: int
    state: str = "pending"
    attempts: int = 0
    frames_done: int = 0
    error: str | None = None
    lease_holder: str | None = None
    lease_until: float | None = None
    renders: int = 0
    concealed: str = "[]"

    def leased(self, now: float) -> bool:
        """Being rendered by a worker that renewed its lease recently (it may outlive a job manager)."""
        return self.state == "running" and self.lease_until is not None and self.lease_until > now

    @property
    def write_count(self) -> int:
        return self.last - self.write_first + 1

    @property
    def process_count(self) -> int:
        return self.last - self.process_first + 1

    @property
    def written_so_far(self) -> int:
        if self.state == "done":
            return self.write_count
        return max(0, min(self.write_count, self.frames_done - (self.write_first - self.process_first)))


def _job_dict(row: JobRow) -> dict[str, Any]:
    return {c.name: getattr(row, c.name) for c in JobRow.__table__.columns}


def _chunk(row: ChunkRow) -> Chunk:
    return Chunk(**{c.name: getattr(row, c.name) for c in ChunkRow.__table__.columns})


class JobStore:
    """Job and chunk records. ``url``: SQLite for one node; PostgreSQL (``postgresql://user@host/db``,
    the consent store's URL style) when several nodes or replicas share the records."""

    def __init__(self, url: str):
        url = normalise_url(url)
        if url.startswith("sqlite"):
            self.engine = create_engine(url, connect_args={"timeout": 30})
            event.listen(self.engine, "connect", _sqlite_pragmas)
            Base.metadata.create_all(self.engine)
        else:
            self.engine = create_engine(url, pool_pre_ping=True)
            with self.engine.begin() as connection:  # replicas starting together must not race on CREATE TABLE
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
                Base.metadata.create_all(connection)
        self._add_missing_columns()

    def _add_missing_columns(self) -> None:
        """A database made by an older version gets the columns added since (all nullable or defaulted)."""
        inspector = inspect(self.engine)
        with self.engine.begin() as connection:
            for table in Base.metadata.sorted_tables:
                present = {c["name"] for c in inspector.get_columns(table.name)}
                for column in table.columns:
                    if column.name not in present:
                        default = column.default.arg if column.default is not None else None
                        literal = f" DEFAULT {default!r}" if isinstance(default, (int, float, str)) else ""
                        kind = column.type.compile(self.engine.dialect)
                        connection.execute(text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}{literal}'))

    @contextmanager
    def session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    def create_job(self, fields: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Insert a job; with an idempotency key already used by this owner, return that job instead."""
        row = JobRow(id=str(uuid.uuid4()), state="queued", created_at=time.time(), **fields)
        try:
            with self.session() as s:
                s.add(row)
            return _job_dict(row), True
        except IntegrityError:
            existing = self.find_by_idempotency_key(fields["owner"], fields["idempotency_key"])
            if existing is None:
                raise
            return existing, False

    def find_by_idempotency_key(self, owner: str, key: str | None) -> dict[str, Any] | None:
        if key is None:
            return None
        with self.session() as s:
            row = s.scalar(select(JobRow).where(JobRow.owner == owner, JobRow.idempotency_key == key))
            return _job_dict(row) if row else None

    def job(self, job_id: str) -> dict[str, Any] | None:
        with self.session() as s:
            row = s.get(JobRow, job_id)
            return _job_dict(row) if row else None

    def jobs_of(self, owner: str | None, limit: int = 100) -> list[dict[str, Any]]:
        with self.session() as s:
            query = select(JobRow).order_by(JobRow.created_at.desc()).limit(limit)
            if owner is not None:
                query = query.where(JobRow.owner == owner)
            return [_job_dict(r) for r in s.scalars(query)]

    def active_jobs(self) -> list[tuple[str, str]]:
        """(id, state) of every queued, running or assembling job, oldest first."""
        with self.session() as s:
            return [(r.id, r.state) for r in s.execute(select(JobRow.id, JobRow.state)
                                                       .where(JobRow.state.in_(ACTIVE_STATES)).order_by(JobRow.created_at))]

    def active_job_ids(self) -> list[str]:
        with self.session() as s:
            return list(s.scalars(select(JobRow.id).where(JobRow.state.in_(ACTIVE_STATES)).order_by(JobRow.created_at)))

    def set_state(self, job_id: str, state: str, only_from: tuple[str, ...] = ACTIVE_STATES, **fields: Any) -> bool:
        """Move a job to ``state`` unless it already left the active states (a cancel wins)."""
        with self.session() as s:
            result = s.execute(update(JobRow).where(JobRow.id == job_id, JobRow.state.in_(only_from))
                               .values(state=state, **fields))
            return result.rowcount == 1

    def state_of(self, job_id: str) -> str | None:
        with self.session() as s:
            return s.scalar(select(JobRow.state).where(JobRow.id == job_id))

    def ensure_chunks(self, job_id: str, planned: list[Chunk]) -> list[Chunk]:
        """Record the chunk plan once; a resumed job keeps the plan (and finished chunks) it had."""
        with self.session() as s:
            existing = list(s.scalars(select(ChunkRow).where(ChunkRow.job_id == job_id).order_by(ChunkRow.index)))
            if existing:
                return [_chunk(r) for r in existing]
            for c in planned:
                s.add(ChunkRow(job_id=c.job_id, index=c.index, process_first=c.process_first,
                               write_first=c.write_first, last=c.last, state="pending", attempts=0, frames_done=0))
        return planned

    def chunks(self, job_id: str) -> list[Chunk]:
        with self.session() as s:
            return [_chunk(r) for r in s.scalars(select(ChunkRow).where(ChunkRow.job_id == job_id).order_by(ChunkRow.index))]

    def chunk(self, job_id: str, index: int) -> Chunk | None:
        with self.session() as s:
            row = s.get(ChunkRow, (job_id, index))
            return _chunk(row) if row else None

    def take_lease(self, job_id: str, index: int, holder: str, lease_s: float) -> int | None:
        """Start an attempt on a chunk unless it is done or another worker holds a live lease on it.
        Atomic (one UPDATE), so two workers sent the same chunk cannot both render it. Returns the attempt."""
        now = time.time()
        with self.session() as s:
            claimed = s.execute(
                update(ChunkRow).where(ChunkRow.job_id == job_id, ChunkRow.index == index, ChunkRow.state != "done",
                                       or_(ChunkRow.state != "running", ChunkRow.lease_until.is_(None),
                                           ChunkRow.lease_until <= now, ChunkRow.lease_holder == holder))
                .values(state="running", attempts=ChunkRow.attempts + 1, frames_done=0, lease_holder=holder,
                        lease_until=now + lease_s))
            if claimed.rowcount != 1:
                return None
            return s.scalar(select(ChunkRow.attempts).where(ChunkRow.job_id == job_id, ChunkRow.index == index))

    def renew_lease(self, job_id: str, index: int, holder: str, lease_s: float, **fields: Any) -> bool:
        with self.session() as s:
            return s.execute(update(ChunkRow).where(ChunkRow.job_id == job_id, ChunkRow.index == index,
                                                    ChunkRow.lease_holder == holder)
                             .values(lease_until=time.time() + lease_s, **fields)).rowcount == 1

    def finish_chunk(self, job_id: str, index: int, holder: str, frames: int, concealed: str = "[]") -> bool:
        """Mark done (the caller made the files durable first); False if the lease was lost meanwhile."""
        with self.session() as s:
            return s.execute(update(ChunkRow).where(ChunkRow.job_id == job_id, ChunkRow.index == index,
                                                    ChunkRow.lease_holder == holder, ChunkRow.state == "running")
                             .values(state="done", frames_done=frames, error=None, lease_holder=None,
                                     lease_until=None, renders=ChunkRow.renders + 1, concealed=concealed)).rowcount == 1

    def release_lease(self, job_id: str, index: int, holder: str, error: str | None) -> None:
        with self.session() as s:
            s.execute(update(ChunkRow).where(ChunkRow.job_id == job_id, ChunkRow.index == index,
                                             ChunkRow.lease_holder == holder)
                      .values(state="pending", lease_holder=None, lease_until=None, error=error))

    def count_jobs(self, states: tuple[str, ...], owner: str | None = None) -> int:
        with self.session() as s:
            query = select(func.count()).select_from(JobRow).where(JobRow.state.in_(states))
            if owner is not None:
                query = query.where(JobRow.owner == owner)
            return int(s.scalar(query))

    def jobs_with_files(self, owner: str | None = None) -> list[dict[str, Any]]:
        """Every job whose folder retention has not removed yet (oldest first)."""
        with self.session() as s:
            query = select(JobRow).where(JobRow.files_deleted_at.is_(None)).order_by(JobRow.created_at)
            if owner is not None:
                query = query.where(JobRow.owner == owner)
            return [_job_dict(r) for r in s.scalars(query)]

    def job_with_dir(self, job_dir: str) -> dict[str, Any] | None:
        with self.session() as s:
            row = s.scalar(select(JobRow).where(JobRow.job_dir == job_dir))
            return _job_dict(row) if row else None

    def update_job(self, job_id: str, **fields: Any) -> None:
        with self.session() as s:
            s.execute(update(JobRow).where(JobRow.id == job_id).values(**fields))

    def start_attempt(self, job_id: str, index: int) -> int:
        with self.session() as s:
            row = s.get(ChunkRow, (job_id, index))
            row.attempts += 1
            row.state = "running"
            row.frames_done = 0
            return row.attempts

    def update_chunk(self, job_id: str, index: int, **fields: Any) -> None:
        with self.session() as s:
            s.execute(update(ChunkRow).where(ChunkRow.job_id == job_id, ChunkRow.index == index).values(**fields))


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
