"""Rejuvenation on real footage through the real consent gate: Roxanne granted, Hal not."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from sqlalchemy import select

from face_helpers import ARTIFACTS, HAL_FRAMES, MEGAMIND, ROXANNE_FRAMES, SHOT, granted, make_consent, new_shot, run_step
from vfx.consent.schema import LedgerRow
from vfx.errors import VfxError
from vfx.face.contact import contact_sheet, face_crop
from vfx.face.detect import EYES_AND_MOUTH, FaceDetector, face_scale
from vfx.face.rejuvenate import Rejuvenate, skin_mask
from vfx.face.tracks import DetectFaces
from vfx.frames import frame_ranges

OP = "rejuvenate"


@pytest.fixture(scope="module")
def consent(tmp_path_factory):
    return make_consent(tmp_path_factory.mktemp("consent"), (OP,))


@pytest.fixture(scope="module")
def result(consent):
    return run_step(Rejuvenate(consent.gate(), 1.0))


def _laplacian(image: np.ndarray) -> np.ndarray:
    return cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32), cv2.CV_32F)


def test_granted_face_edited_and_ungranted_identical(result):
    src, out, faces, summary = result
    edited = [i for i, f in enumerate(faces) if granted(f, OP)]
    numbers = {SHOT.first + i for i in edited}
    assert numbers <= set(ROXANNE_FRAMES) and len(numbers) >= 0.8 * len(ROXANNE_FRAMES)
    for i, number in enumerate(range(SHOT.first, SHOT.last + 1)):
        if number in HAL_FRAMES:
            assert faces[i] and all(OP in f.refused_ops for f in faces[i])
            assert np.array_equal(out[i], src[i]), f"Hal's frame {number} changed"
        if i not in edited:
            assert np.array_equal(out[i], src[i])
    subjects = summary["subjects"]
    assert subjects["roxanne"]["grant_ids"] and subjects["roxanne"]["edited"]
    assert subjects["hal"]["edited"] == [] and subjects["hal"]["refused"] == [[HAL_FRAMES[0], HAL_FRAMES[-1]]]


def _band(image: np.ndarray, fine: float, coarse: float) -> np.ndarray:
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return cv2.GaussianBlur(grey, (0, 0), fine) - cv2.GaussianBlur(grey, (0, 0), coarse)


def test_lines_fade_texture_stays_features_keep_shape(result):
    """Wrinkle-sized detail (the middle band) fades, pore-sized detail (Laplacian) stays: no plastic skin;
    eyes and mouth stay where they were (the reshape moves the jaw, not the features)."""
    src, out, faces, _ = result
    detector = FaceDetector()
    lines = [0.0, 0.0]
    pores = [0.0, 0.0]
    moved = []
    sheet = []
    edited = [i for i, f in enumerate(faces) if granted(f, OP)]
    for k, i in enumerate(edited):
        face = granted(faces[i], OP)
        mask = cv2.erode((skin_mask(src.shape[1:3], face.landmarks) > 0.5).astype(np.uint8), np.ones((7, 7))) > 0
        s = face_scale(face.landmarks)
        for j, image in enumerate((src[i], out[i])):
            lines[j] += float(np.mean(_band(image, 0.02 * s, 0.1 * s)[mask] ** 2))
            pores[j] += float(np.mean(_laplacian(image)[mask] ** 2))
        if k % 6 == 0:
            a = detector.detect(src[i])[0].landmarks[EYES_AND_MOUTH]
            b = detector.detect(out[i])[0].landmarks[EYES_AND_MOUTH]
            moved.append(float(np.linalg.norm(a - b, axis=1).mean()) / s)
        if k % 12 == 0:
            sheet.append((face_crop(src[i], face.box), face_crop(out[i], face.box), f"frame {SHOT.first + i}: before | after"))
    path = contact_sheet(sheet, ARTIFACTS / "rejuvenate_contact_sheet.png")
    print(f"\nwrinkle band kept {lines[1] / lines[0]:.0%}, pore band kept {pores[1] / pores[0]:.0%}, "
          f"eye/mouth shift {np.mean(moved):.3f} eye distances, sheet {path}")
    assert lines[1] <= 0.6 * lines[0]
    assert pores[1] >= 0.5 * pores[0]
    assert np.mean(moved) < 0.05


def test_temporal_jitter_not_worse(result):
    src, out, faces, _ = result
    edited = [i for i, f in enumerate(faces) if granted(f, OP)]
    pairs = [(i, i + 1) for i in edited if i + 1 in edited]
    jitter_src = jitter_out = 0.0
    for i, j in pairs:
        mask = skin_mask(src.shape[1:3], granted(faces[i], OP).landmarks) > 0.5
        jitter_src += float(np.abs(src[j].astype(np.int16) - src[i])[mask].mean())
        jitter_out += float(np.abs(out[j].astype(np.int16) - out[i])[mask].mean())
    print(f"\nframe-to-frame change in the edited region: source {jitter_src / len(pairs):.2f}, output {jitter_out / len(pairs):.2f}")
    assert jitter_out <= jitter_src


def test_shot_summary_in_ledger(consent, result):
    with consent.store.session() as session:
        rows = session.execute(select(LedgerRow).where(LedgerRow.kind == "gate.shot")).scalars().all()
    payloads = [json.loads(r.payload) for r in rows]
    mine = [p for p in payloads if p.get("operation") == OP]
    assert mine and mine[-1]["subjects"]["roxanne"]["grant_ids"] == [consent.grant_id]


def test_ledger_edited_frames_are_the_changed_frames(consent, result):
    """The audit record is exact: the frames the ledger says were edited are the frames whose pixels changed."""
    src, out, _, summary = result
    changed = frame_ranges([SHOT.first + i for i in range(len(src)) if not np.array_equal(src[i], out[i])])
    with consent.store.session() as session:
        rows = session.execute(select(LedgerRow).where(LedgerRow.kind == "gate.shot")).scalars().all()
    ledger = [json.loads(r.payload) for r in rows if json.loads(r.payload).get("operation") == OP][0]
    assert changed and ledger["edited_frames"] == changed == summary["edited_frames"]
    assert ledger["subjects"]["roxanne"]["edited"] == changed
    assert ledger["edited_count"] == sum(b - a + 1 for a, b in changed)
    assert ledger["message"].startswith(f"{OP}: edited roxanne on {ledger['edited_count']} frames")


def test_strength_out_of_range(consent):
    with pytest.raises(VfxError):
        Rejuvenate(consent.gate(), 1.5)


def test_revocation_mid_shot_stops_further_edits(tmp_path):
    """The grant is revoked after the second batch: later batches of the same shot stay untouched."""
    from vfx.consent.grants import revoke_grant
    from vfx.video import FrameReader, probe
    from vfx.video.probe import FrameRange

    consent = make_consent(tmp_path, (OP,))
    gate = consent.gate()
    detect, step = DetectFaces(gate=gate, operations=(OP,)), Rejuvenate(gate, 1.0)
    frames = FrameRange(156, 179)
    shot = new_shot(frames)
    changed = []
    for k, batch in enumerate(FrameReader(probe(str(MEGAMIND)), frames).batches(6)):
        if k == 2:
            revoke_grant(consent.store, consent.holder, consent.grant_id, "actor withdrew consent")
        before = batch.frames.copy()
        batch = step(detect(batch, shot), shot)
        changed.append(not np.array_equal(before, batch.frames))
    summary = step.finish(shot)
    assert changed == [True, True, False, False]
    assert summary["subjects"]["roxanne"]["edited"] == [[156, 167]]
    assert any("revoked" in r for r in summary["subjects"]["roxanne"]["reasons"])
