"""Consent on a real PostgreSQL server (.ci/postgres.sh): concurrent replicas keep one chain."""
from __future__ import annotations

import multiprocessing
import os
import uuid
from collections.abc import Iterator

import pytest

from consent_helpers import days, enrolled_embeddings, faces_in_test_frame
from vfx.consent import ledger
from vfx.consent.gate import GateConfig, open_gate
from vfx.consent.grants import issue_grant, revoke_grant
from vfx.consent.keys import key_id, public_key_text
from vfx.consent.store import ConsentStore
from vfx.consent.subjects import enroll
from vfx.consent.verify import verify_store

PG_URL = os.environ.get("VFX_TEST_PG_URL")
pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not PG_URL, reason="VFX_TEST_PG_URL is not set; start a server with: eval \"$(.ci/postgres.sh start)\""),
]


@pytest.fixture()
def pg_url() -> Iterator[str]:
    """A fresh database on the test server, dropped afterwards."""
    import psycopg

    name = f"vfx_test_{uuid.uuid4().hex[:12]}"
    admin = PG_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    base = admin.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def append_many(url: str, writer: int, count: int) -> None:
    store = ConsentStore(url)  # every replica also races to create the schema
    for n in range(count):
        with store.session() as session:
            ledger.append(session, "job.started", {"writer": writer, "n": n})
    store.close()


def test_concurrent_writers_keep_one_unbroken_chain(pg_url: str) -> None:
    writers, each = 4, 25
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=append_many, args=(pg_url, w, each)) for w in range(writers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
        assert process.exitcode == 0
    store = ConsentStore(pg_url)
    report = verify_store(store)
    assert report.ok, report.problems
    assert report.entries == writers * each
    with store.session() as session:
        entries, _ = ledger.read_entries(session)
    assert sorted((e.data["writer"], e.data["n"]) for e in entries) == [(w, n) for w in range(writers) for n in range(each)]


def test_gate_grant_and_revocation_on_postgres(pg_url: str, tmp_path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    store = ConsentStore(pg_url)
    holder = Ed25519PrivateKey.generate()
    trusted = {key_id(public_key_text(holder.public_key())): public_key_text(holder.public_key())}
    enroll(store, "megamind", enrolled_embeddings(), "Megamind.avi frames 30-55", key=holder)
    grant = issue_grant(store, holder, "megamind", "doc-1", ["lipsync"], days(-1), days(1))
    gate = open_gate(pg_url, "doc-1", "skip", GateConfig(revocation_interval_s=0), trusted=trusted)
    faces = gate.apply(faces_in_test_frame(), "lipsync", frame=80, shot="s1")
    assert faces[0].allowed_ops == {"lipsync": grant.grant_id} and "lipsync" in faces[1].refused_ops
    revoke_grant(store, holder, grant.grant_id, "withdrawn")
    assert gate.check(faces[0].embedding, "lipsync", frame=81, shot="s1").reason == f"grant {grant.grant_id} revoked"
    gate.record_shot({"shot": "s1"})
    assert gate.ledger_head() is not None and verify_store(store).ok
