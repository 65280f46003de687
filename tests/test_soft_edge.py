"""Soft alpha at the subject's edge, on a subject with hair-like strands and a feathered rim whose true alpha is known."""
from __future__ import annotations

import cv2
import numpy as np

from clip_helpers import soft_clip
from matte_metrics import edge_alpha_error, edge_band, mean_boundary_f, mean_iou
from video_helpers import read_all
from vfx.config import PipelineConfig, with_overrides
from vfx.job import JobSpec, run_job
from vfx.matte import disc, feather, soft_edge
from vfx.restyle.composite import composite_frame

FRAMES = 16


def test_box_prompt_gives_soft_alpha_at_the_edge(tmp_path):
    pattern, truths, corners = soft_clip(tmp_path, FRAMES)
    px, py = corners[0]
    subject = f"box:{px + 1},{py - 17},112,140@0"  # about 4 px around the head's strands and the body
    config = with_overrides(PipelineConfig(), {"segment.subject": [subject], "restyle.style": "night"})
    run_job(JobSpec(pattern, str(tmp_path / "out.%04d.png"), config, matte=str(tmp_path / "m.%04d.png")))
    _, mattes = read_all(tmp_path / "m.%04d.png")
    _, frames = read_all(pattern)
    alpha = mattes[..., 0].astype(np.float32) / 255.0
    iou = mean_iou(alpha > 0.5, truths > 0.5)
    bf = mean_boundary_f(alpha > 0.5, truths > 0.5)
    errors = np.array([edge_alpha_error(a, t) for a, t in zip(alpha, truths)])
    ours, perfect_cut = errors.mean(axis=0)
    # the same tracked outline, as a hard matte and with the outward feather the compositor used to get
    hard = np.mean([edge_alpha_error((a > 0.5).astype(np.float32), t)[0] for a, t in zip(alpha, truths)])
    feathered = np.mean([edge_alpha_error(feather(a > 0.5, 6.0), t)[0] for a, t in zip(alpha, truths)])
    # frames 3 on have a clean plate (the world seen there 3-12 frames back): the background beside the subject
    haze = np.mean([a[edge_band(t) & (t == 0)].mean() for a, t in zip(alpha[3:], truths[3:])])
    print(f"\nsoft-edged subject, box prompt, {FRAMES} frames: IoU {iou:.3f}, boundary F {bf:.3f}; edge-band alpha error "
          f"{ours:.3f} (same outline hard {hard:.3f}, outward feather {feathered:.3f}, perfect hard cut of the truth {perfect_cut:.3f}); "
          f"mean alpha on the background in the edge band, frames 3-{FRAMES - 1}: {haze:.3f}")
    assert ((alpha > 0.02) & (alpha < 0.98)).mean() > 0.001, "the matte has fractional alpha at its edge"
    assert iou >= 0.85
    assert ours < hard and ours < 0.75 * feathered
    # closed-form matting in the band took this from 0.167 (guided filter alone) to 0.151, keeping textured
    # pixels that move with the world out of the subject to 0.147, keeping the subject's grass that its own
    # motion explains (photometric test) to 0.123, a band as wide inside as out and the solver's faint haze
    # snapped to 0 to 0.113, and where the outline is ragged (it fills the gaps between the hair strands) a
    # band twice as deep inside with the prior nearly off to 0.093: the target, below a perfect hard
    # cut of the true matte (0.103); a clean plate of the world from 3-12 frames back, to 0.084; and outside the
    # hard cut, alpha 0 where the pixel is the world the plate shows, to 0.079; alpha measured over the frames
    # as the world slides behind the edge, to 0.055
    assert ours < perfect_cut
    assert haze <= 0.06  # 0.088 before the plate's world was taken out of band matting's haze, 0.039 after


def test_soft_edge_from_the_true_outline_beats_a_perfect_hard_cut(tmp_path):
    """Given the right outline, the guided filter recovers strands and rim better than any hard matte can."""
    pattern, truths, _ = soft_clip(tmp_path, 4)
    _, frames = read_all(pattern)
    errors = np.array([edge_alpha_error(soft_edge(f, t > 0.5, 3.0), t) for f, t in zip(frames, truths)])
    ours, perfect_cut = errors.mean(axis=0)
    print(f"\nsoft edge from the true outline: edge-band alpha error {ours:.3f}, perfect hard cut {perfect_cut:.3f}")
    assert ours < 0.75 * perfect_cut


