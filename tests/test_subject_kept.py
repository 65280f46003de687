"""The subject is untouched where the matte is 1; the surroundings change; batching changes nothing."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import SAMPLES
from video_helpers import read_all
from vfx.config import PipelineConfig, with_overrides
from vfx.errors import VfxError
from vfx.job import JobSpec, run_job
from vfx.matte import feather
from vfx.restyle.composite import composite
from vfx.segment.prompts import parse_subject
from vfx.video import FrameRange, FrameReader, probe


def source_frames(path, first, last):
    return np.stack([f for _, f in FrameReader(probe(str(path)), FrameRange(first, last)).frames()])


@pytest.mark.parametrize("subject,clip,frames,style", [
    ("person", "vtest.avi", "100-123", "oil"),
    ("box:80,0,330,528@40", "Megamind.avi", "30-53", "night"),
])
def test_subject_pixels_identical_and_background_changed(tmp_path, subject, clip, frames, style):
    config = with_overrides(PipelineConfig(), {"segment.subject": [subject], "restyle.style": style})
    run_job(JobSpec(str(SAMPLES / clip), str(tmp_path / "out.%04d.png"), config, frames=frames,
                    matte=str(tmp_path / "matte.%04d.png")))
    first, last = (int(x) for x in frames.split("-"))
    source = source_frames(SAMPLES / clip, first, last)
    _, output = read_all(tmp_path / "out.%04d.png")
    _, matte = read_all(tmp_path / "matte.%04d.png")
    subject_px = matte[..., 0] == 255
    background = matte[..., 0] == 0
    assert subject_px.mean() > 0.002, "the subject was found"
    assert np.array_equal(output[subject_px], source[subject_px])
    change = np.abs(output.astype(int) - source.astype(int)).mean(axis=-1)[background].mean()
    print(f"\n{clip} {subject} {style}: subject {subject_px.mean():.1%} of pixels identical; background changed by {change:.1f} levels")
    assert change > 8


def test_batch_size_does_not_change_the_result(tmp_path):
    config = with_overrides(PipelineConfig(), {"segment.subject": ["person"], "restyle.style": "watercolour"})
    outputs = []
    for batch in (1, 5):
        out = tmp_path / f"b{batch}"
        out.mkdir()
        run_job(JobSpec(str(SAMPLES / "vtest.avi"), str(out / "f.%04d.png"), with_overrides(config, {"batch_size": batch}), frames="0-11"))
        outputs.append(read_all(out / "f.%04d.png")[1])
    assert np.array_equal(outputs[0], outputs[1])


def test_composite_is_exact_inside_and_blends_the_edge():
    rng = np.random.default_rng(0)
    original = rng.integers(0, 256, (2, 40, 60, 3), dtype=np.uint8)
    restyled = rng.integers(0, 256, (2, 40, 60, 3), dtype=np.uint8)
    hard = np.zeros((40, 60), bool)
    hard[10:30, 20:40] = True
    soft = feather(hard, 5)
    assert soft[hard].min() == 1.0 and 0 < soft[10, 42] < 1 and soft[0, 0] == 0
    out = composite(original, restyled, np.stack([soft, soft]))
    assert np.array_equal(out[:, hard], original[:, hard])
    assert np.array_equal(out[:, soft == 0], restyled[:, soft == 0])


def test_subject_prompts_parse_and_refuse_nonsense():
    spec = parse_subject(["box:1,2,30,40@7+negpoint:5,5@7", "point:10,12@7"])
    assert spec.kind == "prompt" and spec.prompt.box == (1, 2, 30, 40) and spec.prompt.key_frame == 7
    assert spec.prompt.points == ((10, 12),) and spec.prompt.negative_points == ((5, 5),)
    assert parse_subject("person").kind == "person"
    keys = parse_subject("point:4,5@260+box:1,2,30,40@120")  # key frames of one subject, in frame order
    assert [p.key_frame for p in keys.prompts] == [120, 260] and keys.prompt.box == (1, 2, 30, 40)
    for bad in ("box:1,2,3", "negpoint:1,2@3+point:4,5@6", "blob:1,2", "negpoint:1,1", "person+box:1,2,3,4",
                "box:1,2,3,4@5+box:1,2,3,4@5"):
        with pytest.raises(VfxError):
            parse_subject(bad)
