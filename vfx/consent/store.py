"""Opening the consent database: a SQLite file or a PostgreSQL server, by SQLAlchemy URL."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from vfx.consent.home import default_db_url
from vfx.consent.schema import Base, LedgerHeadRow
from vfx.errors import VfxError

GENESIS_HASH = "0" * 64
_SCHEMA_LOCK_KEY = 0x76667863  # "vfxc": serialises CREATE TABLE across replicas on PostgreSQL


def normalise_url(url: str) -> str:
    """Plain ``postgresql://`` URLs use psycopg 3 (the driver vfx ships), not psycopg2."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _sqlite_engine(url: str) -> Engine:
    database = url.split(":///", 1)[-1]
    if database and database != ":memory:" and not Path(database).parent.is_dir():
        raise VfxError(f"consent database {database}: directory does not exist")
    engine = create_engine(url, connect_args={"timeout": 30})

    # pysqlite's own transaction handling defers BEGIN; take the write lock at BEGIN instead, so
    # two processes appending to the ledger queue up rather than fail or fork the chain.
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA foreign_keys=ON")
        dbapi_connection.execute("PRAGMA busy_timeout=30000")

    @event.listens_for(engine, "begin")
    def _begin(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


class ConsentStore:
    """The database holding subjects, grants, revocations and the ledger."""

    def __init__(self, url: str | None = None):
        self.url = normalise_url(url or default_db_url())
        try:
            if self.url.startswith("sqlite"):
                self.engine = _sqlite_engine(self.url)
            else:
                self.engine = create_engine(self.url, pool_pre_ping=True)
            self._create_schema()
        except (SQLAlchemyError, ImportError) as exc:
            raise VfxError(f"cannot open consent database {self.display_url}: {_first_line(exc)}") from exc

    @property
    def display_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True) if hasattr(self, "engine") else self.url

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def _create_schema(self) -> None:
        with self.engine.begin() as connection:
            if self.engine.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK_KEY})
            Base.metadata.create_all(connection)
        try:
            with self.session() as session:
                if session.get(LedgerHeadRow, 1) is None:
                    session.add(LedgerHeadRow(id=1, seq=0, hash=GENESIS_HASH))
        except IntegrityError:
            pass  # another replica created the head row first

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed on success, rolled back on any error."""
        session = Session(self.engine, expire_on_commit=False)
        try:
            with session.begin():
                yield session
        except OperationalError as exc:
            raise VfxError(f"consent database {self.display_url}: {_first_line(exc)}") from exc
        finally:
            session.close()

    def close(self) -> None:
        self.engine.dispose()


def _first_line(exc: BaseException) -> str:
    message = str(getattr(exc, "orig", None) or exc)
    return message.strip().splitlines()[0] if message.strip() else type(exc).__name__
