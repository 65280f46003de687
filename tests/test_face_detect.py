"""Detection, explicit skips and tracks on Megamind.avi."""
from __future__ import annotations

from face_helpers import MEGAMIND, new_shot
from vfx.face.detect import DetectorConfig, FaceDetector
from vfx.face.tracks import DetectFaces
from vfx.video import FrameReader, probe
from vfx.video.probe import FrameRange


def test_tracks_split_at_cut_and_smooth():
    shot = new_shot(FrameRange(146, 161))
    step = DetectFaces()
    faces = []
    for batch in FrameReader(probe(str(MEGAMIND)), FrameRange(146, 161)).batches(8):
        faces.extend(step(batch, shot).faces)
    ids = [[f.track_id for f in fs if "detect" not in f.refused_ops] for fs in faces]
    hal, roxanne = {i for fs in ids[:8] for i in fs}, {i for fs in ids[8:] for i in fs}
    assert len(hal) == 1 and len(roxanne) == 1 and hal != roxanne  # one track per shot side of the cut
    assert all(f.landmarks.shape == (478, 2) for fs in faces for f in fs if "detect" not in f.refused_ops)


def test_small_face_is_skipped_with_reason():
    """Roxanne's face is ~150 px in frame 160: above the default minimum, below a 200 px one."""
    (_, image), = list(FrameReader(probe(str(MEGAMIND)), FrameRange(160, 160)).frames())
    assert FaceDetector().detect(image)[0].skip_reason is None
    found = FaceDetector(DetectorConfig(min_size=200)).detect(image)
    assert found and all(f.skip_reason and "too small" in f.skip_reason for f in found)


def test_profile_face_is_skipped_with_reason():
    """Frame 80: Roxanne turned to the side."""
    (_, image), = list(FrameReader(probe(str(MEGAMIND)), FrameRange(80, 80)).frames())
    found = FaceDetector().detect(image)
    assert found and "profile" in found[0].skip_reason
