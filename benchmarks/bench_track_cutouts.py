"""Box-prompted tracking on cut-outs and stretches of footage the tests do not use: mean and worst-frame IoU.

Each case lays a real cut-out (a region of a sample photograph with a chosen hard shape) over a window of
real footage that pans and zooms (tests/clip_helpers.py's ``background``), moving right at SPEED px a frame and
bobbing up and down; `vfx run`'s pipeline gets a box around it on frame 0. Quality only, no timing.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_track_cutouts.py
    PYTHONPATH=. .venv/bin/python benchmarks/bench_track_cutouts.py --size 768x576 --cases bigmessi:vtest.avi:100:6
"""
from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from clip_helpers import SAMPLES, background, compose  # noqa: E402
from video_helpers import read_all, write_sequence  # noqa: E402

from vfx.config import PipelineConfig, with_overrides  # noqa: E402
from vfx.job import JobSpec, run_job  # noqa: E402

CASES = ("messi:vtest.avi:100:6 building:vtest.avi:100:6 obama:vtest.avi:400:6 obama:vtest.avi:100:4 "
         "starry:vtest.avi:600:4 messi:vtest.avi:300:1 obama:vtest.avi:20:10 biden:vtest.avi:650:5 "
         "biden:Megamind.avi:5:3 building:Megamind.avi:100:5 starry:Megamind.avi:155:6 messi:Megamind.avi:225:8 "
         "obama:Megamind.avi:100:3").split()


def photo(name: str) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(SAMPLES / name)), cv2.COLOR_BGR2RGB)


def shape(h: int, w: int, kind: str) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    if kind == "blob":  # a head and a body
        cv2.ellipse(mask, (w // 2, h // 3), (w // 3, h // 3), 0, 0, 360, 1, -1)
        cv2.fillPoly(mask, [np.array([[w // 6, h // 2], [5 * w // 6, h // 2 - 5], [w - 5, h - 2], [5, h - 5]])], 1)
    elif kind == "tower":  # a landmark with a spire
        cv2.rectangle(mask, (w // 4, h // 3), (3 * w // 4, h - 1), 1, -1)
        cv2.fillPoly(mask, [np.array([[w // 4, h // 3], [w // 2, 2], [3 * w // 4, h // 3]])], 1)
    else:  # a vehicle
        cv2.rectangle(mask, (2, h // 2), (w - 3, h - 12), 1, -1)
        cv2.rectangle(mask, (w // 4, h // 5), (3 * w // 4, h // 2), 1, -1)
        cv2.circle(mask, (w // 4, h - 12), 10, 1, -1)
        cv2.circle(mask, (3 * w // 4, h - 12), 10, 1, -1)
    return mask.astype(bool)


SUBJECTS = {  # photograph region, size (w, h), shape
    "messi": (("messi5.jpg", slice(40, 300), slice(180, 420)), (110, 120), "blob"),
    "bigmessi": (("messi5.jpg", slice(40, 300), slice(180, 420)), (200, 220), "blob"),
    "building": (("building.jpg", slice(0, 300), slice(100, 400)), (90, 140), "tower"),
    "obama": (("obama2.jpg", slice(100, 700), slice(50, 580)), (110, 120), "blob"),
    "biden": (("biden.jpg", slice(200, 1200), slice(0, 970)), (120, 130), "blob"),
    "starry": (("starry_night.jpg", slice(100, 400), slice(100, 400)), (130, 80), "car"),
}


def clip(folder: Path, subject: str, video: str, start: int, speed: float, size: tuple[int, int],
         frames: int = 40) -> tuple[str, np.ndarray, str]:
    (name, rows, cols), (w, h), kind = SUBJECTS[subject]
    patch, mask = cv2.resize(photo(name)[rows, cols], (w, h)).astype(np.float32), shape(h, w, kind).astype(np.float32)
    pictures, truths = [], []
    for t, frame in enumerate(background(frames, start, video, size)):
        px, py = min(int(40 + speed * t), size[0] - w - 1), int(100 + 50 * np.sin(t / 8))
        picture, truth = compose(frame, patch, mask, px, py)
        pictures.append(picture)
        truths.append(truth > 0.5)
    ys, xs = np.nonzero(truths[0])
    box = f"box:{xs.min() - 4},{ys.min() - 4},{xs.max() - xs.min() + 9},{ys.max() - ys.min() + 9}@0"
    return write_sequence(folder, np.stack(pictures), first=0, pattern="c.%04d.png"), np.stack(truths), box


def run(case: str, size: tuple[int, int]) -> tuple[float, float, int]:
    subject, video, start, speed = case.split(":")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        pattern, truths, box = clip(folder, subject, video, int(start), float(speed), size)
        config = with_overrides(PipelineConfig(), {"segment.subject": [box], "restyle.style": "night"})
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            run_job(JobSpec(pattern, str(folder / "o.%04d.png"), config, matte=str(folder / "m.%04d.png")))
        mattes = read_all(folder / "m.%04d.png")[1][..., 0] > 127
    ious = [np.logical_and(m, t).sum() / max(1, np.logical_or(m, t).sum()) for m, t in zip(mattes, truths)]
    return float(np.mean(ious)), float(np.min(ious)), int(np.argmin(ious))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=CASES, help="SUBJECT:VIDEO:START:SPEED ...")
    parser.add_argument("--size", default="480x360", help="frame size WxH")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    print(f"| cut-out, footage from frame, px/frame ({args.size}) | mean IoU | worst frame |\n|---|---|---|")
    for case in args.cases:
        mean, worst, at = run(case, size)
        print(f"| {case} | {mean:.3f} | {worst:.3f} (#{at}) |", flush=True)


if __name__ == "__main__":
    main()
