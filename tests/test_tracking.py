"""Prompt tracking through camera motion, on a clip whose true matte is known.

The clip: real footage (a window panning and zooming across vtest.avi, i.e. camera motion)
with a real cut-out (a region of messi5.jpg, an irregular shape) moving over it. The tracker
gets a box or clicks on one key frame and must follow the cut-out both ways.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import SAMPLES
from matte_metrics import mean_boundary_f
from video_helpers import read_all, write_sequence
from vfx.config import PipelineConfig, with_overrides
from vfx.job import JobSpec, run_job
from vfx.video import FrameRange, FrameReader, probe

FRAMES = 40
SIZE = (480, 360)  # w, h


def cutout() -> tuple[np.ndarray, np.ndarray]:
    photo = cv2.cvtColor(cv2.imread(str(SAMPLES / "messi5.jpg")), cv2.COLOR_BGR2RGB)
    patch = cv2.resize(photo[40:300, 180:420], (110, 120))
    mask = np.zeros(patch.shape[:2], np.uint8)
    cv2.ellipse(mask, (55, 45), (40, 40), 0, 0, 360, 1, -1)
    cv2.fillPoly(mask, [np.array([[20, 60], [95, 55], [105, 118], [8, 115]])], 1)
    return patch, mask.astype(bool)


def make_clip(folder) -> tuple[str, np.ndarray, list[tuple[int, int]]]:
    info = probe(SAMPLES / "vtest.avi")
    background = [f for _, f in FrameReader(info, FrameRange(200, 200 + FRAMES - 1)).frames()]
    patch, shape = cutout()
    frames, truths, positions = [], [], []
    for t, source in enumerate(background):
        zoom = 1.0 + 0.004 * t  # the camera pushes in while it pans right and down
        w, h = int(560 / zoom), int(420 / zoom)
        x0, y0 = 20 + 3 * t, 10 + int(1.5 * t)
        frame = cv2.resize(source[y0:y0 + h, x0:x0 + w], SIZE, interpolation=cv2.INTER_AREA)
        px, py = 60 + 6 * t, 80 + int(60 * np.sin(t / 8))
        truth = np.zeros(frame.shape[:2], bool)
        region = frame[py:py + patch.shape[0], px:px + patch.shape[1]]
        region[shape] = patch[shape]
        truth[py:py + patch.shape[0], px:px + patch.shape[1]] = shape
        frames.append(frame)
        truths.append(truth)
        positions.append((px, py))
    return write_sequence(folder, np.stack(frames), first=0, pattern="clip.%04d.png"), np.stack(truths), positions


def mean_iou(mattes: np.ndarray, truths: np.ndarray) -> float:
    ious = [np.logical_and(m, t).sum() / np.logical_or(m, t).sum() for m, t in zip(mattes, truths)]
    return float(np.mean(ious))


@pytest.mark.parametrize("key_frame,prompt", [
    (0, "box"),
    (20, "box"),  # tracked backward to frame 0 and forward to the end
    (20, "points"),
])
def test_prompt_tracking_iou(tmp_path, key_frame, prompt):
    pattern, truths, positions = make_clip(tmp_path)
    px, py = positions[key_frame]
    if prompt == "box":
        subject = f"box:{px - 4},{py - 4},118,128@{key_frame}"
    else:
        subject = f"point:{px + 55},{py + 45}@{key_frame}+point:{px + 55},{py + 95}@{key_frame}+negpoint:{px - 30},{py + 60}@{key_frame}"
    config = with_overrides(PipelineConfig(), {"segment.subject": [subject], "restyle.style": "night", "segment.feather_px": 0})
    run_job(JobSpec(pattern, str(tmp_path / "out.%04d.png"), config, matte=str(tmp_path / "m.%04d.png")))
    _, mattes = read_all(tmp_path / "m.%04d.png")
    iou = mean_iou(mattes[..., 0] > 127, truths)
    bf = mean_boundary_f(mattes[..., 0] > 127, truths)
    print(f"\nprompt tracking, {prompt} on key frame {key_frame}: mean IoU {iou:.3f}, boundary F {bf:.3f} over {FRAMES} frames")
    assert iou >= (0.92 if prompt == "box" else 0.85)


@pytest.mark.parametrize("start", [100, 400])
def test_boxed_portrait_stays_its_own_size(tmp_path, start):
    """A head and shoulders over vtest.avi's lawn: the person model imagines a torso below it, and while tracking
    it may add only what neither motion nor the clean plate calls world, in colours the subject had."""
    from clip_helpers import hard_clip_frames, portrait_patch, position

    pictures, truths = hard_clip_frames(32, start=start, patch=portrait_patch())
    pattern = write_sequence(tmp_path, np.stack(pictures), first=0, pattern="portrait.%04d.png")
    px, py = position(0)
    config = with_overrides(PipelineConfig(), {"segment.subject": [f"box:{px - 4},{py - 4},118,128@0"],
                                               "restyle.style": "night", "segment.feather_px": 0})
    run_job(JobSpec(pattern, str(tmp_path / "o.%04d.png"), config, matte=str(tmp_path / "m.%04d.png")))
    mattes = read_all(tmp_path / "m.%04d.png")[1][..., 0] > 127
    iou, area = mean_iou(mattes, np.stack(truths)), mattes[-1].sum() / truths[-1].sum()
    islands = sum(_islands(m, 12) for m in mattes)
    print(f"\nboxed portrait over vtest.avi from {start}: mean IoU {iou:.3f} over 32 frames; last frame's matte "
          f"{area:.2f}x the subject's area; {islands} px in regions over 12 px off the largest")
    assert iou >= 0.92  # 0.736 / 0.741 (1.53x / 2.38x the area) when the person model's torso took the lawn
    assert area <= 1.15
    assert islands == 0  # 676 px on frame 28 from 400: what a walker who brushed it left behind


def _islands(matte: np.ndarray, distance: int) -> int:
    """Pixels of ``matte`` in regions farther than ``distance`` from its largest region."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(matte.astype(np.uint8), connectivity=8)
    if count <= 2:
        return 0
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    near = cv2.dilate((labels == largest).astype(np.uint8), np.ones((2 * distance + 1,) * 2, np.uint8)).astype(bool)
    far = [label for label in range(1, count) if not near[labels == label].any()]
    return int(np.isin(labels, far).sum())


