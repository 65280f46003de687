"""Person matte CPU time per frame, before issue 11 and now, in one run on the same frames.

"Before" is vfx/segment/person.py as it was at the commit given by --before (git show), run
against today's vfx/matte.py; "after" is the working tree's PersonSegmenter. CPU time is the
process's (every thread), per frame, after a few warm-up frames; the machine is shared, so
numbers are noisy.

    .venv/bin/python benchmarks/bench_matte.py                 # 120 frames of vtest.avi
    .venv/bin/python benchmarks/bench_matte.py --frames 300 --first 0
    .venv/bin/python benchmarks/bench_matte.py --pictures docs   # also the README's matte pictures
    .venv/bin/python benchmarks/bench_matte.py --edge            # prompted matte's edge: guided filter vs band matting
    .venv/bin/python benchmarks/bench_matte.py --edge-elsewhere  # the same subject over other footage than the test's
    .venv/bin/python benchmarks/bench_matte.py --edge-elsewhere --seeds 4  # 15 stretches, four GrabCut starts each
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vfx.frames import FrameBatch, ShotState  # noqa: E402
from vfx.matte import matte_preview  # noqa: E402
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
    parser.add_argument("--pictures", help="write the before/after matte pictures into this folder")
    parser.add_argument("--edge", action="store_true", help="only the prompted matte's edge refinement on the soft-edged clip")
    parser.add_argument("--edge-elsewhere", action="store_true",
                        help="the whole prompted matte on the soft-edged subject over other stretches of footage")
    parser.add_argument("--seeds", type=int, default=1,
                        help="with --edge-elsewhere: over 15 stretches, the mean of this many GrabCut k-means starts each")
    parser.add_argument("--hair", type=hair_colour, default=(38, 28, 22),
                        help="with --edge-elsewhere: the strands' colour R,G,B (the tests' dark brown unless given)")
    args = parser.parse_args()
    if args.edge:
        edge_refinement()
        return
    if args.edge_elsewhere:
        edge_elsewhere(hair=args.hair) if args.seeds == 1 else edge_over_seeds(args.seeds, args.hair)
        return
    info = probe(args.video)
    frames = list(FrameReader(info, FrameRange(args.first, args.first + args.frames - 1)).frames())
    fps = float(info.fps)
    print(f"person matte, {len(frames)} frames of {Path(args.video).name} at {info.width}x{info.height}, "
          f"CPU ms/frame after {WARM_UP} warm-up frames (all threads), wall ms/frame incl. start-up")
    rows = [("before (" + args.before + ")", person_segmenter_at(args.before)()), ("after", PersonSegmenter())]
    previews = []
    for label, segmenter in rows:
        cpu, wall, shot = cpu_ms_per_frame(segmenter, frames, fps)
        previews.append(matte_preview(frames[-1][1], segmenter(FrameBatch(frames[-1][1][None], np.array([frames[-1][0]]),
                                                                          np.array([0.0])), shot).matte[0]))
        state = shot.steps.get("segment")
        calls = (f"   {state.model_calls / len(frames):.1f} segmentation + {state.pose_calls / len(frames):.2f} pose calls/frame"
                 if hasattr(state, "model_calls") else "   13 segmentation calls/frame (whole frame + 12 tiles)")
        print(f"  {label:18s} CPU {cpu:6.1f} ms/frame   wall {wall:6.1f} ms/frame{calls}")
    if args.pictures:
        write_pictures(Path(args.pictures), previews)


def write_pictures(folder: Path, person_previews: list[np.ndarray]) -> None:
    """People before/after (tripod, sign, litter gone), and a night composite's edge: outward feather vs alpha-over."""
    sys.path.insert(0, str(ROOT / "tests"))
    from clip_helpers import soft_clip  # the soft-edged cut-out whose true alpha is known

    from vfx.matte import feather, soft_edge
    from vfx.restyle.composite import composite_frame

    folder.mkdir(parents=True, exist_ok=True)
    people = np.hstack([cv2.resize(p, None, fx=0.6, fy=0.6, interpolation=cv2.INTER_AREA) for p in person_previews])
    write_png(folder / "matte_people_before_after.png", people)
    with tempfile.TemporaryDirectory() as tmp:
        pattern, truths, corners = soft_clip(Path(tmp), 1)
        frame = next(iter(FrameReader(probe(pattern)).frames()))[1]
    hard = truths[0] > 0.5
    night = np.clip(frame.astype(np.float32) * [0.25, 0.3, 0.45], 0, 255).astype(np.uint8)
    old = composite_frame(frame, night, feather(hard, 6.0))
    new = composite_frame(frame, night, soft_edge(frame, hard, 6.0))
    x, y = corners[0]
    crop = (slice(max(0, y - 30), y + 90), slice(max(0, x - 10), x + 120))
    zoom = [cv2.resize(img[crop], None, fx=3, fy=3, interpolation=cv2.INTER_NEAREST) for img in (old, new)]
    write_png(folder / "matte_edge_night_before_after.png", np.hstack(zoom))


