"""How long the web page's one-frame previews take on this machine: the matte of a boxed subject,
the same tracked over the next 12 frames, a style thumbnail and a before/after frame.

These run the page's own functions (serving/web/preview.py) on vtest.avi frame 40, in process,
without HTTP; the page adds a JPEG/PNG encode and a local round trip. Noisy on a shared machine.

    python benchmarks/bench_web_preview.py [--repeats 5]
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from serving.web import preview  # noqa: E402
from vfx.video import FrameReader, FrameRange, probe  # noqa: E402

SAMPLE = REPO.parent / "shared" / "samples" / "vtest.avi"
WALKER = preview.SubjectPrompts(frame=40, box=(558, 228, 54, 108))


def timed(fn, repeats: int) -> list[float]:
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - started)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    info = probe(SAMPLE)
    frames = [rgb for _, rgb in FrameReader(info, FrameRange(40, 51)).frames()]
    matte = preview.subject_matte(frames[0], 40, [WALKER])
    rows = {
        "matte preview, 1 frame (GrabCut from the box)": lambda: preview.subject_matte(frames[0], 40, [WALKER]),
        "preview ahead, 12 frames (GrabCut + DIS flow)": lambda: preview.tracked_mattes(frames, 40, [WALKER]),
        "style thumbnail, oil (full frame, then 256 px)": lambda: preview.thumbnail(preview.restyled(frames[0], 40, "oil")),
        "style thumbnail, night": lambda: preview.thumbnail(preview.restyled(frames[0], 40, "night")),
        "before/after frame, oil around the matte": lambda: preview.restyled(frames[0], 40, "oil", None, matte),
    }
    print(f"vtest.avi {info.width}x{info.height}, frame 40, {args.repeats} runs each (median, min-max):\n")
    print("| preview | median s | range s |\n|---|---:|---:|")
    for name, fn in rows.items():
        seconds = timed(fn, args.repeats)
        print(f"| {name} | {statistics.median(seconds):.2f} | {min(seconds):.2f}-{max(seconds):.2f} |")


if __name__ == "__main__":
    main()