def test_passers_by_beside_a_slow_subject_stay_out(tmp_path):
    """The cut-out creeps right (1 px a frame) while walkers pass close by on its right: moving on their own,
    explained by neither the subject's motion nor the camera's, they are not the subject."""
    from clip_helpers import background, compose, hard_shape, photo_patch

    pictures, truths = [], []
    for t, frame in enumerate(background(40, 300)):
        picture, truth = compose(frame, photo_patch().astype(np.float32), hard_shape().astype(np.float32),
                                 40 + t, 100 + int(50 * np.sin(t / 8)))
        pictures.append(picture)
        truths.append(truth > 0.5)
    pattern = write_sequence(tmp_path, np.stack(pictures), first=0, pattern="slow.%04d.png")
    config = with_overrides(PipelineConfig(), {"segment.subject": ["box:36,96,118,128@0"], "restyle.style": "night",
                                               "segment.feather_px": 0})
    run_job(JobSpec(pattern, str(tmp_path / "o.%04d.png"), config, matte=str(tmp_path / "m.%04d.png")))
    mattes = read_all(tmp_path / "m.%04d.png")[1][..., 0] > 127
    ious = [np.logical_and(m, t).sum() / np.logical_or(m, t).sum() for m, t in zip(mattes, truths)]
    print(f"\nslow subject, walkers passing on its right: mean IoU {np.mean(ious):.3f}, worst {min(ious):.3f} "
          f"(frame {int(np.argmin(ious))})")
    assert np.mean(ious) >= 0.92 and min(ious) >= 0.9  # 0.955 / 0.809 while the walkers joined it


def test_subject_taken_again_after_a_cut(tmp_path, caplog):
    """Two shots cut together, the subject in both: found again from its key-frame appearance, or re-prompted on a second key frame."""
    import logging

    from clip_helpers import hard_clip_frames, position

    caplog.set_level(logging.INFO, logger="vfx.segment.prompt")
    first, first_truth = hard_clip_frames(16, start=200)
    second, second_truth = hard_clip_frames(16, start=60, offset=(150, 40), video="Megamind.avi")
    pattern = write_sequence(tmp_path, np.stack(first + second), first=0, pattern="cut.%04d.png")
    truths = np.stack(first_truth + second_truth)
    (x0, y0), (x1, y1) = position(0), position(0)
    results = {}
    for name, subject in (("one key frame", f"box:{x0 - 4},{y0 - 4},118,128@0"),
                          ("two key frames", f"box:{x0 - 4},{y0 - 4},118,128@0+box:{x1 + 150 - 4},{y1 + 40 - 4},118,128@16")):
        out = tmp_path / name.replace(" ", "_")
        out.mkdir()
        config = with_overrides(PipelineConfig(), {"segment.subject": [subject], "restyle.style": "night", "segment.feather_px": 0})
        run_job(JobSpec(pattern, str(out / "o.%04d.png"), config, matte=str(out / "m.%04d.png")))
        mattes = read_all(out / "m.%04d.png")[1][..., 0] > 127
        results[name] = mean_iou(mattes, truths), mean_boundary_f(mattes, truths)
        print(f"\ncut at frame 16, {name}: mean IoU {results[name][0]:.3f}, boundary F {results[name][1]:.3f} over 32 frames")
    assert results["two key frames"][0] >= 0.92 and results["one key frame"][0] >= 0.85
    assert "shot cut at frame 16" in caplog.text and "re-prompted on key frame 16" in caplog.text
    assert "subject found again at frame 1" in caplog.text


