"""Rights holders speak only for their own subjects: property tests over random holders, delegations,
grants and revocations, and tamper tests on the database, all decided by the real gate on real
embeddings of Megamind.avi's two characters (frame 80)."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consent_helpers import days, enrolled_embeddings, faces_of_test_frame
from vfx.consent import documents, ledger
from vfx.consent.canonical import canonical_json
from vfx.consent.gate import ConsentGate, GateConfig, open_gate
from vfx.consent.grants import issue_grant, revoke_grant, subject_digest
from vfx.consent.keys import key_id, public_key_text
from vfx.consent.schema import GrantRow
from vfx.consent.store import ConsentStore
from vfx.consent.subjects import authorize, enroll
from vfx.consent.verify import verify_store
from vfx.errors import VfxError

PROJECT = "doc-1"
HOLDERS = [Ed25519PrivateKey.generate() for _ in range(4)]
PUBLIC = [public_key_text(k.public_key()) for k in HOLDERS]
TRUSTED = {key_id(p): p for p in PUBLIC}  # every holder is a trusted rights holder; authority is per subject
SUBJECTS = ("megamind", "minion")


def references(subject: str) -> np.ndarray:
    return enrolled_embeddings() if subject == "megamind" else faces_of_test_frame()[1][1][None]


def face_of(subject: str) -> np.ndarray:
    return faces_of_test_frame()[1][0 if subject == "megamind" else 1]


@dataclass
class Model:
    """The rule, written independently of vfx.consent.state: who is an authority at each step."""

    authorities: dict[str, set[int]] = field(default_factory=dict)
    grants: dict[str, tuple[str, int, bool]] = field(default_factory=dict)  # id -> (subject, signer, by an authority)
    revoked: set[str] = field(default_factory=set)

    def usable(self, subject: str) -> set[str]:
        return {g for g, (s, _, ok) in self.grants.items() if s == subject and ok and g not in self.revoked}


def force(store: ConsentStore, kind: str, name: str, signed: documents.Signed) -> None:
    """What someone with write access to the database can do: append a signed document unchecked."""
    with store.session() as session:
        if kind == "grant.issued":
            doc = signed.document
            session.add(GrantRow(grant_id=doc["grant_id"], subject=doc["subject"], project=doc["project"],
                                 document=canonical_json(doc).decode(), signature=signed.signature))
            session.flush()
        ledger.append(session, kind, {name: signed.document, "signature": signed.signature})


actions = st.lists(st.tuples(st.sampled_from(["add", "remove", "grant", "revoke"]), st.integers(0, 3),
                             st.sampled_from(SUBJECTS), st.integers(0, 3), st.booleans()), max_size=10)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(enrollers=st.tuples(st.integers(0, 3), st.integers(0, 3)), steps=actions)
def test_no_grant_from_a_key_that_is_not_the_subjects_authority_ever_edits(enrollers, steps) -> None:
    store = ConsentStore("sqlite:///:memory:")
    model = Model()
    for subject, holder in zip(SUBJECTS, enrollers):
        enroll(store, subject, references(subject), "Megamind.avi", key=HOLDERS[holder])
        model.authorities[subject] = {holder}
    for action, signer, subject, target, forced in steps:
        key, allowed_now = HOLDERS[signer], signer in model.authorities[subject]
        if action in ("add", "remove"):
            applies = allowed_now and (target not in model.authorities[subject] if action == "add"
                                       else target in model.authorities[subject] and len(model.authorities[subject]) > 1)
            signed = documents.authority(key, subject, action, PUBLIC[target])
            if forced:
                force(store, "authority.changed", "authority", signed)
            else:
                with pytest.raises(VfxError) if not applies else _nothing():
                    authorize(store, key, subject, action, PUBLIC[target])
            if applies:
                (model.authorities[subject].add if action == "add" else model.authorities[subject].discard)(target)
        elif action == "grant":
            if forced:
                signed = documents.grant(key, subject, subject_digest(store, subject), PROJECT, ["rejuvenate"], days(-1), days(1))
                force(store, "grant.issued", "grant", signed)
                model.grants[signed.document["grant_id"]] = (subject, signer, allowed_now)
            elif allowed_now:
                grant = issue_grant(store, key, subject, PROJECT, ["rejuvenate"], days(-1), days(1))
                model.grants[grant.grant_id] = (subject, signer, True)
            else:
                with pytest.raises(VfxError, match="not an authority"):
                    issue_grant(store, key, subject, PROJECT, ["rejuvenate"], days(-1), days(1))
        elif action == "revoke" and model.grants:
            grant_id = sorted(model.grants)[target % len(model.grants)]
            owner, issuer, _ = model.grants[grant_id]
            may = (signer in model.authorities[owner] or signer == issuer) and grant_id not in model.revoked
            signed = documents.revocation(key, grant_id, owner, "withdrawn")
            if forced:
                force(store, "grant.revoked", "revocation", signed)
            else:
                with pytest.raises(VfxError) if not may else _nothing():
                    revoke_grant(store, key, grant_id, "withdrawn")
            if may:
                model.revoked.add(grant_id)
    gate = ConsentGate(store, PROJECT, "skip", GateConfig(revocation_interval_s=0), TRUSTED)  # same in-memory db
    for subject in SUBJECTS:
        decision = gate.check(face_of(subject), "rejuvenate")
        assert decision.subject == subject
        if decision.allowed:
            assert decision.grant_id in model.usable(subject), (decision, model)
        else:
            assert not model.usable(subject), (decision.reason, model)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# -- tampering with the database ---------------------------------------------------------------------

class Studio:
    def __init__(self, tmp: Path):
        self.url = f"sqlite:///{tmp / 'consent.db'}"
        self.store = ConsentStore(self.url)
        self.holder, self.rogue = HOLDERS[0], HOLDERS[1]
        enroll(self.store, "megamind", references("megamind"), "Megamind.avi 30-55", key=self.holder)
        enroll(self.store, "minion", references("minion"), "Megamind.avi 80", key=self.rogue)
        self.grant = issue_grant(self.store, self.holder, "megamind", PROJECT, ["rejuvenate"], days(-1), days(30))

    def decide(self, subject: str, project: str = PROJECT):
        gate = open_gate(self.url, project, "skip", GateConfig(revocation_interval_s=0), trusted=TRUSTED)
        return gate.check(face_of(subject), "rejuvenate")

    def sql(self, statement: str, *args) -> None:
        with self.store.engine.begin() as connection:
            connection.exec_driver_sql(statement, args)

    def problems(self) -> list[str]:
        return verify_store(self.store).problems


@pytest.fixture()
def studio(tmp_path: Path) -> Studio:
    return Studio(tmp_path)


def test_untouched_database_verifies_and_the_granted_face_is_allowed(studio: Studio) -> None:
    assert studio.problems() == []
    assert studio.decide("megamind").allowed
    assert not studio.decide("minion").allowed


def test_grant_row_moved_to_another_subject(studio: Studio) -> None:
    studio.sql("UPDATE consent_grants SET subject = 'minion' WHERE grant_id = ?", studio.grant.grant_id)
    decision = studio.decide("minion")
    assert not decision.allowed and "no grant for 'minion'" in decision.reason
    (problem,) = studio.problems()
    assert f"grant {studio.grant.grant_id}" in problem and "stored as subject 'minion'" in problem


def test_grant_row_moved_to_another_project(studio: Studio) -> None:
    studio.sql("UPDATE consent_grants SET project = 'reel-9' WHERE grant_id = ?", studio.grant.grant_id)
    decision = studio.decide("megamind", project="reel-9")
    assert not decision.allowed and "no grant for 'megamind' in project 'reel-9'" in decision.reason
    (problem,) = studio.problems()
    assert f"grant {studio.grant.grant_id}" in problem and "project 'reel-9'" in problem and "project 'doc-1'" in problem


def test_revocation_deleted_from_its_table_still_refuses(studio: Studio) -> None:
    revoke_grant(studio.store, studio.holder, studio.grant.grant_id, "actor withdrew")
    studio.sql("DELETE FROM consent_revocations")
    decision = studio.decide("megamind")
    assert not decision.allowed and decision.reason == f"grant {studio.grant.grant_id} revoked"
    (problem,) = studio.problems()
    assert f"revocation of {studio.grant.grant_id} (ledger entry 4) is missing" in problem


def test_revocation_deleted_from_the_ledger_breaks_the_chain_and_refuses(studio: Studio) -> None:
    revoke_grant(studio.store, studio.holder, studio.grant.grant_id, "actor withdrew")
    studio.sql("DELETE FROM consent_revocations")
    studio.sql("DELETE FROM consent_ledger WHERE kind = 'grant.revoked'")
    decision = studio.decide("megamind")
    assert not decision.allowed and "consent ledger does not verify" in decision.reason
    assert any("entries after 3 were removed" in p for p in studio.problems())


def test_authority_added_without_a_valid_signature(studio: Studio) -> None:
    forged = documents.authority(studio.rogue, "megamind", "add", PUBLIC[1])  # rogue names itself
    force(studio.store, "authority.changed", "authority", forged)
    unsigned = documents.Signed({**forged.document, "issued_at": ledger.utc_now()}, "")
    force(studio.store, "authority.changed", "authority", unsigned)
    grant = documents.grant(studio.rogue, "megamind", subject_digest(studio.store, "megamind"), PROJECT, ["lipsync"],
                            days(-1), days(30))
    force(studio.store, "grant.issued", "grant", grant)
    gate = open_gate(studio.url, PROJECT, "skip", GateConfig(revocation_interval_s=0), trusted=TRUSTED)
    decision = gate.check(face_of("megamind"), "lipsync")
    assert not decision.allowed and "was not an authority of 'megamind'" in decision.reason
    problems = studio.problems()
    assert f"entry 4 (authority.changed): key {key_id(PUBLIC[1])} is not an authority of 'megamind'" in problems
    assert "entry 5 (authority.changed): vfx.consent.authority/1 signature does not verify" in problems
    assert any(p.startswith(f"entry 6 (grant.issued): grant {grant.document['grant_id']} signed by key") for p in problems)
    result = subprocess.run([sys.executable, "-m", "vfx.cli", "consent", "verify", "--db", studio.url],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and result.stderr.startswith("vfx: error: ledger verification failed (3 problem(s)): "
                                                               "entry 4 (authority.changed)"), result.stderr


def test_an_unsigned_enrolment_row_is_never_granted(studio: Studio) -> None:
    studio.sql("INSERT INTO consent_subjects VALUES ('hal', 'now', 'x', ?, 1, 'forged', 'dlib-resnet-v1')",
               np.asarray(face_of("minion"), "<f4")[None].tobytes())
    studio.sql("DELETE FROM consent_subjects WHERE name = 'minion'")
    decision = studio.decide("minion")
    assert decision.subject == "hal" and not decision.allowed
    assert "no enrolment signed by a rights holder" in decision.reason
    assert "subject 'hal' is stored but has no signed enrolment in the ledger" in studio.problems()


def test_a_removed_authority_cannot_backdate_a_grant(studio: Studio) -> None:
    authorize(studio.store, studio.holder, "megamind", "add", PUBLIC[2])
    early = documents.grant(HOLDERS[2], "megamind", subject_digest(studio.store, "megamind"), PROJECT, ["lipsync"],
                            days(-1), days(30))  # signed while an authority ...
    authorize(studio.store, studio.holder, "megamind", "remove", PUBLIC[2])
    with pytest.raises(VfxError, match="not an authority of 'megamind' when it was recorded"):
        from vfx.consent.records import record_grant

        record_grant(studio.store, early)  # ... but uploaded after the removal
    force(studio.store, "grant.issued", "grant", early)
    assert not studio.decide("megamind").allowed or studio.decide("megamind").grant_id == studio.grant.grant_id
    gate = open_gate(studio.url, PROJECT, "skip", GateConfig(revocation_interval_s=0), trusted=TRUSTED)
    assert not gate.check(face_of("megamind"), "lipsync").allowed


def test_uploads_round_trip_through_json(studio: Studio, tmp_path: Path) -> None:
    from vfx.consent.subjects import sign_enrolment
    from vfx.consent.uploads import enrolment_upload, record_upload

    upload = json.loads(json.dumps(enrolment_upload(sign_enrolment(HOLDERS[3], "hal", references("minion") + 0.5, "refs"),
                                                    references("minion") + 0.5)))
    with pytest.raises(VfxError, match="not by your key"):
        record_upload(studio.store, upload, signer=PUBLIC[0])
    assert record_upload(studio.store, upload, signer=PUBLIC[3]).startswith("enrolled hal")
    upload["document"]["subject"] = "hal2"
    with pytest.raises(VfxError, match="signature does not verify"):
        record_upload(studio.store, upload)


def test_a_malformed_grant_forced_into_the_ledger_is_refused_not_a_crash(studio: Studio) -> None:
    body = {"type": documents.GRANT, "subject": "megamind", "subject_digest": subject_digest(studio.store, "megamind"),
            "operations": ["rejuvenate"], "issuer": PUBLIC[0], "issued_at": ledger.utc_now()}  # no project, no validity
    forged = documents.sign(studio.holder, {**body, "grant_id": documents.grant_id_of(body)})
    with studio.store.session() as session:
        ledger.append(session, "grant.issued", {"grant": forged.document, "signature": forged.signature})
    assert studio.decide("megamind").grant_id == studio.grant.grant_id  # the genuine grant still counts
    assert any(p.startswith("entry 4 (grant.issued): grant g-") and "incomplete or malformed" in p for p in studio.problems())
