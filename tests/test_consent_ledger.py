"""The hash chain: any edited, deleted, swapped or inserted entry makes verification fail at that entry."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from vfx.consent import ledger
from vfx.consent.canonical import canonical_json
from vfx.consent.ledger import LedgerEntry, entry_hash, find_chain_problem
from vfx.consent.store import GENESIS_HASH, ConsentStore
from vfx.consent.verify import verify_store

REPO = Path(__file__).resolve().parents[1]

payloads = st.dictionaries(st.text(min_size=1, max_size=8), st.one_of(st.integers(), st.text(max_size=12), st.booleans()),
                           max_size=3)


def build_chain(items: list[dict]) -> tuple[list[LedgerEntry], tuple[int, str]]:
    entries, prev = [], GENESIS_HASH
    for seq, payload in enumerate(items, start=1):
        text = canonical_json(payload).decode()
        ts = f"2026-01-01T00:00:{seq % 60:02d}.000000Z"
        digest = entry_hash(seq, ts, "test.event", text, prev)
        entries.append(LedgerEntry(seq, ts, "test.event", text, prev, digest))
        prev = digest
    return entries, (len(entries), prev)


chains = st.lists(payloads, min_size=2, max_size=12).map(build_chain)


@settings(deadline=None)  # no timing assertions: the test machine is shared
@given(chains)
def test_an_untouched_chain_verifies(chain) -> None:
    assert find_chain_problem(*chain) is None


@settings(max_examples=150, deadline=None)
@given(chains, st.data())
def test_an_edited_entry_is_found(chain, data) -> None:
    entries, head = chain
    i = data.draw(st.integers(0, len(entries) - 1))
    field = data.draw(st.sampled_from(["ts", "kind", "payload", "prev_hash", "hash", "seq"]))
    old = getattr(entries[i], field)
    new = {"ts": lambda: old + "1", "kind": lambda: old + "x", "payload": lambda: canonical_json({"forged": old}).decode(),
           "prev_hash": lambda: "f" * 64, "hash": lambda: "e" * 64, "seq": lambda: old + 100}[field]()
    entries = entries[:i] + [dataclasses.replace(entries[i], **{field: new})] + entries[i + 1:]
    problem = find_chain_problem(entries, head)
    assert problem is not None and problem.position == i


@settings(max_examples=100, deadline=None)
@given(chains, st.data())
def test_a_deleted_entry_is_found(chain, data) -> None:
    entries, head = chain
    i = data.draw(st.integers(0, len(entries) - 1))
    problem = find_chain_problem(entries[:i] + entries[i + 1:], head)
    assert problem is not None and problem.position == i and problem.seq == (i + 2 if i < len(entries) - 1 else i + 1)


@settings(max_examples=100, deadline=None)
@given(chains, st.data())
def test_swapped_entries_are_found(chain, data) -> None:
    entries, head = chain
    i = data.draw(st.integers(0, len(entries) - 2))
    j = data.draw(st.integers(i + 1, len(entries) - 1))
    swapped = list(entries)
    swapped[i], swapped[j] = swapped[j], swapped[i]
    problem = find_chain_problem(swapped, head)
    assert problem is not None and problem.position == i


@settings(max_examples=100, deadline=None)
@given(chains, st.data(), payloads)
def test_an_inserted_entry_is_found(chain, data, payload) -> None:
    """Even a forged entry that links correctly to its predecessor breaks the chain right after it."""
    entries, head = chain
    i = data.draw(st.integers(0, len(entries)))
    prev = entries[i - 1].hash if i else GENESIS_HASH
    text = canonical_json(payload).decode()
    forged = LedgerEntry(i + 1, "2026-01-01T00:00:00.000000Z", "grant.issued", text, prev,
                         entry_hash(i + 1, "2026-01-01T00:00:00.000000Z", "grant.issued", text, prev))
    problem = find_chain_problem(entries[:i] + [forged] + entries[i:], head)
    assert problem is not None and problem.position == (i + 1 if i < len(entries) else i)  # past the head: the entry itself


def make_store(tmp_path: Path, count: int) -> ConsentStore:
    store = ConsentStore(f"sqlite:///{tmp_path / 'consent.db'}")
    for n in range(count):
        with store.session() as session:
            ledger.append(session, "job.started", {"job": n})
    return store


def run_cli(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "VFX_HOME": str(home), "PYTHONPATH": str(REPO)}
    env.pop("VFX_CONSENT_DB", None)
    return subprocess.run([sys.executable, "-m", "vfx.cli", *args], capture_output=True, text=True, env=env, cwd=REPO)


def test_verify_command_names_the_edited_entry_in_a_real_database(tmp_path: Path) -> None:
    store = make_store(tmp_path, 5)
    assert verify_store(store).ok
    ok = run_cli("consent", "verify", home=tmp_path)
    assert ok.returncode == 0 and "ledger ok: 5 entries" in ok.stdout
    with store.engine.begin() as connection:
        payload = json.dumps({"job": 99}, separators=(",", ":"))
        connection.exec_driver_sql("UPDATE consent_ledger SET payload = ? WHERE seq = 3", (payload,))
    report = verify_store(store)
    assert report.broken_seq == 3 and "entry 3 was altered" in report.problems[0]
    broken = run_cli("consent", "verify", home=tmp_path)
    assert broken.returncode != 0 and "entry 3 was altered" in broken.stderr
    assert broken.stderr.count("\n") == 1 and "Traceback" not in broken.stderr


def test_truncating_the_tail_is_found(tmp_path: Path) -> None:
    store = make_store(tmp_path, 4)
    with store.engine.begin() as connection:
        connection.exec_driver_sql("DELETE FROM consent_ledger WHERE seq = 4")
    report = verify_store(store)
    assert report.broken_seq == 4 and "removed" in report.problems[0]


json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8),
                                     st.floats(allow_nan=False, allow_infinity=False)),
                           lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
                           max_leaves=8)


@settings(deadline=None)  # no timing assertions: the test machine is shared
@given(st.dictionaries(st.text(max_size=6), json_values, max_size=4), st.text(max_size=12), st.integers(1, 10**9))
def test_entry_hash_is_the_sha256_of_the_canonical_entry(payload, kind, seq) -> None:
    """The ledger hashes the stored canonical payload spliced into the entry; that must be exactly
    the sha256 of the canonical JSON of the whole entry, the definition chains were written with."""
    from vfx.consent.canonical import digest_of

    text = canonical_json(payload).decode()
    expected = digest_of({"seq": seq, "ts": "2026-01-01T00:00:00.000000Z", "kind": kind, "payload": json.loads(text),
                          "prev": GENESIS_HASH})
    assert entry_hash(seq, "2026-01-01T00:00:00.000000Z", kind, text, GENESIS_HASH) == expected
