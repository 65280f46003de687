"""Person matte CPU time per frame, before issue 11 and now, in one run on the same frames.

"Before" is vfx/segment/person.py as it was at the commit given by --before (git show), run
against today's vfx/matte.py; "after" is the working tree's PersonSegmenter. CPU time is the
process's (every thread), per frame, after a few warm-up frames; the machine is shared, so
numbers are noisy.

    .venv/bin/python benchmarks/bench_matte.py                 # 120 frames of vtest.avi
    .venv/bin/python benchmarks/bench_matte.py --frames 300 --first 0
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vfx.frames import FrameBatch, ShotState  # noqa: E402
from vfx.segment.person import PersonSegmenter  # noqa: E402
from vfx.video import FrameRange, FrameReader, probe  # noqa: E402

WARM_UP = 5


def person_segmenter_at(commit: str) -> type:
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:vfx/segment/person.py"],
                            capture_output=True, text=True, check=True).stdout
    module = types.ModuleType(f"person_{commit}")
    exec(compile(source, f"person.py@{commit}", "exec"), module.__dict__)
    return module.PersonSegmenter


def cpu_ms_per_frame(segmenter, frames: list[tuple[int, np.ndarray]], fps: float) -> tuple[float, float, ShotState]:
    h, w = frames[0][1].shape[:2]
    shot = ShotState(width=w, height=h, fps=fps, first_frame=frames[0][0], last_frame=frames[-1][0])
    times = []
    start_wall = time.perf_counter()
    for number, rgb in frames:
        batch = FrameBatch(rgb[None], np.array([number]), np.array([number / fps]))
        start = time.process_time()
        segmenter(batch, shot)
        times.append(time.process_time() - start)
    wall = (time.perf_counter() - start_wall) / len(frames)
    return 1000 * float(np.mean(times[WARM_UP:])), 1000 * wall, shot


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--video", default=str(ROOT.parent / "shared" / "samples" / "vtest.avi"))
    parser.add_argument("--first", type=int, default=100)
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--before", default="782e650", help="commit whose person.py is the baseline")
    args = parser.parse_args()
    info = probe(args.video)
    frames = list(FrameReader(info, FrameRange(args.first, args.first + args.frames - 1)).frames())
    fps = float(info.fps)
    print(f"person matte, {len(frames)} frames of {Path(args.video).name} at {info.width}x{info.height}, "
          f"CPU ms/frame after {WARM_UP} warm-up frames (all threads), wall ms/frame incl. start-up")
    rows = [("before (" + args.before + ")", person_segmenter_at(args.before)()), ("after", PersonSegmenter())]
    for label, segmenter in rows:
        cpu, wall, shot = cpu_ms_per_frame(segmenter, frames, fps)
        state = shot.steps.get("segment")
        calls = (f"   {state.model_calls / len(frames):.1f} segmentation + {state.pose_calls / len(frames):.2f} pose calls/frame"
                 if hasattr(state, "model_calls") else "   13 segmentation calls/frame (whole frame + 12 tiles)")
        print(f"  {label:18s} CPU {cpu:6.1f} ms/frame   wall {wall:6.1f} ms/frame{calls}")


if __name__ == "__main__":
    main()
