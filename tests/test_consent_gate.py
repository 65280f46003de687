"""The gate on real footage: only the consented face changes, every refusal is explained in the ledger."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from consent_helpers import TEST_FRAME, days, enrolled_embeddings, faces_in_test_frame, faces_of_test_frame, frame
from vfx.consent.gate import ConsentGate, GateConfig, open_gate
from vfx.consent.grants import issue_grant, revoke_grant
from vfx.consent.keys import generate_key, key_id, load_private_key, public_key_text
from vfx.consent.schema import LedgerRow
from vfx.consent.store import ConsentStore
from vfx.consent.subjects import authorize, enroll
from vfx.consent.verify import verify_store
from vfx.errors import VfxError

PROJECT = "doc-1"


class Setup:
    def __init__(self, tmp: Path):
        self.url = f"sqlite:///{tmp / 'consent.db'}"
        self.store = ConsentStore(self.url)
        self.holder = load_private_key(generate_key(tmp / "holder.key")[0].with_suffix(""))
        self.rogue = load_private_key(generate_key(tmp / "rogue.key")[0].with_suffix(""))
        holder_pub = public_key_text(self.holder.public_key())
        self.trusted = {key_id(holder_pub): holder_pub}
        enroll(self.store, "megamind", enrolled_embeddings(), "Megamind.avi frames 30-55", key=self.holder)

    def grant(self, project=PROJECT, ops=("rejuvenate",), start=-1, end=30, key=None):
        return issue_grant(self.store, key or self.holder, "megamind", project, list(ops), days(start), days(end))

    def delegate_and_grant(self, key):
        """The holder makes ``key`` an authority of megamind (it is not trusted by the studio), which grants."""
        authorize(self.store, self.holder, "megamind", "add", public_key_text(key.public_key()))
        return self.grant(key=key)

    def gate(self, policy="skip", interval=0.0) -> ConsentGate:
        return open_gate(self.url, PROJECT, policy, GateConfig(revocation_interval_s=interval), trusted=self.trusted)

    def ledger(self, kind: str) -> list[dict]:
        with self.store.session() as session:
            rows = session.execute(select(LedgerRow).where(LedgerRow.kind == kind).order_by(LedgerRow.seq)).scalars()
            return [json.loads(row.payload) for row in rows]


@pytest.fixture()
def setup(tmp_path: Path) -> Setup:
    return Setup(tmp_path)


def invert_allowed_faces(image: np.ndarray, faces: list[Face], operation: str) -> np.ndarray:
    """The test's likeness step: inverts the pixels of every face the gate allowed, nothing else."""
    out = image.copy()
    for face in faces:
        if operation in face.allowed_ops:
            x, y, w, h = (int(round(v)) for v in face.box)
            out[y:y + h, x:x + w] = 255 - out[y:y + h, x:x + w]
    return out


def box_mask(shape, box) -> np.ndarray:
    x, y, w, h = (int(round(v)) for v in box)
    mask = np.zeros(shape[:2], bool)
    mask[y:y + h, x:x + w] = True
    return mask


def run_step(gate: ConsentGate, operation: str) -> tuple[np.ndarray, np.ndarray, list[Face]]:
    image = frame(TEST_FRAME)
    faces = gate.apply(faces_in_test_frame(), operation, frame=TEST_FRAME, shot="shot-1")
    return image, invert_allowed_faces(image, faces, operation), faces


def test_granted_face_changes_and_the_other_stays_pixel_identical(setup: Setup) -> None:
    grant = setup.grant()
    gate = setup.gate()
    before, after, (granted, other) = run_step(gate, "rejuvenate")
    assert granted.subject == "megamind" and granted.allowed_ops == {"rejuvenate": grant.grant_id}
    assert other.subject is None and "no enrolled subject matches" in other.refused_ops["rejuvenate"]
    inside = box_mask(before.shape, granted.box)
    assert np.abs(after[inside].astype(int) - before[inside]).mean() > 50
    assert np.array_equal(after[~inside], before[~inside])
    assert np.array_equal(after[box_mask(before.shape, other.box)], before[box_mask(before.shape, other.box)])
    gate.record_shot({"shot": "shot-1", "source": "Megamind.avi"})
    (summary,) = setup.ledger("gate.shot")
    edited = [d for d in summary["decisions"] if d["edited"]]
    assert edited == [{"subject": "megamind", "operation": "rejuvenate", "grant_id": grant.grant_id, "reason": "",
                       "edited": True, "frames": [[TEST_FRAME, TEST_FRAME]], "frame_count": 1}]
    assert gate.grant_ids_used() == [grant.grant_id]
    assert verify_store(setup.store).ok


