"""Lip-sync on a real photograph of an older man made into a clip: how the mouth follows the dub.

    .venv/bin/python benchmarks/bench_face_lipsync.py

biden.jpg (face_recognition's test image) becomes a slow camera move as long as an espeak-ng line;
faces are found and tracked by DetectFaces and the classic mouth editor drives the mouth from the
line's visemes and loudness. Reports the correlation of the mouth opening (measured by face mesh on
the output) with the dub's loudness, and writes the widest openings to docs/face/lipsync_widest.jpg.
The closed source mouth has no interior to borrow, so the interior here is the rendered one.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_face_age import camera_move, still  # noqa: E402
from vfx.face.audio import load_audio, loudness  # noqa: E402
from vfx.face.contact import contact_sheet, face_crop  # noqa: E402
from vfx.face.detect import LOWER_LIP_INNER, UPPER_LIP_INNER, FaceDetector, face_scale  # noqa: E402
from vfx.face.lipsync import ClassicMouthWarp, load_mouth_track  # noqa: E402
from vfx.face.tracks import DetectFaces  # noqa: E402
from vfx.frames import FrameBatch, ShotState  # noqa: E402

LINE = "Folks, I have been saying this for a long time. Here is the deal."
FPS = 12.0


def main() -> None:
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is not installed (apt-get install espeak-ng)")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "line.wav"
        subprocess.run(["espeak-ng", "-s", "140", "-w", str(wav), LINE], check=True)
        mouth = load_mouth_track(str(wav))
        samples = load_audio(str(wav))
    image = still("biden")
    box = FaceDetector().detect(image)[0].box
    frames = camera_move(image, box, int(mouth.duration * FPS), zoom=1.1)
    shot = ShotState(frames.shape[2], frames.shape[1], FPS, 0, len(frames) - 1, source_path="biden.jpg")
    indices = np.arange(len(frames))
    times = indices / FPS
    opening, rounding = mouth.targets(times, FPS)
    warp = ClassicMouthWarp()
    detect = DetectFaces(FaceDetector())
    out = frames.copy()
    faces = []
    for start in range(0, len(frames), 8):
        part = slice(start, start + 8)
        batch = detect(FrameBatch(frames[part].copy(), indices[part], times[part]), shot)
        faces.extend(batch.faces)
    for i, frame_faces in enumerate(faces):
        usable = [f for f in frame_faces if "detect" not in f.refused_ops]
        if usable:
            warp(out[i], usable[0].landmarks, float(times[i]), float(opening[i]), float(rounding[i]))
    detector = FaceDetector()
    measured = []
    for picture in out:
        found = [f for f in detector.detect(picture) if f.skip_reason is None]
        lm = found[0].landmarks if found else None
        measured.append(np.nan if lm is None else
                        float(np.linalg.norm(lm[LOWER_LIP_INNER] - lm[UPPER_LIP_INNER]) / face_scale(lm)))
    measured = np.array(measured)
    ok = ~np.isnan(measured)
    envelope = loudness(samples, times, 2 / FPS)
    r = float(np.corrcoef(measured[ok], envelope[ok])[0, 1])
    widest = np.argsort(-np.nan_to_num(measured))[:4]
    sheet = []
    for i in sorted(widest):
        face = [f for f in faces[i] if "detect" not in f.refused_ops][0]
        sheet.append((face_crop(frames[i], face.box, 0.2), face_crop(out[i], face.box, 0.2), f"t={times[i]:.2f}s: source | dub"))
    path = contact_sheet(sheet, ROOT / "docs" / "face" / "lipsync_widest.jpg", tile=300)
    closeups = []
    for i in sorted(widest):
        face = [f for f in faces[i] if "detect" not in f.refused_ops][0]
        x, y, w, h = face.box
        mouth_box = (x + 0.1 * w, y + 0.45 * h, 0.8 * w, 0.6 * h)  # nose to chin
        closeups.append((face_crop(frames[i], mouth_box, 0.0), face_crop(out[i], mouth_box, 0.0), f"t={times[i]:.2f}s"))
    contact_sheet(closeups, ROOT / "docs" / "face" / "lipsync_closeup.jpg", tile=240)
    result = {"frames": len(frames), "measured": int(ok.sum()), "r_opening_loudness": r, "picture": str(path.relative_to(ROOT))}
    (ROOT / "benchmarks" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "benchmarks" / "results" / "face_lipsync.json").write_text(json.dumps(result, indent=1))
    print(f"mouth opening vs dub loudness over {ok.sum()}/{len(frames)} frames: r = {r:.2f} (target >= 0.8); {path}")


if __name__ == "__main__":
    main()