def edge_refinement(frames: int = 16) -> None:
    """The tracked outline of the soft-edged cut-out (known true alpha), refined by the guided filter
    (before) and by closed-form matting in the trimap band (after): edge-band alpha error and ms/frame."""
    sys.path.insert(0, str(ROOT / "tests"))
    from clip_helpers import soft_clip
    from matte_metrics import edge_alpha_error, iou

    from vfx.matte import band_matting, resize_matte, soft_edge
    from vfx.segment.prompt import PromptSegmenter
    from vfx.segment.prompts import SubjectPrompt

    class TrackedOutline(PromptSegmenter):  # the tracker's hard outline, before any edge refinement
        def _full_matte(self, mask: np.ndarray, rgb: np.ndarray, *_: object) -> np.ndarray:  # the rest: edge inputs
            return resize_matte(mask.astype(np.float32), rgb.shape[1], rgb.shape[0]) > 0.5

    with tempfile.TemporaryDirectory() as tmp:
        pattern, truths, corners = soft_clip(Path(tmp), frames)
        pictures = [rgb for _, rgb in FrameReader(probe(pattern)).frames()]
    px, py = corners[0]
    tracker = TrackedOutline(SubjectPrompt(0, (px + 1, py - 17, 112, 140)))
    h, w = pictures[0].shape[:2]
    shot = ShotState(width=w, height=h, fps=25.0, first_frame=0, last_frame=frames - 1)
    tracker.prepare(shot, None)
    start = time.process_time()
    outlines = tracker(FrameBatch(np.stack(pictures), np.arange(frames), np.arange(frames) / 25.0), shot).matte
    tracking_ms = 1000 * (time.process_time() - start) / frames
    print(f"prompted matte edge, soft-edged cut-out, {frames} frames at {w}x{h} (true alpha known), width 6 px:")
    print(f"  tracked outline (flow, GrabCut, motion tests; first frame's person check included): CPU {tracking_ms:5.1f} ms/frame, "
          f"IoU {np.mean([iou(o, t > 0.5) for o, t in zip(outlines, truths)]):.3f}")
    for label, refine in (("before: guided filter", soft_edge), ("after: band matting", band_matting)):
        refine(pictures[0], outlines[0], 6.0)  # warm-up (numba compiles pymatting's Laplacian once)
        start = time.process_time()
        alphas = [refine(rgb, hard, 6.0) for rgb, hard in zip(pictures, outlines)]
        ms = 1000 * (time.process_time() - start) / frames
        error, perfect = np.mean([edge_alpha_error(a, t) for a, t in zip(alphas, truths)], axis=0)
        print(f"  {label:22s} edge-band alpha error {error:.3f} (perfect hard cut {perfect:.3f})   CPU {ms:5.1f} ms/frame")


STRETCHES = [("vtest.avi", start) for start in (20, 100, 200, 300, 400, 500, 600, 700)] + \
            [("Megamind.avi", start) for start in (10, 50, 100, 200, 240)] + [("Megamind_bugy.avi", 20), ("Megamind_bugy.avi", 160)]


def hair_colour(text: str) -> tuple[int, int, int]:
    """--hair's R,G,B, each 0-255."""
    try:
        colour = tuple(int(v) for v in text.split(","))
    except ValueError:
        colour = ()
    if len(colour) != 3 or not all(0 <= v <= 255 for v in colour):
        raise argparse.ArgumentTypeError(f"expected R,G,B with each 0-255, e.g. 120,115,100; got {text!r}")
    return colour


