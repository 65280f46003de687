"""Real photographs of older people (face_recognition's test images) made into short clips with a
camera move: every face is found in every frame and edited, and the report says exactly which frames."""
from __future__ import annotations

import json

import numpy as np
import pytest
from sqlalchemy import select

from face_helpers import camera_move, grainy_black_and_white, run_frames, still, still_consent
from vfx.consent.schema import LedgerRow
from vfx.errors import VfxError
from vfx.face.detect import FaceDetector
from vfx.face.rejuvenate import Rejuvenate
from vfx.face.tracks import DetectFaces

OP = "rejuvenate"
NAMES = ("biden", "obama2", "obama3")


@pytest.fixture(scope="module")
def stills():
    return {name: still(name) for name in NAMES}


@pytest.fixture(scope="module")
def boxes(stills):
    return {name: FaceDetector().detect(image)[0].box for name, image in stills.items()}


@pytest.fixture(scope="module")
def consent(tmp_path_factory, stills):
    return still_consent(tmp_path_factory.mktemp("consent"), {"biden": stills["biden"], "obama": stills["obama3"]}, (OP,))


def _clips(stills, boxes):
    return {
        "biden, colour, zoom and pan": camera_move(stills["biden"], boxes["biden"]),
        "biden, grainy black and white": grainy_black_and_white(camera_move(stills["biden"], boxes["biden"], zoom=1.1)),
        "obama2, large face": camera_move(stills["obama2"], boxes["obama2"], face=0.8, zoom=1.1, pan=0.1),
        "obama3, small face": camera_move(stills["obama3"], boxes["obama3"], size=(960, 540), face=0.1, zoom=1.2),
    }


def test_every_face_found_edited_and_reported_exactly(stills, boxes, consent):
    gate = consent.gate()
    for label, clip in _clips(stills, boxes).items():
        steps = [DetectFaces(gate=gate, operations=(OP,)), Rejuvenate(gate, 1.0)]
        out, faces, summaries = run_frames(steps, clip, name=label)
        found = [[f for f in fs if "detect" not in f.refused_ops] for fs in faces]
        assert all(len(fs) == 1 for fs in found), f"{label}: faces per frame {[len(fs) for fs in found]}"
        changed = [i for i in range(len(clip)) if not np.array_equal(out[i], clip[i])]
        assert changed == list(range(len(clip))), f"{label}: edited frames {changed}"
        report = summaries["rejuvenate"]
        assert report["edited_frames"] == [[0, len(clip) - 1]] and report["edited_count"] == len(changed)
        assert report["message"].startswith(f"{OP}: edited ")
    with consent.store.session() as session:
        rows = session.execute(select(LedgerRow).where(LedgerRow.kind == "gate.shot")).scalars().all()
    assert len(rows) == 4 and all(json.loads(r.payload)["edited_count"] == 6 for r in rows)


def test_nothing_edited_says_so(stills, boxes, tmp_path):
    """Obama holds a lipsync grant only: rejuvenate edits nothing and says why in one line."""
    consent = still_consent(tmp_path, {"obama": stills["obama3"]}, ("lipsync",))
    clip = camera_move(stills["obama2"], boxes["obama2"], frames=4, zoom=1.1, pan=0.1)
    gate = consent.gate()
    out, _, summaries = run_frames([DetectFaces(gate=gate, operations=(OP,)), Rejuvenate(gate, 1.0)], clip)
    assert np.array_equal(out, clip)
    report = summaries["rejuvenate"]
    assert report["message"].startswith("rejuvenate: edited nothing in 4 frames (no face held a grant); refused 1 face track"), report
    assert "no grant for operation 'rejuvenate'" in report["message"]
    assert report["refused_faces"][0]["subject"] == "obama" and report["refused_faces"][0]["frames"] == [[0, 3]]


def test_fail_policy_refuses_a_job_that_edited_nothing(stills, consent):
    """No face in the shot at all: the gate is never asked, so the step's own report must refuse."""
    clip = camera_move(still("building"), (300, 200, 120, 120), frames=2)
    gate = consent.gate("fail")
    with pytest.raises(VfxError, match=r"rejuvenate: edited nothing in 2 frames \(no face was found\).*policy 'fail'"):
        run_frames([DetectFaces(gate=gate, operations=(OP,)), Rejuvenate(gate, 1.0)], clip)
