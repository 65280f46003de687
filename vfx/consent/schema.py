"""Consent tables (SQLAlchemy 2). Documents are stored as the exact canonical JSON that was signed."""
from __future__ import annotations

from sqlalchemy import ForeignKey, Integer, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class SubjectRow(Base):
    __tablename__ = "consent_subjects"
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    enrolled_at: Mapped[str] = mapped_column(String(40))
    digest: Mapped[str] = mapped_column(String(64))  # sha256 of the float32 embedding bytes
    embeddings: Mapped[bytes] = mapped_column(LargeBinary)  # float32 [N, 128], row-major
    count: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(Text)
    backend: Mapped[str] = mapped_column(String(60))


class GrantRow(Base):
    __tablename__ = "consent_grants"
    grant_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    subject: Mapped[str] = mapped_column(String(200), ForeignKey("consent_subjects.name"), index=True)
    project: Mapped[str] = mapped_column(String(200), index=True)
    document: Mapped[str] = mapped_column(Text)  # canonical JSON of the signed grant
    signature: Mapped[str] = mapped_column(String(100))  # base64 Ed25519 signature of `document`


class RevocationRow(Base):
    __tablename__ = "consent_revocations"
    grant_id: Mapped[str] = mapped_column(String(40), ForeignKey("consent_grants.grant_id"), primary_key=True)
    document: Mapped[str] = mapped_column(Text)
    signature: Mapped[str] = mapped_column(String(100))


class LedgerRow(Base):
    __tablename__ = "consent_ledger"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    ts: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(40), index=True)
    payload: Mapped[str] = mapped_column(Text)  # canonical JSON
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class LedgerHeadRow(Base):
    """One row (id 1): the last sequence number and hash. Appenders lock it, so the chain stays linear."""

    __tablename__ = "consent_ledger_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))