REFUSALS = {
    "no grant": (lambda s: None, "no grant for 'megamind' in project 'doc-1'"),
    "expired": (lambda s: s.grant(start=-30, end=-1), "expired"),
    "not yet valid": (lambda s: s.grant(start=2, end=30), "not valid before"),
    "revoked": (lambda s: revoke_grant(s.store, s.holder, s.grant().grant_id, "withdrawn"), "revoked"),
    "other project": (lambda s: s.grant(project="other"), "has grants only in other"),
    "other operation": (lambda s: s.grant(ops=("lipsync",)), "no grant for operation 'rejuvenate'"),
    "untrusted key": (lambda s: s.delegate_and_grant(s.rogue), "signed by untrusted key"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_each_refusal_leaves_the_frame_identical_and_is_in_the_ledger(setup: Setup, case: str) -> None:
    prepare, expected_reason = REFUSALS[case]
    prepare(setup)
    gate = setup.gate()
    before, after, (face, _) = run_step(gate, "rejuvenate")
    assert np.array_equal(before, after)
    assert face.subject == "megamind" and not face.allowed_ops
    assert expected_reason in face.refused_ops["rejuvenate"]
    gate.record_shot({"shot": "shot-1"})
    (summary,) = setup.ledger("gate.shot")
    reasons = [d["reason"] for d in summary["decisions"] if d["subject"] == "megamind"]
    assert len(reasons) == 1 and expected_reason in reasons[0] and not any(d["edited"] for d in summary["decisions"])
    assert verify_store(setup.store).ok


def test_revocation_mid_job_stops_further_edits(setup: Setup) -> None:
    grant = setup.grant()
    gate = setup.gate(interval=0.0)
    embedding = faces_of_test_frame()[1][0]
    assert gate.check(embedding, "rejuvenate", frame=1).allowed
    revoke_grant(ConsentStore(setup.url), setup.holder, grant.grant_id, "actor withdrew")
    decision = gate.check(embedding, "rejuvenate", frame=2)
    assert not decision.allowed and decision.reason == f"grant {grant.grant_id} revoked"


def test_fail_policy_refuses_the_job_and_records_why(setup: Setup) -> None:
    setup.grant()
    gate = setup.gate(policy="fail")
    with pytest.raises(VfxError, match="no enrolled subject matches"):
        gate.apply(faces_in_test_frame(), "rejuvenate", frame=TEST_FRAME)
    (refusal,) = setup.ledger("gate.refused")
    assert "no enrolled subject matches" in refusal["reason"]


def test_near_tie_between_two_subjects_is_refused_as_ambiguous(setup: Setup) -> None:
    enroll(setup.store, "lookalike", enrolled_embeddings() + 0.001, "synthetic near-duplicate", key=setup.holder)
    setup.grant()
    decision = setup.gate().check(faces_of_test_frame()[1][0], "rejuvenate")
    assert not decision.allowed and decision.reason.startswith("ambiguous match")


def test_grant_does_not_survive_swapping_the_subject_reference_faces(setup: Setup) -> None:
    setup.grant()
    other_face = faces_of_test_frame()[1][1]
    with setup.store.engine.begin() as connection:  # an attacker re-points the subject at someone else
        connection.exec_driver_sql("UPDATE consent_subjects SET embeddings = ? WHERE name = 'megamind'",
                                   (np.repeat(other_face[None], 3, 0).astype("<f4").tobytes(),))
    decision = setup.gate().check(other_face, "rejuvenate")
    assert not decision.allowed and "reference faces of 'megamind' differ from its signed enrolment" in decision.reason
    assert any("stored reference faces differ from its signed enrolment" in p for p in verify_store(setup.store).problems)


def test_a_key_that_is_not_the_subjects_authority_cannot_grant_or_revoke(setup: Setup) -> None:
    with pytest.raises(VfxError, match="not an authority of 'megamind'"):
        setup.grant(key=setup.rogue)
    grant = setup.grant()
    with pytest.raises(VfxError, match="neither an authority of 'megamind' nor the grant's issuer"):
        revoke_grant(setup.store, setup.rogue, grant.grant_id, "not mine to withdraw")
    assert setup.gate().check(faces_of_test_frame()[1][0], "rejuvenate").allowed


def test_enrolment_without_a_key_is_refused(setup: Setup) -> None:
    with pytest.raises(VfxError, match="needs the rights holder's key"):
        enroll(setup.store, "hal", enrolled_embeddings(), "no one's consent")