def test_night_composite_has_no_daylight_halo(tmp_path):
    """Edge pixels carry their share of restyled background, not the bright original one."""
    pattern, truths, _ = soft_clip(tmp_path, 2)
    _, frames = read_all(pattern)
    frame, truth = frames[1], truths[1]
    night = (frame.astype(np.float32) * 0.3).astype(np.uint8)  # a dark restyle of the whole frame
    out = composite_frame(frame, night, truth)
    band = edge_band(truth) & (truth > 0) & (truth < 1)
    outward = composite_frame(frame, night, feather(truth > 0.5, 6.0))
    ring = (feather(truth > 0.5, 6.0) > 0) & (truth == 0)
    assert np.array_equal(out[truth >= 1.0], frame[truth >= 1.0])
    assert np.array_equal(out[truth <= 0.0], night[truth <= 0.0])
    halo_old = np.abs(outward[ring].astype(int) - night[ring].astype(int)).mean()
    halo_new = np.abs(out[ring].astype(int) - night[ring].astype(int)).mean()
    print(f"\nnight composite: outside the subject, old outward feather leaves {halo_old:.1f} levels of daylight, alpha-over {halo_new:.1f}; "
          f"edge band mean level {out[band].mean():.1f} vs source {frame[band].mean():.1f}")
    assert halo_new == 0 and halo_old > 10
    assert out[band].mean() < frame[band].mean() - 10


def boxed_over_megamind(tmp_path, frames: int, start: int) -> tuple[np.ndarray, np.ndarray]:
    """``vfx run`` with the soft-edged subject boxed on frame 0, over Megamind.avi from ``start``: its alpha and the truth."""
    return boxed(tmp_path, frames, start=start, video="Megamind.avi")


def boxed(tmp_path, frames: int, **clip) -> tuple[np.ndarray, np.ndarray]:
    """``vfx run`` with the soft-edged subject (``soft_clip``'s options) boxed on frame 0: its alpha and the truth."""
    pattern, truths, corners = soft_clip(tmp_path, frames, **clip)
    px, py = corners[0]
    config = with_overrides(PipelineConfig(), {"segment.subject": [f"box:{px + 1},{py - 17},112,140@0"]})
    run_job(JobSpec(pattern, str(tmp_path / "out.%04d.png"), config, matte=str(tmp_path / "m.%04d.png")))
    _, mattes = read_all(tmp_path / "m.%04d.png")
    return mattes[..., 0].astype(np.float32) / 255.0, truths


def strand_scores(alphas: np.ndarray, truths: np.ndarray) -> tuple[float, float, float, float]:
    """Mean alpha on the true strands and on the world between them, the edge-band alpha error and a perfect hard
    cut's, over the frames."""
    strand_alpha, between_alpha = [], []
    for a, t in zip(alphas, truths):
        strands, between = strands_and_between(t)
        strand_alpha.append(a[strands].mean())
        between_alpha.append(a[between].mean())
    ours, perfect_cut = np.mean([edge_alpha_error(a, t) for a, t in zip(alphas, truths)], axis=0)
    return float(np.mean(strand_alpha)), float(np.mean(between_alpha)), float(ours), float(perfect_cut)


