"""How long the consent gate takes to open, and ``vfx consent verify`` to run, as the ledger grows.

The gate rebuilds who may speak for whom by replaying the signed documents of the whole
hash-chained ledger (and checking the chain) when a job opens it, so its cost grows with the
ledger: this measures it on a real SQLite file with one subject, one grant and N per-shot entries
shaped like the face steps' summaries. Usage: python benchmarks/bench_consent.py [N ...]
"""
from __future__ import annotations

import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vfx.consent import ledger
from vfx.consent.gate import GateConfig, open_gate
from vfx.consent.grants import issue_grant
from vfx.consent.keys import key_id, public_key_text
from vfx.consent.store import ConsentStore
from vfx.consent.subjects import enroll
from vfx.consent.verify import verify_store

SHOT = {"project": "reel-1", "policy": "skip", "shot": "reel.mov#0-95", "step": "rejuvenate", "operation": "rejuvenate",
        "tracks": [{"track": t, "subject": "roxanne", "grant_ids": ["g-0123456789abcdef"], "edited": [[0, 95]],
                    "refused": [], "reasons": []} for t in range(3)], "decisions": []}


def measure(entries: int, directory: Path) -> tuple[float, float]:
    url = f"sqlite:///{directory / f'consent-{entries}.db'}"
    store = ConsentStore(url)
    holder = Ed25519PrivateKey.generate()
    embeddings = np.random.default_rng(0).normal(size=(8, 128)).astype(np.float32)
    enroll(store, "roxanne", embeddings, "bench", key=holder)
    now = datetime.now(timezone.utc)
    issue_grant(store, holder, "roxanne", "reel-1", ["rejuvenate"], now - timedelta(days=1), now + timedelta(days=30))
    with store.session() as session:
        for _ in range(entries):
            ledger.append(session, "gate.shot", SHOT)
    public = public_key_text(holder.public_key())
    started = time.perf_counter()
    gate = open_gate(url, "reel-1", "skip", GateConfig(), trusted={key_id(public): public})
    opened = time.perf_counter() - started
    assert gate.check(embeddings[0], "rejuvenate").allowed
    started = time.perf_counter()
    assert verify_store(store).ok
    return opened, time.perf_counter() - started


if __name__ == "__main__":
    sizes = [int(n) for n in sys.argv[1:]] or [1_000, 10_000, 50_000]
    with tempfile.TemporaryDirectory() as tmp:
        print("| ledger entries | gate open (s) | vfx consent verify (s) |")
        print("|---:|---:|---:|")
        for n in sizes:
            opened, verified = measure(n, Path(tmp))
            print(f"| {n + 2} | {opened:.2f} | {verified:.2f} |")