def test_subject_found_again_after_a_full_occlusion(tmp_path, caplog):
    import logging

    from clip_helpers import occluded_clip, position

    caplog.set_level(logging.INFO, logger="vfx.segment.prompt")
    pattern, truths = occluded_clip(tmp_path)
    px, py = position(0)
    config = with_overrides(PipelineConfig(), {"segment.subject": [f"box:{px - 4},{py - 4},118,128@0"],
                                               "restyle.style": "night", "segment.feather_px": 0})
    run_job(JobSpec(pattern, str(tmp_path / "o.%04d.png"), config, matte=str(tmp_path / "m.%04d.png")))
    mattes = read_all(tmp_path / "m.%04d.png")[1][..., 0] > 127
    after, hidden = slice(25, None), slice(12, 22)
    iou_after, bf_after = mean_iou(mattes[after], truths[after]), mean_boundary_f(mattes[after], truths[after])
    leak = mattes[hidden].sum() / truths[0].sum() / 10
    print(f"\nfull occlusion frames 12-21: matte while hidden {leak:.1%} of the subject's area per frame; "
          f"after re-emergence (frames 25-{len(truths) - 1}) mean IoU {iou_after:.3f}, boundary F {bf_after:.3f}")
    assert iou_after >= 0.85
    assert leak < 0.1
    assert "subject lost at frame" in caplog.text and "subject found again at frame" in caplog.text


def test_subject_found_again_where_it_went_not_its_twin(tmp_path, caplog):
    """The subject walks on at an even pace behind a passing object while a look-alike stands in sight: it is
    looked for where its motion took it, and the look-alike, far from there, is not taken for it."""
    import logging

    from clip_helpers import occluded_clip

    def path(t: int) -> tuple[int, int]:
        return 40 + 6 * t, 60 + 2 * t

    caplog.set_level(logging.INFO, logger="vfx.segment.prompt")
    pattern, truths = occluded_clip(tmp_path, twin=(360, 230), path=path)
    px, py = path(0)
    config = with_overrides(PipelineConfig(), {"segment.subject": [f"box:{px - 4},{py - 4},118,128@0"],
                                               "restyle.style": "night", "segment.feather_px": 0})
    run_job(JobSpec(pattern, str(tmp_path / "o.%04d.png"), config, matte=str(tmp_path / "m.%04d.png")))
    mattes = read_all(tmp_path / "m.%04d.png")[1][..., 0] > 127
    after = slice(25, None)
    on_twin = mattes[:, 230:350, 360:470].mean()
    iou_after = mean_iou(mattes[after], truths[after])
    print(f"\nsubject hidden frames 12-21, its twin in sight: matte on the twin {on_twin:.1%}, "
          f"after re-emergence mean IoU {iou_after:.3f}")
    assert on_twin < 0.02
    assert iou_after >= 0.85
    assert "subject found again at frame" in caplog.text


def test_two_subjects_get_a_matte_each_and_both_stay_untouched(tmp_path):
    from clip_helpers import position, two_subject_clip

    pattern, first, second = two_subject_clip(tmp_path)
    px, py = position(0)
    subjects = [f"player=box:{px - 4},{py - 4},118,128@0", "box:352,192,106,126@0"]  # the second is named s2
    config = with_overrides(PipelineConfig(), {"segment.subject": subjects, "restyle.style": "night", "segment.feather_px": 0})
    run_job(JobSpec(pattern, str(tmp_path / "o.%04d.png"), config, matte=str(tmp_path / "m.%04d.png")))
    mattes = read_all(tmp_path / "m.%04d.png")[1] > 127
    source, output = read_all(pattern)[1], read_all(tmp_path / "o.%04d.png")[1]
    iou_first, iou_second = mean_iou(mattes[..., 0], first), mean_iou(mattes[..., 1], second)
    print(f"\ntwo subjects: red channel (player) IoU {iou_first:.3f}, green channel (s2) IoU {iou_second:.3f}")
    assert iou_first >= 0.9 and iou_second >= 0.9 and not mattes[..., 2].any()
    kept = mattes[..., 0] | mattes[..., 1]
    assert np.array_equal(output[kept], source[kept])  # the restyle keeps both