def strands_and_between(truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The true strands (subject outside its opened body) and the wall between them (inside its closing, alpha ~0)."""
    subject = (truth > 0.5).astype(np.uint8)
    body = cv2.morphologyEx(subject, cv2.MORPH_OPEN, disc(2)).astype(bool)
    between = cv2.morphologyEx(subject, cv2.MORPH_CLOSE, disc(8)).astype(bool) & (truth < 0.02)
    return subject.astype(bool) & ~body, between


def test_key_frame_takes_dark_strands_on_a_dark_wall(tmp_path):
    """The same subject over Megamind.avi's near-black wall: the key frame's colours call the strands background
    (GrabCut learns its background from the whole frame's dark browns); their own motion to the next frame shows them."""
    alphas, truths = boxed_over_megamind(tmp_path, 2, 100)
    alpha, truth = alphas[0], truths[0]
    strands, between = strands_and_between(truth)
    ours, perfect_cut = edge_alpha_error(alpha, truth)
    print(f"\ndark strands on a dark wall, key frame: mean alpha on the strands {alpha[strands].mean():.2f}, on the wall "
          f"between them {alpha[between].mean():.2f}; edge-band alpha error {ours:.3f} (perfect hard cut {perfect_cut:.3f})")
    assert alpha[strands].mean() >= 0.1, "the key frame drops the whole fan of dark strands"  # 0.02 by colour alone
    assert alpha[between].mean() <= 0.05
    # 0.21 on the strands and error 0.185 before band matting was told which strands motion vouches for; 0.39, 0.150 after
    assert alpha[strands].mean() >= 0.3 and ours <= 0.17


def test_tracked_frames_keep_dark_strands_by_the_world_seen_before(tmp_path):
    """The subject over Megamind.avi's dark wall from frame 200, tracked: a few frames back the wall behind the
    strands was in sight (a clean plate), and the strands are what differs from it."""
    alphas, truths = boxed_over_megamind(tmp_path, FRAMES, 200)
    strand_alpha, between_alpha, ours, perfect_cut = strand_scores(alphas[8:], truths[8:])  # frames with a plate
    print(f"\ndark strands on a dark wall, tracked frames 8-15: mean alpha on the strands {strand_alpha:.2f}, on the "
          f"wall between them {between_alpha:.2f}; edge-band alpha error {ours:.3f} (perfect hard cut {perfect_cut:.3f})")
    assert strand_alpha >= 0.45, "the tracked frames drop the dark strands"  # 0.36 without the plate, 0.56 with
    # 0.06 before the strands the motion tests vouch for were pulled toward alpha 1 (0.10 after: their pull reaches the
    # wall beside them), while the edge-band error fell 0.114 -> 0.092; 0.07 with alpha measured over time
    assert between_alpha <= 0.1
    # 0.148 without the plate, 0.109 with; 0.092 with vouched strands: below a perfect hard cut; 0.062 with alpha
    # measured over time
    assert ours <= 0.103


def test_dark_strands_unlike_the_wall_only_in_hue_are_kept_before_any_plate(tmp_path):
    """Over Megamind.avi from frame 10 the brown strands are 5 grey levels from the dark red wall behind them, 22 in
    red: the motion tests must compare colour, not grey, and frames 1-7 have no clean plate yet to help."""
    alphas, truths = boxed_over_megamind(tmp_path, 8, 10)
    strand_alpha, between_alpha, ours, perfect_cut = strand_scores(alphas[1:], truths[1:])
    print(f"\nbrown strands on a dark red wall, frames 1-7: mean alpha on the strands {strand_alpha:.2f}, on the wall "
          f"between them {between_alpha:.2f}; edge-band alpha error {ours:.3f} (perfect hard cut {perfect_cut:.3f})")
    assert strand_alpha >= 0.45, "the strands are lost while tracking"  # 0.15 with grey residuals
    assert between_alpha <= 0.3
    assert ours <= 0.15  # 0.193 with grey residuals


def test_grey_strands_over_a_grey_road_are_measured_as_the_world_slides_behind_them(tmp_path):
    """Grey strands (120, 115, 100) over vtest.avi's grey road and green lawn: colour alone calls them road. Moved
    with the subject over the last frames, each strand pixel keeps its colour while the world behind it changes;
    how much its colour follows the world's is 1 - alpha."""
    strand_alpha, between_alpha, ours, perfect_cut = strand_scores(*boxed(tmp_path, FRAMES, hair=(120, 115, 100)))
    print(f"\ngrey strands over a grey road, {FRAMES} frames: mean alpha on the strands {strand_alpha:.2f}, on the "
          f"world between them {between_alpha:.2f}; edge-band alpha error {ours:.3f} (perfect hard cut {perfect_cut:.3f})")
    # before alpha was measured over time: 0.54 on the strands, 0.12 between them, error 0.135; after 0.70, 0.09, 0.085
    assert strand_alpha >= 0.65
    assert between_alpha <= 0.1
    assert ours <= perfect_cut


def test_alpha_is_how_little_a_pixel_follows_the_world_behind_it():
    """``_slope_alpha`` on pixels laid over real footage at known alphas: vtest.avi's world slides behind them over
    six frames; they are recovered where the world varied, and not claimed where the colours do not fit."""
    from conftest import SAMPLES
    from vfx.segment.prompt import _slope_alpha
    from vfx.video import FrameRange, FrameReader, probe

    frames = [rgb.astype(np.float32) for _, rgb in FrameReader(probe(SAMPLES / "vtest.avi"), FrameRange(300, 305)).frames()]
    worlds = [frame[200:260, 100 + 9 * k:180 + 9 * k] for k, frame in enumerate(frames)]  # the world slides by 9 px a frame
    alpha = np.tile(np.linspace(0.0, 1.0, 80, dtype=np.float32), (60, 1))
    subject = np.array([120, 115, 100], np.float32)  # grey strands' colour, near the road's
    colours = [alpha[..., None] * subject + (1 - alpha[..., None]) * world for world in worlds]
    measured, holds = _slope_alpha(colours, worlds)
    spread = np.std(np.stack(worlds), axis=0).max(axis=-1)
    print(f"\nalpha over time: holds on {holds.mean():.2f} of the pixels ({(spread > 20).mean():.2f} saw the world vary "
          f"by 20 levels); error there {np.abs(measured - alpha)[holds].mean():.4f}")
    assert holds[spread > 20].mean() > 0.9
    assert np.abs(measured - alpha)[holds].max() < 0.02
    # colours that change unrelated to the world behind (another part of the footage: the subject's motion was not
    # the shift assumed, or the world moved on its own) are not measured where they vary
    unrelated = [frame[100:160, 100 + 9 * k:180 + 9 * k] for k, frame in enumerate(frames)]
    varies = (np.std(np.stack(unrelated), axis=0).max(axis=-1) > 20) & (spread > 20)
    _, holds_wrong = _slope_alpha(unrelated, worlds)
    print(f"unrelated colours: held on {holds_wrong[varies].mean():.3f} of {varies.sum()} pixels where both vary")
    assert varies.sum() > 300 and holds_wrong[varies].mean() < 0.05
    # the world behind unknown (NaN) on all but two frames: too few to measure
    unknown = [world if k < 2 else np.full_like(world, np.nan) for k, world in enumerate(worlds)]
    assert not _slope_alpha(colours, unknown)[1].any()