def soft_alpha(video: str, start: int, frames: int = 16,
               hair: tuple[int, int, int] = (38, 28, 22)) -> tuple[np.ndarray, np.ndarray]:
    """The prompted matte `vfx run` writes for the soft-edged cut-out (strands of colour ``hair``) over ``video``
    from ``start``, and the truth."""
    import functools

    sys.path.insert(0, str(ROOT / "tests"))
    import clip_helpers

    from vfx.segment.prompt import PromptSegmenter
    from vfx.segment.prompts import SubjectPrompt

    original = clip_helpers.background
    clip_helpers.background = functools.partial(original, start=start, video=video)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            pattern, truths, corners = clip_helpers.soft_clip(Path(tmp), frames, hair=hair)
            pictures = [rgb for _, rgb in FrameReader(probe(pattern)).frames()]
    finally:
        clip_helpers.background = original
    px, py = corners[0]
    segmenter = PromptSegmenter(SubjectPrompt(0, (px + 1, py - 17, 112, 140)), feather_px=6.0)
    h, w = pictures[0].shape[:2]
    shot = ShotState(width=w, height=h, fps=25.0, first_frame=0, last_frame=frames - 1)
    segmenter.prepare(shot, None)
    return segmenter(FrameBatch(np.stack(pictures), np.arange(frames), np.arange(frames) / 25.0), shot).matte, truths


def edge_over_seeds(seeds: int, hair: tuple[int, int, int] = (38, 28, 22)) -> None:
    """Edge-band alpha error over ``STRETCHES``, each the mean over ``seeds`` GrabCut k-means starts: one start
    alone moves a stretch by up to 0.02, more than most changes to compare."""
    sys.path.insert(0, str(ROOT / "tests"))
    from matte_metrics import edge_alpha_error

    import vfx.segment.prompt as prompt

    seeded = prompt.seed_frame
    errors = {}
    try:
        for offset in range(seeds):
            prompt.seed_frame = lambda number, offset=offset: cv2.setRNGSeed(number + 1 + 1000 * offset)
            for video, start in STRETCHES:
                alphas, truths = soft_alpha(video, start, hair=hair)
                errors.setdefault((video, start), []).append(np.mean([edge_alpha_error(a, t)[0] for a, t in zip(alphas, truths)]))
    finally:
        prompt.seed_frame = seeded
    print(f"prompted matte, soft-edged cut-out (strands {hair}), 16 frames, edge-band alpha error, mean of {seeds} "
          "GrabCut starts (perfect hard cut 0.103):")
    for (video, start), values in errors.items():
        print(f"  {video} from frame {start:3d}: {np.mean(values):.3f}")
    for name in ("vtest", "Megamind"):
        means = [np.mean(v) for (video, _), v in errors.items() if video.startswith(name)]
        print(f"  mean {name}: {np.mean(means):.4f} (worst {max(means):.3f})")


def edge_elsewhere(frames: int = 16, hair: tuple[int, int, int] = (38, 28, 22)) -> None:
    """The soft-edged subject over stretches of footage the test does not use: edge-band alpha error,
    IoU and boundary F of the prompted matte (what `vfx run --subject box:...` writes), so a change
    tuned to the test's background shows here."""
    sys.path.insert(0, str(ROOT / "tests"))
    from matte_metrics import boundary_f, edge_alpha_error, iou

    print(f"prompted matte, soft-edged cut-out over other footage, {frames} frames, width 6 px:")
    for video, start in (("vtest.avi", 20), ("vtest.avi", 300), ("vtest.avi", 500), ("vtest.avi", 700), ("Megamind.avi", 10),
                         ("Megamind.avi", 100), ("Megamind.avi", 200), ("Megamind_bugy.avi", 160)):
        alphas, truths = soft_alpha(video, start, frames, hair)
        error, perfect = np.mean([edge_alpha_error(a, t) for a, t in zip(alphas, truths)], axis=0)
        hard = [(a > 0.5, t > 0.5) for a, t in zip(alphas, truths)]
        print(f"  {video} from frame {start:3d}: edge-band alpha error {error:.3f} (perfect hard cut {perfect:.3f})   "
              f"IoU {np.mean([iou(a, t) for a, t in hard]):.3f}   boundary F {np.mean([boundary_f(a, t) for a, t in hard]):.3f}")


def write_png(path: Path, rgb: np.ndarray) -> None:
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    print(f"  wrote {path}")


if __name__ == "__main__":
    main()
